"""The single writer: bounded ingest queue → batch → classify → alarms → tickets → ONE store
transaction (outbox rows included) → commit callbacks (INFORM/QoS 1 acks) → change listeners."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.base import CommitCallback
from gateway import failpoints
from gateway.core.alarms import (
    CLEARED_CHANGE,
    FLAPPING,
    PENDING_CHANGE,
    RAISED,
    REPEATED,
    SUPPRESSED_CHANGE,
    Alarm,
    AlarmBook,
    AlarmChange,
)
from gateway.clock import Clock
from gateway.core.reactions import dispatch
from gateway.errors import StoreError
from gateway.core.inventory import Inventory
from gateway.model import Event
from gateway.core.sla import Policy
from gateway.store import BatchWrite, OutboxRow, Store
from gateway.core.tickets import Ticket, TicketDesk
from rules.engine import RuleEngine

__all__ = ["Command", "Pipeline", "PipelineStats"]

log = logging.getLogger("gateway.pipeline")

#: A command runs inside the writer task with ``now``; its return value resolves the future.
Command = Callable[[float], Any]

_RETRY_MIN, _RETRY_MAX = 0.05, 5.0
#: How long a delivery key (``submit(key=...)``) is remembered: longer than any sender keeps
#: retrying (net-snmp: timeout x retries, seconds; an MQTT session redelivers on reconnect).
KEY_WINDOW = 600.0

# Marks where in a batch the watchdog's due losses are taken: after the batch's own events.
_LOSSES_DUE = object()


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


class _Barrier:
    """Queued after a group of events: its callback runs once the batch holding it (and so
    every event queued before it) has committed."""

    __slots__ = ("on_commit",)

    def __init__(self, on_commit: CommitCallback) -> None:
        self.on_commit = on_commit


class _Cmd:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Command, future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.future = future


class Pipeline:
    """Implements ``EventSink`` for adapters and owns alarm and ticket state (one task)."""

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
        self.engine = engine
        self.inventory = inventory
        self.book = book
        self.desk = desk
        self.policies = policies
        self.store = store
        self.clock = clock
        self.queue_size = queue_size
        self.batch_max = batch_max
        self.instance = instance
        self.connectors = list(connectors)
        self.stats = PipelineStats()
        self.healthy = True
        self.last_error = ""
        self.listeners: list[Callable[[list[Alarm], list[Ticket], list[Any]], None]] = []
        self.recorder: Callable[[Event], None] | None = None
        #: Called with (event, resolved device) for every event before classification; must be O(1).
        self.telemetry: Callable[[Event, Any], object] | None = None
        self._q: deque[Any] = deque()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exec = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.paused_commit = False  # a test seam: hold commits (INFORMs then stay unanswered)
        self.watchdog: Any = None  # gateway.core.watchdog.Watchdog, when liveness is watched
        self.liveness_events: frozenset[str] = frozenset({"heartbeat", "status"})
        self.track_unknown = True
        # Delivery keys of submitted events (see submit): committed with their batch, loaded
        # at start, forgotten after key_window seconds. Insertion order = time order.
        self.key_window = KEY_WINDOW
        self._keys: dict[str, float] = {}
        self._keys_pruned = 0.0
        #: Watchdog heap entries looked at per batch (re-arms are cheap: a few µs each).
        self.liveness_scan = 20_000
        #: Losses raised per batch. Each costs an alarm, a ticket and their store rows
        #: (~0.3 ms in all), so a mass loss is committed in chunks of a fraction of a
        #: second, interleaved with the heartbeats queued meanwhile, instead of one batch
        #: that holds the writer (and every ack) for seconds.
        self.loss_chunk = 500

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

    def submit_many(self, events: Sequence[Event], on_commit: CommitCallback) -> int:
        n = len(events)
        self.stats.received += n
        q = self._q
        k = 0 if self._stopping else max(0, min(n, self.queue_size - len(q)))
        if k < n:
            self.stats.shed += n - k
        if k:
            q.extend(events if k == n else events[:k])
            q.append(_Barrier(on_commit))  # FIFO: committed after all of them, never shed
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
        load = getattr(self.store, "load_delivery_keys", None)
        if load is not None:
            self._keys.update(load(self.clock.now() - self.key_window))
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

    def _liveness(self, ev: Event, dev: Any) -> Event | None:
        """Feed the watchdog; returns a ``heartbeat.restored`` to process, if any."""
        wd = self.watchdog
        if ev.name == "heartbeat.lost":
            if ev.source != "watchdog":  # a last will: the device is lost now, not at its deadline
                wd.lost_now(dev.id, ev.ts, reason=str(ev.attrs.get("reason", "lwt")))
            return None
        if dev.id not in wd:
            if not dev.known and not self.track_unknown:
                return None
            wd.track(dev.id, interval=dev.heartbeat_interval, device_class=dev.device_class, now=ev.ts)
        restored: Event | None = wd.heartbeat(dev.id, ev.ts)
        return restored

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
        nxt = self.desk.next_check()
        wd_next = self.watchdog.next_deadline() if self.watchdog is not None else None
        if wd_next is not None and (nxt is None or wd_next < nxt):
            nxt = wd_next
        due = self.book.next_deadline()  # hold-for expiry, escalation over time, flaps, windows
        if due is not None and (nxt is None or due < nxt):
            nxt = due
        if nxt is None:
            return 1.0
        return min(1.0, max(0.0, nxt - self.clock.now()))

    # -- the batch -------------------------------------------------------------------------
    async def _batch(self) -> None:
        q = self._q
        n = min(len(q), self.batch_max)
        items = [q.popleft() for _ in range(n)]
        now = self.clock.now()
        t0 = time.perf_counter()
        if self.watchdog is not None:
            # Losses due by now join this batch after its own events, so a heartbeat that
            # arrived before its device's deadline but waited in the queue counts first.
            items.append(_LOSSES_DUE)
        callbacks: list[CommitCallback] = []
        new_keys: list[tuple[str, float]] = []
        barriers = 0
        cmds: list[tuple[_Cmd, Any, BaseException | None]] = []
        changes: list[Any] = []
        inv_resolve = self.inventory.resolve
        classify = self.engine.classify
        fold = self.book.fold
        rec = self.recorder
        tel = self.telemetry
        for item in items:
            if isinstance(item, Event):
                ev = item
            elif isinstance(item, _Pending):
                ev = item.event
                callbacks.append(item.on_commit)
                key = item.key
                if key is not None:
                    if key in self._keys:
                        self.stats.duplicates += 1
                        continue  # committed before (e.g. resent after a crash): answer only
                    self._keys[key] = now
                    new_keys.append((key, now))
            elif type(item) is _Barrier:
                callbacks.append(item.on_commit)
                barriers += 1
                continue
            elif item is _LOSSES_DUE:
                items.extend(self.watchdog.due(now, limit=self.liveness_scan, max_lost=self.loss_chunk))
                continue
            else:
                try:
                    cmds.append((item, item.fn(now), None))
                except Exception as e:  # noqa: BLE001 - handed back to the caller
                    cmds.append((item, None, e))
                continue
            if rec is not None:
                rec(ev)
            dev = inv_resolve(ev.device)
            if tel is not None:
                tel(ev, dev)
            if self.watchdog is not None and (ev.name in self.liveness_events or ev.name == "heartbeat.lost"):
                sign = self._liveness(ev, dev)
                if sign is not None:
                    items.append(sign)  # heartbeat.restored: handled in this same batch
            cs = classify(ev, dev)
            if not cs:
                self.stats.unclassified += 1
                continue
            self.stats.classified += 1
            for c in cs:
                for ch in fold(c, ev, dev, ev.ts):
                    self._on_change(ch, dev, changes)
        # Alarm timers before SLA timers: a hold-for that expired opens its ticket first.
        for ch in self.book.tick(now):
            self._on_change(ch, inv_resolve(ch.alarm.device), changes)
        for t, notice in self.desk.tick(now):
            if notice.fraction >= 1.0:
                self.stats.sla_breaches += 1
            else:
                self.stats.sla_warnings += 1
            changes.append((t, notice))
        batch = self._collect()
        if new_keys:
            batch.delivery_keys = new_keys
            batch.forget_keys_before = self._forget_keys(now)
        await self._commit(batch)
        if callbacks and failpoints.ARMED:
            failpoints.hit("before_commit_callbacks")
        self.stats.batches += 1
        self.stats.committed_events += n - len(cmds) - barriers
        self.stats.max_batch = max(self.stats.max_batch, n)
        dt = time.perf_counter() - t0
        self._observe(dt)
        for cb in callbacks:
            try:
                cb(True)
            except Exception:
                log.exception("commit callback failed")
        for cmd, result, err in cmds:
            if not cmd.future.done():
                if err is not None:
                    cmd.future.set_exception(err)
                else:
                    cmd.future.set_result(result)
        if self.listeners and (batch.alarms or batch.tickets or changes):
            for fn in self.listeners:
                try:
                    fn(batch.alarms, batch.tickets, changes)
                except Exception:
                    log.exception("change listener failed")

    def _on_change(self, ch: AlarmChange, dev: Any, changes: list[Any]) -> None:
        """React to one alarm change (see gateway.core.reactions for what each kind does)."""
        kind = ch.kind
        if kind == REPEATED:
            return
        if ch.alarm.device != dev.id:  # e.g. a child un-suppressed by its parent's clear
            dev = self.inventory.resolve(ch.alarm.device)
        try:
            out = dispatch(ch, dev, self.desk, self.policies, self.inventory.default_policy)
        except Exception:  # a ticket-side bug must not lose the batch: the alarm is still recorded
            log.exception("ticket reaction to alarm %d (%s) failed", ch.alarm.id, kind)
            out = None
        s = self.stats
        if kind == RAISED:
            s.alarms_raised += 1
        elif kind == CLEARED_CHANGE:
            s.alarms_cleared += 1
        elif kind == PENDING_CHANGE:
            s.alarms_pending += 1
        elif kind == SUPPRESSED_CHANGE:
            s.alarms_suppressed += 1
        elif kind == FLAPPING:
            s.alarms_flapping += 1
        if out is not None and out.action == "opened":
            s.tickets_opened += 1
        changes.append(ch)

    def _observe(self, dt: float) -> None:
        s = self.stats
        s.latency_sum += dt
        s.latency_count += 1
        for b in s.latency_buckets:
            if dt <= b:
                s.latency_buckets[b] += 1
                break

    def _collect(self) -> BatchWrite:
        tickets = self.desk.take_dirty()
        outbox: list[OutboxRow] = []
        by_id = {t.id: t for t in tickets}
        for tid, kind, extra in self.desk.take_outbox():
            if not self.connectors:
                break
            t = by_id.get(tid) or self.desk.open.get(tid)
            snapshot = t.to_dict() if t is not None else {"id": tid}
            alarm = self.book.open.get(snapshot.get("alarm_key", "")) if t is not None else None
            if alarm is not None:
                snapshot["count"] = alarm.count
                snapshot["first_event"] = alarm.event
                snapshot["first_seen"] = alarm.first_seen
            snapshot.update(extra)
            snapshot["ticket_key"] = f"gw-{self.instance}-t{tid}"
            for conn in self.connectors:
                if extra.get("actor") == f"helpdesk:{conn}":
                    continue  # it came from that help desk: don't echo it back
                key = snapshot["ticket_key"] if kind == "open" else f"{snapshot['ticket_key']}-m{uuid.uuid4().hex[:12]}"
                outbox.append(OutboxRow(conn, tid, key, kind, snapshot))
        return BatchWrite(
            alarms=self.book.take_dirty(),
            tickets=tickets,
            timeline=self.desk.take_timeline(),
            outbox=outbox,
        )

    async def _commit(self, batch: BatchWrite) -> None:
        if not batch:
            return
        loop = asyncio.get_running_loop()
        delay = _RETRY_MIN
        while True:
            while self.paused_commit:
                await asyncio.sleep(0.02)
            try:
                await loop.run_in_executor(self._exec, self.store.commit, batch)
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
