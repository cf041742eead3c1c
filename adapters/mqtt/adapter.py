"""The MQTT adapter: connection loop, acknowledgement after commit, counters (see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import aiomqtt

from adapters.base import AdapterContext, EventSink
from adapters.mqtt.config import MqttConfig, MqttTls, default_client_id
from adapters.mqtt.decode import LOST, Ignored, PayloadDecoder, Rejected
from adapters.mqtt.link import Link
from adapters.mqtt.wire import Publish
from gateway.clock import Clock, SystemClock
from gateway.model import Event

__all__ = ["SYS_DROPPED_TOPIC", "MqttAdapter", "TakeoverRule", "build"]

log = logging.getLogger(__name__)

SYS_DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
_SYS_PREFIX = b"$SYS/"
#: Flow control of the ``wire`` client: reading stops when the sink's queue is this full
#: and starts again once it has drained to the lower mark.
_PAUSE_AT = 0.75
_RESUME_AT = 0.25
_RESUME_POLL_S = 0.002
#: How long leaving a ``wire`` connection waits for the socket to close (a TLS close waits for
#: the broker's close_notify) before it aborts it.
_CLOSE_TIMEOUT_S = 2.0
#: Fixed header aside, a PUBLISH holds a topic (2-byte length + up to 65535 bytes) and a packet id.
_MAX_PUBLISH_HEADER = 2 + 65535 + 2


class _RateLimitedLog:
    """At most ``per_minute`` lines per reason per minute; the rest are summarised."""

    __slots__ = ("_clock", "_per_minute", "_windows")

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._windows: dict[str, list[float]] = {}  # reason -> [window start, lines, suppressed]

    def __call__(self, reason: str, msg: str, *args: object) -> None:
        now = self._clock.monotonic()
        w = self._windows.get(reason)
        if w is None or now - w[0] >= 60.0:
            if w is not None and w[2]:
                log.warning("mqtt: %d more %r rejects not logged in the last minute", int(w[2]), reason)
            w = self._windows[reason] = [now, 0.0, 0.0]
        if w[1] < self._per_minute:
            w[1] += 1
            log.warning(msg, *args)
        else:
            w[2] += 1


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the TLS handshake fails.

    paho 2.2 leaves the socket of a failed handshake open (an untrusted broker certificate
    on every reconnect attempt would hold a descriptor until garbage collection).
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class _ClosingClient(aiomqtt.Client):
    """aiomqtt's client, closing its socket when connecting fails or is cancelled.

    aiomqtt 2.5 leaves paho's socket open, and watched by the event loop, when no CONNACK
    arrives within the timeout (a broker that accepts TCP but does not answer) and when the
    connect is cancelled (``stop()`` during a reconnect attempt): one descriptor per attempt
    until the garbage collector finds it ("unclosed socket").
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # paho's TCP connect runs in an executor thread that a cancel cannot stop: whichever
        # of that thread and __aenter__ finishes last closes the socket.
        self._entry_lock = threading.Lock()
        self._connect_returned = False
        self._abandoned = False

    def _client_connect(self) -> None:  # runs in an executor thread
        try:
            super()._client_connect()
        finally:
            with self._entry_lock:
                self._connect_returned = True
                abandoned = self._abandoned
            if abandoned:
                try:
                    # Queued behind the add_reader this thread has just asked the loop for.
                    self._loop.call_soon_threadsafe(self._close_socket)
                except RuntimeError:  # the loop is closed: nothing watches the socket any more
                    self._close_socket()

    async def __aenter__(self) -> Self:
        try:
            return await super().__aenter__()
        except BaseException:
            with self._entry_lock:
                self._abandoned = True
                returned = self._connect_returned
            if returned:
                # On the next loop turn: after any add_reader the connect thread queued.
                self._loop.call_soon(self._close_socket)
            raise

    def _close_socket(self) -> None:
        self._client._sock_close()  # unregisters it from the loop (aiomqtt's callback), closes it


