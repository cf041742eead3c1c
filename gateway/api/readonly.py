"""The API of an HA standby while no leader can be reached: the reads (board snapshot, alarm
and ticket lists, a ticket with its timeline, devices, who am I) answered from the shared
PostgreSQL store, with no decision state of its own.

It is the leader's API (:func:`gateway.api.create_app`) built on a read-only context: the
committed rows come from the store, as on the leader; what only the leader keeps in memory
is rebuilt from the store (the open alarms, at most every :data:`OPEN_ALARMS_TTL` seconds)
or absent (device liveness shows ``unmonitored``; adapter and queue counters are zero).
Every change answers 503 ``no_leader`` with ``Retry-After`` before anything is written:
the store is not fenced for this instance, and only the leader's single writer acts. The
change stream says ``hello`` (the board reloads its snapshot) and ends after
:data:`STREAM_REFRESH` seconds, so a board reconnects, reloads, and reaches the leader
again as soon as one leads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI

from gateway.api import create_app
from gateway.api.deps import ApiContext, ApiError
from gateway.api.render import alarm_out, ticket_out
from gateway.runtime.bus import ChangeBus, Subscription
from gateway.runtime.pipeline import PipelineStats

__all__ = ["OPEN_ALARMS_TTL", "STREAM_REFRESH", "readonly_app"]

#: Seconds a standby reuses the open alarms it read from the store (the board's device panel).
OPEN_ALARMS_TTL = 2.0
#: Seconds a standby's change stream lasts before it ends (the board then reloads the snapshot).
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


class _RefreshingBus(ChangeBus):
    """A change bus nobody publishes to; each subscription ends after ``refresh`` seconds."""

    def __init__(self, refresh: float, **kw: Any) -> None:
        super().__init__(**kw)
        self._refresh = refresh

    def subscribe(self, maxsize: int | None = None, types: Any = None) -> Subscription:
        sub = super().subscribe(maxsize, types)
        return _Ending(sub, time.monotonic() + self._refresh)  # type: ignore[return-value]


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
    bus = _RefreshingBus(
        refresh,
        render_alarm=lambda a: alarm_out(a.to_dict(), inventory),
        render_ticket=lambda t: ticket_out(t.to_dict(), calendars, clock.now()),
    )
    ctx = ApiContext(
        pipeline=_NoWriter(retry_after), store=store, desk=None, book=_StoreBook(store), inventory=inventory,
        policies=policies, calendars=calendars, adapters=[], config=config, clock=clock, bus=bus,
        sites=sites,
    )
    return create_app(ctx)
