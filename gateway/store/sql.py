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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import orjson

from gateway import failpoints
from gateway.core.alarms import Alarm
from gateway.core.tickets import Ticket
from gateway.model import FaultLevel
from gateway.store import INVENTORY_VERSION, BatchWrite, DeviceChange, OutboxEntry, TimelineRow

__all__ = ["Dialect", "Row", "SqlStore", "Tx", "filters", "pack_keys", "to_json", "unpack_keys"]

_T = TypeVar("_T")

#: Delivery keys one ``delivery_keys`` row holds at most (see :func:`pack_keys`): ≈ 60 bytes
#: each keeps a row within SQLite's in-page payload and far below PostgreSQL's btree limit.
KEYS_PER_ROW = 16


def pack_keys(keys: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """The ``delivery_keys`` rows for a batch's keys: the keys of one time go into rows of
    up to :data:`KEYS_PER_ROW`, so a batch of INFORMs writes one row (one B-tree leaf), not
    one per INFORM (each a random leaf: a page written to the WAL per key).

    A row holding several keys starts with a line break and lists them one a line, each
    escaped (``\\`` → ``\\\\``, line break → ``\\n``); a lone key without a line break
    is stored as itself (as before this format, so rows written earlier read the same; a
    key is never written alone when it holds a line break, so a leading one marks a list)."""
    rows: list[tuple[str, float]] = []
    by_time: dict[float, list[str]] = {}
    for key, at in keys:
        by_time.setdefault(at, []).append(key)
    for at, ks in by_time.items():
        if len(ks) == 1 and "\n" not in ks[0]:
            rows.append((ks[0], at))
            continue
        esc = [_escape(k) if ("\\" in k or "\n" in k) else k for k in ks]
        for i in range(0, len(esc), KEYS_PER_ROW):
            rows.append(("\n" + "\n".join(esc[i:i + KEYS_PER_ROW]), at))
    return rows


def unpack_keys(rows: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """The (key, time) pairs of ``delivery_keys`` rows read oldest first (see
    :func:`pack_keys`), each key once with its latest time, oldest first (a key moved to
    the end when seen again keeps the order, as the rows come oldest first)."""
    latest: dict[str, float] = {}
    for key, at in rows:
        if key.startswith("\n"):
            for k in key[1:].split("\n"):
                k = _unescape(k) if "\\" in k else k
                latest.pop(k, None)
                latest[k] = at
        else:
            latest.pop(key, None)
            latest[key] = at
    return list(latest.items())


def _escape(key: str) -> str:
    return key.replace("\\", "\\\\").replace("\n", "\\n")


def _unescape(key: str) -> str:
    out: list[str] = []
    i, n = 0, len(key)
    while i < n:
        ch = key[i]
        if ch == "\\" and i + 1 < n:
            nxt = key[i + 1]
            out.append("\n" if nxt == "n" else nxt)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


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


#: The reference encoder (``json.dumps`` with options builds a new one on each call).
_ENCODE = json.JSONEncoder(default=str, separators=(",", ":"), ensure_ascii=False).encode
#: orjson with what it would do differently handed to ``default`` as ``json`` does: dataclasses
#: and datetimes become ``str(v)``, not objects and ISO text.
_FAST_OPTS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def to_json(v: Any) -> str:
    """A row's JSON document: orjson (a fifth of the cost; an alarm row is written per trap
    of a storm), ``json`` for what orjson refuses (non-text keys, integers beyond 64 bits,
    lone surrogates). The same document as ``json``'s, read back (tested), except that a
    non-finite float is ``null`` — ``json``'s ``NaN`` is no JSON, which PostgreSQL's
    ``::json`` refuses."""
    try:
        return orjson.dumps(v, default=str, option=_FAST_OPTS).decode()
    except TypeError:
        return _ENCODE(v)


#: A ticket's owner or team ('' when it has none) as a filterable expression.
_OWNER_COL = "COALESCE((SELECT o.{0} FROM ticket_owners o WHERE o.ticket_id = tickets.id), '')"


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
                db.executemany(
                    "INSERT INTO ticket_owners(ticket_id,owner,team) VALUES(?,?,?) ON CONFLICT(ticket_id) DO UPDATE "
                    "SET owner=excluded.owner,team=excluded.team",
                    [(t.id, t.owner, t.team) for t in batch.tickets],
                )
            if batch.timeline:
                db.executemany(
                    "INSERT INTO timeline(ticket_id,ts,actor,kind,note,on_behalf_of) VALUES(?,?,?,?,?,?)",
                    [(e.ticket_id, e.ts, e.actor, e.kind, e.note, e.on_behalf_of) for e in batch.timeline],
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
                    pack_keys(batch.delivery_keys),
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
        # seqs are never reused: the span from the oldest to the newest row bounds the count
        # (two ends of the primary key, not a scan of a long backlog on every commit). Two
        # subqueries: SQLite reads MIN and MAX off the key only when each stands alone
        # (``SELECT MIN(seq), MAX(seq)`` scans the whole queue).
        lo, hi = db.execute("SELECT (SELECT MIN(seq) FROM forward_queue), "
                            "(SELECT MAX(seq) FROM forward_queue)").fetchall()[0]
        if lo is None or int(hi) - int(lo) + 1 <= limit:
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

    def forward_head_raw(self, limit: int = 100) -> list[tuple[int, str]]:
        rows = self._rows("SELECT seq, payload FROM forward_queue ORDER BY seq LIMIT ?", (limit,))
        return [(int(r[0]), str(r[1])) for r in rows]

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
        return unpack_keys((str(r["key"]), float(r["at"])) for r in rows)

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
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        where, args = filters((("state", states), ("level", levels), ("device", devices)), before)
        rows = self._rows(f"SELECT * FROM alarms{where} ORDER BY id DESC LIMIT ?", (*args, limit))
        return [self._alarm(r).to_dict() for r in rows]

    def get_alarm(self, alarm_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM alarms WHERE id=?", (alarm_id,))
        return self._alarm(rows[0]).to_dict() if rows else None

    def alarms_by_id(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """The alarms of ``ids`` that exist, as :meth:`get_alarm` gives them, in id order."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            marks = ",".join("?" * len(part))
            out += [self._alarm(r).to_dict()
                    for r in self._rows(f"SELECT * FROM alarms WHERE id IN ({marks}) ORDER BY id", part)]
        return out

    def tickets_by_id(self, ids: Sequence[int]) -> list[Ticket]:
        """The tickets of ``ids`` that exist (as :meth:`load_ticket` gives them), in id order."""
        out: list[Ticket] = []
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            marks = ",".join("?" * len(part))
            out += [Ticket.from_dict(self._data(r))
                    for r in self._rows(f"SELECT data FROM tickets WHERE id IN ({marks}) ORDER BY id", part)]
        return out

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
        owners: Sequence[str] | None = None,
        teams: Sequence[str] | None = None,
        policies: Sequence[str] | None = None,
        limit: int = 1000,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        where, args = filters((
            ("status", statuses), ("level", levels), ("device", devices),
            (self.dialect.json_text("data", "site"), sites),
            (_OWNER_COL.format("owner"), owners), (_OWNER_COL.format("team"), teams), ("policy", policies),
        ), before)
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
        rows = self._rows(
            "SELECT ticket_id,ts,actor,kind,note,on_behalf_of FROM timeline WHERE ticket_id=? ORDER BY id", (ticket_id,)
        )
        return [
            TimelineRow(ticket_id=int(r["ticket_id"]), ts=float(r["ts"]), actor=r["actor"], kind=r["kind"], note=r["note"],
                        on_behalf_of=r["on_behalf_of"] or "")
            for r in rows
        ]

    def timeline_since(self, since: float, kinds: Sequence[str]) -> list[TimelineRow]:
        if not kinds:
            return []
        rows = self._rows(
            "SELECT ticket_id,ts,actor,kind,note,on_behalf_of FROM timeline "
            f"WHERE ts >= ? AND kind IN ({','.join('?' * len(kinds))}) ORDER BY id",
            (since, *kinds),
        )
        return [
            TimelineRow(ticket_id=int(r["ticket_id"]), ts=float(r["ts"]), actor=r["actor"], kind=r["kind"], note=r["note"],
                        on_behalf_of=r["on_behalf_of"] or "")
            for r in rows
        ]

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key=?", (key,))
        return str(rows[0][0]) if rows else None

    def counter(self, key: str) -> int:
        value = self.get_meta(key)
        return int(value) if value else 0

    def bump_counter(self, key: str) -> int:
        return self._write(lambda db: _bump(db, key), "bumping a counter failed: ")

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
        self, now: float, lease: float, connectors: Sequence[str] | None = None, limit: int = 100,
        shard: tuple[int, int] | None = None,
    ) -> list[OutboxEntry]:
        if connectors is not None and not connectors:
            return []

        def claim(db: Tx) -> list[OutboxEntry]:
            sql, args = self._HEADS + " AND o.state IN ('pending','sending')", list[Any]([now])
            if connectors is not None:
                sql += f" AND o.connector IN ({','.join('?' * len(connectors))})"
                args.extend(connectors)
            if shard is not None:
                sql += " AND o.ticket_id % ? = ?"
                args.extend(shard)
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

    def outbox_report_delivered(self, ticket_id: int) -> tuple[str, float] | None:
        rows = self._rows("SELECT connector, delivered_at FROM outbox WHERE ticket_id=? AND kind='report' "
                          "AND state='delivered' ORDER BY delivered_at, id LIMIT 1", (ticket_id,))
        return (str(rows[0][0]), float(rows[0][1])) if rows else None

    def outbox_counts(self) -> dict[str, int]:
        return {str(r[0]): int(r[1]) for r in self._rows("SELECT state, COUNT(*) FROM outbox GROUP BY state")}

    def outbox_reset_leases(self) -> None:
        self._exec("UPDATE outbox SET state='pending', next_attempt=0 WHERE state='sending'")

    # -- scheduled service reports: once per key, marker and outbox row in one transaction ---
    def queue_service_report(
        self, key: str, contract: str, period: str, connector: str, payload: dict[str, Any], now: float
    ) -> int | None:
        def write(db: Tx) -> int | None:
            marked = db.execute(
                "INSERT INTO service_reports_sent(key,contract,period,connector,queued_at) VALUES(?,?,?,?,?) "
                "ON CONFLICT(key) DO NOTHING", (key, contract, period, connector, now),
            ).rowcount
            if marked != 1:
                return None
            row = db.execute(
                "INSERT INTO outbox(connector,ticket_id,key,kind,payload,created_at) VALUES(?,?,?,?,?,?) RETURNING id",
                (connector, 0, key, "service_report", to_json(payload), now),
            ).fetchone()
            return int(row[0])

        return self._write(write, "queueing a service report failed: ")

    def service_reports_sent(self, contract: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM service_reports_sent", list[Any]()
        if contract is not None:
            sql, args = sql + " WHERE contract=?", [contract]
        rows = self._rows(sql + " ORDER BY queued_at DESC, key", args)
        return [{"key": r["key"], "contract": r["contract"], "period": r["period"], "connector": r["connector"],
                 "queued_at": float(r["queued_at"])} for r in rows]

    def remote_id(self, connector: str, ticket_id: int) -> str | None:
        rows = self._rows("SELECT remote_id FROM helpdesk_links WHERE connector=? AND ticket_id=?", (connector, ticket_id))
        return str(rows[0][0]) if rows else None

    # -- after-sales: planned work and service records ------------------------------------
    @staticmethod
    def _planned_row(item: dict[str, Any]) -> tuple[Any, ...]:
        return (
            item["id"], item["schedule"], item["contract"], item["device"], item["kind"], float(item["due"]),
            float(item["deadline"]), item.get("status", "planned"), to_json(item),
        )

    def insert_planned(self, items: Sequence[dict[str, Any]]) -> int:
        if not items:
            return 0

        def write(db: Tx) -> int:
            n = 0
            for item in items:
                n += db.execute(
                    "INSERT INTO planned_work(id,schedule,contract,device,kind,due,deadline,status,data) "
                    "VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING",
                    self._planned_row(item),
                ).rowcount
            return n

        return self._write(write, "planned work not saved: ")

    def save_planned(self, items: Sequence[dict[str, Any]]) -> None:
        if not items:
            return
        self._write(lambda db: db.executemany(
            "INSERT INTO planned_work(id,schedule,contract,device,kind,due,deadline,status,data) "
            "VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET schedule=excluded.schedule,"
            "contract=excluded.contract,device=excluded.device,kind=excluded.kind,due=excluded.due,"
            "deadline=excluded.deadline,status=excluded.status,data=excluded.data",
            [self._planned_row(i) for i in items],
        ), "planned work not saved: ")

    def add_service_record(self, record: dict[str, Any]) -> int:
        def write(db: Tx) -> int:
            row = db.execute(  # RETURNING: portable to PostgreSQL (SQLite >= 3.35)
                "INSERT INTO service_records(device,ticket_id,kind,ts,actor,data) VALUES(?,?,?,?,?,?) RETURNING id",
                (record["device"], record.get("ticket_id"), record["kind"], float(record["ts"]),
                 record.get("actor", ""), to_json(record.get("data") or {})),
            ).fetchone()
            return int(row[0])

        return self._write(write, "service record not saved: ")

    def list_planned(
        self,
        *,
        devices: Sequence[str] | None = None,
        contracts: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
        due_before: float | None = None,
        limit: int = 10000,
    ) -> list[dict[str, Any]]:
        where, args = filters((("device", devices), ("contract", contracts), ("status", statuses)))
        if due_before is not None:
            where += (" AND " if where else " WHERE ") + "due < ?"
            args.append(due_before)
        rows = self._rows(f"SELECT data FROM planned_work{where} ORDER BY due, id LIMIT ?", (*args, limit))
        return [self._data(r) for r in rows]

    def get_planned(self, item_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT data FROM planned_work WHERE id = ?", (item_id,))
        return self._data(rows[0]) if rows else None

    def list_service_records(
        self,
        *,
        device: str | None = None,
        ticket_id: int | None = None,
        kinds: Sequence[str] | None = None,
        limit: int = 100000,
    ) -> list[dict[str, Any]]:
        where, args = filters((
            ("device", None if device is None else [device]),
            ("ticket_id", None if ticket_id is None else [ticket_id]),
            ("kind", kinds),
        ))
        rows = self._rows(
            f"SELECT id,device,ticket_id,kind,ts,actor,data FROM service_records{where} ORDER BY ts, id LIMIT ?",
            (*args, limit),
        )
        return [
            {"id": r["id"], "device": r["device"], "ticket_id": r["ticket_id"], "kind": r["kind"], "ts": r["ts"],
             "actor": r["actor"], "data": self._data(r)}
            for r in rows
        ]

    # -- people --------------------------------------------------------------------------
    def save_user(self, user: dict[str, Any]) -> None:
        self._exec(
            "INSERT INTO users(name,role,display_name,password_hash,disabled,scope,created_at,updated_at) "
            "VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET role=excluded.role,"
            "display_name=excluded.display_name,password_hash=excluded.password_hash,"
            "disabled=excluded.disabled,scope=excluded.scope,updated_at=excluded.updated_at",
            (
                user["name"], user["role"], user.get("display_name", ""), user.get("password_hash", ""),
                1 if user.get("disabled") else 0, to_json(user.get("scope") or {}),
                float(user["created_at"]), float(user.get("updated_at", user["created_at"])),
            ),
        )

    @staticmethod
    def _user(r: Row) -> dict[str, Any]:
        return {
            "name": r["name"], "role": r["role"], "display_name": r["display_name"],
            "password_hash": r["password_hash"], "disabled": bool(r["disabled"]),
            "scope": json.loads(r["scope"] or "{}"), "created_at": r["created_at"], "updated_at": r["updated_at"],
        }

    def get_user(self, name: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM users WHERE name=?", (name,))
        return self._user(rows[0]) if rows else None

    def list_users(self) -> list[dict[str, Any]]:
        return [self._user(r) for r in self._rows("SELECT * FROM users ORDER BY name")]

    def add_user_token(self, user: str, label: str, digest: str, now: float) -> int:
        def write(db: Tx) -> int:
            row = db.execute(
                "INSERT INTO user_tokens(user_name,label,digest,created_at) VALUES(?,?,?,?) RETURNING id",
                (user, label, digest, now),
            ).fetchone()
            return int(row[0])

        return self._write(write)

    @staticmethod
    def _token(r: Row) -> dict[str, Any]:
        return {"id": r["id"], "user": r["user_name"], "label": r["label"], "created_at": r["created_at"]}

    def user_token(self, digest: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM user_tokens WHERE digest=?", (digest,))
        return self._token(rows[0]) if rows else None

    def list_user_tokens(self, user: str) -> list[dict[str, Any]]:
        return [self._token(r) for r in self._rows("SELECT * FROM user_tokens WHERE user_name=? ORDER BY id", (user,))]

    def revoke_user_token(self, user: str, token_id: int) -> bool:
        return self._exec("DELETE FROM user_tokens WHERE user_name=? AND id=?", (user, token_id)) > 0

    def revoke_user_tokens(self, user: str) -> int:
        return self._exec("DELETE FROM user_tokens WHERE user_name=?", (user,))

    def add_session(self, digest: str, user: str, now: float, expires_at: float) -> None:
        def write(db: Tx) -> None:
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT INTO sessions(digest,user_name,created_at,expires_at) VALUES(?,?,?,?)",
                (digest, user, now, expires_at),
            )

        self._write(write)

    def get_session(self, digest: str, now: float) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM sessions WHERE digest=? AND expires_at > ?", (digest, now))
        if not rows:
            return None
        r = rows[0]
        return {"user": r["user_name"], "created_at": r["created_at"], "expires_at": r["expires_at"]}

    def drop_session(self, digest: str) -> None:
        self._exec("DELETE FROM sessions WHERE digest=?", (digest,))

    def drop_sessions(self, user: str) -> int:
        return self._exec("DELETE FROM sessions WHERE user_name=?", (user,))

    def sign_in_failures(self, name: str, since: float) -> int:
        rows = self._rows("SELECT COUNT(*) FROM sign_in_failures WHERE name=? AND at >= ?", (name, since))
        return int(rows[0][0])

    def add_sign_in_failure(self, name: str, at: float, forget_before: float) -> None:
        def write(db: Tx) -> None:
            db.execute("DELETE FROM sign_in_failures WHERE at < ?", (forget_before,))
            db.execute("INSERT INTO sign_in_failures(name,at) VALUES(?,?)", (name, at))

        self._write(write)

    def clear_sign_in_failures(self, name: str) -> None:
        self._exec("DELETE FROM sign_in_failures WHERE name=?", (name,))

    # -- inventory -------------------------------------------------------------------------
    def save_devices(self, changes: Sequence[DeviceChange], actor: str, at: float) -> None:
        if not changes:
            return

        def write(db: Tx) -> None:
            upserts = [(c["device"], to_json(c["data"]), at, actor) for c in changes if c["data"] is not None]
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
                [(c["device"], c["action"], at, actor, to_json(c["data"])) for c in changes],
            )
            _bump(db, INVENTORY_VERSION)  # what the other processes on this store watch

        self._write(write, "saving devices failed: ")

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

    def remote_links(self, connector: str) -> dict[str, int]:
        rows = self._rows("SELECT remote_id, ticket_id FROM helpdesk_links WHERE connector=?", (connector,))
        return {str(r[0]): int(r[1]) for r in rows}


def _bump(db: Tx, key: str) -> int:
    """Add one to the counter ``key`` in the meta table, inside ``db``'s transaction. The
    upsert locks the row: a concurrent bump waits for this one and counts on from it."""
    rows = db.execute(
        "INSERT INTO meta(key,value) VALUES(?, '1') ON CONFLICT(key) DO UPDATE SET "
        "value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT) RETURNING value",
        (key,),
    ).fetchall()
    return int(rows[0][0])


def filters(pairs: tuple[tuple[str, Sequence[Any] | None], ...], before: int | None = None) -> tuple[str, list[Any]]:
    """`` WHERE col IN (?,..) AND ...`` for the filters that are given (column names are ours),
    and ``id < before`` for a page cursor."""
    clauses: list[str] = []
    args: list[Any] = []
    if before is not None:
        clauses.append("id < ?")
        args.append(before)
    for col, values in pairs:
        if values is None:
            continue
        if not values:
            clauses.append("1=0")
            continue
        clauses.append(f"{col} IN ({','.join('?' * len(values))})")
        args.extend(values)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args
