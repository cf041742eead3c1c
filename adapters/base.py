"""The adapter contract: ``start(sink)`` / ``stop()``, the ``EventSink`` they feed, stats, and
what a factory is handed to build adapters (``AdapterContext``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gateway.clock import Clock
from gateway.model import Event

__all__ = [
    "Adapter",
    "AdapterContext",
    "AdapterFactory",
    "CommitCallback",
    "Counters",
    "EventSink",
    "RateLimitedLog",
]

#: Called on the event loop thread once the event's batch is committed (``True``)
#: or could not be committed (``False``).
CommitCallback = Callable[[bool], None]


class EventSink(Protocol):
    """Where adapters put events. Implemented by the pipeline.

    All methods must be called on the event loop's thread; adapters that receive on
    threads of their own hop with ``loop.call_soon_threadsafe``.
    """

    def offer(self, event: Event) -> bool:
        """Enqueue without waiting. ``False`` means the bounded queue was full and the
        event was shed (the sink counts it)."""
        ...

    def offer_many(self, events: Iterable[Event]) -> int:
        """Enqueue several; returns how many were accepted (the rest are counted as shed)."""
        ...

    def submit(self, event: Event, on_commit: CommitCallback, key: str | None = None) -> bool:
        """Enqueue an event whose sender waits for durability (SNMP INFORM, MQTT QoS 1).

        ``on_commit`` runs after the store transaction holding the event's effects has
        committed. Returns ``False`` (and never calls back) when the event was shed.

        ``key`` makes delivery idempotent across restarts: an event whose key was committed
        within the sink's key window (e.g. an INFORM committed but not answered before a
        crash, and resent) is not processed again; ``on_commit(True)`` still runs.
        """
        ...

    def submit_many(
        self,
        events: Sequence[Event],
        on_commit: CommitCallback,
        keys: Sequence[str | None] | None = None,
        *,
        in_writer: bool = False,
    ) -> int:
        """Enqueue several events and call ``on_commit`` ONCE, after the store transaction
        holding the last of them has committed (a batch of QoS 1 messages acknowledged together).

        ``in_writer``: call it in the sink's writer thread right after the commit instead of
        on the event loop (sooner, and the loop does not pay for it): then ``on_commit`` must
        be thread-safe, quick, and must not touch the event loop (SNMP answers INFORMs so).

        ``keys`` (one per event, as ``submit``'s ``key``): an event whose key was committed
        before is not processed again; the group's ``on_commit`` still runs.

        Returns how many were accepted: always a prefix of ``events``; the rest were shed
        (and counted). With none accepted, ``on_commit`` is never called.
        """
        ...

    def lookup_device(self, key: str) -> str | None:
        """Map an address, alias or id to an inventory device id; ``None`` when unknown."""
        ...


class Adapter(Protocol):
    """A protocol adapter: turns bytes from devices into Events.

    ``start`` returns once the adapter is listening (or, for clients, once its
    connection loop is running: a broker that is down must not stop the gateway).
    ``stop`` stops receiving and hands over anything already received.
    """

    name: str

    async def start(self, sink: EventSink) -> None: ...

    async def stop(self) -> None: ...

    def stats(self) -> dict[str, int]:
        """Counters by name (e.g. ``received``, ``rejected.bad_community``) for /metrics."""
        ...


@dataclass(frozen=True, slots=True)
class AdapterContext:
    """What the composition root hands an adapter factory: narrow services, no application object.

    Attributes:
        clock: the gateway's time source.
        state_dir: the data directory, for state an adapter keeps across restarts
            (e.g. an SNMP engine ID).
        resolve_path: a path from the config file (relative to the file's directory) as
            a usable path.
        broker_down: for adapters that receive through a broker: call with ``now`` when
            it becomes unreachable (heartbeats cannot arrive, so loss detection pauses).
        broker_up: call with ``now`` when the broker is reachable again (deadlines re-arm).
        instance: the gateway's ``[gateway] instance`` name (e.g. for default client ids).
        devices: the live inventory (iterable of ``Device``; its identity or its ``version``
            changes when devices are added, changed or removed), for adapters that poll.
        watch: hand ``(device id, interval)`` pairs to the liveness watchdog (a device that
            is polled is lost after interval × tolerance without an answer).
        unwatch: devices no longer polled (the watchdog falls back to their inventory interval).
    """

    clock: Clock
    state_dir: Path
    resolve_path: Callable[[str], Path]
    broker_down: Callable[[float], None]
    broker_up: Callable[[float], None]
    instance: str = "gw1"
    devices: Callable[[], Iterable[Any]] = field(default=lambda: ())
    watch: Callable[[Sequence[tuple[str, float]]], None] = field(default=lambda pairs: None)
    unwatch: Callable[[Sequence[str]], None] = field(default=lambda ids: None)


#: Builds every configured instance of one adapter kind (in config order, not started).
#: One call per kind, so instances can share what is costly to load (SNMP's MIBs).
AdapterFactory = Callable[[Sequence[Any], AdapterContext], Awaitable[Sequence[Adapter]]]


class Counters(dict[str, int]):
    """A tiny counter map: ``c.inc("rejected.bad_community")``."""

    def inc(self, name: str, n: int = 1) -> None:
        self[name] = self.get(name, 0) + n


class RateLimitedLog:
    """Logs at most ``per_minute`` lines per reason, then one summary of what was held back,
    so a flood of bad input cannot fill the disk."""

    def __init__(self, logger: Any, per_minute: int = 10, clock: Callable[[], float] | None = None) -> None:
        import time as _time

        self._log = logger
        self._per_minute = per_minute
        self._clock = clock or _time.monotonic
        self._windows: dict[str, list[float]] = {}  # reason -> [window start, lines, suppressed]

    def warning(self, reason: str, msg: str, *args: Any) -> None:
        now = self._clock()
        w = self._windows.get(reason)
        if w is None or now - w[0] >= 60.0:
            if w is not None and w[2]:
                self._log.warning("%d more '%s' messages suppressed in the last minute", int(w[2]), reason)
            w = [now, 0, 0]
            self._windows[reason] = w
        if w[1] < self._per_minute:
            w[1] += 1
            self._log.warning(msg, *args)
        else:
            w[2] += 1
