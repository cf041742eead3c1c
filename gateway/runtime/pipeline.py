"""The single writer: bounded ingest queue → batch → the decision (``gateway.core.decider``:
classify → alarms → suppress → tickets → SLA → outbox rows) → ONE store transaction → commit
callbacks (INFORM/QoS 1 acks) → change listeners.

The pipeline owns what is not a decision: the queue and its shedding, batching, delivery-key
dedup, the commit callbacks released only after the commit, the commit and its retries, and
the listeners. The order of the decision itself is the Decider's, written once there."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar, overload

from adapters.base import CommitCallback
from gateway import failpoints
from gateway.clock import Clock
from gateway.core.alarms import Alarm, AlarmBook
from gateway.core.decider import Command, Counts, Decider
from gateway.core.inventory import Inventory
from gateway.core.sla import Policy
from gateway.core.tickets import Ticket, TicketDesk
from gateway.core.watchdog import Watchdog
from gateway.errors import StoreError
from gateway.model import Device, Event
from gateway.store import BatchWrite, Store
from rules.engine import RuleEngine

__all__ = ["Command", "Pipeline", "PipelineStats"]

log = logging.getLogger("gateway.pipeline")

_RETRY_MIN, _RETRY_MAX = 0.05, 5.0
#: How long a delivery key (``submit(key=...)``) is remembered: longer than any sender keeps
#: retrying (net-snmp: timeout x retries, seconds; an MQTT session redelivers on reconnect).
KEY_WINDOW = 600.0

_COUNTS = tuple(f.name for f in fields(Counts))
_T = TypeVar("_T")


@dataclass(slots=True)
class PipelineStats:
    received: int = 0
    shed: int = 0
    classified: int = 0
    unclassified: int = 0
    duplicates: int = 0
    batches: int = 0
    committed_events: int = 0
    store_errors: int = 0
    commands: int = 0
    alarms_raised: int = 0
    alarms_cleared: int = 0
    alarms_pending: int = 0
    alarms_suppressed: int = 0
    alarms_flapping: int = 0
    tickets_opened: int = 0
    sla_warnings: int = 0
    sla_breaches: int = 0
    tickets_held: int = 0
    unknown_refused: int = 0
    max_batch: int = 0
    latency_buckets: dict[float, int] = field(default_factory=lambda: dict.fromkeys((0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, float("inf")), 0))
    latency_sum: float = 0.0
    latency_count: int = 0


class _Pending:
    __slots__ = ("event", "key", "on_commit")

    def __init__(self, event: Event, on_commit: CommitCallback, key: str | None = None) -> None:
        self.event = event
        self.on_commit = on_commit
        self.key = key


class _Keyed:
    """An event with a delivery key whose commit callback is its group's barrier."""

    __slots__ = ("event", "key")

    def __init__(self, event: Event, key: str | None) -> None:
        self.event = event
        self.key = key


class _Barrier:
    """Queued after a group of events: its callback runs once the batch holding it (and so
    every event queued before it) has committed — in the writer thread right after the
    commit when ``in_writer`` (see ``Pipeline.submit_many``), else on the event loop."""

    __slots__ = ("in_writer", "on_commit")

    def __init__(self, on_commit: CommitCallback, in_writer: bool = False) -> None:
        self.on_commit = on_commit
        self.in_writer = in_writer


class _Cmd:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Command, future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.future = future


