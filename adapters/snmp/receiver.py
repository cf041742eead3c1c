"""SNMP trap/INFORM listener: a receiver thread owns the UDP socket, decodes and hands
batches of Events to the event loop; INFORMs are answered only after their commit."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import logging
import os
import socket
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adapters.base import AdapterContext, Counters, EventSink, RateLimitedLog
from adapters.snmp import ber
from adapters.snmp.config import SnmpListenerConfig
from adapters.snmp.fastpath import RepeatCache, split_v2c_trap
from adapters.snmp.ratelimit import SourceLimiter
from adapters.snmp.rfc3584 import v1_trap_oid
from adapters.snmp.storm import StormGuard
from gateway.clock import Clock
from gateway.errors import DecodeError
from gateway.model import Event

__all__ = ["EventBuilder", "SnmpAdapter", "build", "inform_delivery_key", "inform_key"]

log = logging.getLogger("adapters.snmp")

SYS_UPTIME_0 = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID_0 = "1.3.6.1.6.3.1.1.4.1.0"
SNMP_TRAP_ADDRESS_0 = "1.3.6.1.6.3.18.1.3.0"
SNMP_TRAP_ENTERPRISE_0 = "1.3.6.1.6.3.1.1.4.3.0"

_DRAIN_MAX = 512
#: An INFORM seen again from the same peer with the same request-id and varbinds within this
#: many seconds is a retransmission (RFC 3416 §4.2.7): answered, not recorded twice.
INFORM_TTL = 120.0


def inform_key(peer: Any, msg: Any) -> tuple[Any, int, Any]:
    """What makes two INFORMs one notification (RFC 3416 §4.2.7): the peer, the request-id
    and the varbinds — as received (``raw_varbinds``, cheap to hash) where the decoder kept
    them, else decoded."""
    raw = msg.raw_varbinds
    return (peer, msg.request_id, raw if raw is not None else tuple(msg.varbinds))


def inform_delivery_key(listener: str, key: tuple[Any, int, Any]) -> str:
    """A stable text key for one INFORM (listener + :func:`inform_key`), handed to the sink
    so a resend after a crash (committed, never answered) is recognised and only answered."""
    peer, rid, vbs = key
    head = f"{peer!r}|{rid}|".encode()
    body = vbs if type(vbs) is bytes else repr(vbs).encode()
    digest = hashlib.blake2b(head + body, digest_size=16).hexdigest()
    return f"snmp-inform:{listener}:{digest}"
INFORM_MAX = 65_536
_NAME_CACHE_MAX = 65_536


def _text(v: Any) -> Any:
    """OCTET STRINGs become text when they are printable UTF-8, else ``0x``-hex."""
    if type(v) is bytes:
        try:
            s = v.decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + v.hex()
        if s.isprintable() or not s:
            return s
        stripped = s.rstrip("\x00")
        if stripped.isprintable():
            return stripped
        return "0x" + v.hex()
    return v


class EventBuilder:
    """Turns a decoded trap into an Event with MIB names. Names are memoised per OID so a
    packet costs dictionary hits, never a MIB tree walk."""

    def __init__(self, resolver: Any, source: str) -> None:
        self.resolver = resolver
        self.source = source
        #: Whether a peer is a trusted relay (its snmpTrapAddress.0 names the device).
        self.trusted: Callable[[str], bool] = lambda _ip: False
        #: Told ``(reason, peer, value)`` when an address naming another device is ignored.
        self.ignored: Callable[[str, str, Any], None] = lambda _r, _p, _v: None
        self._trap_names: dict[str, str] = {}
        self._attr_names: dict[str, str] = {}

    def trap_name(self, oid: str) -> str:
        n = self._trap_names.get(oid)
        if n is None:
            n = self.resolver.name(oid) if self.resolver is not None else oid
            if len(self._trap_names) < _NAME_CACHE_MAX:
                self._trap_names[oid] = n
        return n

    def attr_name(self, oid: str) -> str:
        n = self._attr_names.get(oid)
        if n is None:
            if self.resolver is None:
                n = oid
            else:
                module, symbol, index = self.resolver.split(oid)
                n = symbol if module else oid
                if module and index and symbol in ("sysUpTime", "snmpTrapAddress", "snmpTrapCommunity"):
                    n = symbol
            if len(self._attr_names) < _NAME_CACHE_MAX:
                self._attr_names[oid] = n
        return n

    def build(self, msg: Any, peer_ip: str, now: float) -> Event:
        attrs: dict[str, Any] = {}
        device = peer_ip
        if msg.version == ber.V1:
            trap_oid = v1_trap_oid(msg.enterprise or "", msg.generic_trap or 0, msg.specific_trap or 0)
            attrs["sysUpTime"] = msg.timestamp
            attrs["enterprise"] = self.trap_name(msg.enterprise or "")
            if msg.agent_addr and msg.agent_addr != "0.0.0.0":
                attrs["agentAddress"] = msg.agent_addr
                if msg.agent_addr == peer_ip or self.trusted(peer_ip):
                    device = msg.agent_addr
                else:
                    self.ignored("agent_address_untrusted", peer_ip, msg.agent_addr)
            varbinds = msg.varbinds
        else:
            vbs = msg.varbinds
            trap_oid = ""
            start = 0
            if len(vbs) >= 2 and vbs[0][0] == SYS_UPTIME_0 and vbs[1][0] == SNMP_TRAP_OID_0:
                attrs["sysUpTime"] = vbs[0][1]
                trap_oid = vbs[1][1] if isinstance(vbs[1][1], str) else ""
                start = 2
            else:
                for oid, val in vbs:
                    if oid == SNMP_TRAP_OID_0 and isinstance(val, str):
                        trap_oid = val
                        break
                start = 0
            if not trap_oid:
                raise DecodeError("no_trap_oid", "notification without snmpTrapOID.0", peer_ip)
            varbinds = vbs[start:]
        names = self._attr_names
        attr_name = self.attr_name
        for oid, val in varbinds:
            if oid == SNMP_TRAP_OID_0:
                continue
            if oid == SNMP_TRAP_ADDRESS_0:
                named = self.relayed(val, peer_ip)
                if named is not None:
                    device = named  # a trusted relay forwarded it: the originator is named here
            key = names.get(oid) or attr_name(oid)
            if key in attrs:
                key = oid
            attrs[key] = _text(val) if type(val) is bytes else val
        return Event(now, self.source, device, self.trap_name(trap_oid), attrs, peer_ip)

    def relayed(self, val: Any, peer_ip: str) -> str | None:
        """The device an ``snmpTrapAddress.0`` value names, if it may: only an IpAddress,
        and only from a trusted relay (or naming the sender itself); else None (told to
        :attr:`ignored`)."""
        if type(val) is not ber.IpAddress:
            self.ignored("trap_address_not_ip", peer_ip, val)
            return None
        if val != peer_ip and not self.trusted(peer_ip):
            self.ignored("trap_address_untrusted", peer_ip, val)
            return None
        return str(val)


class SnmpAdapter:
    """One listener. ``start`` binds (so a port conflict fails the start loudly)."""

    def __init__(
        self,
        config: SnmpListenerConfig,
        clock: Clock,
        resolver: Any = None,
        state_dir: str | os.PathLike[str] | None = None,
        v3: Any = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.clock = clock
        self.builder = EventBuilder(resolver, config.name)
        self.v3 = v3 if v3 is not None else _build_v3(config, state_dir)
        self.counters = Counters()
        self.granted_rcvbuf = 0
        self.address: tuple[str, int] = (config.host, config.port)
        self._communities = frozenset(c.encode() for c in config.communities)
        self._nets = [ipaddress.ip_network(n, strict=False) for n in config.allowed_sources]
        self._allowed_cache: dict[str, bool] = {}
        self._relays = [ipaddress.ip_network(n, strict=False) for n in config.trusted_relays]
        self._relay_cache: dict[str, bool] = {}
        self.builder.trusted = self._trusted
        self.builder.ignored = self._ignored
        self.reports = SourceLimiter(config.report_rate, config.report_burst, config.report_rate_total)
        # Rejected community strings are logged by length and a keyed hash: equal strings
        # look equal within one run, and the log never holds a guessable secret.
        self._hash_key = os.urandom(16)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sink: EventSink | None = None
        self._rlog = RateLimitedLog(log)
        self.storm = StormGuard(config.storm, config.name) if config.storm.enabled else None
        self.repeats: RepeatCache | None = RepeatCache()
        # INFORM retransmissions (same peer, request-id and varbinds) within INFORM_TTL are one
        # notification: recorded once, answered every time. ``_informs`` (delivery key → first
        # seen) is kept by the loop thread; the writer thread adds a key to ``_answered`` once
        # its commit is done. Text keys and float values: nothing here is tracked by the
        # garbage collector, so the up to INFORM_MAX entries a storm leaves behind cost
        # nothing to its collections (as lists of [time, flag, peer] they made each full one
        # take 20-70 ms at 10,000 INFORMs/s: the whole tail of the INFORM round trip).
        self._informs: OrderedDict[str, float] = OrderedDict()
        self._answered: set[str] = set()
        # Hand-over from the receiver thread: reads queue here, and the loop is woken only
        # when no drain is scheduled yet (one wake-up for every read that arrived meanwhile).
        self._handoff: deque[tuple[list[Event], list[tuple[Event, Callable[[], bytes], Any, Any]]]] = deque()
        self._drain_scheduled = False

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.receive_buffer)
        except OSError as e:
            log.warning("%s: could not set SO_RCVBUF=%d: %s", self.name, self.config.receive_buffer, e)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError as e:
            sock.close()
            hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" if self.config.port < 1024 else ""
            raise OSError(e.errno, f"{self.name}: cannot listen on {self.config.host}:{self.config.port}: {e.strerror}{hint}") from e
        self.granted_rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.address = sock.getsockname()[:2]
        self._sock = sock
        log.info(
            "%s: listening for traps on udp://%s:%d (receive buffer %d bytes granted, %d asked; %s BER decoder)",
            self.name, self.address[0], self.address[1], self.granted_rcvbuf, self.config.receive_buffer, ber.DECODER,
        )
        if ber.DECODER != "compiled":
            log.warning(
                "%s: the compiled BER decoder is not built (no C compiler when the gateway was installed); "
                "the Python one decodes the same, with more CPU per trap", self.name,
            )
        self._thread = threading.Thread(target=self._recv_loop, name=f"snmp-{self.name}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            # Wake the blocking recv with a datagram of our own.
            try:
                with socket.socket(sock.family, socket.SOCK_DGRAM) as s:
                    s.sendto(b"", self.address)
            except OSError:
                pass
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
        if sock is not None:
            sock.close()
        self._sock = None

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        out["receive_buffer_bytes"] = self.granted_rcvbuf
        fallback = getattr(getattr(self.v3, "stats", None), "fallback", None)
        if fallback is not None:  # v3 messages the lean USM path handed to pysnmp
            out["v3.fallback"] = fallback
        return out

    # -- the receiver thread -------------------------------------------------------------
    def _recv_loop(self) -> None:
        sock = self._sock
        assert sock is not None and self._loop is not None
        recvfrom = sock.recvfrom
        handle = self._handle
        dontwait = socket.MSG_DONTWAIT
        loop = self._loop
        drain = self._drain
        handoff = self._handoff
        stop = self._stop
        while not stop.is_set():
            try:
                data, peer = recvfrom(65535)
            except OSError:
                if stop.is_set():
                    break
                continue
            if stop.is_set():
                break
            now = self.clock.now()
            plain: list[Event] = []
            informs: list[tuple[Event, Callable[[], bytes], Any, Any]] = []
            handle(data, peer, now, plain, informs)
            for _ in range(_DRAIN_MAX):
                try:
                    data, peer = recvfrom(65535, dontwait)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                handle(data, peer, now, plain, informs)
            if plain or informs:
                handoff.append((plain, informs))
                if not self._drain_scheduled:
                    # The flag is cleared by the loop before it empties the queue: a read
                    # queued after the clear is seen by this drain or schedules the next one.
                    self._drain_scheduled = True
                    try:
                        loop.call_soon_threadsafe(drain)
                    except RuntimeError:  # loop closed during shutdown
                        break

    def _allowed(self, ip: str) -> bool:
        return _in_nets(ip, self._nets, self._allowed_cache)

    def _trusted(self, ip: str) -> bool:
        return bool(self._relays) and _in_nets(ip, self._relays, self._relay_cache)

    def _ignored(self, reason: str, peer_ip: str, value: Any) -> None:
        self.counters.inc("untrusted." + reason)
        self._rlog.warning(
            reason, "%s: ignored the device address %r in a trap from %s: %s (see trusted_relays)",
            self.name, str(value)[:64], peer_ip, reason,
        )

    def _secret_hint(self, secret: bytes) -> str:
        """What a log may say about a rejected secret: its length and a short keyed hash."""
        digest = hashlib.blake2b(secret, key=self._hash_key, digest_size=3).hexdigest()
        return f"{len(secret)} bytes, hash {digest}"

    def _reject(self, reason: str, peer_ip: str, detail: str = "") -> None:
        self.counters.inc("rejected." + reason)
        self._rlog.warning(reason, "%s: rejected packet from %s: %s%s", self.name, peer_ip, reason, f" ({detail})" if detail else "")

    def _handle(
        self,
        data: bytes,
        peer: tuple[Any, ...],
        now: float,
        plain: list[Event],
        informs: list[tuple[Event, Callable[[], bytes], Any, Any]],
    ) -> None:
        c = self.counters
        c["received"] = c.get("received", 0) + 1
        peer_ip = peer[0]
        if not data:
            c.inc("rejected.empty")
            return
        if self._nets and not self._allowed(peer_ip):
            self._reject("source_not_allowed", peer_ip)
            return
        repeats = self.repeats
        split = split_v2c_trap(data) if repeats is not None and not self.config.v3_only and repeats.awake() else None
        if split is not None:
            hit = repeats.get(split[2])  # type: ignore[union-attr]
            if hit is not None and split[0] in self._communities and (
                hit[2] is None or hit[2] == peer_ip or self._trusted(peer_ip)
            ):
                name, tmpl, named = hit
                attrs: dict[str, Any] = {"sysUpTime": split[1]}
                attrs.update(tmpl)
                self._accept(Event(now, self.name, named or peer_ip, name, attrs, peer_ip), None, peer, now, plain, informs)
                return
        try:
            # The version sits right after the outer SEQUENCE header: 02 01 <v>.
            off = 2 if data[1] < 0x80 else 2 + (data[1] & 0x7F)
            version = data[off + 2] if data[off:off + 2] == b"\x02\x01" else ber.peek_version(data)
            if version == ber.V3:
                if self.v3 is None:
                    raise DecodeError("v3_not_configured", "no SNMPv3 users on this listener")
                result = self.v3.process(data, peer)
                msg = result.message
                respond = result.respond
                if msg is None:  # discovery or report: answer at once, nothing to record
                    c.inc("v3.discovery")
                    if respond is not None:
                        if self.reports.allow(peer_ip, now):
                            self._send(respond(), peer)
                        else:  # a reflector must not be: Reports are rate-limited per source
                            c.inc("v3.reports_limited")
                    return
            else:
                if self.config.v3_only:
                    raise DecodeError("v1v2c_disabled", "listener accepts SNMPv3 only")
                msg = ber.decode(data)
                if msg.community not in self._communities:
                    raise DecodeError("bad_community", self._secret_hint(msg.community))
                respond = None
                if msg.pdu_type == ber.PDU_INFORM:
                    respond = functools.partial(ber.response_from_request, data, msg)
            if msg.pdu_type not in (ber.PDU_TRAP_V1, ber.PDU_TRAP_V2, ber.PDU_INFORM):
                raise DecodeError("unsupported_pdu", hex(msg.pdu_type))
            ev = self.builder.build(msg, peer_ip, now)
            if split is not None and msg.pdu_type == ber.PDU_TRAP_V2 and "sysUpTime" in ev.attrs:
                tmpl = {k: v for k, v in ev.attrs.items() if k != "sysUpTime"}
                addr = next((v for oid, v in msg.varbinds if oid == SNMP_TRAP_ADDRESS_0), None)
                if addr is None:
                    repeats.put(split[2], ev.name, tmpl, None)  # type: ignore[union-attr]
                elif ev.device == addr:  # honoured: repeats from a trusted relay (or itself) may reuse it
                    repeats.put(split[2], ev.name, tmpl, str(addr))  # type: ignore[union-attr]
        except DecodeError as e:
            self._reject(e.reason, peer_ip, e.detail)
            return
        except Exception as e:  # noqa: BLE001 - nothing that arrives may stop the receiver
            self._reject("malformed", peer_ip, f"{type(e).__name__}: {e}")
            return
        key = inform_delivery_key(self.name, inform_key(peer, msg)) if respond is not None else None
        self._accept(ev, respond, peer, now, plain, informs, key)

    def _accept(
        self,
        ev: Event,
        respond: Callable[[], bytes] | None,
        peer: Any,
        now: float,
        plain: list[Event],
        informs: list[tuple[Event, Callable[[], bytes], Any, Any]],
        inform_key: Any = None,
    ) -> None:
        c = self.counters
        c["decoded"] = c.get("decoded", 0) + 1
        if self.storm is not None:
            passes, summary = self.storm.check(ev.device, now)
            if summary is not None:
                plain.append(summary)
            if not passes:
                c.inc("storm.suppressed")
                if respond is not None:  # still answer: the sender must not retry into the storm
                    self._send(respond(), peer)
                return
        if respond is not None:
            informs.append((ev, respond, peer, inform_key))
        else:
            plain.append(ev)

    # -- on the event loop ---------------------------------------------------------------
    def _drain(self) -> None:
        """Deliver every read the receiver queued since the last drain, as one."""
        self._drain_scheduled = False
        handoff = self._handoff
        if not handoff:
            return
        plain, informs = handoff.popleft()
        while handoff:
            p, i = handoff.popleft()
            plain += p
            informs += i
        self._deliver(plain, informs)

    def _deliver(self, plain: list[Event], informs: list[tuple[Event, Callable[[], bytes], Any, Any]]) -> None:
        sink = self._sink
        assert sink is not None
        if self.config.unknown_devices == "drop":
            kept = [e for e in plain if sink.lookup_device(e.device) is not None]
            if len(kept) != len(plain):
                self.counters.inc("dropped.unknown_device", len(plain) - len(kept))
            plain = kept
            kept_i = [x for x in informs if sink.lookup_device(x[0].device) is not None]
            self.counters.inc("dropped.unknown_device", len(informs) - len(kept_i)) if len(kept_i) != len(informs) else None
            informs = kept_i
        if plain:
            accepted = sink.offer_many(plain)
            if accepted < len(plain):
                self.counters.inc("shed", len(plain) - accepted)
        now = self.clock.monotonic()
        seen = self._informs
        answered = self._answered
        while seen and next(iter(seen.values())) < now - INFORM_TTL:
            answered.discard(seen.popitem(last=False)[0])
        if not informs:
            return
        # The new INFORMs of this read go to the sink as one group with one commit callback
        # that answers each of them (the sink's queue is FIFO: the group's commit is theirs).
        events: list[Event] = []
        keys: list[str | None] = []
        group: list[tuple[Callable[[], bytes], Any, str]] = []
        for ev, respond, peer, key in informs:
            if key in seen:
                self.counters.inc("informs.retransmitted")
                if key in answered:  # already committed: just answer again
                    self._send(respond(), peer)
                continue  # still pending: its commit will answer (the peer is part of the key)
            seen[key] = now
            if len(seen) > INFORM_MAX:
                answered.discard(seen.popitem(last=False)[0])
            events.append(ev)
            keys.append(key)
            group.append((respond, peer, key))
        if len(answered) > 2 * INFORM_MAX:  # marks that came after their entry left (commits slower than INFORM_TTL)
            answered.intersection_update(seen)
        if not events:
            return
        taken = sink.submit_many(events, functools.partial(self._inform_acks, group), keys, in_writer=True)
        if taken < len(events):
            for _respond, _entry, key in group[taken:]:
                seen.pop(key, None)
            del group[taken:]
            self.counters.inc("shed", len(events) - taken)  # no response: the senders will retry

    def _inform_acks(self, group: list[tuple[Callable[[], bytes], Any, str]], ok: bool) -> None:
        """Answer the INFORMs of one group once their commit is done — in the sink's writer
        thread, right after the commit. Each entry is marked answered before its answer is
        sent: a retransmission the loop sees before the mark waits for this answer, one it
        sees after is answered again (a duplicate answer is harmless, a missing one is not)."""
        if not ok:
            return
        send = self._send
        mark = self._answered.add
        n = 0
        for respond, peer, key in group:
            mark(key)
            try:
                send(respond(), peer)
                n += 1
            except Exception as e:  # noqa: BLE001
                self._rlog.warning("inform_response", "%s: could not answer INFORM from %s: %s", self.name, peer[0], e)
        self.counters.inc("informs.acknowledged", n)

    def _send(self, data: bytes, peer: Any) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.sendto(data, peer)
            except OSError as e:
                self._rlog.warning("send", "%s: send to %s failed: %s", self.name, peer[0], e)


def _in_nets(ip: str, nets: list[Any], cache: dict[str, bool]) -> bool:
    ok = cache.get(ip)
    if ok is None:
        try:
            addr = ipaddress.ip_address(ip)
            ok = any(addr in n for n in nets)
        except ValueError:
            ok = False
        if len(cache) < 65_536:
            cache[ip] = ok
    return ok


def _build_v3(config: SnmpListenerConfig, state_dir: str | os.PathLike[str] | None) -> Any:
    """The SNMPv3 USM processor for a listener that has users (``v3_engine`` picks which)."""
    if not config.users:
        return None
    path = engine_id_path(state_dir or ".", config.name)
    if config.v3_engine == "pysnmp":
        from adapters.snmp.v3 import V3Processor

        return V3Processor.from_config(config, path)
    from adapters.snmp.usm import LeanV3Processor

    return LeanV3Processor.from_config(config, path)


def engine_id_path(state_dir: str | os.PathLike[str], name: str) -> Path:
    """Where a listener's local SNMP engine ID is kept (stable across restarts)."""
    return Path(state_dir) / f"snmp-{name}.engineid"


async def build(configs: Sequence[SnmpListenerConfig], ctx: AdapterContext) -> list[SnmpAdapter]:
    """The ``[[adapters.snmp]]`` listeners (the factory named in ``adapters.REGISTRY``).

    They share one MIB resolver with every listener's ``mib_dirs`` (relative to the config
    file), loaded once and off the event loop: compiling MIBs takes a while.
    """
    mib_dirs = sorted({str(ctx.resolve_path(d)) for c in configs for d in c.mib_dirs})
    resolver = await asyncio.to_thread(_load_mibs, mib_dirs)
    return [SnmpAdapter(c, ctx.clock, resolver=resolver, state_dir=ctx.state_dir) for c in configs]


def _load_mibs(extra_dirs: list[str]) -> Any:
    from adapters.snmp.mibs import MibResolver

    return MibResolver(extra_dirs=extra_dirs)
