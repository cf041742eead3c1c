"""MQTT adapter: reconnect loop, topic template -> device id, JSON payload -> Event.

Shape of the adapter::

    MqttAdapter.start(sink) -> task _run():
        while not stopping:                                   # the visible reconnect loop
            one session (client = "wire": link.Link; client = "aiomqtt": aiomqtt.Client):
                CONNECT, subscribe every Subscription (and $SYS when watch_sys)
                wire:    each socket read -> StreamParser -> decode all -> sink.offer_many
                         (QoS 0) | sink.submit_many + one PUBACK group on commit (QoS 1)
                aiomqtt: per message -> decode -> sink.offer | sink.submit + PUBACK on commit
            on a connection error: count, hooks, capped exponential backoff with jitter

Two receive paths, one behaviour. ``client = "wire"`` (default) is the gateway's own MQTT
3.1.1 subscriber (:mod:`adapters.mqtt.wire` codec, :mod:`adapters.mqtt.link` connection): it
parses everything one ``recv`` brought in one loop and hands it to the sink as one list, ~3x
the rate of the aiomqtt path (BENCHMARKS.md). ``client = "aiomqtt"`` is aiomqtt 2.5 on paho,
kept as the reference: every adapter test runs on both, a differential test feeds both the
same stream from one broker and requires identical events and counters, and the codec is
checked byte for byte against paho (``tests/unit/test_mqtt_wire.py``).

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
* **Acknowledgement** (``wire``): the PUBACKs of the QoS 1 messages of one read are sent
  together from ONE commit callback (``submit_many``: the sink's queue is FIFO, so once the
  group's last event has committed, all of them have), written in one ``write``.
* **Acknowledgement** (``aiomqtt``): aiomqtt 2.5 does not expose manual acknowledgement, but the paho
  client underneath it does (``manual_ack_set`` / ``ack(mid, qos)``). With
  ``ack_after_commit`` (default) the adapter switches it on through aiomqtt's private
  ``_client`` attribute (aiomqtt is pinned to 2.5.x) and sends the PUBACK of a QoS 1
  message only from the sink's ``on_commit(True)``, on the connection it arrived on. A
  message the sink sheds or fails to commit is not acknowledged: with a persistent session
  (``clean_session = false``) the adapter reconnects so the broker redelivers it
  (at-least-once; duplicates possible); with a clean session nothing could redeliver it, so
  it is acknowledged to free the broker's in-flight window and counted as lost. Rejected
  messages are acknowledged at once (a poison message must not come back forever).
* **Backpressure** (``wire``): reading from the socket stops (``paused``) while the sink's
  queue is 3/4 full, and what a read brought beyond the sink's room is held until it drains:
  TCP pushes back on the broker, which queues per its own limits and reports what it drops
  in ``$SYS`` (see ``watch_sys``). Nothing is shed in the adapter.
* **Backpressure** (``aiomqtt``): aiomqtt's incoming queue is bounded by ``queue_limit`` with a queue
  class that counts overflow (``shed.client_queue``) instead of aiomqtt's silent drop.
* **Outages**: the first failed connect of an outage emits ONE ``mqtt.broker_unreachable``
  event (device ``broker:HOST:PORT``), the next successful connect ``mqtt.broker_restored``;
  ``on_disconnected(now)`` / ``on_connected(now)`` tell the liveness watchdog.
* **Client id**: ``client_id``, else the ``default_client_id`` the gateway passes in
  (``gateway-<instance>-<host name>``, :func:`~adapters.mqtt.config.default_client_id`). A
  broker keeps one connection per id, so a second client with ours takes the connection
  away, and we take it back: 3 sessions closed by the broker within 5 s of their CONNACK,
  within a minute (:class:`~adapters.mqtt.adapter.TakeoverRule`), emit ONE
  ``mqtt.client_id_conflict`` and log one error naming the id and the broker (the per-loss
  lines drop to debug); a session that stays up a minute emits
  ``mqtt.client_id_conflict_cleared``.
* **Broker drops** (``watch_sys``): Mosquitto publishes ``$SYS/broker/publish/messages/dropped``
  (retained, only once non-zero, every ``sys_interval`` seconds); an increase emits
  ``mqtt.broker_dropping`` with the totals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.mqtt.config import MqttConfig, MqttSubscription, MqttTls, default_client_id
from adapters.mqtt.decode import Ignored, PayloadDecoder, Rejected, parse_ts
from adapters.mqtt.topics import TopicTemplate

if TYPE_CHECKING:
    from adapters.mqtt.adapter import SYS_DROPPED_TOPIC, MqttAdapter, TakeoverRule

__all__ = [
    "SYS_DROPPED_TOPIC",
    "Ignored",
    "MqttAdapter",
    "MqttConfig",
    "MqttSubscription",
    "MqttTls",
    "PayloadDecoder",
    "Rejected",
    "TakeoverRule",
    "TopicTemplate",
    "default_client_id",
    "parse_ts",
]


def __getattr__(name: str) -> Any:
    # The adapter (and aiomqtt with it) loads on first use: ``gateway.config`` imports
    # ``adapters.mqtt.config``, which runs this file, and must not pay for the client.
    if name in ("MqttAdapter", "SYS_DROPPED_TOPIC", "TakeoverRule"):
        import importlib

        return getattr(importlib.import_module("adapters.mqtt.adapter"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
