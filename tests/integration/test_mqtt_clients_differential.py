"""Differential: the ``wire`` receive path against the aiomqtt reference, side by side on one
real Mosquitto. Both adapters subscribe to the same topics and get the same mixed stream
(QoS 0 and 1, good and bad payloads, last wills, retained messages, unknown topics); the
events they hand to the sink and the counters they keep must be identical."""

from __future__ import annotations

import json
import random
from typing import Any

import aiomqtt

from adapters.mqtt import MqttAdapter
from tests.helpers import eventually
from tests.integration.test_mqtt_adapter import ListSink, make_config


def _stream(prefix: str, n: int, seed: int) -> list[tuple[str, bytes, int, bool]]:
    rng = random.Random(seed)
    out: list[tuple[str, bytes, int, bool]] = []
    for i in range(n):
        dev = f"dev-{rng.randrange(40):03d}"
        roll = rng.random()
        qos = rng.choice((0, 1))
        if roll < 0.55:
            body = {"seq": i, "battery": rng.randrange(100), "temperature": round(rng.uniform(20, 40), 1),
                    "fw": "2.4.1", "ok": rng.random() < 0.5, "nested": {"a": 1, "b": "x"}}
            out.append((f"{prefix}/site-{i % 3}/device/{dev}/heartbeat", json.dumps(body).encode(), qos, False))
        elif roll < 0.65:
            out.append((f"{prefix}/site-1/device/{dev}/status", b'{"state": "offline"}', qos, False))
        elif roll < 0.72:
            out.append((f"{prefix}/lwt/{dev}", rng.choice([b"", b"offline", b"online", b"Online"]), qos, False))
        elif roll < 0.80:
            out.append((f"{prefix}/site-2/device/{dev}/heartbeat", rng.choice([b"{bad", b"[1,2]", b"\xff\xfe",
                                                                             b'{"x": [1]}', b"NaN"]), qos, False))
        elif roll < 0.85:
            out.append((f"{prefix}/site-2/device/{dev}/heartbeat", b'{"pad": "' + b"x" * 3000 + b'"}', qos, False))
        elif roll < 0.90:
            out.append((f"{prefix}/site-2/device/{dev}/status", b"", qos, False))
        else:
            out.append((f"{prefix}/site-0/device/{dev}/alarm", json.dumps({"code": rng.randrange(9)}).encode(), qos,
                        False))
    return out


async def test_wire_and_aiomqtt_hand_over_the_same_events_and_counts(mqtt_broker):
    host, port = mqtt_broker
    prefix = f"diff-{random.randrange(1 << 30):x}"
    subs = [
        {"topic": f"{prefix}/{{site}}/device/{{device}}/heartbeat", "qos": 1},
        {"topic": f"{prefix}/{{site}}/device/{{device}}/status", "qos": 1, "kind": "status"},
        {"topic": f"{prefix}/{{site}}/device/{{device}}/alarm", "qos": 0, "kind": "alarm"},
        {"topic": f"{prefix}/lwt/{{device}}", "qos": 1, "kind": "lwt"},
    ]
    url = f"mqtt://{host}:{port}"
    sinks: dict[str, ListSink] = {}
    adapters: dict[str, MqttAdapter] = {}
    # A retained message the broker replays to both on subscribe.
    async with aiomqtt.Client(host, port) as pub:
        await pub.publish(f"{prefix}/site-0/device/dev-r/status", b'{"state": "maintenance"}', qos=1, retain=True)
    try:
        for kind in ("wire", "aiomqtt"):
            sinks[kind] = ListSink(inventory={"dev-001": "inv-001"})
            adapters[kind] = MqttAdapter(make_config(url, subs, client=kind, name=f"mqtt-{kind}",
                                                     max_payload_bytes=2048))
            await adapters[kind].start(sinks[kind])
            assert await adapters[kind].wait_connected(5)
        msgs = _stream(prefix, 600, seed=7)
        async with aiomqtt.Client(host, port) as pub:
            for topic, payload, qos, retain in msgs:
                await pub.publish(topic, payload, qos=qos, retain=retain)
        want = len(msgs) + 1
        await eventually(lambda: all(a.stats().get("received", 0) >= want for a in adapters.values()))
        # The last commits settled (and their PUBACKs sent): nothing is still in flight.
        await eventually(lambda: all(a.stats()["inflight"] == 0 for a in adapters.values()))
    finally:
        for a in adapters.values():
            await a.stop()
        async with aiomqtt.Client(host, port) as pub:
            await pub.publish(f"{prefix}/site-0/device/dev-r/status", b"", qos=1, retain=True)

    def shape(sink: ListSink) -> list[tuple[Any, ...]]:
        return [(e.device, e.name, dict(e.attrs)) for e in sink.events]

    wire, ref = shape(sinks["wire"]), shape(sinks["aiomqtt"])
    assert len(ref) > 400
    assert wire == ref
    ignore = {"connects", "connected", "paused"}
    w = {k: v for k, v in adapters["wire"].stats().items() if k not in ignore}
    r = {k: v for k, v in adapters["aiomqtt"].stats().items() if k not in ignore}
    assert w == r
    assert w["received"] == want and w["inflight"] == 0
    assert w["rejected.not_json"] > 0 and w["rejected.oversized"] > 0 and w["lost_signals"] > 0
