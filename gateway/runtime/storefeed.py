"""The change stream across processes, through PostgreSQL ``LISTEN``/``NOTIFY``.

On a partitioned central each partition's leader is its own process, and the board is
served by each instance's supervisor from the store; an HA standby serves reads from the
store too. Neither has the writer's in-process :class:`~gateway.runtime.bus.ChangeBus`.

* :class:`CommitNotifier` — in a writer on PostgreSQL: a ``pipeline.listeners`` entry that,
  after every commit, says what changed (alarm ids, ticket ids, SLA warnings and breaches)
  with ``pg_notify`` on :data:`CHANNEL`, from a thread of its own on its own connection.
  The single writer only appends to a bounded queue: a full queue drops the oldest notice
  and counts it (the readers' boards then miss one live update, never a row), and a
  database that does not answer is one log line, then retried with backoff.
* :class:`StoreFeed` — in a reader: ``LISTEN`` on its own connection (a thread), each
  notice's rows read back from the store and published on the reader's bus, rendered as
  the writer's bus renders them, so ``/events/stream`` is live. While it is not listening
  (start, database away) :attr:`StoreFeed.live` is false and the read-only API's streams
  end every few seconds as before (the board reloads its snapshot); after it listens again
  it ends the open streams once, so every board reloads what it may have missed.

Payloads stay under PostgreSQL's 8,000-byte limit: a commit's ids are split over as many
notices as needed (:func:`payloads`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gateway.core.views import iso

__all__ = ["CHANNEL", "PAYLOAD_MAX", "CommitNotifier", "StoreFeed", "payloads", "sla_message", "tell_readers"]

log = logging.getLogger("gateway.storefeed")

#: The NOTIFY channel of committed changes.
CHANNEL = "gateway_changes"
#: Bytes per notice payload (PostgreSQL refuses 8,000 and more).
PAYLOAD_MAX = 7000
#: Notices a writer keeps while the database does not take them.
QUEUE_MAX = 10_000


def sla_message(ticket: Any, notice: Any) -> tuple[str, dict[str, Any]]:
    """The change-stream message of an SLA clock crossing a warning fraction or its deadline."""
    kind = "sla.breach" if notice.fraction >= 1.0 else "sla.warning"
    return kind, {
        "ticket_id": ticket.id,
        "clock": notice.kind,
        "fraction": notice.fraction,
        "at": iso(notice.at),
        "level": int(ticket.level),
        "device": ticket.device,
        "title": ticket.title,
    }


def payloads(alarms: Sequence[int], tickets: Sequence[int], sla: Sequence[tuple[str, dict[str, Any]]],
             limit: int = PAYLOAD_MAX) -> Iterator[str]:
    """One commit's notice payloads, each a JSON object ``{"a": [...], "t": [...], "s": [...]}``
    of at most ``limit`` bytes (ids split over several; an SLA message bigger than the limit
    is sent as its ticket id alone, which the reader renders as a ticket change)."""
    items: list[tuple[str, Any]] = [("a", i) for i in alarms] + [("t", i) for i in tickets]
    for kind, data in sla:
        one = json.dumps({"s": [[kind, data]]}, separators=(",", ":"), default=str)
        items.append(("s", [kind, data]) if len(one.encode()) <= limit else ("t", data.get("ticket_id")))
    cur: dict[str, list[Any]] = {}
    size = 2
    for key, value in items:
        piece = len(json.dumps(value, separators=(",", ":"), default=str).encode()) + 1
        extra = piece + (0 if key in cur else len(key) + 5)
        if cur and size + extra > limit:
            yield json.dumps(cur, separators=(",", ":"), default=str)
            cur, size = {}, 2
            extra = piece + len(key) + 5
        cur.setdefault(key, []).append(value)
        size += extra
    if cur:
        yield json.dumps(cur, separators=(",", ":"), default=str)


class CommitNotifier:
    """Args:
        conninfo: the store's connection string.
        channel: the NOTIFY channel.
        maxsize: notices kept while the database does not take them (then the oldest go).
    """

    def __init__(self, conninfo: str, channel: str = CHANNEL, maxsize: int = QUEUE_MAX) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.sent = 0
        self.dropped = 0
        self._q: deque[str] = deque()
        self._max = maxsize
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="commit-notifier", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def on_commit(self, alarms: list[Any], tickets: list[Any], changes: list[Any]) -> None:
        """A ``pipeline.listeners`` entry: queue what one committed batch changed."""
        sla = [sla_message(ch[0], ch[1]) for ch in changes
               if isinstance(ch, tuple) and len(ch) == 2 and hasattr(ch[1], "fraction")]
        if not alarms and not tickets and not sla:
            return
        out = list(payloads([a.id for a in alarms], [t.id for t in tickets], sla))
        with self._cv:
            for p in out:
                if len(self._q) >= self._max:
                    self._q.popleft()
                    self.dropped += 1
                self._q.append(p)
            self._cv.notify()

    def _run(self) -> None:
        import psycopg

        conn: Any = None
        delay = 0.5
        failing = False
        while True:
            with self._cv:
                while not self._q and not self._stop:
                    self._cv.wait()
                if not self._q:
                    break
                batch = list(self._q)
                self._q.clear()
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
                with conn.cursor() as cur:
                    while batch:
                        cur.execute("SELECT pg_notify(%s, %s)", (self.channel, batch[0]))
                        batch.pop(0)
                        self.sent += 1
            except Exception as e:  # noqa: BLE001 - the database may be away: keep them and retry
                if not failing:
                    log.warning("change notices not sent (retrying; boards on other processes lag): %s", e)
                    failing = True
                if conn is not None:
                    conn.close()
                conn = None
                with self._cv:
                    self._q.extendleft(reversed(batch))  # the unsent ones first again, bounded
                    while len(self._q) > self._max:
                        self._q.popleft()
                        self.dropped += 1
                    if self._stop:
                        break
                    self._cv.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            if failing:
                log.warning("change notices sent again")
                failing, delay = False, 0.5
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Send what is queued (a few seconds at most), then stop."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(5.0)


def tell_readers(pipeline: Any, conninfo: str) -> Callable[[], None]:
    """Start a :class:`CommitNotifier` on ``conninfo`` as one of ``pipeline.listeners``;
    returns its ``close``."""
    notifier = CommitNotifier(conninfo)
    notifier.start()
    pipeline.listeners.append(notifier.on_commit)
    return notifier.close


class StoreFeed:
    """Args:
        conninfo: the store's connection string.
        bus: the reader's change bus (``publish(kind, data)``, ``restart()``).
        load_alarm: an alarm row by id, rendered for the stream (None: gone).
        load_ticket: a ticket row by id, rendered for the stream (None: gone).
        channel: the NOTIFY channel.
    """

    def __init__(self, conninfo: str, bus: Any, load_alarm: Callable[[int], dict[str, Any] | None],
                 load_ticket: Callable[[int], dict[str, Any] | None], channel: str = CHANNEL) -> None:
        self.conninfo = conninfo
        self.bus = bus
        self.load_alarm = load_alarm
        self.load_ticket = load_ticket
        self.channel = channel
        #: True while LISTEN is in place (the streams need not end to stay current).
        self.live = False
        self.received = 0
        self.reconnects = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._conn: Any = None
        self._thread = threading.Thread(target=self._run, name="store-feed", daemon=True)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        delay = 0.5
        first = True
        while not self._stop.is_set():
            try:
                conn = self._conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
                conn.execute(f'LISTEN "{self.channel}"')
                self.live = True
                if not first:
                    self.reconnects += 1
                    log.warning("change notices heard again: open streams end once, boards reload")
                    self._call(self.bus.restart)  # what was missed meanwhile: a snapshot reload
                first, delay = False, 0.5
                while not self._stop.is_set():
                    got = [n.payload for n in conn.notifies(timeout=1.0)]
                    if got:
                        self._deliver(got)
            except Exception as e:  # noqa: BLE001 - the database may be away: listen again
                if self._stop.is_set():
                    break
                if self.live or first:
                    log.warning("change notices not heard (retrying; live board updates paused): %s", e)
                self.live = False
                first = False
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
            finally:
                self.live = False
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

    def _deliver(self, got: list[str]) -> None:
        msgs: list[tuple[str, dict[str, Any]]] = []
        for raw in got:
            self.received += 1
            try:
                d = json.loads(raw)
                for aid in d.get("a", ()):
                    a = self.load_alarm(int(aid))
                    if a is not None:
                        msgs.append(("alarm", a))
                for tid in d.get("t", ()):
                    t = self.load_ticket(int(tid))
                    if t is not None:
                        msgs.append(("ticket", t))
                for kind, data in d.get("s", ()):
                    msgs.append((str(kind), data))
            except (ValueError, TypeError, AttributeError) as e:
                log.warning("change notice not understood, skipped: %s", e)
        if msgs:
            self._call(lambda: [self.bus.publish(k, v) for k, v in msgs])

    def _call(self, fn: Callable[[], Any]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.live = False

