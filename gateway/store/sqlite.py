"""SQLite store (WAL): alarms, tickets, timeline and outbox, one transaction per batch."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from gateway.core.alarms import Alarm
from gateway.errors import StoreError
from gateway.model import FaultLevel
from gateway.store import BatchWrite
from gateway.core.tickets import Ticket

__all__ = ["SqliteStore"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    device TEXT NOT NULL,
    level INTEGER NOT NULL,
    state TEXT NOT NULL,
    rule TEXT NOT NULL,
    title TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    cleared_at REAL,
    ticket_id INTEGER,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS alarms_state ON alarms(state);
CREATE INDEX IF NOT EXISTS alarms_key ON alarms(key);
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY,
    alarm_id INTEGER NOT NULL,
    alarm_key TEXT NOT NULL,
    device TEXT NOT NULL,
    level INTEGER NOT NULL,
    status TEXT NOT NULL,
    policy TEXT NOT NULL,
    opened_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    closed_at REAL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_status ON tickets(status);
CREATE TABLE IF NOT EXISTS timeline (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS timeline_ticket ON timeline(ticket_id, id);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    connector TEXT NOT NULL,
    ticket_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    remote_id TEXT,
    last_error TEXT,
    created_at REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(state, connector, ticket_id, id);
CREATE TABLE IF NOT EXISTS helpdesk_links (
    connector TEXT NOT NULL,
    ticket_id INTEGER NOT NULL,
    remote_id TEXT NOT NULL,
    key TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (connector, ticket_id)
);
CREATE TABLE IF NOT EXISTS maintenance (
    id TEXT PRIMARY KEY,
    start REAL NOT NULL,
    end REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS delivery_keys (
    key TEXT PRIMARY KEY,
    at REAL NOT NULL
);
"""


def _json(v: Any) -> str:
    return json.dumps(v, default=str, separators=(",", ":"), ensure_ascii=False)


