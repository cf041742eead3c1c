"""The central's side: a durable JetStream consumer feeding the one decision core.

Each message becomes an event at its **original** time (``ts`` from the edge), submitted to
the pipeline with its ``Nats-Msg-Id`` as the delivery key; it is acknowledged only after the
batch holding it committed (as INFORMs are), so a crash redelivers it and the key drops what
was committed before. Edge heartbeats (core NATS) become ``heartbeat`` events of the edge's
device (class ``gateway.edge``): the edge's silence is a "site unreachable" alarm that
suppresses its children's losses. A jump in an edge's sequence is a ``forward.gap`` alarm.

With a ``partition`` (``[forward] partitions`` > 1, docs/scaling.md) it consumes that
partition's subject only, through a durable consumer of its own (``<durable>-p<partition>``),
and takes the heartbeats of that partition's edges only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import BadRequestError

from adapters.base import CommitCallback
from gateway.clock import Clock
from gateway.forward.config import ForwardConfig
from gateway.forward.connect import CLOSE_WAIT_S, close_within, connect, shut_down
from gateway.model import Event

__all__ = ["CentralConsumer", "Sink"]

log = logging.getLogger("gateway.forward")


class Sink(Protocol):
    queue_size: int

    @property
    def depth(self) -> int: ...
    def submit(self, event: Event, on_commit: CommitCallback, key: str | None = None) -> bool: ...
    def offer(self, event: Event) -> bool: ...
    async def execute(self, fn: Callable[[float], Any]) -> Any: ...


class CentralConsumer:
    def __init__(self, cfg: ForwardConfig, sink: Sink, clock: Clock, resolve: Callable[[str], Any],
                 name: str = "central", partition: int | None = None) -> None:
        self.cfg = cfg
        self.partition = partition
        self.sink = sink
        self.clock = clock
        self.resolve = resolve
        self.name = name
        self.consumed = 0
        self.gaps = 0
        self.last_seq: dict[str, int] = {}
        self.edges: dict[str, dict[str, Any]] = {}
        self._seen: dict[str, float] = {}
        self._acks: set[asyncio.Future[Any]] = set()
        self._nc: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="forward-central")]

    async def stop(self) -> None:
        await shut_down(self._tasks, self._nc)

    async def _setup(self) -> Any:
        cfg = self.cfg
        nc = self._nc = await connect(cfg, self.resolve, self.name)
        js = nc.jetstream()
        stream = StreamConfig(name=cfg.stream, subjects=[f"{cfg.subject_prefix}.ev.>"],
                              duplicate_window=cfg.dedup_window)
        try:
            await js.add_stream(stream)
        except BadRequestError:
            await js.update_stream(stream)
        await nc.subscribe(cfg.filter_subject("hb", self.partition), cb=self._on_heartbeat)
        durable = cfg.durable if self.partition is None else f"{cfg.durable}-p{self.partition}"
        return await js.pull_subscribe(
            cfg.filter_subject("ev", self.partition), durable=durable, stream=cfg.stream,
            config=ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                                  deliver_policy=DeliverPolicy.ALL, ack_wait=cfg.ack_wait,
                                  max_ack_pending=cfg.max_ack_pending),
        )

    async def _run(self) -> None:
        delay = 0.2
        sub: Any = None
        while True:
            if sub is None:
                try:
                    sub = await self._setup()
                    delay = 0.2
                except Exception as e:  # noqa: BLE001 - retry until JetStream answers
                    log.warning("%s: cannot reach JetStream (%s); retrying in %.1f s", self.name,
                                e or type(e).__name__, delay)
                    if self._nc is not None:
                        await close_within(self._nc, CLOSE_WAIT_S)
                        self._nc = None
                    await asyncio.sleep(delay)  # why: backoff between connection attempts
                    delay = min(5.0, delay * 2)
                    continue
            while self.sink.depth > self.sink.queue_size // 2:  # noqa: ASYNC110 - the pipeline has no "room" event
                # A batch message holds many events: fetch more once the pipeline caught up,
                # instead of overfilling its queue (refused events wait for a redelivery).
                await asyncio.sleep(0.02)  # why: backpressure, the pipeline drains meanwhile
            try:
                msgs = await sub.fetch(batch=min(512, self.cfg.max_ack_pending), timeout=1.0)
            except TimeoutError:
                continue
            except Exception as e:  # noqa: BLE001 - the link or the server went away: nats-py reconnects
                log.debug("fetch failed: %s", e)
                if self._nc is None or self._nc.is_closed:
                    sub = None
                await asyncio.sleep(0.2)  # why: do not spin while the client reconnects
                continue
            await self._edges_alive(msgs)
            for m in msgs:
                self._handle(m)

    def _spawn(self, coro: Any) -> None:
        """Acks go out as tasks (a commit callback cannot await); kept until done."""
        t = asyncio.ensure_future(_quiet(coro))
        self._acks.add(t)
        t.add_done_callback(self._acks.discard)

    async def _edges_alive(self, msgs: list[Any]) -> None:
        """A message from an edge now is proof that it is alive now. If its messages paused
        for longer than its heartbeat interval (quiet, or the link was cut), a heartbeat is decided and committed first, so the
        backlog is decided with the site reachable: each fault at its own time, its SLA
        clock from then, instead of held as the child of a silent edge."""
        now = self.clock.now()
        stale = set()
        seen = self._seen
        for m in msgs:
            edge = (m.headers or {}).get("Nats-Msg-Id", "").rpartition("/")[0]
            if edge:
                if now - seen.get(edge, 0.0) > self.cfg.edge_interval:
                    stale.add(edge)
                seen[edge] = now
        for edge in stale:
            self.sink.offer(Event(now, "forward", edge, "heartbeat", {}))
        if stale:
            await self.sink.execute(lambda _now: None)  # the restorations are committed

    def _handle(self, m: Any) -> None:
        """One message: a single event (``Nats-Msg-Id = <edge>/<seq>``, the old form, still
        accepted) or a batch (``Gw-Count``; ``<edge>/<first>-<last>``) split into its events.
        Each event is submitted with its own delivery key ``<edge>/<seq>``; the message is
        acknowledged once every one of them committed."""
        now = self.clock.now()
        headers = m.headers or {}
        msg_id = headers.get("Nats-Msg-Id", "")
        edge, _, ids = msg_id.rpartition("/")
        items: list[tuple[str | None, int | None, Event]]
        try:
            d = json.loads(m.data)
            if "Gw-Count" in headers:
                seqs, bodies = d["seqs"], d["events"]
                if not (len(seqs) == len(bodies) == int(headers["Gw-Count"]) > 0):
                    raise ValueError(f"{len(seqs)} seqs, {len(bodies)} events, Gw-Count {headers['Gw-Count']}")
                items = [(f"{edge}/{int(q)}" if edge else None, int(q), self._event(b, now))
                         for q, b in zip(seqs, bodies, strict=True)]
            else:
                items = [(msg_id or None, int(ids) if ids.isdigit() else None, self._event(d, now))]
        except (ValueError, KeyError, TypeError) as e:
            log.warning("dropped a malformed forwarded message %s on %s: %s", msg_id or "-", m.subject, e)
            self._spawn(m.term())
            return
        prev = headers.get("Gw-Prev", "")
        last = items[-1][1]
        if edge and last is not None:
            self._sequence(edge, last, int(prev) if prev.isdigit() else None, now)
        waiting = [len(items), True]  # events not yet committed; all were accepted

        def on_commit(ok: bool) -> None:
            waiting[0] -= 1
            waiting[1] = waiting[1] and ok
            if waiting[0] == 0 and waiting[1]:
                self._spawn(m.ack())

        for key, _seq, ev in items:
            if self.sink.submit(ev, on_commit, key=key):
                self.consumed += 1
            else:
                # The queue is full: not acknowledged, JetStream redelivers after ack_wait and
                # the delivery keys drop what of it did commit.
                waiting[0] -= 1
                waiting[1] = False

    def _event(self, d: Any, now: float) -> Event:
        # A forwarded loss was decided by the edge's watchdog (its time is the deadline the
        # device missed): the central's watchdog must not take it as a last will.
        ts = float(d["ts"])
        name = str(d["name"])
        source = "watchdog" if name == "heartbeat.lost" else str(d["source"])
        attrs = {**d.get("attrs", {}), "site": d.get("site", ""), "edge": d.get("edge", "")}
        if now - ts > self.cfg.late_after:
            attrs["late_s"] = round(now - ts, 3)
        return Event(ts, source, str(d["device"]), name, attrs, d.get("peer"))

    def _sequence(self, edge: str, seq: int, prev: int | None, now: float) -> None:
        """``prev`` is the seq the edge published just before (readings it dropped by its
        queue bound were never published, so they are no gap): a ``prev`` beyond the last
        seq seen is a message JetStream lost or a consumer skipped."""
        last = self.last_seq.get(edge)
        if last is not None and prev is not None and prev > last:
            self.gaps += 1
            log.error("%s: forwarded messages after %d up to %d never arrived", edge, last, prev)
            self.sink.offer(Event(now, "forward", edge, "forward.gap",
                                  {"after": last, "upto": prev, "missing": f"{last + 1}..{prev}"}))
        if last is None or seq > last:
            self.last_seq[edge] = seq

    async def _on_heartbeat(self, m: Any) -> None:
        try:
            d = json.loads(m.data)
            edge = str(d["edge"])
        except (ValueError, KeyError, TypeError):
            return
        self.edges[edge] = {**d, "received_at": self.clock.now()}
        self.sink.offer(Event(self.clock.now(), "forward", edge, "heartbeat",
                              {"site": d.get("site", ""), "queued": d.get("queued", 0)}))


async def _quiet(coro: Any) -> None:
    """An ack that cannot go out (the link dropped) is redelivered by JetStream later."""
    try:
        await coro
    except Exception as e:  # noqa: BLE001 - see above
        log.debug("ack not sent: %s", e)
