"""The edge's publisher: drains the durable forward queue into JetStream in order, deleting
a row only after JetStream's publish ack, and publishes the edge's own heartbeat.

Up to ``batch`` queued rows go in one JetStream message (``{"seqs": [...], "events": [...]}``
with ``Gw-Count`` and ``Nats-Msg-Id = <edge id>/<first seq>-<last seq>``); a single row goes
as the event itself with ``Nats-Msg-Id = <edge id>/<seq>``. A batch published twice (a crash
between the ack and the delete, a timeout whose ack was lost) is dropped by JetStream's
duplicate window; beyond it, or when a republished batch is cut differently, the central's
delivery keys (``<edge id>/<seq>`` per event) drop each event committed before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from gateway import failpoints
from gateway.clock import Clock
from gateway.forward.config import ForwardConfig
from gateway.forward.connect import connect, shut_down
from gateway.model import Event
from gateway.store import ForwardQueue

__all__ = ["EdgeForwarder"]

log = logging.getLogger("gateway.forward")

#: The queue fill that raises the gateway alarm, and where it clears again.
HIGH, LOW = 0.8, 0.7


class EdgeForwarder:
    """Args:
        cfg: ``[forward]`` (mode ``edge``).
        store: the edge's store (its forward queue).
        clock: time for heartbeats and the queue alarm.
        offer: the pipeline's ``offer`` (the queue alarm is an event like any other).
        resolve: resolves file paths of the config.
    """

    def __init__(
        self, cfg: ForwardConfig, store: ForwardQueue, clock: Clock, offer: Callable[[Event], bool],
        resolve: Callable[[str], Any],
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.offer = offer
        self.resolve = resolve
        self.published = 0
        #: JetStream messages published (``published`` counts the events in them).
        self.messages = 0
        #: Whether the last publish was acknowledged (None: nothing published yet).
        self.connected: bool | None = None
        self.queued = 0
        self.dropped = 0
        self._high = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._nc: Any = None
        #: The seq published last (sent as ``Gw-Prev``: the central's gap check); None after a start.
        self._prev: int | None = None
        self._connecting = asyncio.Lock()
        #: More fields for the edge's heartbeat (the two-way side adds the rule version it runs).
        self.status: Callable[[], dict[str, Any]] | None = None

    def kick(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="forward-edge"),
                       asyncio.create_task(self._heartbeat(), name="forward-heartbeat")]

    async def stop(self) -> None:
        await shut_down(self._tasks, self._nc)

    async def connection(self) -> Any:
        """The edge's one NATS connection (shared with the two-way side), made on first use."""
        async with self._connecting:
            return await self._connect()

    async def _connect(self) -> Any:
        delay = 0.2
        while self._nc is None or self._nc.is_closed:
            try:
                self._nc = await connect(self.cfg, self.resolve, self.cfg.edge_name)
            except Exception as e:  # noqa: BLE001 - any connect failure: retry, the queue holds
                log.warning("%s: cannot reach JetStream (%s); buffering, retrying in %.1f s",
                            self.cfg.edge_name, e or type(e).__name__, delay)
                await asyncio.sleep(delay)  # why: backoff between connection attempts
                delay = min(5.0, delay * 2)
        return self._nc

    async def _run(self) -> None:
        cfg = self.cfg
        subject = cfg.subject("ev", cfg.site)
        delay = 0.1
        per = cfg.batch
        done = 0
        while True:
            nc = await self.connection()
            js = nc.jetstream()
            # One trip to the store per round: delete what the last round got acknowledged,
            # count, read the next rows.
            rows, self.queued, self.dropped = await asyncio.to_thread(self._round, done)
            done = 0
            self._fill()
            if not rows:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                continue
            try:
                msgs = [rows[k:k + per] for k in range(0, len(rows), per)]
                window = cfg.publish_window
                for k in range(0, len(msgs), window):
                    chunk = msgs[k:k + window]
                    # Published in order (the client writes them in call order); awaited
                    # together. A failure leaves the whole chunk queued: what did arrive is
                    # dropped as a duplicate when it goes again.
                    prevs = [self._prev, *(m[-1][0] for m in chunk[:-1])]
                    await asyncio.gather(*(self._publish(js, subject, m, prev)
                                           for m, prev in zip(chunk, prevs, strict=True)))
                    done = self._prev = chunk[-1][-1][0]
                    self.published += sum(len(m) for m in chunk)
                    self.messages += len(chunk)
                    if failpoints.ARMED:
                        failpoints.hit("forward_after_ack")
                delay = 0.1
                self.connected = True
            except Exception as e:  # noqa: BLE001 - timeouts, no responders, a dropped link
                if self.connected is not False:
                    log.warning("%s: publish failed (%s); rows stay queued, retrying", cfg.edge_name,
                                e or type(e).__name__)
                self.connected = False
                await asyncio.sleep(delay)  # why: backoff while the link is down
                delay = min(2.0, delay * 2)

    def _round(self, done: int) -> tuple[list[tuple[int, str]], int, int]:
        """In a worker thread: delete rows up to ``done`` (acknowledged), then the queue's
        counts and its next rows."""
        if done:
            self.store.forward_delete(done)
        queued, dropped = self.store.forward_stats()
        return self.store.forward_head_raw(512), queued, dropped

    async def _publish(self, js: Any, subject: str, rows: list[tuple[int, str]], prev: int | None) -> None:
        """One message: a single event as it was stored, or a batch of them (the stored JSON
        texts joined, never decoded and encoded again)."""
        first, last = rows[0][0], rows[-1][0]
        if len(rows) == 1:
            headers = {"Nats-Msg-Id": f"{self.cfg.edge_name}/{first}"}
            body = rows[0][1]
        else:
            headers = {"Nats-Msg-Id": f"{self.cfg.edge_name}/{first}-{last}", "Gw-Count": str(len(rows))}
            body = ('{"seqs":[' + ",".join(str(r[0]) for r in rows) + '],"events":['
                    + ",".join(r[1] for r in rows) + "]}")
        if prev is not None:
            headers["Gw-Prev"] = str(prev)
        await js.publish(subject, body.encode(), timeout=5.0, headers=headers)

    async def _check_fill(self) -> None:
        self.queued, self.dropped = await asyncio.to_thread(self.store.forward_stats)
        self._fill()

    def _fill(self) -> None:
        """The queue alarm from the last counts (raised at 80 %, cleared below 70 %)."""
        fill = self.queued / self.cfg.queue_size
        now = self.clock.now()
        attrs = {"queued": self.queued, "limit": self.cfg.queue_size, "dropped": self.dropped,
                 "site": self.cfg.site}
        if not self._high and fill >= HIGH:
            self._high = True
            self.offer(Event(now, "forward", self.cfg.edge_name, "forward.queue_high", attrs))
        elif self._high and fill < LOW:
            self._high = False
            self.offer(Event(now, "forward", self.cfg.edge_name, "forward.queue_ok", attrs))

    async def _heartbeat(self) -> None:
        """The edge's own heartbeat, on core NATS (not stored: a late heartbeat means nothing)."""
        cfg = self.cfg
        subject = cfg.subject("hb", cfg.site)
        while True:
            await self._check_fill()  # here too: it runs while no connection was ever made
            nc = self._nc
            if nc is not None and nc.is_connected:
                body = {"edge": cfg.edge_name, "site": cfg.site, "ts": self.clock.now(),
                        "queued": self.queued, "dropped": self.dropped}
                if self.status is not None:
                    body.update(self.status())
                with contextlib.suppress(Exception):
                    await nc.publish(subject, json.dumps(body).encode())
            await asyncio.sleep(cfg.heartbeat)  # why: the heartbeat's period
