"""SQLite store (WAL): alarms, tickets, timeline and outbox, one transaction per batch."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gateway import failpoints
from gateway.errors import StoreError
from gateway.store import Store
from gateway.store.migrations import Migration, newer_schema_message, pending
from gateway.store.migrations.sqlite import LATEST, MIGRATIONS
from gateway.store.sql import Dialect, SqlStore

__all__ = ["SCHEMA_VERSION", "SqliteStore", "WalCheckpointer"]

#: The schema version this code writes (the newest migration).
SCHEMA_VERSION = LATEST

_T = TypeVar("_T")


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


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner and group only (0640; SQLite gives its
    -wal and -shm files the database file's mode), its directory 0750 if missing."""
    if path.exists() or str(path) == ":memory:":
        return
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640))


class SqliteStore(SqlStore):
    """The embedded default store (implements :class:`gateway.store.Store`; the SQL itself
    is shared with PostgreSQL in :mod:`gateway.store.sql`).

    Thread-safe by a lock; the pipeline writes from one thread. Opening read-write brings
    the schema up to date (:mod:`gateway.store.migrations.sqlite`) in one transaction;
    ``readonly=True`` opens with ``mode=ro`` and never migrates (an older schema is read as
    it is; queries on tables it does not have yet raise ``StoreError``). Either way a
    store written by a newer gateway is refused.
    """

    dialect = Dialect("sqlite")

    def __init__(self, path: str | Path, synchronous: str = "normal", readonly: bool = False) -> None:
        self.path = str(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        try:
            if readonly:
                uri = f"file:{Path(self.path).resolve()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=5.0, isolation_level=None)
            else:
                _create_private(Path(self.path))
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

    def _write(self, fn: Callable[[Any], _T], what: str = "") -> _T:
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

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass

    def start_checkpointer(self, interval: float = 0.5) -> WalCheckpointer:
        """Move WAL checkpoints off the commit path (the daemon's writer).

        By default SQLite checkpoints inside whichever commit crosses 1,000 WAL pages: that
        commit copies the pages back and syncs the file, and every INFORM and QoS 1 message
        waiting on it waits too. Here the writer's automatic checkpoints are switched off
        and a thread of its own runs ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval``
        seconds on a connection of its own: a passive checkpoint never blocks the writer.
        """
        with self._lock:
            self._db.execute("PRAGMA wal_autocheckpoint=0")
        cp = WalCheckpointer(self.path, interval)
        cp.start()
        return cp


_log = logging.getLogger("gateway.store")


class WalCheckpointer:
    """A thread checkpointing one SQLite file's WAL (see ``SqliteStore.start_checkpointer``)."""

    def __init__(self, path: str, interval: float) -> None:
        self.path = path
        self.interval = interval
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10.0)

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=0.0, isolation_level=None)
        except sqlite3.Error as e:
            _log.warning("%s: WAL checkpoints stay on the commit path: %s", self.path, e)
            return
        failing = False
        try:
            while not self._stop.wait(self.interval):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.runs += 1
                    failing = False
                except sqlite3.Error as e:  # busy or locked now: the next round tries again
                    if not failing:
                        _log.debug("%s: WAL checkpoint skipped: %s", self.path, e)
                    failing = True
        finally:
            db.close()


if TYPE_CHECKING:

    def _implements_store(s: SqliteStore) -> Store:
        return s  # mypy checks here that SqliteStore implements the whole protocol
