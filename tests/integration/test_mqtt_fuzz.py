"""Junk through a real Mosquitto: hypothesis-generated topics, payloads and QoS published to a
running MqttAdapter. It stays connected, counts every message as accepted, rejected or
ignored by reason, and still accepts a valid heartbeat afterwards."""

from __future__ import annotations

import asyncio
import uuid

import aiomqtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.mqtt import MqttAdapter
from tests.helpers import eventually
from tests.integration.test_mqtt_adapter import ListSink, make_config
from tests.mqtt_payloads import IGNORED, REJECTED, payloads

#: Random messages per example; four examples make a few hundred.
BATCH = 100

# Topic levels Mosquitto accepts from a publisher (no wildcards, NUL or control characters),
# empty ones included: those reach the adapter and are its to reject.
_level = st.text(st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/+#"), max_size=8)
_suffix = st.one_of(
    st.builds("site/{}/device/{}/heartbeat".format, _level, _level),
    st.builds("dev/{}/status".format, _level),
    st.builds("lwt/{}".format, _level),
    st.builds("alarm/{}".format, _level),
)
messages = st.lists(st.tuples(_suffix, payloads(), st.sampled_from([0, 1])), min_size=BATCH, max_size=BATCH)
#: Sent with every batch: nesting past the recursion limit, a float overflow, an oversized body.
NASTY = [
    ("site/hq/device/d1/heartbeat", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", 1),
    ("dev/d1/status", b'{"v": 1e400}', 1),
    ("site/hq/device/d1/heartbeat", b'{"a": "' + b"x" * 70_000 + b'"}', 0),
]


def subscriptions(prefix: str) -> list[dict[str, object]]:
    return [
        {"topic": f"{prefix}/site/{{site}}/device/{{device}}/heartbeat"},
        {"topic": f"{prefix}/dev/{{device}}/status", "kind": "status", "qos": 1},
        {"topic": f"{prefix}/lwt/{{device}}", "kind": "lwt", "qos": 1},
        {"topic": f"{prefix}/alarm/#", "kind": "alarm", "qos": 1},
    ]


def outcomes(stats: dict[str, int]) -> dict[str, int]:
    """The per-message outcome counters: accepted, rejected.<reason>, ignored.<reason>."""
    return {k: v for k, v in stats.items() if k == "accepted" or k.startswith(("rejected.", "ignored."))}


async def scenario(host: str, port: int, batch: list[tuple[str, bytes, int]]) -> None:
    prefix = f"fz-{uuid.uuid4().hex[:12]}"
    batch = batch + NASTY
    sink = ListSink()
    adapter = MqttAdapter(make_config(f"mqtt://{host}:{port}", subscriptions(prefix)))
    await adapter.start(sink)
    try:
        assert adapter.connected
        async with aiomqtt.Client(host, port) as pub:
            for suffix, payload, qos in batch:
                await pub.publish(f"{prefix}/{suffix}", payload, qos=qos)
            await eventually(lambda: adapter.stats().get("received", 0) >= len(batch), 20, what="every message")
            counted = outcomes(adapter.stats())
            assert sum(counted.values()) == len(batch) == adapter.stats()["received"], counted
            reasons = {k.split(".", 1)[1] for k in counted if k != "accepted"}
            assert reasons <= REJECTED | IGNORED, reasons  # rejected.internal would be a decoder bug

            await pub.publish(f"{prefix}/site/hq/device/after-junk/heartbeat", b'{"battery": 80}')
            await eventually(lambda: any(e.device == "after-junk" for e in sink.events), 20,
                             what="the valid heartbeat")
        stats = adapter.stats()
        assert adapter.connected and stats["connects"] == 1 and "disconnects" not in stats, stats
        assert stats["accepted"] == counted.get("accepted", 0) + 1
    finally:
        await adapter.stop()


@settings(
    max_examples=4,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(batch=messages)
def test_junk_is_counted_and_the_adapter_keeps_working(
    mqtt_broker: tuple[str, int], batch: list[tuple[str, bytes, int]]
) -> None:
    asyncio.run(scenario(*mqtt_broker, batch))
