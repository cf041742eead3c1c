"""What a PostgreSQL writer committed, told to the store's readers with ``NOTIFY``.

The writer (a single leader under ``[ha]``, or the leader of one partition) adds
:meth:`ChangeNotifier.on_commit` to its pipeline's listeners. It only queues the batch's
ids (bounded; a full queue drops the batch and counts it) and returns: its own thread, on
its own connection, sends them with ``pg_notify`` (all that waited in one round trip). A
database hiccup gives one log line; the next batch tries a new connection.

A reader (the partitioned central's supervisor, an HA standby) runs a
:class:`ChangeListener`: ``LISTEN`` on its own connection, in its own thread, each
notification decoded and handed to ``on_change``; the connection lost, ``on_state(False)``,
then reconnects with backoff and ``on_state(True)`` (whatever was committed meanwhile was
not heard: the reader's clients must reload).

A notification's payload (JSON, at most :data:`PAYLOAD_MAX` bytes, well under PostgreSQL's
8000) is ``{"a": [alarm ids], "t": [ticket ids], "s": [[ticket id, clock, fraction, at], ...]}``
(``s``: the SLA warnings and breaches); a larger batch is split over several notifications.
The channel is the store's schema's (:func:`channel_of`), so gateways sharing a server
but not a schema do not hear each other.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psycopg
from psycopg import sql as pgsql

__all__ = ["PAYLOAD_MAX", "ChangeListener", "ChangeNotifier", "Changes", "channel_of", "decode", "encode"]

log = logging.getLogger("gateway.store")

#: Bytes of one notification's payload at most (PostgreSQL refuses 8000 and more).
PAYLOAD_MAX = 7000
#: Batches the notifier keeps waiting for its thread at most; more are dropped (and counted).
QUEUE_MAX = 1000


class Changes:
    """One notification's content: alarm ids, ticket ids, SLA notices
    (``(ticket id, clock kind, fraction, at)``)."""

    __slots__ = ("alarms", "notices", "tickets")

    def __init__(self, alarms: list[int] | None = None, tickets: list[int] | None = None,
                 notices: list[tuple[int, str, float, float]] | None = None) -> None:
        self.alarms = alarms or []
        self.tickets = tickets or []
        self.notices = notices or []

    def __repr__(self) -> str:
        return f"Changes(alarms={self.alarms}, tickets={self.tickets}, notices={self.notices})"


def channel_of(schema: str | None) -> str:
    """The notification channel of a store's schema (at most 63 bytes, PostgreSQL's limit)."""
    name = f"gateway_changes_{schema}" if schema else "gateway_changes"
    if len(name.encode()) > 63:
        name = f"gateway_changes_{zlib.crc32(name.encode()):08x}"
    return name


def encode(changes: Changes, limit: int = PAYLOAD_MAX) -> list[str]:
    """The payloads of ``changes``, each at most ``limit`` bytes (split by items)."""
    items: list[tuple[str, str]] = [("a", json.dumps(i)) for i in changes.alarms]
    items += [("t", json.dumps(i)) for i in changes.tickets]
    items += [("s", json.dumps(list(n), separators=(",", ":"))) for n in changes.notices]
    out: list[str] = []
    cur: dict[str, list[str]] = {}
    size = 2  # "{}"
    for key, text in items:
        # a new key costs '"k":[]' and a comma; one more item its text and a comma
        cost = len(text) + 1 + (0 if key in cur else 7)
        if cur and size + cost > limit:
            out.append(_payload(cur))
            cur, size = {}, 2
            cost = len(text) + 1 + 7
        cur.setdefault(key, []).append(text)
        size += cost
    if cur:
        out.append(_payload(cur))
    return out


def _payload(parts: dict[str, list[str]]) -> str:
    return "{" + ",".join(f'"{k}":[{",".join(v)}]' for k, v in parts.items()) + "}"


def decode(payload: str) -> Changes | None:
    """The changes a payload names; ``None`` (and one log line) when it is not one of ours."""
    try:
        d = json.loads(payload)
        return Changes([int(i) for i in d.get("a", ())], [int(i) for i in d.get("t", ())],
                       [(int(t), str(k), float(f), float(at)) for t, k, f, at in d.get("s", ())])
    except (ValueError, TypeError, AttributeError) as e:
        log.warning("change feed: ignored a notification that is not a change list (%s): %.80r", e, payload)
        return None


def _changes_of(alarms: Iterable[Any], tickets: Iterable[Any], changes: Iterable[Any]) -> Changes:
    notices = []
    for ch in changes:
        if isinstance(ch, tuple) and len(ch) == 2 and hasattr(ch[1], "fraction"):
            t, n = ch
            notices.append((int(t.id), str(n.kind), float(n.fraction), float(n.at)))
    return Changes([int(a.id) for a in alarms], [int(t.id) for t in tickets], notices)


class ChangeNotifier:
    """The writer's side: ``on_commit`` (a ``pipeline.listeners`` entry) queues, a thread sends.

    Args:
        conninfo: the store's connection string (its own connection is opened from it).
        channel: see :func:`channel_of`.
        maxsize: batches waiting at most; a batch that finds the queue full is dropped.
    """

    def __init__(self, conninfo: str, channel: str, maxsize: int = QUEUE_MAX) -> None:
        self.conninfo = conninfo
        self.channel = channel
        #: Counters: batches queued, notifications sent, batches dropped (queue full or
        #: the database failed), database failures.
        self.queued = self.sent = self.dropped = self.failures = 0
        self._q: queue.Queue[tuple[list[Any], list[Any], list[Any]] | None] = queue.Queue(maxsize)
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._failing = False

    def stats(self) -> dict[str, int]:
        """For ``/metrics`` (``gateway_component_stat{component="notifier"}``): a dropped
        batch is a change the standby's or the other partitions' boards learn only at
        their next full read."""
        return {"queued": self.queued, "sent": self.sent, "dropped": self.dropped, "failures": self.failures,
                "waiting": self._q.qsize()}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="change-notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued (within ``timeout``), then close the connection."""
        if self._thread is not None:
            try:
                self._q.put(None, timeout=timeout)
            except queue.Full:
                pass
            self._thread.join(timeout)
            self._thread = None
        elif self._conn is not None:  # never started: send() was called directly
            self._conn.close()
            self._conn = None

    def on_commit(self, alarms: list[Any], tickets: list[Any], changes: list[Any]) -> None:
        """A ``pipeline.listeners`` entry: runs in the writer task, so it only queues (copies
        of) the lists; the ids are taken in the notifier's thread (an id never changes)."""
        if not (alarms or tickets or changes):
            return
        try:
            self._q.put_nowait((list(alarms), list(tickets), list(changes)))
            self.queued += 1
        except queue.Full:
            self.dropped += 1

    def _batches(self) -> Iterator[list[Changes]]:
        while True:
            first = self._q.get()
            if first is None:
                return
            got = [_changes_of(*first)]
            while len(got) < 100:  # what else waits goes in the same round trip
                try:
                    more = self._q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    yield got
                    return
                got.append(_changes_of(*more))
            yield got

    def _run(self) -> None:
        try:
            for batch in self._batches():
                self.send(batch)
        finally:
            if self._conn is not None:
                self._conn.close()

    def send(self, batch: list[Changes]) -> bool:
        """Notify ``batch`` (in this thread); False (batch dropped, one log line) on failure."""
        payloads = [p for c in batch for p in encode(c)]
        if not payloads:  # only changes that are not SLA notices: nothing for the readers
            return True
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
            self._conn.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) WITH ORDINALITY AS x(p, n) ORDER BY n",
                               (self.channel, payloads))
        except psycopg.Error as e:
            self.failures += 1
            self.dropped += len(batch)
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if not self._failing:
                log.warning("change feed: notifications not sent (%s); readers reload when it is back",
                            str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            self._failing = True
            return False
        if self._failing:
            log.info("change feed: notifications sent again")
        self._failing = False
        self.sent += len(payloads)
        return True


class ChangeListener:
    """The reader's side: ``LISTEN`` in its own thread and connection, reconnecting with backoff.

    Args:
        conninfo: the store's connection string.
        channel: see :func:`channel_of`.
        on_change: called (in the listener's thread) with each notification's changes.
        on_state: called (in the listener's thread) with True once listening, False when
            the connection was lost (or could not be made).
        backoff: first and last wait between two connection attempts (doubling).
    """

    def __init__(self, conninfo: str, channel: str, on_change: Callable[[Changes], None],
                 on_state: Callable[[bool], None], backoff: tuple[float, float] = (0.5, 10.0)) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.on_change = on_change
        self.on_state = on_state
        self.backoff = backoff
        #: Counters: notifications heard, connections made.
        self.heard = self.connects = 0
        self.listening = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="change-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        wait = self.backoff[0]
        said = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    self._conn = conn
                    conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self.channel)))
                    self.connects += 1
                    self.listening = True
                    wait = self.backoff[0]
                    self.on_state(True)
                    if said:
                        log.info("change feed: listening again")
                    said = False
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=0.5):
                            self.heard += 1
                            c = decode(n.payload)
                            if c is not None:
                                self._deliver(c)
            except psycopg.Error as e:
                if not said:
                    log.warning("change feed: not listening (%s); the board refreshes every few seconds "
                                "until it is back", str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
                    said = True
            finally:
                self._conn = None
                if self.listening:
                    self.listening = False
                    self.on_state(False)
            if self._stop.wait(wait):
                return
            wait = min(wait * 2, self.backoff[1])

    def _deliver(self, c: Changes) -> None:
        try:
            self.on_change(c)
        except Exception:
            log.exception("change feed: a notification could not be handled")

    def backend_pid(self) -> int | None:
        """The server process of the listening connection (tests end it to force a reconnect)."""
        conn = self._conn
        return conn.info.backend_pid if conn is not None else None