class _OnDecider(Generic[_T]):
    """A pipeline attribute that lives on its Decider (the composition root, reloads and
    tests set ``pipeline.watchdog``, ``pipeline.engine``, ... as before)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _OnDecider[_T]: ...
    @overload
    def __get__(self, obj: Pipeline, owner: type | None = None) -> _T: ...
    def __get__(self, obj: Pipeline | None, owner: type | None = None) -> _T | _OnDecider[_T]:
        if obj is None:
            return self
        value: _T = getattr(obj.decider, self.name)
        return value

    def __set__(self, obj: Pipeline, value: _T) -> None:
        setattr(obj.decider, self.name, value)


class Pipeline:
    """Implements ``EventSink`` for adapters and owns alarm and ticket state (one task).

    What a batch means is decided by :attr:`decider`; the attributes below that describe
    the decision (rules, inventory, book, desk, policies, watchdog and its settings,
    recorder, telemetry, outbox instance and connectors) live there.
    """

    engine: _OnDecider[RuleEngine] = _OnDecider()
    inventory: _OnDecider[Inventory] = _OnDecider()
    book: _OnDecider[AlarmBook] = _OnDecider()
    desk: _OnDecider[TicketDesk] = _OnDecider()
    policies: _OnDecider[Mapping[str, Policy]] = _OnDecider()
    instance: _OnDecider[str] = _OnDecider()
    connectors: _OnDecider[list[str]] = _OnDecider()
    # Liveness (see Decider: losses are raised in chunks of loss_chunk per batch).
    watchdog: _OnDecider[Watchdog | None] = _OnDecider()
    liveness_events: _OnDecider[frozenset[str]] = _OnDecider()
    track_unknown: _OnDecider[bool] = _OnDecider()
    liveness_scan: _OnDecider[int] = _OnDecider()
    loss_chunk: _OnDecider[int] = _OnDecider()
    # Called with every event decided / with (event, device) before classification (O(1)).
    recorder: _OnDecider[Callable[[Event], object] | None] = _OnDecider()
    telemetry: _OnDecider[Callable[[Event, Device], object] | None] = _OnDecider()

    def __init__(
        self,
        *,
        engine: RuleEngine,
        inventory: Inventory,
        book: AlarmBook,
        desk: TicketDesk,
        policies: Mapping[str, Policy],
        store: Store,
        clock: Clock,
        queue_size: int = 100_000,
        batch_max: int = 4096,
        instance: str = "gw1",
        connectors: Iterable[str] = (),
    ) -> None:
        self.decider = Decider(
            engine=engine,
            inventory=inventory,
            book=book,
            desk=desk,
            policies=policies,
            instance=instance,
            connectors=connectors,
        )
        self.store = store
        self.clock = clock
        self.queue_size = queue_size
        self.batch_max = batch_max
        self.stats = PipelineStats()
        self.healthy = True
        self.last_error = ""
        self.listeners: list[Callable[[list[Alarm], list[Ticket], list[Any]], None]] = []
        self._q: deque[Any] = deque()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exec = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.paused_commit = False  # a test seam: hold commits (INFORMs then stay unanswered)
        # Delivery keys of submitted events (see submit): committed with their batch, loaded
        # at start, forgotten after key_window seconds. Insertion order = time order.
        self.key_window = KEY_WINDOW
        self._keys: dict[str, float] = {}
        self._keys_pruned = 0.0
        # Edge mode (gateway.forward): ``take()`` hands over the forward-queue rows of the
        # step just decided (committed in its transaction), ``limit`` bounds the queue and
        # ``committed()`` wakes the publisher after the commit.
        self.forward: Any = None
        #: Key/value pairs a command sets in the writer, committed with its batch (the edge
        #: records the control message it applied in the same transaction as its effect).
        self.meta: dict[str, str] = {}
        #: Called after each commit with the timeline entries and tickets written (the
        #: central sends the operator actions a site needs back to its edge).
        self.timeline_tap: Callable[[list[Any], list[Ticket]], None] | None = None

    # -- EventSink -----------------------------------------------------------------------
    def _signal(self) -> None:
        w = self._wake
        if w is not None and not w.is_set():
            w.set()

    def offer(self, event: Event) -> bool:
        self.stats.received += 1
        if len(self._q) >= self.queue_size or self._stopping:
            self.stats.shed += 1
            return False
        self._q.append(event)
        self._signal()
        return True

    def offer_many(self, events: Iterable[Event]) -> int:
        q = self._q
        n = 0
        room = self.queue_size - len(q)
        for ev in events:
            self.stats.received += 1
            if n >= room or self._stopping:
                self.stats.shed += 1
                continue
            q.append(ev)
            n += 1
        if n:
            self._signal()
        return n

    def submit(self, event: Event, on_commit: CommitCallback, key: str | None = None) -> bool:
        self.stats.received += 1
        if len(self._q) >= self.queue_size or self._stopping:
            self.stats.shed += 1
            return False
        self._q.append(_Pending(event, on_commit, key))
        self._signal()
        return True

    def submit_many(
        self,
        events: Sequence[Event],
        on_commit: CommitCallback,
        keys: Sequence[str | None] | None = None,
        *,
        in_writer: bool = False,
    ) -> int:
        """See ``EventSink.submit_many``. With ``in_writer``, ``on_commit(True)`` runs in the
        store's writer thread right after the transaction commits, before the event loop
        hears of it (an INFORM's answer leaves without a hop back to the loop): it must be
        thread-safe, quick, and must not touch the event loop."""
        n = len(events)
        self.stats.received += n
        q = self._q
        k = 0 if self._stopping else max(0, min(n, self.queue_size - len(q)))
        if k < n:
            self.stats.shed += n - k
        if k:
            if keys is None:
                q.extend(events if k == n else events[:k])
            else:
                q.extend(map(_Keyed, events[:k], keys[:k]))
            q.append(_Barrier(on_commit, in_writer))  # FIFO: committed after all of them, never shed
            self._signal()
        return k

    def lookup_device(self, key: str) -> str | None:
        return self.inventory.lookup(key)

    @property
    def depth(self) -> int:
        return len(self._q)

    # -- commands (NOC actions, timer ticks) -----------------------------------------------
    async def execute(self, fn: Command) -> Any:
        """Run ``fn(now)`` in the writer task; returns its result once its effects are committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._q.append(_Cmd(fn, fut))  # commands are never shed
        self._signal()
        return await fut

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._keys.update(self.store.load_delivery_keys(self.clock.now() - self.key_window))
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="pipeline")

    async def stop(self) -> None:
        """Drain what is queued, commit it, then stop."""
        self._stopping = True
        self._signal()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=30)
            except TimeoutError:
                log.error("pipeline did not drain within 30 s; %d items left", len(self._q))
                self._task.cancel()
        self._exec.shutdown(wait=True)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._q:
                if self._stopping:
                    return
                self._wake.clear()
                timeout = self._next_timer()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
            try:
                await self._batch()
            except Exception:  # a bug must not kill the single writer silently
                log.exception("pipeline batch failed")
                await asyncio.sleep(0.1)

    def _forget_keys(self, now: float) -> float | None:
        """Drop delivery keys older than the window (at most once a minute); returns the
        cutoff for the store to apply in the same transaction, or ``None``."""
        if now - self._keys_pruned < 60.0:
            return None
        self._keys_pruned = now
        cutoff = now - self.key_window
        keys = self._keys
        while keys:
            k = next(iter(keys))
            if keys[k] >= cutoff:
                break
            del keys[k]
        return cutoff

    def command_nowait(self, fn: Command) -> None:
        """Queue ``fn(now)`` for the writer task without waiting (hooks from adapters)."""
        loop = self._loop or asyncio.get_event_loop()
        self._q.append(_Cmd(fn, loop.create_future()))
        self._signal()

    def _next_timer(self) -> float:
        nxt = self.decider.next_due()
        if nxt is None:
            return 1.0
        return min(1.0, max(0.0, nxt - self.clock.now()))

    # -- the batch -------------------------------------------------------------------------
    async def _batch(self) -> None:
        q = self._q
        n = min(len(q), self.batch_max)
        now = self.clock.now()
        t0 = time.perf_counter()
        # Unwrap what only the pipeline knows about (commit callbacks, delivery keys,
        # barriers); events and commands go to the decider in their queue order.
        work: list[Event | Command] = []
        callbacks: list[CommitCallback] = []
        in_writer: list[CommitCallback] = []
        new_keys: list[tuple[str, float]] = []
        cmds: list[_Cmd] = []
        barriers = 0
        keys = self._keys
        pop, put = q.popleft, work.append
        for _ in range(n):
            item = pop()
            if isinstance(item, Event):
                put(item)
            elif isinstance(item, _Pending):
                callbacks.append(item.on_commit)
                key = item.key
                if key is not None:
                    if key in keys:
                        self.stats.duplicates += 1
                        continue  # committed before (e.g. resent after a crash): answer only
                    keys[key] = now
                    new_keys.append((key, now))
                put(item.event)
            elif type(item) is _Keyed:
                key = item.key
                if key is not None:
                    if key in keys:
                        self.stats.duplicates += 1
                        continue
                    keys[key] = now
                    new_keys.append((key, now))
                put(item.event)
            elif type(item) is _Barrier:
                (in_writer if item.in_writer else callbacks).append(item.on_commit)
                barriers += 1
            else:
                cmds.append(item)
                put(item.fn)
        d = self.decider.step(work, now)
        s = self.stats
        c = d.counts
        for name in _COUNTS:
            setattr(s, name, getattr(s, name) + getattr(c, name))
        batch = BatchWrite(
            alarms=d.alarms,
            tickets=d.tickets,
            timeline=d.timeline,
            outbox=d.outbox,
        )
        if self.meta:
            batch.meta, self.meta = self.meta, {}
        if new_keys:
            batch.delivery_keys = new_keys
            batch.forget_keys_before = self._forget_keys(now)
        fw = self.forward
        if fw is not None:
            batch.forward = fw.take()
            batch.forward_limit = fw.limit
        await self._commit(batch, in_writer)
        if fw is not None and batch.forward:
            fw.committed()
        if callbacks and failpoints.ARMED:
            failpoints.hit("before_commit_callbacks")
        s.batches += 1
        s.commands += len(cmds)
        s.committed_events += n - len(cmds) - barriers
        s.max_batch = max(s.max_batch, n)
        dt = time.perf_counter() - t0
        self._observe(dt)
        for cb in callbacks:
            try:
                cb(True)
            except Exception:
                log.exception("commit callback failed")
        for cmd, (result, err) in zip(cmds, d.results, strict=True):
            if not cmd.future.done():
                if err is not None:
                    cmd.future.set_exception(err)
                else:
                    cmd.future.set_result(result)
        tap = self.timeline_tap
        if tap is not None and batch.timeline:
            try:
                tap(batch.timeline, batch.tickets)
            except Exception:
                log.exception("timeline tap failed")
        changes = d.changes
        if self.listeners and (batch.alarms or batch.tickets or changes):
            for fn in self.listeners:
                try:
                    fn(batch.alarms, batch.tickets, changes)
                except Exception:
                    log.exception("change listener failed")

    def _observe(self, dt: float) -> None:
        s = self.stats
        s.latency_sum += dt
        s.latency_count += 1
        for b in s.latency_buckets:
            if dt <= b:
                s.latency_buckets[b] += 1
                break

    async def _commit(self, batch: BatchWrite, in_writer: list[CommitCallback] | None = None) -> None:
        """Commit ``batch`` in the writer thread (retried until it succeeds), then run the
        ``in_writer`` commit callbacks there, right after the commit."""
        if not batch:
            if in_writer:
                _call_back(in_writer)
            return
        loop = asyncio.get_running_loop()
        delay = _RETRY_MIN
        while True:
            while self.paused_commit:  # noqa: ASYNC110 - a test seam, polled: no event to set in production
                await asyncio.sleep(0.02)
            try:
                await loop.run_in_executor(self._exec, self._write, batch, in_writer)
                if not self.healthy:
                    log.warning("store recovered; commits succeed again")
                self.healthy = True
                self.last_error = ""
                return
            except StoreError as e:
                self.stats.store_errors += 1
                if self.healthy or str(e) != self.last_error:
                    log.error("store commit failed (will retry, events are held in memory): %s", e)
                self.healthy = False
                self.last_error = str(e)
                await asyncio.sleep(delay)
                delay = min(_RETRY_MAX, delay * 2)

    def _write(self, batch: BatchWrite, in_writer: list[CommitCallback] | None) -> None:
        """In the writer thread: the transaction, then the callbacks that run right after it."""
        self.store.commit(batch)
        if in_writer:
            _call_back(in_writer)


def _call_back(callbacks: list[CommitCallback]) -> None:
    """``cb(True)`` for each commit callback, after the failpoint of that moment."""
    if failpoints.ARMED:
        failpoints.hit("before_commit_callbacks")
    for cb in callbacks:
        try:
            cb(True)
        except Exception:
            log.exception("commit callback failed")
