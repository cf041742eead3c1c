"""The API of an HA standby while no leader can be reached: the reads (board snapshot, alarm
and ticket lists, a ticket with its timeline, devices, who am I) answered from the shared
PostgreSQL store, with no decision state of its own.

It is the leader's API (:func:`gateway.api.create_app`) built on a read-only context: the
committed rows come from the store, as on the leader; what only the leader keeps in memory
is rebuilt from the store (the open alarms, at most every :data:`OPEN_ALARMS_TTL` seconds)
or absent (device liveness shows ``unmonitored``; adapter and queue counters are zero).
Every change answers 503 ``no_leader`` with ``Retry-After`` before anything is written:
the store is not fenced for this instance, and only the leader's single writer acts.

The change stream is live: the writers (the leader, or each partition's child) ``NOTIFY``
the ids they committed (:class:`gateway.store.notify.ChangeNotifier`); this app listens
on its own connection (:class:`~gateway.store.notify.ChangeListener`, started when the app
is built in a running event loop, else at the first stream), reads those rows and publishes
them as the leader's bus does (same ``alarm``, ``ticket``, ``sla.warning``, ``sla.breach``
messages, ids increasing per stream). While it does not listen (before its first
connection, or after one was lost, reconnecting with backoff) a stream says ``hello`` and
ends after :data:`STREAM_REFRESH` seconds, so a board reconnects and reloads; whenever
listening starts or stops every stream ends, so each board reloads its snapshot once.
Callers stop the listener with ``app.state.feed.close()`` (ends the streams, on the loop)
and ``app.state.feed.stop_listening()`` (joins its thread, off the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI

from gateway.api import create_app
from gateway.api.deps import ApiContext, ApiError
from gateway.api.render import alarm_out, ticket_out
from gateway.core.sla import ClockNotice
from gateway.runtime.bus import ChangeBus, Subscription
from gateway.runtime.pipeline import PipelineStats
from gateway.store.notify import ChangeListener, Changes, channel_of

__all__ = ["OPEN_ALARMS_TTL", "STREAM_REFRESH", "readonly_app"]

log = logging.getLogger("gateway.api")

#: Seconds a standby reuses the open alarms it read from the store (the board's device panel).
OPEN_ALARMS_TTL = 2.0
#: Seconds a change stream lasts while the store's notifications are not heard (the board
#: then reloads the snapshot).
STREAM_REFRESH = 5.0


class _NoWriter:
    """Stands in for the pipeline: no writer runs on a standby, so every change is refused."""

    healthy = True
    last_error = ""
    depth = 0
    queue_size = 0

    def __init__(self, retry_after: float) -> None:
        self.stats = PipelineStats()
        self.listeners: list[Any] = []
        self.retry_after = retry_after

    async def execute(self, fn: Callable[[float], Any]) -> Any:
        raise ApiError(503, "no_leader", "no instance leads right now (failover in progress): this standby only "
                       "reads; nothing was changed, retry shortly",
                       headers={"Retry-After": str(max(1, round(self.retry_after)))})


class _StoreBook:
    """The open alarms as the store has them, re-read at most every ``ttl`` seconds."""

    def __init__(self, store: Any, ttl: float = OPEN_ALARMS_TTL) -> None:
        self._store = store
        self._ttl = ttl
        self._at = -1e9
        self._open: dict[str, Any] = {}

    @property
    def open(self) -> dict[str, Any]:
        if time.monotonic() - self._at > self._ttl:
            self._open = {a.key: a for a in self._store.load_open_alarms()}
            self._at = time.monotonic()
        return self._open


class _Row:
    """An alarm row from the store (``get_alarm``'s dict) where the bus expects an ``Alarm``."""

    __slots__ = ("_d",)

    def __init__(self, d: dict[str, Any]) -> None:
        self._d = d

    def to_dict(self) -> dict[str, Any]:
        return self._d


class _LiveBus(ChangeBus):
    """The change bus of a reader of the store: fed by the writers' notifications
    (:class:`~gateway.store.notify.ChangeListener`), each one's rows read from the store and
    published as the writer's own bus would (:meth:`ChangeBus.on_commit`). While it does not
    listen (not yet, or its connection was lost), a subscription ends after ``refresh``
    seconds so the board reloads; listening starts or stops: every stream ends (reload)."""

    def __init__(self, refresh: float, store: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self._refresh = refresh
        self._store = store
        self.live = False
        self.listener: ChangeListener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failing = False

    def listen(self) -> None:
        """Start listening (on the running event loop; idempotent). A store that is not
        PostgreSQL has no writer to hear: the streams keep ending after ``refresh``."""
        conninfo = getattr(self._store, "conninfo", None)
        if self.listener is not None or self._closed or not isinstance(conninfo, str):
            return
        self._loop = asyncio.get_running_loop()
        self.listener = ChangeListener(conninfo, channel_of(getattr(self._store, "schema", None)),
                                       self._heard, self._state)
        self.listener.start()

    def subscribe(self, maxsize: int | None = None, types: Any = None) -> Subscription:
        if self.listener is None:
            with contextlib.suppress(RuntimeError):  # no running loop: not listening
                self.listen()
        sub = super().subscribe(maxsize, types)
        if self.live:
            return sub
        return _Ending(sub, time.monotonic() + self._refresh)  # type: ignore[return-value]

    def _state(self, up: bool) -> None:  # the listener's thread
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
                self._loop.call_soon_threadsafe(self._set_live, up)

    def _set_live(self, up: bool) -> None:
        self.live = up
        self.end_streams("change feed listening" if up else "change feed lost")
        if up:  # from here on a new stream carries every commit (one opened before has just ended)
            log.info("change feed: streams live")

    def _heard(self, c: Changes) -> None:  # the listener's thread: the reads happen here
        if not self.subscribers or self._loop is None:
            return
        try:
            alarms = [_Row(a) for a in self._store.alarms_by_id(c.alarms)] if c.alarms else []
            wanted = sorted({*c.tickets, *(n[0] for n in c.notices)})
            by_id = {t.id: t for t in self._store.tickets_by_id(wanted)} if wanted else {}
        except Exception as e:  # noqa: BLE001 - the store is away: the clients reload once it is back
            if not self._failing:
                log.warning("change feed: changed rows not read (%s); the streams end so the boards reload", e)
            self._failing = True
            self._loop.call_soon_threadsafe(self.end_streams, "change feed: rows not read")
            return
        self._failing = False
        tickets = [by_id[i] for i in c.tickets if i in by_id]
        notices = [(by_id[t], ClockNotice(kind, fraction, at)) for t, kind, fraction, at in c.notices if t in by_id]
        self._loop.call_soon_threadsafe(self.on_commit, alarms, tickets, notices)

    def stop_listening(self) -> None:
        """Stop the listener's thread (blocks up to a second: call it off the event loop)."""
        if self.listener is not None:
            self.listener.stop()

    def close(self) -> None:
        super().close()
        if self.listener is not None:
            self.listener._stop.set()  # its thread ends within a second; stop_listening() waits


class _Ending:
    """A subscription that reports its end (``closed``) at ``deadline``."""

    def __init__(self, sub: Subscription, deadline: float) -> None:
        self._sub = sub
        self._deadline = deadline
        self.id = sub.id

    @property
    def closed(self) -> bool:
        return self._sub.closed or time.monotonic() >= self._deadline

    async def get(self, timeout: float | None = None) -> Any:
        left = self._deadline - time.monotonic()
        if left <= 0:
            return None
        return await self._sub.get(left if timeout is None else min(timeout, left))

    def close(self) -> None:
        self._sub.close()


def readonly_app(
    config: Any, store: Any, inventory: Any, policies: Mapping[str, Any], calendars: Mapping[str, Any],
    clock: Any, retry_after: float, *, refresh: float = STREAM_REFRESH, sites: Any = None,
) -> FastAPI:
    """The read-only API on ``store`` (a PostgreSQL store this instance does not write to);
    ``sites``: the ``GET /sites`` rows (:attr:`ApiContext.sites`), if this instance has them."""
    bus = _LiveBus(
        refresh, store,
        render_alarm=lambda a: alarm_out(a.to_dict(), inventory),
        render_ticket=lambda t: ticket_out(t.to_dict(), calendars, clock.now()),
    )
    ctx = ApiContext(
        pipeline=_NoWriter(retry_after), store=store, desk=None, book=_StoreBook(store), inventory=inventory,
        policies=policies, calendars=calendars, adapters=[], config=config, clock=clock, bus=bus,
        sites=sites,
    )
    with contextlib.suppress(RuntimeError):  # built outside an event loop: listens on the first stream
        bus.listen()
    app = create_app(ctx)
    app.state.feed = bus
    return app
