"""In-process change feed for live views (SSE): bounded queue per subscriber, drops counted.

The pipeline calls :meth:`ChangeBus.on_commit` (one of ``pipeline.listeners``) in its
writer task after every commit. Publishing never waits: each subscriber has a bounded
queue, and a subscriber whose queue is full is *dropped* (its stream ends with an
``overflow`` message so the client knows to reload a snapshot) and counted. A slow
browser therefore costs memory up to its bound and never delays the single writer.

Messages are plain dicts ``{"id": n, "type": kind, "data": {...}}`` with increasing ids.
Types: ``alarm`` (an alarm row changed), ``ticket`` (a ticket changed), ``sla.warning``
and ``sla.breach`` (a clock crossed a warning fraction or its deadline), ``overflow``
(the last message of a dropped subscriber) and ``closed`` (the bus is shutting down).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.core.views import alarm_view, iso, ticket_view

__all__ = ["BusStats", "ChangeBus", "Subscription"]

log = logging.getLogger("gateway.bus")

Message = dict[str, Any]
#: Renders a domain object (Alarm or Ticket) into its wire dict.
Render = Callable[[Any], dict[str, Any]]


def _default_alarm(a: Any) -> dict[str, Any]:
    return alarm_view(a.to_dict())


def _default_ticket(t: Any) -> dict[str, Any]:
    return ticket_view(t.to_dict())


@dataclass(slots=True)
class BusStats:
    """Counters for /metrics.

    Attributes:
        published: messages handed to the bus (each counted once, whatever the fan-out).
        delivered: messages queued to a subscriber (counted per subscriber).
        dropped_messages: messages a full subscriber queue could not take.
        dropped_subscribers: subscribers cut off because they fell behind.
        subscribed: subscriptions ever opened.
    """

    published: int = 0
    delivered: int = 0
    dropped_messages: int = 0
    dropped_subscribers: int = 0
    subscribed: int = 0


class Subscription:
    """One consumer's bounded queue. Iterate it (``async for msg in sub``) or call :meth:`get`.

    The iteration ends after an ``overflow`` or ``closed`` message; :meth:`close`
    unsubscribes (idempotent).
    """

    def __init__(self, bus: ChangeBus, sid: int, maxsize: int, types: frozenset[str] | None) -> None:
        self.id = sid
        self.maxsize = maxsize
        self.types = types
        self.dropped = False
        self.closed = False
        self._bus = bus
        self._q: deque[Message] = deque()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._q)

    def _put(self, msg: Message) -> bool:
        if self.closed:
            return True
        if len(self._q) >= self.maxsize:
            return False
        self._q.append(msg)
        self._wake.set()
        return True

    def _end(self, kind: str, data: dict[str, Any]) -> None:
        # The terminal message goes in even when the queue is full: it replaces the backlog,
        # which the client cannot use anyway once it has missed a message.
        if kind == "overflow":
            self._q.clear()
        self._q.append({"id": 0, "type": kind, "data": data})
        self.closed = True
        self._wake.set()

    async def get(self, timeout: float | None = None) -> Message | None:
        """Next message; ``None`` when ``timeout`` passed first or the stream has ended."""
        while not self._q:
            if self.closed:
                return None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return None
        return self._q.popleft()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Message]:
        while True:
            msg = await self.get()
            if msg is None:
                return
            yield msg
            if msg["type"] in ("overflow", "closed"):
                return

    def close(self) -> None:
        """Stop receiving (the consumer went away)."""
        self.closed = True
        self._wake.set()
        self._bus._remove(self)


class ChangeBus:
    """Fans committed changes out to subscribers without ever blocking the publisher.

    Args:
        maxsize: default bound of a subscriber's queue.
        render_alarm: turns an ``Alarm`` into the wire dict sent to subscribers.
        render_ticket: turns a ``Ticket`` into the wire dict sent to subscribers.
    """

    def __init__(
        self, maxsize: int = 1000, render_alarm: Render | None = None, render_ticket: Render | None = None
    ) -> None:
        self.maxsize = maxsize
        self.render_alarm = render_alarm or _default_alarm
        self.render_ticket = render_ticket or _default_ticket
        self.stats = BusStats()
        self._subs: dict[int, Subscription] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self, maxsize: int | None = None, types: Iterable[str] | None = None) -> Subscription:
        """Open a subscription; only messages of ``types`` (default: all) are queued to it."""
        sub = Subscription(
            self, next(self._ids), maxsize or self.maxsize, frozenset(types) if types else None
        )
        self.stats.subscribed += 1
        if self._closed:
            sub._end("closed", {})
            return sub
        self._subs[sub.id] = sub
        return sub

    def _remove(self, sub: Subscription) -> None:
        self._subs.pop(sub.id, None)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Queue one message to every subscriber; a full subscriber is dropped and counted."""
        if not self._subs:
            self.stats.published += 1
            return
        msg: Message = {"id": next(self._seq), "type": kind, "data": data}
        self.stats.published += 1
        for sub in list(self._subs.values()):
            if sub.types is not None and kind not in sub.types:
                continue
            if sub._put(msg):
                self.stats.delivered += 1
                continue
            self.stats.dropped_messages += 1
            self.stats.dropped_subscribers += 1
            self._subs.pop(sub.id, None)
            sub.dropped = True
            sub._end("overflow", {"reason": "subscriber fell behind", "queue": sub.maxsize})
            log.warning("change feed: dropped subscriber %d (queue of %d full)", sub.id, sub.maxsize)

    def on_commit(self, alarms: list[Any], tickets: list[Any], changes: list[Any]) -> None:
        """A ``pipeline.listeners`` entry: publishes what one committed batch changed.

        Runs in the writer task, so it only renders and queues; with no subscriber it
        does nothing at all.
        """
        if not self._subs:
            return
        for a in alarms:
            self.publish("alarm", self.render_alarm(a))
        for t in tickets:
            self.publish("ticket", self.render_ticket(t))
        for ch in changes:
            if isinstance(ch, tuple) and len(ch) == 2 and hasattr(ch[1], "fraction"):
                t, notice = ch
                kind = "sla.breach" if notice.fraction >= 1.0 else "sla.warning"
                self.publish(
                    kind,
                    {
                        "ticket_id": t.id,
                        "clock": notice.kind,
                        "fraction": notice.fraction,
                        "at": iso(notice.at),
                        "level": int(t.level),
                        "device": t.device,
                        "title": t.title,
                    },
                )

    def end_streams(self, reason: str) -> None:
        """End every current subscription with a ``closed`` message, the bus staying open:
        clients reconnect, get ``hello`` and reload their snapshot."""
        for sub in list(self._subs.values()):
            sub._end("closed", {"reason": reason})
        self._subs.clear()

    def close(self) -> None:
        """End every subscription (each receives a ``closed`` message); later ones end at once."""
        self._closed = True
        for sub in list(self._subs.values()):
            sub._end("closed", {})
        self._subs.clear()
