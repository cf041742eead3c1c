"""SQLite store (WAL): alarms, tickets, timeline and outbox, one transaction per batch."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from gateway import failpoints
from gateway.core.alarms import Alarm
from gateway.core.tickets import Ticket
from gateway.errors import StoreError
from gateway.model import FaultLevel
from gateway.store import BatchWrite, DeviceChange, OutboxEntry, Store, TimelineRow
from gateway.store.migrations import Migration, newer_schema_message, pending
from gateway.store.migrations.sqlite import LATEST, MIGRATIONS

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

#: The schema version this code writes (the newest migration).
SCHEMA_VERSION = LATEST

_T = TypeVar("_T")


def _json(v: Any) -> str:
    return json.dumps(v, default=str, separators=(",", ":"), ensure_ascii=False)


def _statements(sql: str) -> list[str]:
    """Split a migration script into statements (``complete_statement`` knows about
    semicolons inside strings and trigger bodies, which a plain split does not)."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buf.strip()[:80]!r}")
    return out


class SqliteStore:
    """The embedded default store (implements :class:`gateway.store.Store`).

    Thread-safe by a lock; the pipeline writes from one thread. Opening read-write brings
    the schema up to date (:mod:`gateway.store.migrations.sqlite`) in one transaction;
    ``readonly=True`` opens with ``mode=ro`` and never migrates (an older schema is read as
    it is; queries on tables it does not have yet raise ``StoreError``). Either way a
    store written by a newer gateway is refused.
    """

    def __init__(self, path: str | Path, synchronous: str = "normal", readonly: bool = False) -> None:
        self.path = str(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        try:
            if readonly:
                uri = f"file:{Path(self.path).resolve()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=5.0, isolation_level=None)
            else:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from e
        try:
            if readonly:
                self._refuse_newer(self._user_version())
            else:
                self._wal()
                self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
                self._db.execute("PRAGMA foreign_keys=ON")
                self._migrate(MIGRATIONS)
        except BaseException as e:
            self._db.close()
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"{self.path}: {e}") from e
            raise
        self._db.row_factory = sqlite3.Row

    def _wal(self) -> None:
        """Switch to WAL. SQLite answers "locked" at once (no busy wait) while another
        connection is creating or switching the same new file, so retry within the timeout."""
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    # -- schema ---------------------------------------------------------------------------
    def _user_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: {newer_schema_message(version, SCHEMA_VERSION)}")

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        """Apply what the store lacks, all in one transaction with the version bump. The
        version is read inside the transaction, so two processes opening the same store
        at once migrate it once (the second waits, then finds it current)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            current = self._user_version()
            self._refuse_newer(current)
            todo = pending(migrations, current)
            for m in todo:
                for stmt in _statements(m.sql):
                    try:
                        db.execute(stmt)
                    except sqlite3.Error as e:
                        raise StoreError(
                            f"{self.path}: migration {m.version} ({m.name}) failed: {e}; the store is unchanged"
                        ) from e
            if todo:
                # PRAGMA user_version is written in the transaction like any other change.
                db.execute(f"PRAGMA user_version={int(todo[-1].version)}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # some errors (a full disk) end the transaction themselves
                db.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        with self._lock:
            try:
                return self._user_version()
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {e}") from e

    # -- plumbing -------------------------------------------------------------------------
    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {e}") from e

    def _write(self, fn: Callable[[sqlite3.Connection], _T], what: str = "") -> _T:
        """Run ``fn`` in one write transaction: committed if it returns, rolled back if
        anything raises (a half-done batch must never stay open for the next call).
        Database errors and armed failpoints become ``StoreError("<path>: <what><error>")``."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {what}{e}") from e
            try:
                result = fn(db)
                db.execute("COMMIT")
                return result
            except BaseException as e:
                try:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(e, (sqlite3.Error, failpoints.FailpointError)):
                    raise StoreError(f"{self.path}: {what}{e}") from e
                raise

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; returns the number of rows it changed."""
        return self._write(lambda db: db.execute(sql, args).rowcount)

    # -- writes --------------------------------------------------------------------------
    def commit(self, batch: BatchWrite) -> None:
        if not batch:
            return

        def write(db: sqlite3.Connection) -> None:
            if batch.alarms:
                db.executemany(
                    "INSERT INTO alarms(id,key,device,level,state,rule,title,count,first_seen,last_seen,"
                    "cleared_at,ticket_id,data) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                    "level=excluded.level,state=excluded.state,title=excluded.title,count=excluded.count,"
                    "last_seen=excluded.last_seen,cleared_at=excluded.cleared_at,ticket_id=excluded.ticket_id,"
                    "data=excluded.data",
                    [
                        (
                            a.id, a.key, a.device, int(a.level), a.state, a.rule_id, a.title, a.count,
                            a.first_seen, a.last_seen, a.cleared_at, a.ticket_id,
                            _json({"event": a.event, "attrs": dict(a.attrs), "labels": dict(a.labels), "acked": a.acked,
                                   **a.extra()}),
                        )
                        for a in batch.alarms
                    ],
                )
            if batch.tickets:
                db.executemany(
                    "INSERT INTO tickets(id,alarm_id,alarm_key,device,level,status,policy,opened_at,updated_at,"
                    "closed_at,data) VALUES(?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                    "level=excluded.level,status=excluded.status,updated_at=excluded.updated_at,"
                    "closed_at=excluded.closed_at,data=excluded.data",
                    [
                        (
                            t.id, t.alarm_id, t.alarm_key, t.device, int(t.level), t.status, t.policy,
                            t.opened_at, t.updated_at, t.closed_at, _json(t.to_dict()),
                        )
                        for t in batch.tickets
                    ],
                )
            if batch.timeline:
                db.executemany(
                    "INSERT INTO timeline(ticket_id,ts,actor,kind,note) VALUES(?,?,?,?,?)",
                    [(e.ticket_id, e.ts, e.actor, e.kind, e.note) for e in batch.timeline],
                )
            if batch.outbox:
                db.executemany(
                    "INSERT INTO outbox(connector,ticket_id,key,kind,payload,created_at) VALUES(?,?,?,?,?,"
                    "strftime('%s','now'))",
                    [(o.connector, o.ticket_id, o.key, o.kind, _json(o.payload)) for o in batch.outbox],
                )
            if batch.meta:
                db.executemany(
                    "INSERT INTO meta(key,value) VALUES(?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    list(batch.meta.items()),
                )
            if batch.delivery_keys:
                db.executemany("INSERT OR REPLACE INTO delivery_keys(key,at) VALUES(?,?)", batch.delivery_keys)
                if batch.forget_keys_before is not None:
                    db.execute("DELETE FROM delivery_keys WHERE at < ?", (batch.forget_keys_before,))
            if failpoints.ARMED:
                failpoints.hit("store_mid_commit")

        self._write(write, "commit failed: ")

    def save_maintenance(self, window: dict[str, Any]) -> None:
        self._exec(
            "INSERT INTO maintenance(id,start,end,data) VALUES(?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
            "start=excluded.start,end=excluded.end,data=excluded.data",
            (window["id"], float(window["start"]), float(window["end"]), _json(window)),
        )

    def save_devices(self, changes: Sequence[DeviceChange], actor: str, at: float) -> None:
        if not changes:
            return

        def write(db: sqlite3.Connection) -> None:
            upserts = [(c["device"], _json(c["data"]), at, actor) for c in changes if c["data"] is not None]
            removals = [(c["device"],) for c in changes if c["data"] is None]
            if upserts:
                db.executemany(
                    "INSERT INTO devices(id,data,updated_at,updated_by) VALUES(?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                    "data=excluded.data,updated_at=excluded.updated_at,updated_by=excluded.updated_by",
                    upserts,
                )
            if removals:
                db.executemany("DELETE FROM devices WHERE id=?", removals)
            db.executemany(
                "INSERT INTO device_changes(device,action,at,actor,data) VALUES(?,?,?,?,?)",
                [(c["device"], c["action"], at, actor, _json(c["data"])) for c in changes],
            )

        self._write(write, "saving devices failed: ")

    # -- reads ---------------------------------------------------------------------------
    def list_devices(self) -> list[dict[str, Any]]:
        return [self._data(r) for r in self._rows("SELECT data FROM devices ORDER BY id")]

    def device_changes(self, device: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        if device is None:
            rows = self._rows("SELECT id,device,action,at,actor,data FROM device_changes ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._rows(
                "SELECT id,device,action,at,actor,data FROM device_changes WHERE device=? ORDER BY id DESC LIMIT ?",
                (device, limit),
            )
        return [
            {"id": int(r["id"]), "device": r["device"], "action": r["action"], "at": float(r["at"]),
             "actor": r["actor"], "data": json.loads(r["data"])}
            for r in rows
        ]

    @staticmethod
    def _alarm(r: sqlite3.Row) -> Alarm:
        data = json.loads(r["data"])
        a = Alarm(
            id=r["id"], key=r["key"], device=r["device"], level=FaultLevel(r["level"]), state=r["state"],
            rule_id=r["rule"], title=r["title"], count=r["count"], first_seen=r["first_seen"],
            last_seen=r["last_seen"], cleared_at=r["cleared_at"], ticket_id=r["ticket_id"],
            event=data.get("event", ""), attrs=data.get("attrs", {}), labels=data.get("labels", {}),
            acked=data.get("acked", False),
        )
        a.restore_extra(data)  # hold, escalation, suppression and flap state
        return a

    @staticmethod
    def _data(r: sqlite3.Row) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(r["data"]))

    def load_open_alarms(self) -> list[Alarm]:
        return [self._alarm(r) for r in self._rows("SELECT * FROM alarms WHERE state != 'cleared' ORDER BY id")]

    def load_open_tickets(self) -> list[Ticket]:
        return [
            Ticket.from_dict(self._data(r))
            for r in self._rows("SELECT data FROM tickets WHERE status != 'closed' ORDER BY id")
        ]

    def load_ticket(self, ticket_id: int) -> Ticket | None:
        rows = self._rows("SELECT data FROM tickets WHERE id=?", (ticket_id,))
        return Ticket.from_dict(self._data(rows[0])) if rows else None

    def next_ids(self) -> tuple[int, int]:
        a = self._rows("SELECT COALESCE(MAX(id),0)+1 FROM alarms")[0][0]
        t = self._rows("SELECT COALESCE(MAX(id),0)+1 FROM tickets")[0][0]
        return int(a), int(t)

    def load_delivery_keys(self, since: float) -> list[tuple[str, float]]:
        rows = self._rows("SELECT key, at FROM delivery_keys WHERE at >= ? ORDER BY at", (since,))
        return [(str(r["key"]), float(r["at"])) for r in rows]

    def list_alarms(self, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        if state:
            rows = self._rows("SELECT * FROM alarms WHERE state=? ORDER BY id DESC LIMIT ?", (state, limit))
        else:
            rows = self._rows("SELECT * FROM alarms ORDER BY id DESC LIMIT ?", (limit,))
        return [self._alarm(r).to_dict() for r in rows]

    def find_alarms(
        self,
        *,
        states: Sequence[str] | None = None,
        levels: Sequence[int] | None = None,
        devices: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        where, args = _filters((("state", states), ("level", levels), ("device", devices)))
        rows = self._rows(f"SELECT * FROM alarms{where} ORDER BY id DESC LIMIT ?", (*args, limit))
        return [self._alarm(r).to_dict() for r in rows]

    def get_alarm(self, alarm_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM alarms WHERE id=?", (alarm_id,))
        return self._alarm(rows[0]).to_dict() if rows else None

    def list_tickets(self, status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        if status:
            rows = self._rows("SELECT data FROM tickets WHERE status=? ORDER BY id DESC LIMIT ?", (status, limit))
        else:
            rows = self._rows("SELECT data FROM tickets ORDER BY id DESC LIMIT ?", (limit,))
        return [self._data(r) for r in rows]

    def find_tickets(
        self,
        *,
        statuses: Sequence[str] | None = None,
        levels: Sequence[int] | None = None,
        devices: Sequence[str] | None = None,
        sites: Sequence[str] | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        where, args = _filters((
            ("status", statuses), ("level", levels), ("device", devices), ("json_extract(data,'$.site')", sites),
        ))
        rows = self._rows(f"SELECT data FROM tickets{where} ORDER BY id DESC LIMIT ?", (*args, limit))
        return [self._data(r) for r in rows]

    def get_ticket(self, ticket_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT data FROM tickets WHERE id=?", (ticket_id,))
        return self._data(rows[0]) if rows else None

    def tickets_opened(self, policy: str, start: float, end: float) -> list[Ticket]:
        rows = self._rows(
            "SELECT data FROM tickets WHERE policy=? AND opened_at>=? AND opened_at<? ORDER BY opened_at, id",
            (policy, start, end),
        )
        return [Ticket.from_dict(self._data(r)) for r in rows]

    def timeline(self, ticket_id: int) -> list[TimelineRow]:
        rows = self._rows("SELECT ticket_id,ts,actor,kind,note FROM timeline WHERE ticket_id=? ORDER BY id", (ticket_id,))
        return [
            TimelineRow(ticket_id=int(r["ticket_id"]), ts=float(r["ts"]), actor=r["actor"], kind=r["kind"], note=r["note"])
            for r in rows
        ]

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key=?", (key,))
        return str(rows[0][0]) if rows else None

    def list_maintenance(self, ending_after: float | None = None) -> list[dict[str, Any]]:
        if ending_after is None:
            rows = self._rows("SELECT data FROM maintenance ORDER BY start, id")
        else:
            rows = self._rows("SELECT data FROM maintenance WHERE end > ? ORDER BY start, id", (ending_after,))
        return [self._data(r) for r in rows]

    # -- help-desk outbox (written by the pipeline in its batch; worked by the outbox worker) --
    @staticmethod
    def _entry(r: sqlite3.Row) -> OutboxEntry:
        return OutboxEntry(
            id=int(r["id"]), connector=r["connector"], ticket_id=int(r["ticket_id"]), key=r["key"], kind=r["kind"],
            payload=cast(dict[str, Any], json.loads(r["payload"])), state=r["state"], attempts=int(r["attempts"]),
            next_attempt=float(r["next_attempt"]), remote_id=r["remote_id"], last_error=r["last_error"],
            created_at=float(r["created_at"]),
            delivered_at=None if r["delivered_at"] is None else float(r["delivered_at"]),
        )

    def outbox_due(self, now: float, limit: int = 100) -> list[OutboxEntry]:
        rows = self._rows(
            "SELECT o.* FROM outbox o JOIN (SELECT connector, ticket_id, MIN(id) AS id FROM outbox "
            "WHERE state IN ('pending','sending') GROUP BY connector, ticket_id) h ON o.id = h.id "
            "WHERE o.next_attempt <= ? ORDER BY o.id LIMIT ?",
            (now, limit),
        )
        return [self._entry(r) for r in rows]

    def outbox_attempt(self, msg_id: int, now: float, lease: float) -> None:
        self._exec("UPDATE outbox SET state='sending', attempts=attempts+1, next_attempt=? WHERE id=?", (now + lease, msg_id))

    def outbox_delivered(
        self, msg_id: int, now: float, remote_id: str | None, connector: str, ticket_id: int, key: str
    ) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("UPDATE outbox SET state='delivered', delivered_at=?, remote_id=?, last_error=NULL WHERE id=?",
                       (now, remote_id, msg_id))
            if remote_id:
                db.execute("INSERT INTO helpdesk_links(connector,ticket_id,remote_id,key,created_at) VALUES(?,?,?,?,?) "
                           "ON CONFLICT(connector,ticket_id) DO NOTHING", (connector, ticket_id, remote_id, key, now))

        self._write(write)

    def outbox_retry_later(self, msg_id: int, next_attempt: float, error: str) -> None:
        self._exec("UPDATE outbox SET state='pending', next_attempt=?, last_error=? WHERE id=?", (next_attempt, error[:500], msg_id))

    def outbox_failed(self, msg_id: int, error: str) -> None:
        self._exec("UPDATE outbox SET state='failed', last_error=? WHERE id=?", (error[:500], msg_id))

    def outbox_requeue(self, msg_id: int) -> bool:
        return self._exec("UPDATE outbox SET state='pending', next_attempt=0 WHERE id=? AND state='failed'", (msg_id,)) == 1

    def outbox_discard(self, msg_id: int) -> bool:
        return self._exec("UPDATE outbox SET state='discarded' WHERE id=? AND state='failed'", (msg_id,)) == 1

    def outbox_list(self, state: str | None = None, limit: int = 500) -> list[OutboxEntry]:
        if state:
            rows = self._rows("SELECT * FROM outbox WHERE state=? ORDER BY id DESC LIMIT ?", (state, limit))
        else:
            rows = self._rows("SELECT * FROM outbox ORDER BY id DESC LIMIT ?", (limit,))
        return [self._entry(r) for r in rows]

    def outbox_counts(self) -> dict[str, int]:
        return {str(r[0]): int(r[1]) for r in self._rows("SELECT state, COUNT(*) FROM outbox GROUP BY state")}

    def outbox_reset_leases(self) -> None:
        self._exec("UPDATE outbox SET state='pending', next_attempt=0 WHERE state='sending'")

    def remote_id(self, connector: str, ticket_id: int) -> str | None:
        rows = self._rows("SELECT remote_id FROM helpdesk_links WHERE connector=? AND ticket_id=?", (connector, ticket_id))
        return str(rows[0][0]) if rows else None

    def remote_links(self, connector: str) -> dict[str, int]:
        rows = self._rows("SELECT remote_id, ticket_id FROM helpdesk_links WHERE connector=?", (connector,))
        return {str(r[0]): int(r[1]) for r in rows}

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass


def _filters(pairs: tuple[tuple[str, Sequence[Any] | None], ...]) -> tuple[str, list[Any]]:
    """`` WHERE col IN (?,..) AND ...`` for the filters that are given (column names are ours)."""
    clauses: list[str] = []
    args: list[Any] = []
    for col, values in pairs:
        if values is None:
            continue
        if not values:
            clauses.append("0")
            continue
        clauses.append(f"{col} IN ({','.join('?' * len(values))})")
        args.extend(values)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


if TYPE_CHECKING:

    def _implements_store(s: SqliteStore) -> Store:
        return s  # mypy checks here that SqliteStore implements the whole protocol
