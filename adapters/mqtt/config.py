"""Configuration of the MQTT adapter (``[[adapters.mqtt]]``): broker, TLS, subscriptions, limits."""

from __future__ import annotations

import hashlib
import re
import socket
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from adapters.mqtt.topics import TopicTemplate

__all__ = ["Kind", "MqttConfig", "MqttSubscription", "MqttTls", "default_client_id"]

Kind = Literal["heartbeat", "status", "alarm", "lwt"]

#: Longest client id :func:`default_client_id` makes. MQTT 3.1.1 obliges brokers to take only
#: 23 alphanumerics but lets them take more; Mosquitto, EMQX and HiveMQ take up to 65535 bytes,
#: AWS IoT and Azure IoT Hub 128.
MAX_DEFAULT_CLIENT_ID = 64
_ID_UNSAFE = re.compile(r"[^0-9A-Za-z._-]+")


def default_client_id(instance: str, adapter: str = "mqtt", host: str | None = None) -> str:
    """The client id of an adapter that configures none: ``gateway-<instance>-<host name>``.

    Unique per gateway (two gateways on one broker differ in instance or host) and stable
    across restarts on the same host, so a persistent session finds its queued messages
    again. An adapter not named ``mqtt`` adds its name, so two adapters of one gateway on one
    broker differ too. Characters other than ``0-9 A-Z a-z . _ -`` become ``-``; when that
    changed anything, or the id would be longer than :data:`MAX_DEFAULT_CLIENT_ID`, it is
    shortened and ends in 8 hex digits of a hash of the full form instead.

    Args:
        instance: ``gateway.instance``.
        adapter: the adapter's ``name``.
        host: the host name (``socket.gethostname()`` when ``None``).
    """
    host = socket.gethostname() if host is None else host
    raw = "-".join(["gateway", instance, *([adapter] if adapter != "mqtt" else []), host])
    safe = _ID_UNSAFE.sub("-", raw)
    if safe == raw and len(safe) <= MAX_DEFAULT_CLIENT_ID:
        return safe
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{safe[: MAX_DEFAULT_CLIENT_ID - 9].rstrip('-')}-{digest}"


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
        client_id: MQTT client id; must be unique on the broker (a broker closes the older of
            two connections with one id). Unset: ``gateway-<instance>-<host name>``, made by
            :func:`default_client_id` and passed in by the gateway at construction.
        username: broker user name.
        password: broker password.
        tls: TLS settings (``mqtts://`` only).
        clean_session: ``false`` keeps the session (subscriptions and unacknowledged QoS 1
            messages) across reconnects: needed for at-least-once delivery. The broker finds
            the session by client id: the default one is stable while ``gateway.instance``
            and the host name are; where the host name changes on every start (containers),
            set ``client_id``.
        keepalive: MQTT keepalive in seconds.
        subscriptions: what to subscribe to (at least one).
        max_payload_bytes: larger payloads are rejected (``rejected.oversized``) and, if
            QoS 1, acknowledged; the connection stays up. The ``wire`` client reads past a
            PUBLISH larger than this plus 64 KiB (the largest topic) without buffering it.
        max_attrs: payloads with more fields are rejected (``rejected.too_many_fields``).
        reconnect_min_s: first reconnect delay.
        reconnect_max_s: cap of the exponentially growing reconnect delay.
        connect_timeout_s: how long to wait for CONNACK / SUBACK.
        start_wait_s: how long ``start()`` waits for the first connection attempt to
            finish; a broker that is down never blocks start-up longer than this.
        unknown_devices: ``accept`` (keep the raw id) or ``ignore`` (drop and count).
        queue_limit: bound of the aiomqtt client's incoming queue (overflow is counted); the
            wire client pauses reading instead.
        offline_payloads: payloads on ``lwt``/``status`` topics meaning "device offline".
        ts_field: payload field holding the device's own timestamp.
        ts_max_future_s: device timestamps further ahead than this are not trusted.
        ts_max_age_s: device timestamps older than this are not trusted.
        ack_after_commit: acknowledge QoS 1 messages only after the store commit.
        stop_timeout_s: how long ``stop()`` waits for pending commits to be acknowledged.
        watch_sys: watch Mosquitto's dropped-message counter and report increases.
        log_samples_per_minute: at most this many log lines per minute per reject reason.
        client: the receive path: ``wire`` (default; the gateway's own MQTT 3.1.1 subscriber
            connection, batched reads) or ``aiomqtt`` (aiomqtt 2.5 on paho, the reference it
            is tested against). Both behave the same; ``wire`` costs a fraction per message.
        identity: ``any`` (default) or ``topic``: the device is the topic's ``{device}``
            level only, which broker ACLs bind to the connection (Mosquitto:
            ``pattern write site/+/device/%u/#``); every subscription must then have a
            ``{device}`` level, and a payload whose ``device`` field names another device
            is rejected (``rejected.identity_mismatch``).
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
    client: Literal["wire", "aiomqtt"] = "wire"
    identity: Literal["any", "topic"] = "any"

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
        if self.identity == "topic":
            for i, sub in enumerate(self.subscriptions):
                if sub.template.device_pos is None:
                    raise ValueError(
                        f'identity = "topic" needs a {{device}} level in every subscription topic '
                        f"(subscriptions[{i}] {sub.topic!r} has none)"
                    )
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
