"""MQTT adapter: aiomqtt reconnect loop, topic template -> device id, JSON payload -> Event.

Shape of the adapter::

    MqttAdapter.start(sink) -> task _run():
        while not stopping:                                   # the visible reconnect loop
            async with aiomqtt.Client(...) as client:         # one Client per connection
                subscribe every Subscription (and $SYS when watch_sys)
                async for message in client.messages:         # then drain what is queued
                    decode -> Event -> sink.offer (QoS 0) | sink.submit + PUBACK on commit (QoS 1)
            on MqttError: count, hooks, capped exponential backoff with jitter

Decisions worth knowing (each one has a counter in :meth:`MqttAdapter.stats`):

* **Topic templates** such as ``site/{site}/device/{device}/heartbeat`` compile to an MQTT
  filter (placeholders become ``+``) and a positional matcher (split on ``/``, compare the
  literal levels, pick the placeholder levels; no regex). ``{device}`` is the device id;
  other placeholders become event attributes and win over payload fields of the same name.
  ``+`` matches a level anonymously and a final ``#`` any tail. A template without
  ``{device}`` needs a string ``device`` field in the payload. When templates overlap, the
  first matching subscription in configuration order decides the kind.
* **Payloads** must be JSON objects (UTF-8, at most ``max_payload_bytes``). Strings,
  numbers and booleans become attributes, ``null`` fields are dropped. Nested objects are
  flattened ONE level with a dot (``{"battery": {"level": 80}}`` -> ``battery.level``);
  arrays, deeper nesting, ``NaN``/``Infinity`` reject the message (``rejected.bad_type``,
  ``rejected.not_json``): the rule engine matches on flat scalars, and a vendor format we
  do not understand should be loud, not half-read. An empty payload is a plain heartbeat on
  a ``heartbeat`` subscription. The size check runs after paho has read the packet: the
  broker's ``max_packet_size`` is what protects memory from a huge one.
* **Retained messages** (replayed by the broker on subscribe) are old news: a retained
  heartbeat without a trustworthy device ``ts`` is dropped (``ignored.retained_heartbeat``),
  other retained messages are passed on with ``retained=True`` in their attributes.
* **Device time**: a ``ts`` field (epoch s/ms/us, or ISO-8601; naive = UTC) is used when it
  is at most ``ts_max_future_s`` ahead and ``ts_max_age_s`` behind the receive time;
  otherwise the receive time is used and ``ts_insane`` counted.
* **Immediate loss**: on an ``lwt`` or ``status`` subscription, an empty payload (``lwt``
  only), one of ``offline_payloads`` (case-insensitive) or an object with
  ``"state": "offline"`` becomes ``heartbeat.lost`` with ``reason="lwt"``. Other short plain
  text on an ``lwt`` topic (``online``) becomes a ``status`` event with ``state``.
* **Acknowledgement**: aiomqtt 2.5 does not expose manual acknowledgement, but the paho
  client underneath it does (``manual_ack_set`` / ``ack(mid, qos)``). With
  ``ack_after_commit`` (default) the adapter switches it on through aiomqtt's private
  ``_client`` attribute (aiomqtt is pinned to 2.5.x) and sends the PUBACK of a QoS 1
  message only from the sink's ``on_commit(True)``, on the connection it arrived on. A
  message the sink sheds or fails to commit is not acknowledged: with a persistent session
  (``clean_session = false``) the adapter reconnects so the broker redelivers it
  (at-least-once; duplicates possible); with a clean session nothing could redeliver it, so
  it is acknowledged to free the broker's in-flight window and counted as lost. Rejected
  messages are acknowledged at once (a poison message must not come back forever).
* **Backpressure**: aiomqtt's incoming queue is bounded by ``queue_limit`` with a queue
  class that counts overflow (``shed.client_queue``) instead of aiomqtt's silent drop.
* **Outages**: the first failed connect of an outage emits ONE ``mqtt.broker_unreachable``
  event (device ``broker:HOST:PORT``), the next successful connect ``mqtt.broker_restored``;
  ``on_disconnected(now)`` / ``on_connected(now)`` tell the liveness watchdog.
* **Broker drops** (``watch_sys``): Mosquitto publishes ``$SYS/broker/publish/messages/dropped``
  (retained, only once non-zero, every ``sys_interval`` seconds); an increase emits
  ``mqtt.broker_dropping`` with the totals.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import aiomqtt
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from adapters.base import EventSink
from gateway.clock import Clock, SystemClock
from gateway.model import Event

__all__ = [
    "SYS_DROPPED_TOPIC",
    "Ignored",
    "MqttAdapter",
    "MqttConfig",
    "MqttSubscription",
    "MqttTls",
    "PayloadDecoder",
    "Rejected",
    "TopicTemplate",
]

log = logging.getLogger(__name__)

SYS_DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"

Kind = Literal["heartbeat", "status", "alarm", "lwt"]
_EVENT_NAME: dict[str, str] = {
    "heartbeat": "heartbeat",
    "status": "status",
    "alarm": "alarm",
    "lwt": "status",
}
_LOST = "heartbeat.lost"
_LWT_TEXT_MAX = 64


# ====================================================================== configuration


class MqttTls(BaseModel):
    """TLS settings for ``mqtts://`` URLs.

    Attributes:
        ca_file: CA bundle to verify the broker with; the system store when unset.
        cert_file: client certificate (PEM) for mutual TLS.
        key_file: private key of ``cert_file``.
        insecure: skip certificate and host name verification (test brokers only).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False

    @model_validator(mode="after")
    def _key_needs_cert(self) -> MqttTls:
        if self.key_file and not self.cert_file:
            raise ValueError("key_file given without cert_file")
        return self


