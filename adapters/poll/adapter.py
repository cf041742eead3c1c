"""The poller: spreads SNMP GETs of sysUpTime.0 and ICMP echoes over the interval and turns
answers into ``heartbeat`` events (and a sysUpTime that went back into ``device.restarted``).

Silence is not decided here: the devices polled are handed to the liveness watchdog with
their poll interval (``AdapterContext.watch``), and a device that stops answering is lost
there after interval × tolerance, with parent suppression, maintenance windows and the
restart grace applied exactly as for MQTT heartbeats.

Politeness: one UDP socket for every v2c device (request-ids match answers), at most
``max_in_flight`` requests out at once (further due polls wait for a free slot), per-device
backoff after repeated failures (:mod:`adapters.poll.plan`), timeouts and retries per config.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from adapters.base import AdapterContext, Counters, EventSink
from adapters.poll.config import PollConfig, PollCredential
from adapters.poll.getpdu import decode_answer, encode_get
from adapters.poll.icmp import IcmpPinger
from adapters.poll.plan import Plan, restarted
from gateway.clock import Clock, SystemClock
from gateway.errors import DecodeError
from gateway.model import Device, Event, parse_poll_spec

__all__ = ["HEARTBEAT", "RESTARTED", "PollAdapter", "Target", "build", "targets_for"]

log = logging.getLogger(__name__)

HEARTBEAT = "heartbeat"
RESTARTED = "device.restarted"
_PUBLIC = PollCredential(name="public")
_SYNC_EVERY_S = 1.0
#: Polls due within this long are sent together (one wake-up of the loop, not one per poll).
_TICK_S = 0.005
_RID_MAX = 0x7FFF_FFFF
_NO_ANSWER: Any = object()


@dataclass(frozen=True, slots=True)
class Target:
    """One device as the poller sees it."""

    device: str
    host: str
    port: int
    methods: tuple[str, ...]
    credential: PollCredential
    interval: float


def _split_address(address: str, default_port: int) -> tuple[str, int] | None:
    """``"10.0.0.1"`` / ``"10.0.0.1:1161"`` → (host, port); ``None`` if not an IPv4 literal."""
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = address, ""
    try:
        socket.inet_pton(socket.AF_INET, host)  # strict dotted quad, and ~20× faster than ipaddress
    except OSError:
        return None
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def targets_for(devices: Any, config: PollConfig) -> tuple[dict[str, Target], Counters]:
    """The devices ``config`` polls, by device id, and counts of those it cannot
    (``skipped.no_address``, ``skipped.bad_poll``, ``skipped.no_credential``)."""
    creds = {c.name: c for c in config.credentials}
    default_cred = config.credentials[0] if config.credentials else _PUBLIC
    out: dict[str, Target] = {}
    skipped = Counters()
    for d in devices:
        dev: Device = d
        try:
            own = parse_poll_spec(getattr(dev, "poll", "") or "")
        except ValueError:
            skipped.inc("skipped.bad_poll")
            continue
        target = next((t for t in config.targets if t.matches(dev.id, dev.device_class, dev.site)), None)
        if own is None and target is None:
            continue
        methods = own[0] if own is not None else tuple(target.methods) if target is not None else ()
        if not methods:
            continue  # poll = "none"
        cred_name = (own[1] if own is not None and own[1] else "") or (target.credential if target else "")
        cred = creds.get(cred_name) if cred_name else default_cred
        if cred is None:
            skipped.inc("skipped.no_credential")
            continue
        hostport = None
        for a in dev.addresses:
            hostport = _split_address(a, config.port)
            if hostport is not None:
                break
        if hostport is None:
            skipped.inc("skipped.no_address")
            continue
        interval = (target.interval if target is not None and target.interval else None) or config.interval
        out[dev.id] = Target(dev.id, hostport[0], hostport[1], methods, cred, interval)
    return out, skipped


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: PollAdapter) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.owner._answer(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.owner.counters.inc("snmp.send_errors")


class _Request:
    """A v2c GET in flight (the fast path: no task, a timer and a dict entry)."""

    __slots__ = ("addr", "attempts", "community", "handle", "packet", "rid", "started", "target", "waiter")

    def __init__(self, target: Target, rid: int, packet: bytes, addr: tuple[str, int], community: bytes, started: float,
                 waiter: asyncio.Future[int | None] | None) -> None:
        self.target = target
        self.rid = rid
        self.packet = packet
        self.addr = addr
        self.community = community
        self.started = started
        self.attempts = 0
        self.handle: asyncio.TimerHandle | None = None
        #: Set for a poll that awaits the answer (ICMP fallback follows); ``None``: the answer
        #: or the last timeout finishes the poll itself.
        self.waiter = waiter


class PollAdapter:
    """Polls the inventory devices its config selects (see the module docstring).

    Args:
        config: the ``[[adapters.poll]]`` entry.
        ctx: the gateway's services: ``devices()`` (the live inventory), ``watch`` /
            ``unwatch`` (the liveness watchdog), the clock.
        icmp: the ICMP pinger (tests pass one whose socket cannot open).
        rng: random source of the jitter.
    """

    def __init__(
        self,
        config: PollConfig,
        ctx: AdapterContext,
        icmp: IcmpPinger | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._ctx = ctx
        self._clock: Clock = ctx.clock or SystemClock()
        self.plan = Plan(config.jitter, config.backoff_after, config.backoff_max, rng)
        self.counters = Counters()
        self._targets: dict[str, Target] = {}
        self._inv_key: tuple[int, int] | None = None
        self._sink: EventSink | None = None
        self._task: asyncio.Task[None] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[int, _Request] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rid = random.Random().randrange(1, _RID_MAX)
        self._in_flight = 0
        self._in_flight_max = 0
        self._deadlines: deque[tuple[float, int]] = deque()
        self._slot_free = asyncio.Event()
        self._icmp = icmp
        self._icmp_warned = False
        self._v3: Any = None
        self._uptimes: dict[str, tuple[int, float]] = {}
        self._polls: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        loop = self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.receive_buffer)
            sock.bind((self.config.bind or "0.0.0.0", 0))
        except OSError:
            sock.close()
            raise
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=sock)
        self._transport = transport
        if self._icmp is not None:  # handed in (tests); otherwise opened at the first ICMP check
            self._icmp.start()
        self._sync(self._clock.now())
        self._task = asyncio.create_task(self._run(), name=f"poll-{self.name}")
        log.info("poller %s: %d devices, interval %gs, at most %d requests in flight",
                 self.name, len(self._targets), self.config.interval, self.config.max_in_flight)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for req in self._pending.values():
            if req.handle is not None:
                req.handle.cancel()
        self._pending.clear()
        self._deadlines.clear()
        for t in list(self._polls):
            t.cancel()
        if self._polls:
            await asyncio.gather(*self._polls, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._icmp is not None:
            self._icmp.close()
        if self._v3 is not None:
            self._v3.close()
            self._v3 = None

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        out["received"] = self.counters.get("answered", 0)
        out["devices"] = len(self._targets)
        out["in_flight"] = self._in_flight
        out["in_flight.max"] = self._in_flight_max
        out["skipped.slots"] = self.plan.skipped
        return out

    # -- inventory ---------------------------------------------------------------------------
    def _sync(self, now: float) -> None:
        """Follow the inventory: new devices are scheduled and watched, gone ones dropped."""
        inv = self._ctx.devices()
        key = (id(inv), int(getattr(inv, "version", 0)))  # a new inventory has a new version
        if key == self._inv_key:
            return
        self._inv_key = key
        targets, skipped = targets_for(inv, self.config)
        now = max(now, self._clock.now())  # reading a large inventory takes a while: slots start after it
        for k, v in skipped.items():
            self.counters[k] = v
        watch: list[tuple[str, float]] = []
        for dev_id, t in targets.items():
            old = self._targets.get(dev_id)
            if old is None or old.interval != t.interval:
                watch.append((dev_id, t.interval))
            self.plan.set(dev_id, t.interval, now)
        gone = [d for d in self._targets if d not in targets]
        for d in gone:
            self.plan.remove(d)
            self._uptimes.pop(d, None)
        self._targets = targets
        if watch:
            self._ctx.watch(watch)
        if gone:
            self._ctx.unwatch(gone)

    # -- the loop ------------------------------------------------------------------------------
    async def _run(self) -> None:
        cap = self.config.max_in_flight
        next_sync = 0.0
        loop = asyncio.get_running_loop()
        while True:
            now = self._clock.now()
            self._expire_due(loop.time())
            if loop.time() >= next_sync:
                next_sync = loop.time() + _SYNC_EVERY_S
                self._sync(now)
            free = cap - self._in_flight
            if free > 0:
                for key in self.plan.due(now, limit=free):
                    t = self._targets.get(key)
                    if t is None:
                        continue
                    self._in_flight += 1
                    if self._in_flight > self._in_flight_max:
                        self._in_flight_max = self._in_flight
                    self.counters.inc("polls")
                    if t.methods == ("snmp",) and t.credential.version == "2c":
                        self._get(t, None)  # the common case: callbacks, no task
                        continue
                    task = asyncio.create_task(self._poll(t))
                    self._polls.add(task)
                    task.add_done_callback(self._polls.discard)
            if self._in_flight >= cap:
                self.counters.inc("waited.in_flight_cap")
                self._slot_free.clear()
                wait = _SYNC_EVERY_S
                if self._deadlines:
                    wait = min(wait, max(_TICK_S, self._deadlines[0][0] - loop.time()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_free.wait(), wait)
                continue
            nxt = self.plan.next_time()
            delay = _SYNC_EVERY_S if nxt is None else min(_SYNC_EVERY_S, max(_TICK_S, nxt - self._clock.now()))
            if self._deadlines:
                delay = min(delay, max(_TICK_S, self._deadlines[0][0] - loop.time()))
            await asyncio.sleep(delay)  # why: until the next poll is due (or the inventory is looked at again)

    async def _poll(self, t: Target) -> None:
        """A poll that needs a task: ICMP, SNMPv3, or SNMP with an ICMP fallback."""
        ok, via, rtt, uptime = False, "", 0.0, None
        try:
            if "snmp" in t.methods:
                answered, uptime, rtt = await self._snmp(t)
                if answered:
                    ok, via = True, "snmp"
            if not ok and "icmp" in t.methods:
                got = await self._echo(t)
                if got is not None:
                    ok, via, rtt = True, "icmp", got
        finally:
            self._finish(t, ok, via, rtt, uptime)

    def _finish(self, t: Target, ok: bool, via: str, rtt: float, uptime: int | None) -> None:
        now = self._clock.now()
        if ok:
            self.counters.inc("answered")
            self._heartbeat(t, now, via, rtt, uptime)
        else:
            self.counters.inc("unanswered")
        self.plan.done(t.device, ok, now)
        self._in_flight -= 1
        self._slot_free.set()

    def _heartbeat(self, t: Target, now: float, via: str, rtt: float, uptime: int | None) -> None:
        sink = self._sink
        if sink is None:
            return
        attrs: dict[str, Any] = {"via": via, "rtt_ms": round(rtt * 1000.0, 3)}
        if uptime is not None:
            attrs["uptime"] = uptime / 100.0
            prev = self._uptimes.get(t.device)
            self._uptimes[t.device] = (uptime, now)
            if prev is not None and restarted(prev[0], prev[1], uptime, now, self.config.restart_slack):
                self.counters.inc("restarts")
                ev = Event(now, self.name, t.device, RESTARTED,
                           {"uptime_before": prev[0] / 100.0, "uptime_after": uptime / 100.0}, peer=t.host)
                if not sink.offer(ev):
                    self.counters.inc("shed")
        if not sink.offer(Event(now, self.name, t.device, HEARTBEAT, attrs, peer=t.host)):
            self.counters.inc("shed")

    # -- SNMP ----------------------------------------------------------------------------------
    async def _snmp(self, t: Target) -> tuple[bool, int | None, float]:
        """``(answered, sysUpTime, round trip)``."""
        cred = t.credential
        loop = asyncio.get_running_loop()
        started = loop.time()
        if cred.version == "3":
            if self._v3 is None:
                from adapters.poll.usm import V3Getter

                self._v3 = V3Getter()
            self.counters.inc("snmp.sent")
            try:
                answered, uptime, problem = await self._v3.uptime(t.host, t.port, cred, self.config.timeout, self.config.retries)
            except Exception as e:  # noqa: BLE001 - pysnmp raises many kinds; one line, the poll failed
                answered, uptime, problem = False, None, f"{type(e).__name__}: {e}"
            if not answered:
                self.counters.inc("snmp.failed")
                if problem and "timeout" not in problem.lower():
                    log.debug("poller %s: %s v3: %s", self.name, t.device, problem)
                # The agent may have restarted: the next poll discovers it afresh.
                if not self._v3.forget(t.host, t.port):
                    self._v3.close()
                    self._v3 = None
            return answered, uptime, loop.time() - started
        fut: asyncio.Future[int | None] = loop.create_future()
        req = self._get(t, fut)
        if req is None:
            return False, None, 0.0
        try:
            uptime = await fut
        except asyncio.CancelledError:
            self._drop(req)
            raise
        if req.rid in self._pending or uptime is _NO_ANSWER:
            return False, None, 0.0
        return True, uptime, loop.time() - started

    def _get(self, t: Target, waiter: asyncio.Future[int | None] | None) -> _Request | None:
        """Send a v2c GET; its answer or last timeout completes it (see :class:`_Request`)."""
        transport, loop = self._transport, self._loop
        if transport is None or loop is None:
            if waiter is None:
                self._finish(t, False, "", 0.0, None)
            return None
        self._rid = self._rid + 1 if self._rid < _RID_MAX else 1
        rid = self._rid
        community = t.credential.community.get_secret_value().encode()
        req = _Request(t, rid, encode_get(community, rid), (t.host, t.port), community, loop.time(), waiter)
        self._pending[rid] = req
        self._send(req)
        return req

    def _send(self, req: _Request) -> None:
        assert self._transport is not None and self._loop is not None
        self._transport.sendto(req.packet, req.addr)
        self.counters.inc("snmp.sent")
        req.attempts += 1
        if req.waiter is None:
            # Sent from the loop below, which also ends them: one timeout for all, so deadlines
            # come in sending order and a deque replaces a timer per request.
            self._deadlines.append((self._loop.time() + self.config.timeout, req.rid))
        else:
            req.handle = self._loop.call_later(self.config.timeout, self._expired, req.rid)

    def _expire_due(self, now: float) -> None:
        d = self._deadlines
        while d and d[0][0] <= now:
            self._expired(d.popleft()[1])

    def _expired(self, rid: int) -> None:
        req = self._pending.get(rid)
        if req is None:
            return
        if req.attempts <= self.config.retries and self._transport is not None:
            self._send(req)  # same request-id: a late answer to the first request still counts
            return
        del self._pending[rid]
        self.counters.inc("snmp.timeouts")
        if req.waiter is not None:
            if not req.waiter.done():
                req.waiter.set_result(_NO_ANSWER)
        else:
            self._finish(req.target, False, "", 0.0, None)

    def _drop(self, req: _Request) -> None:
        self._pending.pop(req.rid, None)
        if req.handle is not None:
            req.handle.cancel()

    def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            ans = decode_answer(data)
        except DecodeError:
            self.counters.inc("rejected.bad_answer")
            return
        req = self._pending.get(ans.request_id)
        if req is None or req.addr != (addr[0], addr[1]) or req.community != ans.community:
            self.counters.inc("rejected.unmatched")
            return
        del self._pending[ans.request_id]
        if req.handle is not None:
            req.handle.cancel()
        if req.waiter is not None:
            if not req.waiter.done():
                req.waiter.set_result(ans.uptime)
            return
        assert self._loop is not None
        self._finish(req.target, True, "snmp", self._loop.time() - req.started, ans.uptime)

    # -- ICMP ----------------------------------------------------------------------------------
    async def _echo(self, t: Target) -> float | None:
        if self._icmp is None:
            self._icmp = IcmpPinger(bind=self.config.bind)
            self._icmp.start()
            if self._icmp.available:
                log.info("poller %s: ICMP echo over a %s socket", self.name, self._icmp.mode)
        icmp = self._icmp
        if not icmp.available:
            self.counters.inc("icmp.unavailable")
            if not self._icmp_warned:
                self._icmp_warned = True
                log.warning("poller %s: ICMP polling unavailable: %s", self.name, icmp.why)
            return None
        for _attempt in range(self.config.retries + 1):
            self.counters.inc("icmp.sent")
            try:
                rtt = await icmp.echo(t.host, self.config.timeout)
            except OSError as e:
                self.counters.inc("icmp.send_errors")
                log.debug("poller %s: echo to %s: %s", self.name, t.host, e)
                return None
            if rtt is not None:
                return rtt
        self.counters.inc("icmp.timeouts")
        return None


async def build(configs: Sequence[Any], ctx: AdapterContext) -> list[PollAdapter]:
    """The adapter factory (``adapters.REGISTRY``): one poller per ``[[adapters.poll]]``."""
    return [PollAdapter(c, ctx) for c in configs]
