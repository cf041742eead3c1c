"""The SQL both backends share: every query and write of the Store protocols, written once.

A backend (``sqlite.SqliteStore``, ``postgresql.PostgresStore``) supplies only the
connection plumbing and a :class:`Dialect`:

* ``_rows(sql, args)``: one query, its rows (each readable by position and by column name);
* ``_write(fn, what)``: ``fn(tx)`` in one write transaction, where ``tx.execute(sql, args)``
  returns a cursor (``rowcount``, ``fetchall``) and ``tx.executemany(sql, rows)`` runs a batch;
* its errors turned into :class:`~gateway.errors.StoreError`.

SQL here is written in the portable subset both databases accept: ``?`` placeholders (the
PostgreSQL backend rewrites them to ``%s``), ``INSERT … ON CONFLICT (…) DO UPDATE SET
x = excluded.x`` / ``DO NOTHING`` upserts, ``"end"`` quoted (reserved in PostgreSQL), JSON
stored as TEXT and read through :meth:`Dialect.json_text`, no ``strftime``/``INSERT OR
REPLACE``/``0``-as-false. Timestamps are passed in from Python, never computed by the database.

Porting a new Store method: write it here against ``_rows``/``_write``; it runs on both.
A new table or column: a migration with the same number in ``migrations/sqlite.py`` and
``migrations/postgresql.py`` (see :mod:`gateway.store.migrations`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from gateway import failpoints
from gateway.core.alarms import Alarm
from gateway.core.tickets import Ticket
from gateway.model import FaultLevel
from gateway.store import BatchWrite, OutboxEntry, TimelineRow

__all__ = ["Dialect", "Row", "SqlStore", "Tx", "filters", "to_json"]

_T = TypeVar("_T")

#: A result row: ``r[0]`` and ``r["column"]`` both work (``sqlite3.Row`` or the PostgreSQL
#: backend's row type).
Row = Any


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """The handle a write function gets: statements inside the one open transaction."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Any, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the databases in the shared SQL."""

    name: str
    #: Appended to the outbox claim's SELECT: row locks that other claimers skip.
    lock_skip: str = ""

    def json_text(self, column: str, field: str) -> str:
        """A top-level text field of a JSON document stored as TEXT."""
        if self.name == "postgresql":
            return f"({column}::json->>'{field}')"
        return f"json_extract({column},'$.{field}')"


def to_json(v: Any) -> str:
    return json.dumps(v, default=str, separators=(",", ":"), ensure_ascii=False)