class MqttSubscription(BaseModel):
    """One subscription: a topic template, its QoS and what its messages mean.

    Attributes:
        topic: topic template, e.g. ``site/{site}/device/{device}/heartbeat``; placeholders
            span one level, ``+`` is an anonymous level, a final ``#`` matches any tail.
        qos: 0 (offered, may be shed) or 1 (acknowledged after commit).
        kind: ``heartbeat`` | ``status`` | ``alarm`` | ``lwt`` (last-will / online topic).
        shared_group: subscribe as ``$share/<group>/<filter>`` so several gateways split
            the load.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    qos: Literal[0, 1] = 0
    kind: Kind = "heartbeat"
    shared_group: str | None = None

    @field_validator("topic")
    @classmethod
    def _compiles(cls, v: str) -> str:
        TopicTemplate.compile(v)
        return v

    @field_validator("shared_group")
    @classmethod
    def _group_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or any(c in v for c in "/+#")):
            raise ValueError("shared_group must be non-empty and contain no '/', '+' or '#'")
        return v

    @property
    def template(self) -> TopicTemplate:
        """The compiled template."""
        return TopicTemplate.compile(self.topic)

    @property
    def subscribe_filter(self) -> str:
        """What is sent to the broker (with the ``$share`` prefix when grouped)."""
        f = self.template.filter
        return f"$share/{self.shared_group}/{f}" if self.shared_group else f


class MqttConfig(BaseModel):
    """Configuration of one MQTT adapter instance (``[[adapters.mqtt]]``).

    Attributes:
        name: adapter instance name; the ``source`` of its events.
        url: ``mqtt://host[:1883]`` or ``mqtts://host[:8883]``.
        client_id: MQTT client id; required with ``clean_session = false``.
        username: broker user name.
        password: broker password.
        tls: TLS settings (``mqtts://`` only).
        clean_session: ``false`` keeps the session (subscriptions and unacknowledged QoS 1
            messages) across reconnects: needed for at-least-once delivery.
        keepalive: MQTT keepalive in seconds.
        subscriptions: what to subscribe to (at least one).
        max_payload_bytes: larger payloads are rejected (``rejected.oversized``).
        max_attrs: payloads with more fields are rejected (``rejected.too_many_fields``).
        reconnect_min_s: first reconnect delay.
        reconnect_max_s: cap of the exponentially growing reconnect delay.
        connect_timeout_s: how long to wait for CONNACK / SUBACK.
        start_wait_s: how long ``start()`` waits for the first connection attempt to
            finish; a broker that is down never blocks start-up longer than this.
        unknown_devices: ``accept`` (keep the raw id) or ``ignore`` (drop and count).
        queue_limit: bound of the client's incoming queue (overflow is counted).
        offline_payloads: payloads on ``lwt``/``status`` topics meaning "device offline".
        ts_field: payload field holding the device's own timestamp.
        ts_max_future_s: device timestamps further ahead than this are not trusted.
        ts_max_age_s: device timestamps older than this are not trusted.
        ack_after_commit: acknowledge QoS 1 messages only after the store commit.
        stop_timeout_s: how long ``stop()`` waits for pending commits to be acknowledged.
        watch_sys: watch Mosquitto's dropped-message counter and report increases.
        log_samples_per_minute: at most this many log lines per minute per reject reason.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "mqtt"
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    tls: MqttTls | None = None
    clean_session: bool = True
    keepalive: int = Field(default=30, ge=5, le=3600)
    subscriptions: list[MqttSubscription] = Field(min_length=1)
    max_payload_bytes: int = Field(default=65536, ge=16)
    max_attrs: int = Field(default=64, ge=1)
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    start_wait_s: float = Field(default=3.0, ge=0)
    unknown_devices: Literal["accept", "ignore"] = "accept"
    queue_limit: int = Field(default=10_000, ge=1)
    offline_payloads: list[str] = Field(default_factory=lambda: ["offline", '{"state":"offline"}'])
    ts_field: str = "ts"
    ts_max_future_s: float = Field(default=300.0, ge=0)
    ts_max_age_s: float = Field(default=86_400.0, ge=0)
    ack_after_commit: bool = True
    stop_timeout_s: float = Field(default=5.0, ge=0)
    watch_sys: bool = False
    log_samples_per_minute: int = Field(default=10, ge=0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("url must start with mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("url has no host")
        try:
            parts.port  # noqa: B018 -- urlsplit validates the port lazily
        except ValueError as exc:
            raise ValueError(f"bad port in url: {exc}") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("url must be mqtt[s]://host[:port] with nothing after it")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> MqttConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if self.tls is not None and not self.tls_enabled:
            raise ValueError("tls settings given but url is not mqtts://")
        if not self.clean_session and not self.client_id:
            raise ValueError("clean_session = false needs a fixed client_id")
        return self

    @property
    def host(self) -> str:
        """Broker host from ``url``."""
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """Broker port from ``url`` (1883 / 8883 by scheme when absent)."""
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls_enabled(self) -> bool:
        """Whether ``url`` asks for TLS."""
        return urlsplit(self.url).scheme == "mqtts"


# ====================================================================== topic templates


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    """A compiled topic template: an MQTT filter plus a positional matcher.

    Attributes:
        template: the source text.
        filter: the MQTT subscription filter (placeholders replaced by ``+``).
        levels: number of levels, ``#`` included.
        tail: whether the last level is ``#``.
        literals: ``(position, text)`` of the fixed levels.
        captures: ``(position, name)`` of the placeholders other than ``device``.
        device_pos: position of ``{device}``, or ``None``.
    """

    template: str
    filter: str
    levels: int
    tail: bool
    literals: tuple[tuple[int, str], ...]
    captures: tuple[tuple[int, str], ...]
    device_pos: int | None

    @staticmethod
    def compile(template: str) -> TopicTemplate:
        """Compile ``template``.

        Raises:
            ValueError: for empty templates, ``$`` topics, placeholders that are not a whole
                level, duplicate or malformed names, ``#`` not at the end, or wildcard
                characters inside a literal level.
        """
        if not template:
            raise ValueError("empty topic template")
        if template.startswith("$"):
            raise ValueError("templates cannot start with '$' (use shared_group for $share)")
        levels = template.split("/")
        literals: list[tuple[int, str]] = []
        captures: list[tuple[int, str]] = []
        device_pos: int | None = None
        names: set[str] = set()
        filt: list[str] = []
        tail = False
        for pos, lvl in enumerate(levels):
            if lvl == "#":
                if pos != len(levels) - 1:
                    raise ValueError(f"'#' must be the last level in {template!r}")
                tail = True
                filt.append("#")
            elif lvl == "+":
                filt.append("+")
            elif lvl.startswith("{") and lvl.endswith("}"):
                name = lvl[1:-1]
                if not name.isidentifier():
                    raise ValueError(f"placeholder {lvl!r} in {template!r} is not a valid name")
                if name in names:
                    raise ValueError(f"placeholder {{{name}}} appears twice in {template!r}")
                names.add(name)
                if name == "device":
                    device_pos = pos
                else:
                    captures.append((pos, name))
                filt.append("+")
            elif any(c in lvl for c in "{}+#"):
                raise ValueError(f"level {lvl!r} of {template!r} mixes text and wildcards/placeholders")
            else:
                literals.append((pos, lvl))
                filt.append(lvl)
        return TopicTemplate(
            template=template,
            filter="/".join(filt),
            levels=len(levels),
            tail=tail,
            literals=tuple(literals),
            captures=tuple(captures),
            device_pos=device_pos,
        )

    def match(self, parts: Sequence[str]) -> bool:
        """Whether a topic, split on ``/``, matches this template's filter."""
        n = len(parts)
        if self.tail:
            # MQTT: "a/#" also matches "a" itself.
            if n < self.levels - 1:
                return False
        elif n != self.levels:
            return False
        for pos, text in self.literals:
            if parts[pos] != text:
                return False
        return True


# ====================================================================== payload decoding


class Rejected(Exception):
    """A message the adapter refuses; ``reason`` is the counter suffix (``rejected.<reason>``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Ignored(Exception):
    """A well-formed message the adapter drops on purpose; counted as ``ignored.<reason>``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _no_constants(token: str) -> Any:
    raise ValueError(f"{token} is not a number")


# One decoder for all messages: json.loads(..., parse_constant=...) would build a new one
# per call, which costs as much as the parse of a small heartbeat.
_JSON = json.JSONDecoder(parse_constant=_no_constants)
_SCALARS = frozenset((str, int, float, bool))


def parse_ts(value: object) -> float | None:
    """Epoch seconds from a device timestamp (s, ms, us or ns; or ISO-8601), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            t = float(value)
        except ValueError:
            try:
                dt = datetime.fromisoformat(value)
            except ValueError:
                return None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            return dt.timestamp()
    elif isinstance(value, (int, float)):
        t = float(value)
    else:
        return None
    if not math.isfinite(t):
        return None
    # 1e11 s is the year 5138 while 1e11 ms is 1973: magnitude tells the unit apart.
    if t > 1e17:
        t /= 1e9
    elif t > 1e14:
        t /= 1e6
    elif t > 1e11:
        t /= 1e3
    return t


class PayloadDecoder:
    """Turns one message (topic parts + payload) into an Event; pure apart from ``lookup``.

    Args:
        config: the adapter configuration.
        lookup: maps a raw device id to an inventory id (``None`` when unknown).
    """

    __slots__ = ("_cfg", "_offline", "_offline_max", "_source", "_subs", "lookup", "ts_insane", "unknown")

    def __init__(self, config: MqttConfig, lookup: Callable[[str], str | None]) -> None:
        self._cfg = config
        self._subs = [(s.template, s.kind) for s in config.subscriptions]
        self._offline = frozenset(p.strip().lower() for p in config.offline_payloads)
        self._offline_max = max((len(p.encode()) for p in self._offline), default=0)
        self._source = config.name
        self.lookup = lookup
        self.ts_insane = 0
        self.unknown = 0

    def decode(self, topic: str, payload: bytes, now: float, retained: bool = False) -> Event:
        """Decode one message received at ``now``.

        Args:
            topic: the message's topic.
            payload: the message's payload.
            now: receive time, epoch seconds.
            retained: the broker replayed it from its retained store (on subscribe).

        Returns:
            The event. Events from retained messages carry ``retained=True``.

        Raises:
            Rejected: the message is bad; ``reason`` says why.
            Ignored: the device is unknown and ``unknown_devices`` is ``ignore``
                (``unknown_device``), or it is a retained heartbeat without a trustworthy
                device timestamp (``retained_heartbeat``): it says the device was alive at
                some unknown past time, which is no liveness signal now.
        """
        cfg = self._cfg
        if len(payload) > cfg.max_payload_bytes:
            raise Rejected("oversized", f"{len(payload)} bytes")
        parts = topic.split("/")
        for tmpl, kind in self._subs:
            if tmpl.match(parts):
                break
        else:
            raise Rejected("bad_topic", "matches no subscription")
        attrs: dict[str, Any] = {}
        raw_device: str | None = None
        if tmpl.device_pos is not None:
            raw_device = parts[tmpl.device_pos]
            if not raw_device:
                raise Rejected("bad_topic", "empty device level")
        name = _EVENT_NAME[kind]
        ts = now
        device_time = False
        body = payload.strip()

        if (kind == "lwt" or kind == "status") and (
            (not body and kind == "lwt")
            or (len(body) <= self._offline_max and body.decode("utf-8", "replace").lower() in self._offline)
        ):
            name = _LOST
            attrs["reason"] = "lwt"
            body = b""
        if body:
            try:
                obj = _JSON.decode(body.decode())
            except ValueError:  # UnicodeDecodeError included
                if kind == "lwt" and len(body) <= _LWT_TEXT_MAX and body.isascii() and body.isalnum():
                    obj = {"state": body.decode().lower()}
                else:
                    raise Rejected("not_json") from None
            if not isinstance(obj, dict):
                raise Rejected("not_object", type(obj).__name__)
            if len(obj) > cfg.max_attrs:
                raise Rejected("too_many_fields", str(len(obj)))
            ts_field = cfg.ts_field
            for k, v in obj.items():
                if type(v) in _SCALARS:
                    attrs[k] = v
                elif v is None:
                    continue
                elif type(v) is dict:
                    for k2, v2 in v.items():
                        if type(v2) in _SCALARS:
                            attrs[f"{k}.{k2}"] = v2
                        elif v2 is not None:
                            raise Rejected("bad_type", f"{k}.{k2} is {type(v2).__name__}")
                else:
                    raise Rejected("bad_type", f"{k} is {type(v).__name__}")
            if len(attrs) > cfg.max_attrs:
                raise Rejected("too_many_fields", str(len(attrs)))
            if ts_field in attrs:
                t = parse_ts(attrs.pop(ts_field))
                if t is not None and now - cfg.ts_max_age_s <= t <= now + cfg.ts_max_future_s:
                    ts = t
                    device_time = True
                else:
                    self.ts_insane += 1
            if name != _LOST and (kind == "status" or kind == "lwt") and attrs.get("state") == "offline":
                name = _LOST
                attrs["reason"] = "lwt"
            if raw_device is None:
                dev = attrs.get("device")
                if isinstance(dev, str) and dev:
                    raw_device = dev
        elif kind in ("status", "alarm") and name != _LOST:
            raise Rejected("empty", f"empty {kind} payload")
        if raw_device is None:
            raise Rejected("no_device", "no {device} level and no device field")
        if retained:
            if name == "heartbeat" and not device_time:
                raise Ignored("retained_heartbeat")
            attrs["retained"] = True
        for pos, cap in tmpl.captures:
            attrs[cap] = parts[pos]
        device = self.lookup(raw_device)
        if device is None:
            if cfg.unknown_devices == "ignore":
                raise Ignored("unknown_device")
            self.unknown += 1
            device = raw_device
        return Event(ts, self._source, device, name, attrs)


# ====================================================================== the adapter


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

    Attributes:
        name: the adapter instance name (``config.name``).
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
    ) -> None:
        self.config = config
        self.name = config.name
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
        ``redeliveries``; plus the gauges ``connected`` and ``inflight``.
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
        client = aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            identifier=cfg.client_id,
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
        while not self._stopping:
            established = False
            redeliver = False
            try:
                client = self._make_client()
                async with client:
                    await self._subscribe_all(client)
                    established = True
                    self._on_connect_ok()
                    attempt = 0
                    try:
                        await self._consume(client)
                    except asyncio.CancelledError:
                        await self._drain_on_stop()
                        raise
                    finally:
                        self._leave_connection()
            except (aiomqtt.MqttError, _Redeliver) as exc:
                if self._redeliver and established:
                    redeliver = True
                else:
                    self._on_connect_error(exc, established)
            except (OSError, ssl.SSLError) as exc:
                self._on_connect_error(exc, established)
            finally:
                self._first_attempt.set()
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

    async def _subscribe_all(self, client: aiomqtt.Client) -> None:
        # A clean session forgets subscriptions on every connect, and a persistent one may
        # have been expired by the broker: subscribing again is always correct.
        topics: list[tuple[str, int]] = [(s.subscribe_filter, s.qos) for s in self.config.subscriptions]
        if self.config.watch_sys:
            topics.append((SYS_DROPPED_TOPIC, 0))
        granted = await client.subscribe(topics)
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
        self._call_hook(self.on_connected, now)

    def _leave_connection(self) -> None:
        """End of one connection: later commit callbacks must not PUBACK on the next one."""
        self._connected = False
        self._connected_event.clear()
        self._gen += 1
        self._inflight = 0
        self._inflight_zero.set()
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
        if established:
            self._inc("disconnects")
            log.warning("mqtt %s: connection to %s lost: %s", self.name, self.config.url, exc)
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

    # ------------------------------------------------------------------ per message

    def _handle(self, message: aiomqtt.Message, ack: bool = True) -> None:
        self._inc("received")
        topic = message.topic.value
        payload = message.payload
        if not isinstance(payload, (bytes, bytearray)):
            payload = str(payload).encode()
        qos1 = message.qos > 0 and ack
        if topic.startswith("$SYS/"):
            self._on_sys(topic, bytes(payload), message.retain)
            return
        decoder = self._decoder
        assert decoder is not None and self._sink is not None
        try:
            event = decoder.decode(topic, bytes(payload), self._clock.now(), message.retain)
        except Ignored as ign:
            self._inc(f"ignored.{ign.reason}")
            if qos1:
                self._ack(message.mid)
            return
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
            if qos1:
                self._ack(message.mid)
            return
        except Exception:  # a decoder bug must cost one message, not the adapter
            self._inc("rejected.internal")
            log.exception("mqtt %s: internal error decoding %r", self.name, topic)
            if qos1:
                self._ack(message.mid)
            return
        self._inc("accepted")
        if event.name == _LOST:
            self._inc("lost_signals")
        if qos1 and self._manual_ack:
            self._submit(event, message.mid)
        elif not self._sink.offer(event):
            self._inc("shed.sink")

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
        paho = self._paho
        if paho is not None:
            paho.disconnect()

    def _ack(self, mid: int) -> None:
        if not self._manual_ack:
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