@dataclass(frozen=True, slots=True)
class TakeoverRule:
    """When the adapter concludes that another client connects with its client id.

    A broker closes the older of two connections with one client id. Two clients with the
    same id therefore take the connection from each other in turns: each session of ours is
    accepted (CONNACK) and closed by the broker soon after. ``sessions`` such sessions, each
    shorter than ``short_s``, within ``window_s`` raise ``mqtt.client_id_conflict``; a
    session that then stays up for ``stable_s`` clears it (``mqtt.client_id_conflict_cleared``).

    Attributes:
        sessions: how many short sessions make a conflict.
        window_s: within how many seconds.
        short_s: a session closed by the broker sooner than this after its CONNACK is short.
        stable_s: how long a session must stay up to clear the conflict.
    """

    sessions: int = 3
    window_s: float = 60.0
    short_s: float = 5.0
    stable_s: float = 60.0


class _Redeliver(Exception):
    """Internal: leave the connection so the broker redelivers unacknowledged messages."""


Hook = Callable[[float], None]


class MqttAdapter:
    """Subscribes to an MQTT broker and turns its messages into Events.

    Args:
        config: the adapter configuration.
        clock: time source (receive times, backoff bookkeeping).
        on_connected: called with ``now`` after every successful connect + subscribe.
        on_disconnected: called with ``now`` once when an outage begins (connection lost,
            or the first connect attempt failed).
        rng: random source for backoff jitter (tests pass a seeded one).
        default_client_id: the client id when ``config.client_id`` is unset (the gateway
            passes :func:`~adapters.mqtt.config.default_client_id`); with neither, the broker
            assigns one (clean sessions only).
        takeover: when repeated short sessions mean another client uses our client id.

    Raises:
        ValueError: a persistent session (``clean_session = false``) without a client id.

    Attributes:
        name: the adapter instance name (``config.name``).
        client_id: the client id it connects with (``""``: assigned by the broker).
        on_connected: see Args; may be set after construction.
        on_disconnected: see Args; may be set after construction.
    """

    def __init__(
        self,
        config: MqttConfig,
        clock: Clock | None = None,
        *,
        on_connected: Hook | None = None,
        on_disconnected: Hook | None = None,
        rng: random.Random | None = None,
        default_client_id: str | None = None,
        takeover: TakeoverRule | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.client_id = config.client_id or default_client_id or ""
        if not config.clean_session and not self.client_id:
            raise ValueError(f"mqtt adapter {config.name!r}: clean_session = false needs a client id")
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._sink: EventSink | None = None
        self._decoder: PayloadDecoder | None = None
        self._task: asyncio.Task[None] | None = None
        self._counters: dict[str, int] = {}
        self._log_reject = _RateLimitedLog(config.log_samples_per_minute, self._clock)
        self._broker_device = f"broker:{config.host}:{config.port}"
        self._manual_ack = config.ack_after_commit and any(s.qos == 1 for s in config.subscriptions)
        self._persistent = not config.clean_session

        # Per-connection state. _gen identifies the connection a QoS 1 message arrived on:
        # a PUBACK carries only a packet id, so sending it on a later connection would
        # acknowledge some other message.
        self._gen = 0
        self._paho: Any = None
        self._link: Link | None = None
        # Events of a read the sink had no room for, waiting (reading paused): (events, packet
        # ids awaiting PUBACK or 0, connection generation).
        self._held: tuple[list[Event], list[int], int] | None = None
        self._wire = config.client == "wire"
        self._established = False
        self._queue: asyncio.Queue[aiomqtt.Message] | None = None
        self._inflight = 0
        self._inflight_zero = asyncio.Event()
        self._inflight_zero.set()
        self._redeliver = False
        self._connected = False
        self._ever_connected = False
        self._in_outage = False
        self._unreachable_reported = False
        self._sys_dropped: int | None = None
        # Client id takeover: loop time of the current connection's CONNACK, end times of
        # recent short sessions, whether the conflict is raised, the timer that clears it.
        self._takeover = takeover or TakeoverRule()
        self._connack_at: float | None = None
        self._short_ends: deque[float] = deque(maxlen=self._takeover.sessions)
        self._conflict = False
        self._stable_timer: asyncio.TimerHandle | None = None
        self._first_attempt = asyncio.Event()
        self._connected_event = asyncio.Event()
        self._stopping = False
        self._queue_class = self._make_queue_class()

    # ------------------------------------------------------------------ Adapter protocol

    async def start(self, sink: EventSink) -> None:
        """Start the connection loop; returns after the first connection attempt (bounded).

        A broker that is down does not fail or block start-up for longer than
        ``start_wait_s``: the loop keeps retrying in the background.
        """
        if self._task is not None:
            raise RuntimeError(f"mqtt adapter {self.name!r} already started")
        self._sink = sink
        self._decoder = PayloadDecoder(self.config, sink.lookup_device)
        self._stopping = False
        self._first_attempt = asyncio.Event()
        log.info(
            "mqtt %s: connecting to %s as client id %s",
            self.name,
            self.config.url,
            repr(self.client_id) if self.client_id else "(assigned by the broker)",
        )
        self._task = asyncio.create_task(self._run(), name=f"mqtt:{self.name}")
        try:
            await asyncio.wait_for(self._first_attempt.wait(), timeout=self.config.start_wait_s)
        except TimeoutError:
            log.warning(
                "mqtt %s: %s not reached within %.1fs, still trying in the background",
                self.name,
                self.config.url,
                self.config.start_wait_s,
            )

    async def stop(self) -> None:
        """Stop receiving and disconnect cleanly, handing over what was already received.

        Messages still in the client queue go to the sink, and pending QoS 1 commits get up
        to ``stop_timeout_s`` to arrive so their PUBACKs can still be sent.
        """
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])

    def stats(self) -> dict[str, int]:
        """Counters by name for /metrics (a counter appears once it is non-zero).

        ``received``, ``accepted``, ``rejected.<reason>``, ``shed.client_queue``,
        ``shed.sink``, ``acked``, ``commit_failed``, ``lost.uncommitted``, ``ack.stale``,
        ``ts_insane``, ``unknown_device``, ``ignored.<reason>``, ``lost_signals``,
        ``connects``, ``disconnects``, ``connect_failures``, ``reconnects``,
        ``redeliveries``, ``client_id_conflicts``; plus the gauges ``connected`` and
        ``inflight``.
        """
        out = dict(self._counters)
        if self._decoder is not None:
            if self._decoder.ts_insane:
                out["ts_insane"] = self._decoder.ts_insane
            if self._decoder.unknown:
                out["unknown_device"] = self._decoder.unknown
        out["connected"] = int(self._connected)
        out["inflight"] = self._inflight
        return out

    # ------------------------------------------------------------------ inspection

    @property
    def connected(self) -> bool:
        """Whether the adapter is connected and subscribed right now."""
        return self._connected

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and subscribed; returns ``False`` on timeout."""
        try:
            await asyncio.wait_for(self._connected_event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ connection loop

    def _inc(self, name: str, n: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + n

    def _make_client(self) -> aiomqtt.Client:
        cfg = self.config
        client = _ClosingClient(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            identifier=self.client_id or None,
            queue_type=self._queue_class,
            clean_session=cfg.clean_session,
            keepalive=cfg.keepalive,
            timeout=cfg.connect_timeout_s,
            max_queued_incoming_messages=cfg.queue_limit,
            tls_context=self._tls_context() if cfg.tls_enabled else None,
        )
        paho = client._client
        if self._manual_ack:
            paho.manual_ack_set(True)
        self._paho = paho
        return client

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.config.tls or MqttTls()
        ctx = ssl.create_default_context(cafile=tls.ca_file)
        ctx.sslsocket_class = _ClosingSSLSocket
        if tls.cert_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _backoff(self, attempt: int) -> float:
        cfg = self.config
        cap = min(cfg.reconnect_max_s, cfg.reconnect_min_s * 2.0 ** min(attempt, 30))
        # "Equal jitter": never less than half the step, so a fleet of gateways restarted
        # together spreads out without any of them hammering a recovering broker.
        return cap / 2 + self._rng.uniform(0, cap / 2)

    async def _run(self) -> None:
        attempt = 0
        session = self._session_wire if self.config.client == "wire" else self._session_aiomqtt
        while not self._stopping:
            self._established = False
            self._connack_at = None
            redeliver = False
            try:
                await session()
            except (aiomqtt.MqttError, _Redeliver, OSError) as exc:  # ssl.SSLError is an OSError
                if self._redeliver and self._established:
                    redeliver = True
                else:
                    self._on_connect_error(exc, self._established)
            finally:
                self._first_attempt.set()
            if self._established:
                attempt = 0
            if self._stopping:
                break
            if redeliver:
                self._redeliver = False
                self._inc("redeliveries")
                log.info("mqtt %s: reconnecting so the broker redelivers unacknowledged messages", self.name)
                await asyncio.sleep(self.config.reconnect_min_s)
                continue
            delay = self._backoff(attempt)
            attempt += 1
            await asyncio.sleep(delay)

    async def _session_aiomqtt(self) -> None:
        """One connection through aiomqtt (the reference receive path)."""
        client = self._make_client()
        async with client:
            self._connack_at = asyncio.get_running_loop().time()
            await self._subscribe_all(client.subscribe)
            self._established = True
            self._on_connect_ok()
            try:
                await self._consume(client)
            except asyncio.CancelledError:
                await self._drain_on_stop()
                raise
            finally:
                self._leave_connection()

    async def _session_wire(self) -> None:
        """One connection through :class:`~adapters.mqtt.link.Link`; raises when it ends."""
        cfg = self.config
        link = await Link.open(
            cfg.host,
            cfg.port,
            self._on_publishes,
            client_id=self.client_id,
            clean_session=cfg.clean_session,
            keepalive=cfg.keepalive,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            ssl_context=self._tls_context() if cfg.tls_enabled else None,
            timeout=cfg.connect_timeout_s,
            max_packet=self._max_packet,
            on_oversized=self._on_oversized,
        )
        self._link = link
        self._connack_at = asyncio.get_running_loop().time()
        try:
            link.start_delivery()
            await self._subscribe_all(lambda topics: link.subscribe(topics, cfg.connect_timeout_s))
            self._established = True
            self._on_connect_ok()
            try:
                await link.wait_closed()
            except asyncio.CancelledError:
                await self._drain_on_stop()
                raise
            finally:
                self._leave_connection()
        finally:
            self._link = None
            await link.aclose(_CLOSE_TIMEOUT_S)

    async def _subscribe_all(self, subscribe: Callable[[list[tuple[str, int]]], Awaitable[Sequence[Any]]]) -> None:
        # A clean session forgets subscriptions on every connect, and a persistent one may
        # have been expired by the broker: subscribing again is always correct.
        topics: list[tuple[str, int]] = [(s.subscribe_filter, s.qos) for s in self.config.subscriptions]
        if self.config.watch_sys:
            topics.append((SYS_DROPPED_TOPIC, 0))
        granted = await subscribe(topics)
        for (topic, _), rc in zip(topics, granted, strict=False):
            code = rc if isinstance(rc, int) else getattr(rc, "value", 0)
            if code >= 0x80:
                self._inc("subscribe_refused")
                log.error("mqtt %s: broker refused subscription %r (code %d)", self.name, topic, code)

    async def _consume(self, client: aiomqtt.Client) -> None:
        handle = self._handle
        queue = self._queue
        assert queue is not None
        async for message in client.messages:
            handle(message)
            # Everything already queued is handled without a task and an await per message.
            while queue.qsize():
                handle(queue.get_nowait())
            if self._redeliver:
                raise _Redeliver

    def _on_connect_ok(self) -> None:
        now = self._clock.now()
        if self._ever_connected:
            self._inc("reconnects")
        self._ever_connected = True
        self._connected = True
        self._connected_event.set()
        self._first_attempt.set()
        self._inc("connects")
        was_outage = self._in_outage
        self._in_outage = False
        if was_outage:
            log.info("mqtt %s: connected to %s again", self.name, self.config.url)
        if self._unreachable_reported:
            self._unreachable_reported = False
            self._emit("mqtt.broker_restored", now, {"url": self.config.url})
        if self._conflict:
            self._stable_timer = asyncio.get_running_loop().call_later(
                self._takeover.stable_s, self._on_stable, self._gen
            )
        self._call_hook(self.on_connected, now)

    def _leave_connection(self) -> None:
        """End of one connection: later commit callbacks must not PUBACK on the next one."""
        self._connected = False
        self._connected_event.clear()
        if self._stable_timer is not None:
            self._stable_timer.cancel()
            self._stable_timer = None
        self._gen += 1
        self._inflight = 0
        self._inflight_zero.set()
        held, self._held = self._held, None
        if held is not None:
            # Read from the dying connection but not yet taken by the sink (flow control).
            for event, mid in zip(held[0], held[1], strict=True):
                if mid and self._persistent:
                    self._inc("dropped.redelivered_later")
                elif not self._sink.offer(event):  # type: ignore[union-attr]
                    self._inc("shed.sink")
        queue = self._queue
        if queue is not None and not self._stopping:
            # Messages that arrived on the dying connection. A persistent session gets the
            # unacknowledged QoS 1 ones again from the broker, so handing them over now
            # would only duplicate them.
            while queue.qsize():
                m = queue.get_nowait()
                if m.qos and self._persistent and self._manual_ack:
                    self._inc("dropped.redelivered_later")
                    continue
                self._handle(m, ack=False)

    def _on_connect_error(self, exc: BaseException, established: bool) -> None:
        now = self._clock.now()
        self._redeliver = False
        accepted = self._connack_at is not None
        if accepted:
            self._check_takeover(now)
        # While another client holds our id, every session ends this way: said once, above.
        level = logging.DEBUG if self._conflict else logging.WARNING
        if established:
            self._inc("disconnects")
            log.log(level, "mqtt %s: connection to %s lost: %s", self.name, self.config.url, exc)
        elif accepted:
            # Reachable (it sent CONNACK), so no "unreachable" event: the connection ended
            # before the subscriptions were confirmed.
            self._inc("connect_failures")
            log.log(level, "mqtt %s: %s accepted the connection, which ended before the subscriptions"
                    " were confirmed: %s", self.name, self.config.url, exc)
        else:
            self._inc("connect_failures")
            if not self._in_outage:
                log.warning("mqtt %s: cannot connect to %s: %s", self.name, self.config.url, exc)
            else:
                log.debug("mqtt %s: still cannot connect to %s: %s", self.name, self.config.url, exc)
            if not self._unreachable_reported:
                self._unreachable_reported = True
                self._emit("mqtt.broker_unreachable", now, {"url": self.config.url, "error": str(exc)[:200]})
        if not self._in_outage:
            self._in_outage = True
            self._call_hook(self.on_disconnected, now)

    def _check_takeover(self, now: float) -> None:
        """A session the broker accepted has ended (not by us): was it one of a takeover?"""
        rule = self._takeover
        started = self._connack_at
        t = asyncio.get_running_loop().time()
        if started is None or t - started >= rule.short_s or self._conflict:
            return
        ends = self._short_ends
        ends.append(t)
        if len(ends) < rule.sessions or t - ends[0] > rule.window_s:
            return
        self._conflict = True
        self._inc("client_id_conflicts")
        log.error(
            "mqtt %s: %s closed our connection %d times within %.0f s, each time less than %.0f s"
            " after accepting it: another client is connecting with our client id %r (a broker"
            " keeps only the newest connection per id); give each gateway its own client_id",
            self.name,
            self.config.url,
            len(ends),
            t - ends[0],
            rule.short_s,
            self.client_id,
        )
        self._emit(
            "mqtt.client_id_conflict",
            now,
            {"client_id": self.client_id, "url": self.config.url, "sessions": len(ends)},
        )

    def _on_stable(self, gen: int) -> None:
        """The session that began with ``gen`` stayed up for ``stable_s``: the conflict is over."""
        self._stable_timer = None
        if gen != self._gen or not self._connected or not self._conflict:
            return
        self._conflict = False
        self._short_ends.clear()
        log.info(
            "mqtt %s: connection to %s stayed up for %.0f s: client id %r no longer contested",
            self.name,
            self.config.url,
            self._takeover.stable_s,
            self.client_id,
        )
        self._emit(
            "mqtt.client_id_conflict_cleared",
            self._clock.now(),
            {"client_id": self.client_id, "url": self.config.url},
        )

    # ------------------------------------------------------------------ per message

    def _handle(self, message: aiomqtt.Message, ack: bool = True) -> None:
        """One message from aiomqtt (the reference path: one submit per QoS 1 message)."""
        self._inc("received")
        topic = message.topic.value
        payload = message.payload
        if not isinstance(payload, (bytes, bytearray)):
            payload = str(payload).encode()
        if topic.startswith("$SYS/"):
            self._on_sys(topic, bytes(payload), message.retain)
            return
        qos1 = message.qos > 0 and ack
        event = self._decode(topic, bytes(payload), qos1, message.mid, message.retain, self._clock.now())
        if event is None:
            return
        self._inc("accepted")
        if qos1 and self._manual_ack:
            self._submit(event, message.mid)
        elif not self._sink.offer(event):  # type: ignore[union-attr]
            self._inc("shed.sink")

    @property
    def _max_packet(self) -> int:
        """Largest PUBLISH the ``wire`` client buffers: the largest payload the decoder
        accepts plus the largest topic and packet id; anything bigger is rejected unread."""
        return self.config.max_payload_bytes + _MAX_PUBLISH_HEADER

    def _on_oversized(self, topic: bytes, qos: int, mid: int, size: int) -> None:
        """A PUBLISH the ``wire`` client read past (already acknowledged if QoS 1)."""
        self._inc("received")
        self._inc("rejected.oversized")
        self._log_reject(
            "oversized",
            "mqtt %s: rejected (oversized) on %r: packet of %d bytes, payload limit %d; discarded unread",
            self.name,
            topic,
            size,
            self.config.max_payload_bytes,
        )

    def _on_publishes(self, pubs: list[Publish]) -> None:
        """Everything one read of the ``wire`` client brought, in order.

        The events go to the sink together; the QoS 1 ones among them are acknowledged
        together by one commit callback (the sink's queue is FIFO, so "the group has
        committed" means every message in it has).
        """
        self._inc("received", len(pubs))
        decode = self._decode
        manual = self._manual_ack
        link = self._link
        now = self._clock.now()  # one receive time for one read
        events: list[Event] = []
        mids: list[int] = []  # per event: the packet id awaiting our PUBACK, or 0
        for topic, payload, qos, mid, retain, _dup in pubs:
            if topic.startswith(_SYS_PREFIX):
                self._on_sys(topic.decode("utf-8", "replace"), payload, retain)
                continue
            event = decode(topic, payload, qos > 0, mid, retain, now)
            if qos and not manual and link is not None:
                link.ack(mid)  # acknowledged on receipt (ack_after_commit = false)
            if event is not None:
                events.append(event)
                mids.append(mid if qos and manual else 0)
        if events:
            self._inc("accepted", len(events))
            self._hand_over(events, mids)

    def _hand_over(self, events: list[Event], mids: list[int]) -> None:
        if self._held is not None:  # still waiting for room: keep the order
            self._held[0].extend(events)
            self._held[1].extend(mids)
            return
        n = self._offer_group(events, mids, self._gen)
        if n == len(events):
            self._flow_control()
            return
        link, size = self._link, getattr(self._sink, "queue_size", 0)
        if link is not None and size:
            # Flow control: hold the rest of this read, stop reading, retry as the sink drains.
            self._held = (events[n:], mids[n:], self._gen)
            self._pause(link, size)
            return
        self._inc("shed.sink", len(events) - n)
        for m in mids[n:]:
            if m:
                self._nack(m)

    def _offer_group(self, events: list[Event], mids: list[int], gen: int) -> int:
        """Offer (or, with PUBACKs waiting, submit) ``events``; returns how many were taken."""
        sink = self._sink
        assert sink is not None
        if not any(mids):
            return sink.offer_many(events)
        group: list[int] = []
        n = sink.submit_many(events, lambda ok: self._settle_group(gen, group, ok))
        group.extend(m for m in mids[:n] if m)
        if group:
            self._inflight += len(group)
            self._inflight_zero.clear()
        return n

    def _settle_group(self, gen: int, mids: list[int], ok: bool) -> None:
        if not mids:
            return
        if gen != self._gen:
            self._inc("ack.stale", len(mids))
            return
        self._inflight -= len(mids) - 1
        self._done_inflight()
        if ok:
            for m in mids:
                self._ack(m)
            self._inc("acked", len(mids))
        else:
            self._inc("commit_failed", len(mids))
            for m in mids:
                self._nack(m)

    def _flow_control(self) -> None:
        """Stop reading while the sink's queue is nearly full (the broker holds the rest)."""
        sink, link = self._sink, self._link
        size = getattr(sink, "queue_size", 0)
        if link is not None and size and getattr(sink, "depth", 0) >= size * _PAUSE_AT:
            self._pause(link, size)

    def _pause(self, link: Link, size: int) -> None:
        if link.paused:
            return
        link.pause()
        self._inc("paused")
        loop = asyncio.get_running_loop()
        sink = self._sink

        def check() -> None:
            if link.is_closed or self._link is not link:
                return  # _leave_connection dealt with what was held
            held = self._held
            if held is not None:
                events, mids, gen = held
                n = self._offer_group(events, mids, gen)
                self._held = None if n == len(events) else (events[n:], mids[n:], gen)
            if self._held is None and getattr(sink, "depth", 0) <= size * _RESUME_AT:
                link.resume()
            else:
                loop.call_later(_RESUME_POLL_S, check)

        loop.call_later(_RESUME_POLL_S, check)

    def _decode(self, topic: str | bytes, payload: bytes, qos1: bool, mid: int, retain: bool, now: float) -> Event | None:
        """Decode one message received at ``now``; a rejected or ignored one is counted (and,
        ``qos1``, acknowledged at once: a poison message must not come back forever). The
        caller counts the accepted ones (the ``wire`` client a read's at once)."""
        decoder = self._decoder
        assert decoder is not None
        try:
            event = decoder.decode(topic, payload, now, retain)
        except Ignored as ign:
            self._inc(f"ignored.{ign.reason}")
        except Rejected as rej:
            self._inc(f"rejected.{rej.reason}")
            self._log_reject(
                rej.reason,
                "mqtt %s: rejected (%s) on %r: %s; sample %r",
                self.name,
                rej.reason,
                topic,
                rej.detail,
                bytes(payload[:80]),
            )
        except Exception:  # a decoder bug must cost one message, not the adapter
            self._inc("rejected.internal")
            log.exception("mqtt %s: internal error decoding %r", self.name, topic)
        else:
            if event.name == LOST:
                self._inc("lost_signals")
            return event
        if qos1:
            self._ack(mid)
        return None

    def _submit(self, event: Event, mid: int) -> None:
        gen = self._gen
        sink = self._sink
        assert sink is not None

        def on_commit(ok: bool) -> None:
            self._settle(gen, mid, ok)

        self._inflight += 1
        self._inflight_zero.clear()
        if not sink.submit(event, on_commit):
            self._inc("shed.sink")
            self._done_inflight()
            self._nack(mid)

    def _settle(self, gen: int, mid: int, ok: bool) -> None:
        if gen != self._gen:
            # The connection it came on is gone: a persistent session will redeliver it,
            # a clean one has forgotten it. Either way this PUBACK has nowhere to go.
            self._inc("ack.stale")
            return
        self._done_inflight()
        if ok:
            self._ack(mid)
            self._inc("acked")
        else:
            self._inc("commit_failed")
            self._nack(mid)

    def _done_inflight(self) -> None:
        self._inflight -= 1
        if self._inflight <= 0:
            self._inflight = 0
            self._inflight_zero.set()

    def _nack(self, mid: int) -> None:
        if self._persistent:
            # MQTT 3.1.1 has no negative PUBACK: leaving the connection is the only way to
            # have the broker send the message again.
            if not self._redeliver:
                self._redeliver = True
                self._kick()
        else:
            # Nothing can redeliver on a clean session; holding the PUBACK back would only
            # occupy one of the broker's in-flight slots for good.
            self._ack(mid)
            self._inc("lost.uncommitted")

    def _kick(self) -> None:
        """Make the consumer leave the connection even if no further message arrives."""
        if self._link is not None:
            self._link.close()
            return
        paho = self._paho
        if paho is not None:
            paho.disconnect()

    def _ack(self, mid: int) -> None:
        if not self._manual_ack:
            return
        if self._wire:
            if self._link is not None:
                self._link.ack(mid)
            return
        rc = self._paho.ack(mid, 1)
        if rc:
            self._inc("ack_failed")

    def _on_overflow(self, message: aiomqtt.Message) -> None:
        self._inc("shed.client_queue")
        self._log_reject(
            "shed.client_queue",
            "mqtt %s: client queue full (%d), shedding %r",
            self.name,
            self.config.queue_limit,
            message.topic.value,
        )
        if message.qos and self._manual_ack:
            # An unacknowledged message holds one of the broker's in-flight slots for this
            # session; treat it like a failed commit so the window never jams.
            self._nack(message.mid)

    def _on_sys(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic != SYS_DROPPED_TOPIC:
            return
        try:
            total = int(payload.strip() or b"0")
        except ValueError:
            self._inc("rejected.bad_sys")
            return
        prev = self._sys_dropped
        self._sys_dropped = total
        if prev is None:
            if retained:
                # Drops from before we first looked are the baseline, not news.
                return
            # Mosquitto publishes the counter only once it is non-zero: a live first
            # reading means drops happened while we were watching.
            prev = 0
        elif total < prev:
            # The broker restarted and its counter began again.
            prev = 0
        if total > prev:
            self._emit(
                "mqtt.broker_dropping",
                self._clock.now(),
                {"dropped": total, "delta": total - prev, "url": self.config.url},
            )

    async def _drain_on_stop(self) -> None:
        queue = self._queue
        if queue is not None:
            while queue.qsize():
                self._handle(queue.get_nowait())
        if self._inflight and self.config.stop_timeout_s > 0:
            try:
                await asyncio.wait_for(self._inflight_zero.wait(), self.config.stop_timeout_s)
            except TimeoutError:
                log.warning(
                    "mqtt %s: %d QoS 1 messages not committed at stop; the broker keeps them"
                    " only with a persistent session",
                    self.name,
                    self._inflight,
                )

    # ------------------------------------------------------------------ helpers

    def _emit(self, name: str, now: float, attrs: dict[str, Any]) -> None:
        sink = self._sink
        if sink is None:
            return
        if not sink.offer(Event(now, self.name, self._broker_device, name, attrs)):
            self._inc("shed.sink")

    def _call_hook(self, hook: Hook | None, now: float) -> None:
        if hook is None:
            return
        try:
            hook(now)
        except Exception:  # a watchdog bug must not stop the connection loop
            log.exception("mqtt %s: connection hook failed", self.name)

    def _make_queue_class(self) -> type[asyncio.Queue[aiomqtt.Message]]:
        adapter = self

        class _CountingQueue(asyncio.Queue):  # type: ignore[type-arg]
            """aiomqtt's incoming queue, bounded, counting what it sheds instead of dropping silently."""

            def __init__(self, maxsize: int = 0) -> None:
                super().__init__(maxsize)
                adapter._queue = self

            def put_nowait(self, item: aiomqtt.Message) -> None:
                if self.full():
                    adapter._on_overflow(item)
                    return
                super().put_nowait(item)

        return _CountingQueue


async def build(configs: Sequence[MqttConfig], ctx: AdapterContext) -> list[MqttAdapter]:
    """The ``[[adapters.mqtt]]`` clients (the factory named in ``adapters.REGISTRY``).

    Broker outages pause loss detection and reconnects re-arm the deadlines, so a broker
    restart does not look like every device going silent at once.
    """
    return [
        MqttAdapter(c, ctx.clock, on_connected=ctx.broker_up, on_disconnected=ctx.broker_down,
                    default_client_id=default_client_id(ctx.instance, c.name))
        for c in configs
    ]