class SqlStore:
    """Every Store method in shared SQL; subclasses provide the plumbing (see module doc)."""

    dialect: Dialect = Dialect("sqlite")

    # -- plumbing a backend provides ---------------------------------------------------------
    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        raise NotImplementedError

    def _write(self, fn: Callable[[Any], _T], what: str = "") -> _T:
        raise NotImplementedError

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; returns the number of rows it changed."""
        return self._write(lambda db: int(db.execute(sql, args).rowcount))

    # -- writes --------------------------------------------------------------------------
    def commit(self, batch: BatchWrite) -> None:
        if not batch:
            return
        now = time.time()

        def write(db: Tx) -> None:
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
                            to_json({"event": a.event, "attrs": dict(a.attrs), "labels": dict(a.labels), "acked": a.acked,
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
                            t.opened_at, t.updated_at, t.closed_at, to_json(t.to_dict()),
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
                    "INSERT INTO outbox(connector,ticket_id,key,kind,payload,created_at) VALUES(?,?,?,?,?,?)",
                    [(o.connector, o.ticket_id, o.key, o.kind, to_json(o.payload), now) for o in batch.outbox],
                )
            if batch.meta:
                db.executemany(
                    "INSERT INTO meta(key,value) VALUES(?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    list(batch.meta.items()),
                )
            if batch.delivery_keys:
                db.executemany(
                    "INSERT INTO delivery_keys(key,at) VALUES(?,?) ON CONFLICT(key) DO UPDATE SET at=excluded.at",
                    batch.delivery_keys,
                )
                if batch.forget_keys_before is not None:
                    db.execute("DELETE FROM delivery_keys WHERE at < ?", (batch.forget_keys_before,))
            if batch.forward:
                self._forward_rows(db, batch)
            self._in_commit(db)
            if failpoints.ARMED:
                failpoints.hit("store_mid_commit")

        self._write(write, "commit failed: ")

    def _forward_rows(self, db: Tx, batch: BatchWrite) -> None:
        db.executemany(
            "INSERT INTO forward_queue(ts,fault,payload) VALUES(?,?,?)",
            [(r.ts, 1 if r.fault else 0, to_json(r.payload)) for r in batch.forward],
        )
        limit = batch.forward_limit
        if limit <= 0:
            return
        over = int(db.execute("SELECT COUNT(*) FROM forward_queue").fetchall()[0][0]) - limit
        if over <= 0:
            return
        rows = db.execute(
            "SELECT seq FROM forward_queue WHERE fault = 0 ORDER BY seq LIMIT ?", (over,)
        ).fetchall()
        if not rows:
            return
        db.execute("DELETE FROM forward_queue WHERE fault = 0 AND seq <= ?", (int(rows[-1][0]),))
        db.execute(
            "INSERT INTO meta(key,value) VALUES('forward.dropped', ?) ON CONFLICT(key) DO UPDATE SET "
            "value = CAST(CAST(meta.value AS INTEGER) + CAST(excluded.value AS INTEGER) AS TEXT)",
            (str(len(rows)),),
        )

    # -- the edge's forward queue (ForwardQueue) --------------------------------------------
    def forward_head(self, limit: int = 100) -> list[tuple[int, float, dict[str, Any]]]:
        rows = self._rows("SELECT seq, ts, payload FROM forward_queue ORDER BY seq LIMIT ?", (limit,))
        return [(int(r[0]), float(r[1]), json.loads(r[2])) for r in rows]

    def forward_delete(self, upto_seq: int) -> int:
        return self._exec("DELETE FROM forward_queue WHERE seq <= ?", (upto_seq,))

    def forward_stats(self) -> tuple[int, int]:
        n = self._rows("SELECT COUNT(*) FROM forward_queue")[0][0]
        dropped = self._rows("SELECT value FROM meta WHERE key = 'forward.dropped'")
        return int(n), int(dropped[0][0]) if dropped else 0

    def _in_commit(self, db: Tx) -> None:
        """A backend's extra step inside every commit transaction (e.g. a fencing check)."""

    def save_maintenance(self, window: dict[str, Any]) -> None:
        self._exec(
            'INSERT INTO maintenance(id,start,"end",data) VALUES(?,?,?,?) ON CONFLICT(id) DO UPDATE SET '
            'start=excluded.start,"end"=excluded."end",data=excluded.data',
            (window["id"], float(window["start"]), float(window["end"]), to_json(window)),
        )

    # -- reads ---------------------------------------------------------------------------
    @staticmethod
    def _alarm(r: Row) -> Alarm:
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
    def _data(r: Row) -> dict[str, Any]:
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
        where, args = filters((("state", states), ("level", levels), ("device", devices)))
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
        where, args = filters((
            ("status", statuses), ("level", levels), ("device", devices),
            (self.dialect.json_text("data", "site"), sites),
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
            rows = self._rows('SELECT data FROM maintenance WHERE "end" > ? ORDER BY start, id', (ending_after,))
        return [self._data(r) for r in rows]

    # -- help-desk outbox (written by the pipeline in its batch; worked by the outbox worker) --
    @staticmethod
    def _entry(r: Row) -> OutboxEntry:
        return OutboxEntry(
            id=int(r["id"]), connector=r["connector"], ticket_id=int(r["ticket_id"]), key=r["key"], kind=r["kind"],
            payload=cast(dict[str, Any], json.loads(r["payload"])), state=r["state"], attempts=int(r["attempts"]),
            next_attempt=float(r["next_attempt"]), remote_id=r["remote_id"], last_error=r["last_error"],
            created_at=float(r["created_at"]),
            delivered_at=None if r["delivered_at"] is None else float(r["delivered_at"]),
        )

    #: The head of every (connector, ticket) queue: its oldest message not final yet.
    _HEADS = (
        "SELECT o.* FROM outbox o JOIN (SELECT connector, ticket_id, MIN(id) AS id FROM outbox "
        "WHERE state IN ('pending','sending') GROUP BY connector, ticket_id) h ON o.id = h.id "
        "WHERE o.next_attempt <= ?"
    )

    def outbox_due(self, now: float, limit: int = 100) -> list[OutboxEntry]:
        rows = self._rows(self._HEADS + " ORDER BY o.id LIMIT ?", (now, limit))
        return [self._entry(r) for r in rows]

    def outbox_claim(
        self, now: float, lease: float, connectors: Sequence[str] | None = None, limit: int = 100
    ) -> list[OutboxEntry]:
        if connectors is not None and not connectors:
            return []

        def claim(db: Tx) -> list[OutboxEntry]:
            sql, args = self._HEADS + " AND o.state IN ('pending','sending')", list[Any]([now])
            if connectors is not None:
                sql += f" AND o.connector IN ({','.join('?' * len(connectors))})"
                args.extend(connectors)
            rows = db.execute(sql + " ORDER BY o.id LIMIT ?" + self.dialect.lock_skip, (*args, limit)).fetchall()
            if not rows:
                return []
            ids = [int(r["id"]) for r in rows]
            db.execute(
                f"UPDATE outbox SET state='sending', attempts=attempts+1, next_attempt=? "
                f"WHERE id IN ({','.join('?' * len(ids))})",
                (now + lease, *ids),
            )
            out = []
            for r in rows:
                e = self._entry(r)
                e["state"], e["attempts"], e["next_attempt"] = "sending", e["attempts"] + 1, now + lease
                out.append(e)
            return out

        return self._write(claim, "outbox claim failed: ")

    def outbox_attempt(self, msg_id: int, now: float, lease: float) -> None:
        self._exec("UPDATE outbox SET state='sending', attempts=attempts+1, next_attempt=? WHERE id=?", (now + lease, msg_id))

    def outbox_delivered(
        self, msg_id: int, now: float, remote_id: str | None, connector: str, ticket_id: int, key: str
    ) -> None:
        def write(db: Tx) -> None:
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


def filters(pairs: tuple[tuple[str, Sequence[Any] | None], ...]) -> tuple[str, list[Any]]:
    """`` WHERE col IN (?,..) AND ...`` for the filters that are given (column names are ours)."""
    clauses: list[str] = []
    args: list[Any] = []
    for col, values in pairs:
        if values is None:
            continue
        if not values:
            clauses.append("1=0")
            continue
        clauses.append(f"{col} IN ({','.join('?' * len(values))})")
        args.extend(values)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args