class SqliteStore:
    """The embedded default store. Thread-safe by a lock; the pipeline writes from one thread."""

    def __init__(self, path: str | Path, synchronous: str = "normal", readonly: bool = False) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            if readonly:
                uri = f"file:{Path(self.path).resolve()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=5.0)
            else:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
                self._db.execute("PRAGMA foreign_keys=ON")
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreError(f"{self.path}: schema version {version} is newer than this gateway ({SCHEMA_VERSION})")
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from e
        self._db.row_factory = sqlite3.Row

    # -- writes --------------------------------------------------------------------------
    def commit(self, batch: BatchWrite) -> None:
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
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
                for k, v in batch.meta.items():
                    db.execute("INSERT INTO meta(key,value) VALUES(?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (k, v))
                if batch.delivery_keys:
                    db.executemany("INSERT OR REPLACE INTO delivery_keys(key,at) VALUES(?,?)", batch.delivery_keys)
                    if batch.forget_keys_before is not None:
                        db.execute("DELETE FROM delivery_keys WHERE at < ?", (batch.forget_keys_before,))
                db.execute("COMMIT")
            except sqlite3.Error as e:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise StoreError(f"{self.path}: commit failed: {e}") from e

    # -- reads ---------------------------------------------------------------------------
    def load_delivery_keys(self, since: float) -> list[tuple[str, float]]:
        """Delivery keys recorded at or after ``since``, oldest first."""
        return [(r["key"], r["at"]) for r in self._rows("SELECT key, at FROM delivery_keys WHERE at >= ? ORDER BY at",
                                                         (since,))]

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {e}") from e

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

    def load_open_alarms(self) -> list[Alarm]:
        return [self._alarm(r) for r in self._rows("SELECT * FROM alarms WHERE state != 'cleared' ORDER BY id")]

    def load_open_tickets(self) -> list[Ticket]:
        return [
            Ticket.from_dict(json.loads(r["data"]))
            for r in self._rows("SELECT data FROM tickets WHERE status != 'closed' ORDER BY id")
        ]

    def next_ids(self) -> tuple[int, int]:
        a = self._rows("SELECT COALESCE(MAX(id),0)+1 FROM alarms")[0][0]
        t = self._rows("SELECT COALESCE(MAX(id),0)+1 FROM tickets")[0][0]
        return int(a), int(t)

    def list_alarms(self, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        if state:
            rows = self._rows("SELECT * FROM alarms WHERE state=? ORDER BY id DESC LIMIT ?", (state, limit))
        else:
            rows = self._rows("SELECT * FROM alarms ORDER BY id DESC LIMIT ?", (limit,))
        return [self._alarm(r).to_dict() for r in rows]

    def list_tickets(self, status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        if status:
            rows = self._rows("SELECT data FROM tickets WHERE status=? ORDER BY id DESC LIMIT ?", (status, limit))
        else:
            rows = self._rows("SELECT data FROM tickets ORDER BY id DESC LIMIT ?", (limit,))
        return [json.loads(r["data"]) for r in rows]

    def get_ticket(self, ticket_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT data FROM tickets WHERE id=?", (ticket_id,))
        return json.loads(rows[0]["data"]) if rows else None

    def load_ticket(self, ticket_id: int) -> Ticket | None:
        """Return one ticket (closed ones too), or ``None`` if there is none."""
        rows = self._rows("SELECT data FROM tickets WHERE id=?", (ticket_id,))
        return Ticket.from_dict(json.loads(rows[0]["data"])) if rows else None

    def tickets_opened(self, policy: str, start: float, end: float) -> list[Ticket]:
        """Return a policy's tickets opened in ``[start, end)``, oldest first."""
        rows = self._rows(
            "SELECT data FROM tickets WHERE policy=? AND opened_at>=? AND opened_at<? ORDER BY opened_at, id",
            (policy, start, end),
        )
        return [Ticket.from_dict(json.loads(r["data"])) for r in rows]

    def get_alarm(self, alarm_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM alarms WHERE id=?", (alarm_id,))
        return self._alarm(rows[0]).to_dict() if rows else None

    def timeline(self, ticket_id: int) -> list[dict[str, Any]]:
        return [
            dict(r) for r in self._rows("SELECT ticket_id,ts,actor,kind,note FROM timeline WHERE ticket_id=? ORDER BY id", (ticket_id,))
        ]

    def find_alarms(
        self,
        *,
        states: list[str] | None = None,
        levels: list[int] | None = None,
        devices: list[str] | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Alarms matching every given filter (each a list of accepted values), newest first."""
        where, args = _filters((("state", states), ("level", levels), ("device", devices)))
        rows = self._rows(f"SELECT * FROM alarms{where} ORDER BY id DESC LIMIT ?", (*args, limit))
        return [self._alarm(r).to_dict() for r in rows]

    def find_tickets(
        self,
        *,
        statuses: list[str] | None = None,
        levels: list[int] | None = None,
        devices: list[str] | None = None,
        sites: list[str] | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Tickets matching every given filter (each a list of accepted values), newest first."""
        where, args = _filters((
            ("status", statuses), ("level", levels), ("device", devices), ("json_extract(data,'$.site')", sites),
        ))
        rows = self._rows(f"SELECT data FROM tickets{where} ORDER BY id DESC LIMIT ?", (*args, limit))
        return [json.loads(r["data"]) for r in rows]

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    # -- help-desk outbox (written by the pipeline in its batch; worked by the outbox worker) --
    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        with self._lock:
            try:
                self._db.execute(sql, args)
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {e}") from e

    def outbox_due(self, now: float, limit: int = 100) -> list[dict[str, Any]]:
        """The head message of each (connector, ticket) queue, if it is due: per-ticket
        order is kept by never handing out a message while an older one is pending."""
        rows = self._rows(
            "SELECT o.* FROM outbox o JOIN (SELECT connector, ticket_id, MIN(id) AS id FROM outbox "
            "WHERE state IN ('pending','sending') GROUP BY connector, ticket_id) h ON o.id = h.id "
            "WHERE o.next_attempt <= ? ORDER BY o.id LIMIT ?",
            (now, limit),
        )
        out = []
        for r in rows:
            d = dict(r)
            d["payload"] = json.loads(d["payload"])
            out.append(d)
        return out

    def outbox_attempt(self, msg_id: int, now: float, lease: float) -> None:
        """Record that a delivery is about to be tried, before the request goes out: after
        a crash, ``attempts > 0`` tells the worker to look the ticket up before re-creating."""
        self._exec("UPDATE outbox SET state='sending', attempts=attempts+1, next_attempt=? WHERE id=?", (now + lease, msg_id))

    def outbox_delivered(self, msg_id: int, now: float, remote_id: str | None, connector: str, ticket_id: int, key: str) -> None:
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("UPDATE outbox SET state='delivered', delivered_at=?, remote_id=?, last_error=NULL WHERE id=?",
                           (now, remote_id, msg_id))
                if remote_id:
                    db.execute("INSERT INTO helpdesk_links(connector,ticket_id,remote_id,key,created_at) VALUES(?,?,?,?,?) "
                               "ON CONFLICT(connector,ticket_id) DO NOTHING", (connector, ticket_id, remote_id, key, now))
                db.execute("COMMIT")
            except sqlite3.Error as e:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise StoreError(f"{self.path}: {e}") from e

    def outbox_retry_later(self, msg_id: int, next_attempt: float, error: str) -> None:
        self._exec("UPDATE outbox SET state='pending', next_attempt=?, last_error=? WHERE id=?", (next_attempt, error[:500], msg_id))

    def outbox_failed(self, msg_id: int, error: str) -> None:
        self._exec("UPDATE outbox SET state='failed', last_error=? WHERE id=?", (error[:500], msg_id))

    def outbox_requeue(self, msg_id: int) -> bool:
        """An operator retries a failed message."""
        with self._lock:
            cur = self._db.execute("UPDATE outbox SET state='pending', next_attempt=0 WHERE id=? AND state='failed'", (msg_id,))
            return cur.rowcount == 1

    def outbox_discard(self, msg_id: int) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE outbox SET state='discarded' WHERE id=? AND state='failed'", (msg_id,))
            return cur.rowcount == 1

    def outbox_list(self, state: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        if state:
            rows = self._rows("SELECT * FROM outbox WHERE state=? ORDER BY id DESC LIMIT ?", (state, limit))
        else:
            rows = self._rows("SELECT * FROM outbox ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(r) | {"payload": json.loads(r["payload"])} for r in rows]

    def outbox_counts(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self._rows("SELECT state, COUNT(*) FROM outbox GROUP BY state")}

    def outbox_reset_leases(self) -> None:
        """At start: messages left 'sending' by a crash become due again (attempts kept)."""
        self._exec("UPDATE outbox SET state='pending', next_attempt=0 WHERE state='sending'")

    def remote_id(self, connector: str, ticket_id: int) -> str | None:
        rows = self._rows("SELECT remote_id FROM helpdesk_links WHERE connector=? AND ticket_id=?", (connector, ticket_id))
        return rows[0][0] if rows else None

    def remote_links(self, connector: str) -> dict[str, int]:
        """remote id → ticket id for a connector (two-way sync)."""
        return {r[0]: int(r[1]) for r in self._rows("SELECT remote_id, ticket_id FROM helpdesk_links WHERE connector=?", (connector,))}

    # -- maintenance windows (written by the API helper and the CLI; read at start and reload) --
    def save_maintenance(self, window: dict[str, Any]) -> None:
        """Insert or replace one maintenance window (``gateway.core.maintenance.Window.to_dict()``)."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO maintenance(id,start,end,data) VALUES(?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                    "start=excluded.start,end=excluded.end,data=excluded.data",
                    (window["id"], float(window["start"]), float(window["end"]), _json(window)),
                )
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {e}") from e

    def list_maintenance(self, ending_after: float | None = None) -> list[dict[str, Any]]:
        """Stored windows by start time; with ``ending_after``, only those ending later."""
        if ending_after is None:
            rows = self._rows("SELECT data FROM maintenance ORDER BY start, id")
        else:
            rows = self._rows("SELECT data FROM maintenance WHERE end > ? ORDER BY start, id", (ending_after,))
        return [json.loads(r["data"]) for r in rows]

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass


def _filters(pairs: tuple[tuple[str, list[Any] | None], ...]) -> tuple[str, list[Any]]:
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
