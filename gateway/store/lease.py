"""The leader lease of gateways sharing one PostgreSQL store, with a fencing token.

One row per lease name in ``gateway_lease`` (made on first use, beside the numbered
schema: it is coordination, not history). Times are the database server's clock, so the
instances' clocks need not agree. Rules:

* A holder renews before ``expires_at``; anyone may take the row once it has expired.
  Renewing takes the same holder name *and* token: a process restarted under the same
  name is a new holder (it waits for expiry and gets a new token).
* The ``token`` grows by one at every change of holder: a write stamped with an old token
  is refused (:meth:`Lease.fence`, run first in every write transaction of a fenced
  store). The check takes a share lock on the row, so a takeover waits for a write in
  flight to commit, and a write after a takeover sees the new holder and is refused.
* Locally, a holder trusts its lease until ``renewed + ttl - margin`` on its monotonic
  clock (:meth:`Lease.held`), which keeps running while the process is stopped: a paused
  leader that wakes up knows before its next request that its lease may be gone.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import psycopg

from gateway.errors import StoreError

__all__ = ["FencedError", "Lease"]

_TABLE = (
    "CREATE TABLE IF NOT EXISTS gateway_lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, "
    "token BIGINT NOT NULL, expires_at DOUBLE PRECISION NOT NULL, acquired_at DOUBLE PRECISION NOT NULL)"
)
# The leader's advertised API address, for standbys to forward operator actions to.
_URL_COLUMN = "ALTER TABLE gateway_lease ADD COLUMN IF NOT EXISTS url TEXT NOT NULL DEFAULT ''"
_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"


class FencedError(StoreError):
    """A write by an instance that no longer holds the leader lease: refused, nothing written."""


class Lease:
    """One instance's side of a lease (thread-safe).

    Args:
        conninfo: Where the store is (the store's own connection string).
        holder: This instance's name (unique among the instances).
        ttl: Seconds a lease lasts without renewal (the failover time, at most).
        name: The lease (one per group of gateways sharing a store).
        margin: Seconds before the local deadline at which this side stops trusting it.
        url: This instance's advertised API address, stored in the row while it holds it.
    """

    def __init__(
        self, conninfo: str, holder: str, ttl: float, *, name: str = "leader", margin: float | None = None,
        monotonic: Callable[[], float] = time.monotonic, url: str = "",
    ) -> None:
        self.url = url
        self.conninfo = conninfo
        self.holder = holder
        self.ttl = float(ttl)
        self.name = name
        self.margin = self.ttl / 5 if margin is None else margin
        self._mono = monotonic
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        #: The fencing token while held (0: never held).
        self.token = 0
        self._until = 0.0
        self.acquired_mono = 0.0
        self.renewed_mono = 0.0
        #: Whether the last try_acquire got an answer from the database.
        self.reachable = False

    # -- connection -------------------------------------------------------------------------
    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=max(1, int(self.ttl / 3)))
            self._conn.execute(f"SET statement_timeout = {max(1000, int(self.ttl * 1000 / 3))}")
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(b"gateway.lease"),))
                self._conn.execute(_TABLE)
                self._conn.execute(_URL_COLUMN)
        return self._conn

    # -- the holder's side --------------------------------------------------------------------
    def try_acquire(self) -> bool:
        """Take the lease if it is free or expired, or renew it if held. Returns whether this
        instance holds it now. Database errors count as "not held" (and are raised as
        StoreError only through :meth:`fence`)."""
        with self._lock:
            started = self._mono()
            try:
                db = self._db()
                row = db.execute(
                    f"INSERT INTO gateway_lease(name, holder, token, expires_at, acquired_at, url) "
                    f"VALUES (%s, %s, 1, {_NOW} + %s, {_NOW}, %s) ON CONFLICT (name) DO NOTHING RETURNING token",
                    (self.name, self.holder, self.ttl, self.url),
                ).fetchone()
                # Renewed only by this very process (same holder and token): a restarted
                # process of the same name waits for expiry and gets a new token like anyone
                # else, so its paused former self is fenced.
                mine = "holder = %s AND token = %s"
                row = row or db.execute(
                    f"UPDATE gateway_lease SET "
                    f"token = CASE WHEN {mine} THEN token ELSE token + 1 END, "
                    f"acquired_at = CASE WHEN {mine} THEN acquired_at ELSE {_NOW} END, "
                    f"holder = %s, url = %s, expires_at = {_NOW} + %s "
                    f"WHERE name = %s AND (({mine}) OR expires_at <= {_NOW}) RETURNING token",
                    (self.holder, self.token, self.holder, self.token, self.holder, self.url, self.ttl, self.name,
                     self.holder, self.token),
                ).fetchone()
            except psycopg.Error:
                self.reachable = False
                if self._conn is not None and self._conn.broken:
                    self._conn = None
                return self.held()
            self.reachable = True
            if row is None:
                self._until = 0.0
                return False
            token = int(row[0])
            if token != self.token:
                self.token = token
                self.acquired_mono = started
            self.renewed_mono = started
            self._until = started + self.ttl - self.margin
            return True

    def held(self) -> bool:
        """Whether this instance may still act as the leader (local clock, no round trip)."""
        return self.token > 0 and self._mono() < self._until

    def age(self) -> float:
        """Seconds since this instance last renewed the lease (0 when it does not hold it)."""
        return max(0.0, self._mono() - self.renewed_mono) if self.held() else 0.0

    def release(self) -> None:
        """Give the lease up at a clean stop, so a follower takes over at once."""
        with self._lock:
            self._until = 0.0
            try:
                self._db().execute(f"UPDATE gateway_lease SET expires_at = {_NOW} WHERE name = %s AND holder = %s",
                                   (self.name, self.holder))
            except psycopg.Error:
                pass

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- inside a write transaction --------------------------------------------------------------
    def fence(self, execute: Callable[[str, tuple[Any, ...]], Any], where: str) -> None:
        """The first statement of a fenced write: refuse (FencedError) unless this instance
        holds the lease with its current token, and keep the row shared-locked until commit."""
        if not self.held():
            raise FencedError(f"{where}: not the leader (lease not held or expired); nothing written")
        row = execute(
            f"SELECT token FROM gateway_lease WHERE name = %s AND holder = %s AND token = %s "
            f"AND expires_at > {_NOW} FOR SHARE",
            (self.name, self.holder, self.token),
        ).fetchone()
        if row is None:
            self._until = 0.0
            raise FencedError(f"{where}: fenced: another instance holds the leader lease; nothing written")

    def leader(self) -> tuple[str, str] | None:
        """(holder, advertised API url) of the unexpired lease as the database sees it, or
        None (no leader right now, or the database does not answer)."""
        with self._lock:
            try:
                row = self._db().execute(
                    f"SELECT holder, url FROM gateway_lease WHERE name = %s AND expires_at > {_NOW}", (self.name,)
                ).fetchone()
            except psycopg.Error:
                if self._conn is not None and self._conn.broken:
                    self._conn = None
                return None
        return (str(row[0]), str(row[1])) if row else None

    def rows(self, prefix: str) -> tuple[float, list[tuple[str, str, float]]] | None:
        """The database's time now and every lease row whose name starts with ``prefix``, as
        (name, holder, expires_at), on this lease's connection (partition members and
        partitions, docs/scaling.md); None when the database does not answer."""
        with self._lock:
            try:
                db = self._db()
                now = db.execute(f"SELECT {_NOW}").fetchone()
                rows = db.execute("SELECT name, holder, expires_at FROM gateway_lease WHERE name LIKE %s ORDER BY name",
                                  (prefix.replace("%", r"\%").replace("_", r"\_") + "%",)).fetchall()
            except psycopg.Error:
                if self._conn is not None and self._conn.broken:
                    self._conn = None
                return None
        return float(now[0]) if now else 0.0, [(str(r[0]), str(r[1]), float(r[2])) for r in rows]

    # -- anyone ----------------------------------------------------------------------------------
    @staticmethod
    def current(conninfo: str, name: str = "leader") -> tuple[str, int, float] | None:
        """(holder, token, seconds left) of a lease as the database sees it, or None."""
        with psycopg.connect(conninfo, autocommit=True) as db:
            if db.execute("SELECT to_regclass('gateway_lease')").fetchone() == (None,):
                return None
            row = db.execute(f"SELECT holder, token, expires_at - {_NOW} FROM gateway_lease WHERE name = %s",
                             (name,)).fetchone()
        return (str(row[0]), int(row[1]), float(row[2])) if row else None
