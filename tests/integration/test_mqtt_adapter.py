"""Integration tests of the MQTT adapter against a real Mosquitto (plus its edge decoding tables).

Every test uses its own topic prefix (a uuid), so tests never see each other's messages on
the shared broker. Restart, redelivery and ``$SYS`` tests use a private broker of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import ValidationError

from adapters.base import CommitCallback
from adapters.mqtt import (
    Ignored,
    MqttAdapter,
    MqttConfig,
    PayloadDecoder,
    Rejected,
    TakeoverRule,
    TopicTemplate,
    default_client_id,
    parse_ts,
)
from adapters.mqtt.wire import encode_connect, encode_publish
from gateway.clock import ManualClock
from gateway.model import Event
from tests.fixtures.mqtt_broker import MosquittoProcess, free_port
from tests.helpers import eventually

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class ListSink:
    """In-memory EventSink: the one seam where the tests replace the real pipeline.

    The adapter's contract ends at the ``EventSink`` protocol (offer / offer_many /
    submit(on_commit) / lookup_device), so recording what crosses it is exactly what these
    tests need to check; everything on the broker side stays real. ``commit`` decides what
    happens to ``submit``: ``"auto"`` commits on the next loop turn (as the pipeline does
    after its transaction), ``"defer"`` keeps the callbacks in ``pending``, and
    ``"fail_first"`` reports the first commit as failed and the rest as done.
    """

    def __init__(self, inventory: dict[str, str] | None = None, commit: str = "auto") -> None:
        self.events: list[Event] = []
        self.submitted: list[Event] = []
        self.pending: list[CommitCallback] = []
        self.inventory = inventory or {}
        self.commit = commit
        self._failed_once = False
        self.submit_many_calls = 0

    def offer(self, event: Event) -> bool:
        self.events.append(event)
        return True

    def offer_many(self, events: Iterable[Event]) -> int:
        n = 0
        for e in events:
            n += self.offer(e)
        return n

    def _commit(self, on_commit: CommitCallback) -> None:
        if self.commit == "defer":
            self.pending.append(on_commit)
        elif self.commit == "fail_first" and not self._failed_once:
            self._failed_once = True
            asyncio.get_running_loop().call_soon(on_commit, False)
        else:
            asyncio.get_running_loop().call_soon(on_commit, True)

    def submit(self, event: Event, on_commit: CommitCallback, key: str | None = None) -> bool:
        self.events.append(event)
        self.submitted.append(event)
        self._commit(on_commit)
        return True

    def submit_many(self, events: Sequence[Event], on_commit: CommitCallback) -> int:
        self.events.extend(events)
        self.submitted.extend(events)
        self.submit_many_calls += 1
        self._commit(on_commit)
        return len(events)

    def lookup_device(self, key: str) -> str | None:
        return self.inventory.get(key)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]

    async def wait_for(self, pred: Callable[[list[Event]], bool], timeout: float = 5.0) -> None:
        await eventually(lambda: pred(self.events), timeout, interval=0.01,
                         what=lambda: f"events so far: {self.events}")


_CLIENT = {"kind": "wire"}
#: Tests of what only the wire client does (aiomqtt's queue sheds and counts instead).
WIRE_ONLY = {"test_a_slow_sink_pauses_reading_instead_of_shedding"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that runs an adapter runs with both receive paths (``client = wire`` and
    the aiomqtt reference), so the two are held to the same behaviour."""
    if {"mqtt_broker", "private_broker", "running"} & set(metafunc.fixturenames):
        kinds = ["wire"] if metafunc.function.__name__ in WIRE_ONLY else ["wire", "aiomqtt"]
        metafunc.parametrize("mqtt_client", kinds, indirect=True)


@pytest.fixture(autouse=True)
def mqtt_client(request: pytest.FixtureRequest) -> Iterator[str]:
    """The receive path ``make_config`` selects (``wire`` unless parametrized)."""
    _CLIENT["kind"] = getattr(request, "param", "wire")
    yield _CLIENT["kind"]
    _CLIENT["kind"] = "wire"


def make_config(url: str, subs: list[dict[str, Any]], **kw: Any) -> MqttConfig:
    kw.setdefault("client", _CLIENT["kind"])
    kw.setdefault("reconnect_min_s", 0.1)
    kw.setdefault("reconnect_max_s", 0.4)
    return MqttConfig(url=url, subscriptions=subs, **kw)


async def publish(host: str, port: int, msgs: list[tuple[str, bytes | str]], qos: int = 0) -> None:
    async with aiomqtt.Client(host, port) as pub:
        for topic, payload in msgs:
            await pub.publish(topic, payload, qos=qos)


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def running() -> Any:
    """Starts adapters and stops them all at teardown, even when the test failed."""
    adapters: list[MqttAdapter] = []

    async def start(adapter: MqttAdapter, sink: ListSink) -> MqttAdapter:
        adapters.append(adapter)
        await adapter.start(sink)
        return adapter

    yield start
    for a in reversed(adapters):
        await a.stop()


async def nothing_redelivered(adapter: MqttAdapter, sink: ListSink, broker: MosquittoProcess, topic: str) -> None:
    """Assert that a persistent session got nothing back from the broker, without a blind wait.

    The broker resends a session's unacknowledged messages right after its CONNACK, before it
    routes anything published later. So a marker published once the adapter is subscribed
    arrives after any redelivery: once the marker is in, the sink holds everything there was."""
    assert await adapter.wait_connected(5)
    await publish(broker.host, broker.port, [(topic, json.dumps({"marker": True}))], qos=1)
    await sink.wait_for(lambda ev: any(e.attrs.get("marker") for e in ev))
    assert [e.attrs for e in sink.events] == [{"marker": True}]


# ====================================================================== against a broker


async def test_heartbeats_flow_with_identity_from_topic(mqtt_broker, prefix, running):
    host, port = mqtt_broker
    cfg = make_config(
        f"mqtt://{host}:{port}",
        [
            {"topic": f"{prefix}/site/{{site}}/device/{{device}}/heartbeat"},
            {"topic": f"{prefix}/+/{{device}}/status", "kind": "status"},
            {"topic": f"{prefix}/alarms/{{device}}/#", "kind": "alarm", "shared_group": "gw"},
        ],
    )
    sink = ListSink(inventory={"pump-7": "INV-pump-7"})
    adapter = await running(MqttAdapter(cfg), sink)
    assert adapter.connected
    t0 = time.time() - 30
    await publish(
        host,
        port,
        [
            (
                f"{prefix}/site/bj-01/device/pump-7/heartbeat",
                json.dumps({"ts": t0, "battery": 81, "fw": "1.2"}),
            ),
            (f"{prefix}/site/sh-02/device/gas-3/heartbeat", b""),
            (f"{prefix}/room4/gas-3/status", json.dumps({"state": "ok", "temp": {"c": 21.5}})),
            (f"{prefix}/alarms/gas-3/ch4/high", json.dumps({"code": "E17", "level": 2, "active": True})),
        ],
    )
    await sink.wait_for(lambda ev: len(ev) == 4)
    hb1, hb2, st, al = sink.events
    assert (hb1.name, hb1.device, hb1.source) == ("heartbeat", "INV-pump-7", "mqtt")
    assert hb1.attrs == {"site": "bj-01", "battery": 81, "fw": "1.2"}
    assert hb1.ts == pytest.approx(t0)
    assert (hb2.device, hb2.attrs) == ("gas-3", {"site": "sh-02"})
    assert (st.name, st.attrs) == ("status", {"state": "ok", "temp.c": 21.5})
    assert (al.name, al.device, al.attrs) == ("alarm", "gas-3", {"code": "E17", "level": 2, "active": True})
    stats = adapter.stats()
    assert stats["received"] == stats["accepted"] == 4
    assert stats["unknown_device"] == 3


async def test_bad_payloads_are_counted_per_reason_and_good_ones_still_flow(
    mqtt_broker, prefix, running, caplog
):
    host, port = mqtt_broker
    cfg = make_config(
        f"mqtt://{host}:{port}",
        [{"topic": f"{prefix}/{{device}}/hb"}, {"topic": f"{prefix}/{{device}}/status", "kind": "status"}],
        max_payload_bytes=256,
        log_samples_per_minute=2,
    )
    sink = ListSink()
    adapter = await running(MqttAdapter(cfg), sink)
    bad: list[tuple[str, bytes | str]] = [
        (f"{prefix}/d1/hb", b"not json at all"),
        (f"{prefix}/d1/hb", b"[1, 2, 3]"),
        (f"{prefix}/d1/hb", b"{" + b'"x": "' + b"a" * 300 + b'"}'),
        (f"{prefix}/d1/hb", b'{"list": [1, 2]}'),
        (f"{prefix}/d1/hb", b'{"a": {"b": {"c": 1}}}'),
        (f"{prefix}/d1/hb", b'{"t": NaN}'),
        (f"{prefix}/d1/hb", b"\xff\xfe garbage"),
        (f"{prefix}/d1/status", b""),
        (f"{prefix}//hb", b"{}"),
    ]
    good = [(f"{prefix}/d{i}/hb", json.dumps({"seq": i})) for i in range(5)]
    insane = [(f"{prefix}/d9/hb", json.dumps({"ts": 12345, "seq": 99}))]
    msgs = [m for pair in zip(bad, good, strict=False) for m in pair] + bad[len(good) :] + insane
    await publish(host, port, msgs)
    await sink.wait_for(lambda ev: len(ev) == 6)
    stats = adapter.stats()
    assert stats["received"] == len(msgs)
    assert {k: v for k, v in stats.items() if k.startswith("rejected.")} == {
        "rejected.not_json": 3,
        "rejected.not_object": 1,
        "rejected.oversized": 1,
        "rejected.bad_type": 2,
        "rejected.empty": 1,
        "rejected.bad_topic": 1,
    }
    assert stats["ts_insane"] == 1
    assert [e.attrs["seq"] for e in sink.events] == [0, 1, 2, 3, 4, 99]
    assert sink.events[-1].ts != 12345
    not_json_lines = [r for r in caplog.records if "(not_json)" in r.getMessage()]
    assert len(not_json_lines) == 2  # rate limited: 2 per minute per reason
    assert prefix in not_json_lines[0].getMessage() and "sample" in not_json_lines[0].getMessage()
    assert adapter.connected


async def test_unknown_devices_ignored_when_configured(mqtt_broker, prefix, running):
    host, port = mqtt_broker
    cfg = make_config(
        f"mqtt://{host}:{port}", [{"topic": f"{prefix}/{{device}}/hb"}], unknown_devices="ignore"
    )
    sink = ListSink(inventory={"known": "INV-1"})
    clock = ManualClock(NOW)
    adapter = await running(MqttAdapter(cfg, clock), sink)
    await publish(host, port, [(f"{prefix}/stranger/hb", b"{}"), (f"{prefix}/known/hb", b"{}")])
    await eventually(lambda: adapter.stats().get("received") == 2)  # both handled: nothing else can come
    assert [(e.device, e.ts) for e in sink.events] == [("INV-1", NOW)]  # receive time from the clock
    assert adapter.stats()["ignored.unknown_device"] == 1


async def test_retained_heartbeats_are_not_liveness(mqtt_broker, prefix, running):
    host, port = mqtt_broker
    retained = [
        (f"{prefix}/old-1/hb", b"{}"),
        (f"{prefix}/old-2/status", b'{"state": "offline"}'),
    ]
    async with aiomqtt.Client(host, port) as pub:
        for topic, payload in retained:
            await pub.publish(topic, payload, qos=1, retain=True)
    try:
        cfg = make_config(
            f"mqtt://{host}:{port}",
            [
                {"topic": f"{prefix}/{{device}}/hb"},
                {"topic": f"{prefix}/{{device}}/status", "kind": "status"},
            ],
        )
        sink = ListSink()
        adapter = await running(MqttAdapter(cfg), sink)
        await eventually(lambda: adapter.stats().get("received") == 2)  # both replayed and handled
        (ev,) = sink.events
        assert (ev.name, ev.device, ev.attrs["retained"]) == ("heartbeat.lost", "old-2", True)
        assert adapter.stats()["ignored.retained_heartbeat"] == 1
    finally:
        async with aiomqtt.Client(host, port) as pub:  # clear the retained store again
            for topic, _ in retained:
                await pub.publish(topic, b"", qos=1, retain=True)


async def test_last_will_of_a_killed_client_is_an_immediate_loss(mqtt_broker, prefix, running):
    host, port = mqtt_broker
    cfg = make_config(
        f"mqtt://{host}:{port}",
        [
            {"topic": f"{prefix}/{{device}}/lwt", "kind": "lwt", "qos": 1},
            {"topic": f"{prefix}/{{device}}/status", "kind": "status"},
        ],
    )
    sink = ListSink()
    await running(MqttAdapter(cfg), sink)
    pub = shutil.which("mosquitto_pub")
    if pub is None:
        pytest.fail("mosquitto_pub is not installed (Debian: apt-get install mosquitto-clients; scripts/test does)")
    # A real device stand-in: a client with a last will, reading lines to publish from stdin.
    will = ["--will-topic", f"{prefix}/cam-1/lwt", "--will-payload", "offline", "--will-qos", "1"]
    device = await asyncio.create_subprocess_exec(
        pub, "-h", host, "-p", str(port), "-i", f"{prefix}-dev", "-k", "5",
        "-t", f"{prefix}/cam-1/status", "-l", *will,
        stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert device.stdin is not None
    try:
        device.stdin.write(b'{"state": "online"}\n')
        await device.stdin.drain()
        await sink.wait_for(lambda ev: any(e.name == "status" for e in ev))
        t_kill = time.monotonic()
        device.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker must publish the will
        await sink.wait_for(lambda ev: any(e.name == "heartbeat.lost" for e in ev), timeout=3)
        assert time.monotonic() - t_kill < 2  # immediate, not after keepalive * 1.5
    finally:
        if device.returncode is None:
            device.kill()
        await device.wait()
        device.stdin.close()
    (lost,) = sink.named("heartbeat.lost")
    assert (lost.device, lost.attrs["reason"], lost.source) == ("cam-1", "lwt", "mqtt")


async def test_qos1_is_acknowledged_only_after_commit(private_broker, prefix, running):
    broker: MosquittoProcess = private_broker()
    cid = f"{prefix}-gw"
    subs = [{"topic": f"{prefix}/{{device}}/hb", "qos": 1}]
    topic = f"{prefix}/meter-1/hb"

    # 1. The commit never comes: the message must stay unacknowledged at the broker.
    held = ListSink(commit="defer")
    first = MqttAdapter(make_config(broker.url, subs, client_id=cid, clean_session=False, stop_timeout_s=0))
    await first.start(held)
    await publish(broker.host, broker.port, [(topic, json.dumps({"seq": 1}))], qos=1)
    await held.wait_for(lambda ev: len(ev) == 1)
    assert first.stats()["inflight"] == 1 and "acked" not in first.stats()
    await first.stop()

    # 2. Same session again: the broker redelivers; this time the commit acknowledges it.
    sink = ListSink(commit="auto")
    second = await running(
        MqttAdapter(make_config(broker.url, subs, client_id=cid, clean_session=False)), sink
    )
    await sink.wait_for(lambda ev: len(ev) == 1)
    assert sink.submitted[0].attrs == {"seq": 1}
    await eventually(lambda: second.stats().get("acked") == 1)
    await second.stop()

    # 3. Acknowledged means gone: a third connection gets only what is published after it.
    after = ListSink()
    third = await running(MqttAdapter(make_config(broker.url, subs, client_id=cid, clean_session=False)), after)
    await nothing_redelivered(third, after, broker, topic)


@pytest.mark.parametrize(
    "payload_size, limit",
    [
        (200_000, 1024),  # small limit: the wire client reads past the packet unbuffered
        (17_000_000, 65536),  # the probe's message: over the wire client's old 16 MiB packet limit
    ],
)
async def test_an_oversized_message_is_discarded_acknowledged_and_the_connection_kept(
    private_broker, prefix, running, payload_size, limit
):
    """Issue 21 item 2: one oversized QoS 1 publish once made the wire client drop the
    connection; the broker redelivered it on every reconnect and ingest stopped for good."""
    broker: MosquittoProcess = private_broker()
    cid = f"{prefix}-gw"
    subs = [{"topic": f"{prefix}/{{device}}/hb", "qos": 1}]
    cfg = make_config(broker.url, subs, client_id=cid, clean_session=False, max_payload_bytes=limit)
    sink = ListSink()
    adapter = await running(MqttAdapter(cfg), sink)
    await publish(broker.host, broker.port, [(f"{prefix}/huge/hb", b"x" * payload_size),
                                             (f"{prefix}/small/hb", json.dumps({"seq": 1}))], qos=1)
    await sink.wait_for(lambda ev: any(e.attrs.get("seq") == 1 for e in ev), timeout=10)
    await eventually(lambda: adapter.stats().get("acked") == 1)
    stats = adapter.stats()
    assert stats["rejected.oversized"] == 1
    assert stats["connects"] == 1 and "disconnects" not in stats and "connect_failures" not in stats
    assert [e.attrs for e in sink.events] == [{"seq": 1}]
    await adapter.stop()

    # Acknowledged: the same session gets nothing back from the broker.
    after = ListSink()
    again = await running(MqttAdapter(cfg), after)
    await nothing_redelivered(again, after, broker, f"{prefix}/small/hb")


async def test_stop_waits_for_pending_commits_before_disconnecting(private_broker, prefix):
    broker: MosquittoProcess = private_broker()
    cid = f"{prefix}-gw"
    subs = [{"topic": f"{prefix}/{{device}}/hb", "qos": 1}]
    sink = ListSink(commit="defer")
    adapter = MqttAdapter(make_config(broker.url, subs, client_id=cid, clean_session=False, stop_timeout_s=2))
    await adapter.start(sink)
    await publish(broker.host, broker.port, [(f"{prefix}/m/hb", b"{}")], qos=1)
    await sink.wait_for(lambda ev: len(ev) == 1)
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, sink.pending[0], True)  # the pipeline commits while we are stopping
    t0 = time.monotonic()
    await adapter.stop()
    assert 0.15 < time.monotonic() - t0 < 1.5
    assert adapter.stats()["acked"] == 1

    again = ListSink()
    other = MqttAdapter(make_config(broker.url, subs, client_id=cid, clean_session=False))
    await other.start(again)
    try:  # acknowledged before the disconnect: nothing redelivered
        await nothing_redelivered(other, again, broker, f"{prefix}/m/hb")
    finally:
        await other.stop()


async def test_shed_qos1_on_a_clean_session_is_counted_and_never_jams_the_window(
    mqtt_broker, prefix, running
):
    host, port = mqtt_broker

    class RefusingSink(ListSink):
        def submit(self, event: Event, on_commit: CommitCallback, key: str | None = None) -> bool:
            return False

        def submit_many(self, events: Sequence[Event], on_commit: CommitCallback) -> int:
            return 0

    sink = RefusingSink()
    adapter = await running(
        MqttAdapter(make_config(f"mqtt://{host}:{port}", [{"topic": f"{prefix}/{{device}}/hb", "qos": 1}])),
        sink,
    )
    n = 50  # more than Mosquitto's default 20 in-flight messages per client
    await publish(host, port, [(f"{prefix}/d/hb", b"{}")] * n, qos=1)
    await eventually(lambda: adapter.stats().get("received", 0) >= n)
    stats = adapter.stats()
    assert (stats["received"], stats["shed.sink"], stats["lost.uncommitted"]) == (n, n, n)


async def test_failed_commit_makes_the_broker_redeliver(private_broker, prefix, running):
    broker: MosquittoProcess = private_broker()
    cfg = make_config(
        broker.url,
        [{"topic": f"{prefix}/{{device}}/hb", "qos": 1}],
        client_id=f"{prefix}-gw",
        clean_session=False,
    )
    sink = ListSink(commit="fail_first")
    adapter = await running(MqttAdapter(cfg), sink)
    await publish(broker.host, broker.port, [(f"{prefix}/m1/hb", b'{"seq": 1}')], qos=1)
    await sink.wait_for(lambda ev: len(ev) == 2)
    await eventually(lambda: adapter.stats().get("acked") == 1)
    stats = adapter.stats()
    assert (stats["commit_failed"], stats["redeliveries"], stats["acked"]) == (1, 1, 1)
    assert "disconnects" not in stats  # a redelivery is not an outage
    assert [e.attrs["seq"] for e in sink.events] == [1, 1]


async def test_unreachable_broker_start_returns_fast_and_reports_once(running):
    port = free_port()
    cfg = make_config(f"mqtt://127.0.0.1:{port}", [{"topic": "x/{device}/hb"}])
    downs: list[float] = []
    ups: list[float] = []
    sink = ListSink()
    adapter = MqttAdapter(cfg, on_disconnected=downs.append, on_connected=ups.append)
    t0 = time.monotonic()
    await running(adapter, sink)
    assert time.monotonic() - t0 < 1.0
    await eventually(lambda: adapter.stats().get("connect_failures", 0) >= 3)  # retries at 0.1 .. 0.4 s
    (ev,) = sink.events
    assert (ev.name, ev.device, ev.source) == ("mqtt.broker_unreachable", f"broker:127.0.0.1:{port}", "mqtt")
    assert len(downs) == 1 and ups == []
    assert not adapter.connected


async def test_broker_restart_reconnects_and_restores_subscriptions(private_broker, prefix, running):
    broker: MosquittoProcess = private_broker()
    cfg = make_config(broker.url, [{"topic": f"{prefix}/{{device}}/hb"}])
    downs: list[float] = []
    ups: list[float] = []
    sink = ListSink()
    adapter = await running(MqttAdapter(cfg, on_disconnected=downs.append, on_connected=ups.append), sink)
    await publish(broker.host, broker.port, [(f"{prefix}/d1/hb", b'{"n": 1}')])
    await sink.wait_for(lambda ev: len(ev) == 1)

    broker.stop()
    await sink.wait_for(lambda ev: any(e.name == "mqtt.broker_unreachable" for e in ev))
    assert not adapter.connected
    broker.start()
    assert await adapter.wait_connected(5)
    await publish(broker.host, broker.port, [(f"{prefix}/d1/hb", b'{"n": 2}')])
    await sink.wait_for(lambda ev: any(e.attrs.get("n") == 2 for e in ev))

    assert [e.name for e in sink.events] == [
        "heartbeat",
        "mqtt.broker_unreachable",
        "mqtt.broker_restored",
        "heartbeat",
    ]
    stats = adapter.stats()
    assert (stats["disconnects"], stats["reconnects"]) == (1, 1)
    assert stats["connect_failures"] >= 1
    assert len(downs) == 1 and len(ups) == 2


async def test_broker_drops_are_reported_from_sys(private_broker, prefix, running):
    broker: MosquittoProcess = private_broker(["sys_interval 1", "max_queued_messages 2"])
    cfg = make_config(broker.url, [{"topic": f"{prefix}/{{device}}/hb"}], watch_sys=True)
    sink = ListSink()
    await running(MqttAdapter(cfg), sink)
    # A persistent subscriber that goes away: its queue holds 2 messages, the rest are dropped.
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=f"{prefix}-slow", clean_session=False
    ) as slow:
        await slow.subscribe(f"{prefix}/slow", qos=1)
    await publish(broker.host, broker.port, [(f"{prefix}/slow", b"x")] * 10, qos=1)
    await sink.wait_for(lambda ev: any(e.name == "mqtt.broker_dropping" for e in ev), timeout=4)
    (ev,) = sink.named("mqtt.broker_dropping")
    assert ev.device == f"broker:{broker.host}:{broker.port}"
    assert ev.attrs["dropped"] >= 8 and ev.attrs["delta"] == ev.attrs["dropped"]


async def test_client_queue_overflow_is_counted_not_silent():
    cfg = make_config("mqtt://127.0.0.1:1", [{"topic": "x/{device}/hb"}], queue_limit=2, client="aiomqtt")
    adapter = MqttAdapter(cfg)
    queue = adapter._queue_class(maxsize=2)  # the class handed to aiomqtt.Client(queue_type=...)
    for mid in range(5):
        queue.put_nowait(aiomqtt.Message("x/d/hb", b"{}", qos=0, retain=False, mid=mid, properties=None))
    assert queue.qsize() == 2
    assert adapter.stats()["shed.client_queue"] == 3


# ====================================================================== client id, takeover


def broker_client_ids(broker: MosquittoProcess) -> list[str]:
    """Client ids in Mosquitto's "New client connected from ... as <id> (...)" log lines."""
    return [line.split(" as ", 1)[1].split(" (", 1)[0] for line in broker.log.read_text().splitlines()
            if "New client connected" in line]


async def test_the_default_client_id_is_used_unless_one_is_configured(private_broker, prefix, running):
    broker: MosquittoProcess = private_broker()
    subs = [{"topic": f"{prefix}/{{device}}/hb"}]
    default = await running(MqttAdapter(make_config(broker.url, subs), default_client_id=f"{prefix}-default"),
                            ListSink())
    configured = await running(
        MqttAdapter(make_config(broker.url, subs, client_id=f"{prefix}-set", name="b"),
                    default_client_id=f"{prefix}-unused"),
        ListSink(),
    )
    assert (default.client_id, configured.client_id) == (f"{prefix}-default", f"{prefix}-set")
    assert await default.wait_connected(5) and await configured.wait_connected(5)
    await eventually(lambda: {f"{prefix}-default", f"{prefix}-set"} <= set(broker_client_ids(broker)))
    # A persistent session is found by its id: one must be known.
    with pytest.raises(ValueError, match="client id"):
        MqttAdapter(make_config(broker.url, subs, clean_session=False))
    assert MqttAdapter(make_config(broker.url, subs, clean_session=False), default_client_id="gw").client_id == "gw"


async def test_two_adapters_with_one_client_id_raise_one_conflict_each_and_clear_it(
    private_broker, prefix, running, caplog
):
    """The broker closes the older of two connections with one id, so two adapters sharing one
    take the connection from each other in turns. Each raises ONE conflict, logs one error
    naming the id and the broker, and clears the conflict once its session stays up."""
    broker: MosquittoProcess = private_broker()
    cid = f"{prefix}-same"
    # aiomqtt does not fail a SUBSCRIBE the broker will never answer: connect_timeout_s bounds
    # it when a takeover lands between CONNACK and SUBACK; stable_s is longer than that.
    rule = TakeoverRule(stable_s=3.0)
    subs = [{"topic": f"{prefix}/{{device}}/hb"}]
    sinks = [ListSink(), ListSink()]
    adapters = [
        await running(MqttAdapter(make_config(broker.url, subs, client_id=cid, name=name, connect_timeout_s=1.0),
                                  takeover=rule), sink)
        for name, sink in zip(("gw-a", "gw-b"), sinks, strict=True)
    ]
    for sink in sinks:
        await sink.wait_for(lambda ev: any(e.name == "mqtt.client_id_conflict" for e in ev), timeout=15)
    # They go on fighting; still one conflict each.
    await eventually(lambda: all(a.stats().get("disconnects", 0) >= 6 for a in adapters))
    for sink in sinks:
        (ev,) = sink.named("mqtt.client_id_conflict")
        assert (ev.device, ev.attrs["client_id"], ev.attrs["url"]) == (
            f"broker:{broker.host}:{broker.port}", cid, broker.url)
        assert not sink.named("mqtt.broker_unreachable")  # the broker is reachable: it accepted us
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and "client id" in r.getMessage()]
    assert len(errors) == 2 and all(cid in m and broker.url in m for m in errors), errors
    assert all(a.stats()["client_id_conflicts"] == 1 for a in adapters)

    await adapters[1].stop()
    await sinks[0].wait_for(lambda ev: any(e.name == "mqtt.client_id_conflict_cleared" for e in ev), timeout=15)
    assert adapters[0].connected
    assert [e.name for e in sinks[0].events if e.name.startswith("mqtt.client_id")] == [
        "mqtt.client_id_conflict", "mqtt.client_id_conflict_cleared"]


def test_default_client_id_is_short_safe_and_distinct() -> None:
    assert default_client_id("gw1", host="noc-1.example.com") == "gateway-gw1-noc-1.example.com"
    assert default_client_id("gw1", "north", host="noc-1") == "gateway-gw1-north-noc-1"
    # Unsafe characters are replaced, and a hash keeps ids apart that only they told apart.
    a, b = default_client_id("gw 1", host="h"), default_client_id("gw/1", host="h")
    assert a != b and a.startswith("gateway-gw-1-h-") and len(a) == len("gateway-gw-1-h-") + 8
    long = default_client_id("x" * 100, host="noc-1")
    assert len(long) == 64 and long != default_client_id("x" * 101, host="noc-1")
    for cid in (a, b, long, default_client_id("站点", host="主机")):
        assert cid.isascii() and all(c.isalnum() or c in "._-" for c in cid) and len(cid) <= 64
    assert default_client_id("gw1") == default_client_id("gw1", host=socket.gethostname())


# ====================================================================== sockets of failed connects


class SilentBroker:
    """A TCP listener that accepts connections and never answers (a hung or wrong service).

    ``open`` counts the connections the client has not closed yet (the handler reads until EOF).
    """

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> SilentBroker:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"mqtt://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self._writers.append(writer)
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass
        finally:
            self.open -= 1

    async def close(self) -> None:
        for w in self._writers:
            w.close()
        for w in self._writers:
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def silent_broker() -> Any:
    broker = await SilentBroker().start()
    yield broker
    await broker.close()


async def test_a_broker_that_never_answers_costs_no_sockets(silent_broker, running):
    """No CONNACK within connect_timeout_s: the attempt's socket is closed at once (aiomqtt 2.5
    left it open, watched by the loop, one per attempt, until the garbage collector found it)."""
    cfg = make_config(silent_broker.url, [{"topic": "x/{device}/hb"}], connect_timeout_s=0.2, start_wait_s=0)
    adapter = await running(MqttAdapter(cfg), ListSink())
    await eventually(lambda: adapter.stats().get("connect_failures", 0) >= 3 and silent_broker.open <= 1, timeout=5)
    await adapter.stop()
    await eventually(lambda: silent_broker.open == 0, timeout=5)
    assert silent_broker.accepted >= 3


async def test_stop_while_waiting_for_connack_closes_the_socket(silent_broker, running):
    cfg = make_config(silent_broker.url, [{"topic": "x/{device}/hb"}], connect_timeout_s=30, start_wait_s=0)
    adapter = await running(MqttAdapter(cfg), ListSink())
    await eventually(lambda: silent_broker.open == 1)
    await adapter.stop()
    await eventually(lambda: silent_broker.open == 0, timeout=5)


def _unclosed_client_sockets(port: int) -> int:
    """Loopback TCP sockets to ``port`` not closed on the client side (connecting, established,
    or closed by the peer only), from /proc/net/tcp."""
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        remote, state = line.split()[2:4]
        if remote == f"0100007F:{port:04X}" and state in ("01", "02", "08"):
            n += 1
    return n


async def test_stop_during_the_tcp_connect_closes_the_late_socket(running):
    """aiomqtt connects in an executor thread that a cancel cannot stop: a connect that completes
    after ``stop()`` must still be closed. The listener's backlog is full, so the connect hangs
    until the test accepts."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(0)
        port = srv.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):  # fills the backlog
            cfg = make_config(f"mqtt://127.0.0.1:{port}", [{"topic": "x/{device}/hb"}],
                              connect_timeout_s=30, start_wait_s=0)
            adapter = await running(MqttAdapter(cfg), ListSink())
            await eventually(lambda: _unclosed_client_sockets(port) == 2)  # the filler + our SYN
            await adapter.stop()
            srv.setblocking(False)
            accepted: list[socket.socket] = []
            loop = asyncio.get_running_loop()

            async def accept() -> None:
                while True:
                    conn, _ = await loop.sock_accept(srv)
                    accepted.append(conn)

            acceptor = asyncio.create_task(accept())
            try:
                await eventually(lambda: _unclosed_client_sockets(port) == 1, timeout=8)  # the filler only
            finally:
                acceptor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acceptor
                for conn in accepted:
                    conn.close()


# ====================================================================== edge decoding, no broker


def _decoder(subs: list[dict[str, Any]] | None = None, **kw: Any) -> PayloadDecoder:
    cfg = MqttConfig(
        subscriptions=subs
        or [
            {"topic": "s/{site}/d/{device}/hb"},
            {"topic": "+/{device}/status", "kind": "status"},
            {"topic": "lwt/{device}", "kind": "lwt"},
            {"topic": "bus/#", "kind": "alarm"},
        ],
        **kw,
    )
    return PayloadDecoder(cfg, lambda raw: {"known": "INV-known"}.get(raw))


DECODE_OK = [
    pytest.param("s/a/d/known/hb", b"", ("heartbeat", "INV-known", {"site": "a"}), id="empty-heartbeat"),
    pytest.param(
        "s/a/d/x/hb",
        b'{"site": "payload", "v": 1}',
        ("heartbeat", "x", {"site": "a", "v": 1}),
        id="topic-wins-over-payload",
    ),
    pytest.param(
        "s/a/d/x/hb",
        b'{"b": {"lvl": 3, "ok": true}, "n": null}',
        ("heartbeat", "x", {"site": "a", "b.lvl": 3, "b.ok": True}),
        id="flatten-one-level-drop-null",
    ),
    pytest.param(
        "r1/x/status",
        b'{"state": "offline"}',
        ("heartbeat.lost", "x", {"reason": "lwt", "state": "offline"}),
        id="status-offline-object",
    ),
    pytest.param(
        "r1/x/status", b"OFFLINE", ("heartbeat.lost", "x", {"reason": "lwt"}), id="status-offline-text"
    ),
    pytest.param("lwt/x", b"", ("heartbeat.lost", "x", {"reason": "lwt"}), id="lwt-empty"),
    pytest.param(
        "lwt/x", b'{"state":"offline"}', ("heartbeat.lost", "x", {"reason": "lwt"}), id="lwt-configured"
    ),
    pytest.param("lwt/x", b"Online", ("status", "x", {"state": "online"}), id="lwt-birth-text"),
    pytest.param(
        "bus/a/b",
        b'{"device": "x", "code": 7}',
        ("alarm", "x", {"device": "x", "code": 7}),
        id="device-from-payload",
    ),
    pytest.param("bus", b'{"device": "x"}', ("alarm", "x", {"device": "x"}), id="hash-matches-parent"),
]


@pytest.mark.parametrize(("topic", "payload", "want"), DECODE_OK)
def test_decode_accepts(topic: str, payload: bytes, want: tuple[str, str, dict[str, Any]]) -> None:
    ev = _decoder().decode(topic, payload, NOW)
    assert ev is not None
    assert (ev.name, ev.device, dict(ev.attrs)) == want
    assert ev.ts == NOW


DECODE_REJECT = [
    pytest.param("s/a/d/x/hb", b"nope", "not_json", id="not-json"),
    pytest.param("s/a/d/x/hb", b"1.5", "not_object", id="number"),
    pytest.param("s/a/d/x/hb", b'{"a": Infinity}', "not_json", id="infinity"),
    pytest.param("s/a/d/x/hb", b'{"a": [1]}', "bad_type", id="array"),
    pytest.param("s/a/d/x/hb", b'{"a": {"b": {}}}', "bad_type", id="too-deep"),
    pytest.param(
        "s/a/d/x/hb",
        b"{" + b",".join(b'"k%d": 1' % i for i in range(65)) + b"}",
        "too_many_fields",
        id="too-many-fields",
    ),
    pytest.param("s/a/d/x/hb", b'{"a": "' + b"x" * 70_000 + b'"}', "oversized", id="oversized"),
    pytest.param("s/a/d//hb", b"{}", "bad_topic", id="empty-device"),
    pytest.param("other/topic/entirely/x", b"{}", "bad_topic", id="no-template"),
    pytest.param("bus/a", b'{"code": 1}', "no_device", id="no-device"),
    pytest.param("r1/x/status", b"", "empty", id="empty-status"),
    pytest.param("lwt/x", b"some words here", "not_json", id="lwt-free-text"),
]


@pytest.mark.parametrize(("topic", "payload", "reason"), DECODE_REJECT)
def test_decode_rejects(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as err:
        _decoder().decode(topic, payload, NOW)
    assert err.value.reason == reason


IGNORED = [
    pytest.param("s/a/d/x/hb", b"{}", True, {}, "retained_heartbeat", id="retained-heartbeat"),
    pytest.param(
        "s/a/d/x/hb", b"{}", False, {"unknown_devices": "ignore"}, "unknown_device", id="unknown-device"
    ),
]


@pytest.mark.parametrize(("topic", "payload", "retained", "cfg", "reason"), IGNORED)
def test_decode_ignores(topic: str, payload: bytes, retained: bool, cfg: dict[str, Any], reason: str) -> None:
    with pytest.raises(Ignored) as err:
        _decoder(**cfg).decode(topic, payload, NOW, retained)
    assert err.value.reason == reason


def test_retained_messages_with_device_time_or_state_are_marked() -> None:
    dec = _decoder()
    hb = dec.decode("s/a/d/x/hb", json.dumps({"ts": NOW - 5}).encode(), NOW, retained=True)
    assert (hb.ts, hb.attrs["retained"]) == (NOW - 5, True)
    st = dec.decode("r/x/status", b'{"state": "online"}', NOW, retained=True)
    assert st.attrs == {"state": "online", "retained": True}


TS_CASES = [
    pytest.param(NOW - 10, NOW - 10, id="seconds"),
    pytest.param((NOW - 10) * 1000, NOW - 10, id="milliseconds"),
    pytest.param(int((NOW - 10) * 1_000_000), NOW - 10, id="microseconds"),
    pytest.param("2025-12-31T23:59:50Z", NOW - 10, id="iso-z"),
    pytest.param("2026-01-01T07:59:50+08:00", NOW - 10, id="iso-offset"),
    pytest.param("2025-12-31T23:59:50", NOW - 10, id="iso-naive-is-utc"),
    pytest.param(str(NOW - 10), NOW - 10, id="numeric-string"),
    pytest.param(NOW + 600, None, id="future"),
    pytest.param(NOW - 2 * 86_400, None, id="too-old"),
    pytest.param("yesterday", None, id="garbage"),
    pytest.param(True, None, id="bool"),
]


@pytest.mark.parametrize(("raw", "want"), TS_CASES)
def test_device_timestamp(raw: object, want: float | None) -> None:
    dec = _decoder()
    ev = dec.decode("s/a/d/x/hb", json.dumps({"ts": raw}).encode(), NOW)
    assert ev is not None and "ts" not in ev.attrs
    if want is None:
        assert ev.ts == NOW and dec.ts_insane == 1
    else:
        assert ev.ts == pytest.approx(want) and dec.ts_insane == 0


def test_parse_ts_rejects_non_finite() -> None:
    assert parse_ts(float("nan")) is None
    assert parse_ts([1]) is None


TEMPLATES = [
    pytest.param("site/{site}/device/{device}/heartbeat", "site/+/device/+/heartbeat", id="named"),
    pytest.param("+/{device}/status", "+/+/status", id="anonymous-plus"),
    pytest.param("fleet/{device}/#", "fleet/+/#", id="tail"),
]


@pytest.mark.parametrize(("template", "mqtt_filter"), TEMPLATES)
def test_template_compiles_to_filter(template: str, mqtt_filter: str) -> None:
    assert TopicTemplate.compile(template).filter == mqtt_filter


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("a/#/b", id="hash-not-last"),
        pytest.param("a/x{device}", id="partial-placeholder"),
        pytest.param("a/{device}/{device}", id="duplicate"),
        pytest.param("a/{1bad}", id="bad-name"),
        pytest.param("$SYS/{device}", id="dollar"),
        pytest.param("", id="empty"),
    ],
)
def test_template_errors(template: str) -> None:
    with pytest.raises(ValueError):
        TopicTemplate.compile(template)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        pytest.param({"tls": {"insecure": True}}, "mqtts", id="tls-on-plain-url"),
        pytest.param({"url": "http://x"}, "mqtt://", id="scheme"),
        pytest.param({"bogus": 1}, "bogus", id="extra-forbidden"),
        pytest.param({"reconnect_min_s": 5, "reconnect_max_s": 1}, "reconnect", id="backoff-order"),
        pytest.param({"subscriptions": [{"topic": "a/{device}", "qos": 2}]}, "qos", id="qos2"),
        pytest.param(
            {"subscriptions": [{"topic": "a/{device}", "shared_group": "a/b"}]},
            "shared_group",
            id="bad-group",
        ),
    ],
)
def test_config_errors_name_the_key(extra: dict[str, Any], needle: str) -> None:
    data: dict[str, Any] = {"subscriptions": [{"topic": "a/{device}"}], **extra}
    with pytest.raises(ValidationError) as err:
        MqttConfig(**data)
    assert needle in str(err.value)


def test_config_defaults_and_share_prefix() -> None:
    cfg = MqttConfig(
        url="mqtts://broker.example",
        subscriptions=[{"topic": "s/{device}/hb", "qos": 1, "shared_group": "gw"}],
        password="s3cret",
    )
    assert (cfg.host, cfg.port, cfg.tls_enabled) == ("broker.example", 8883, True)
    assert cfg.subscriptions[0].subscribe_filter == "$share/gw/s/+/hb"
    assert "s3cret" not in repr(cfg)


# ====================================================================== TLS


def _make_pki(d: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1; returns (ca, cert, key)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> Any:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test ca"))
        .issuer_name(name("test ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    d.mkdir(parents=True, exist_ok=True)
    paths = d / "ca.pem", d / "server.pem", d / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    for p in paths:  # the broker may drop root privileges before it reads them
        p.chmod(0o644)
    d.chmod(0o755)
    return paths


@pytest.fixture
def pki_dir() -> Iterator[Path]:
    """A directory the broker can read after dropping root (pytest's tmp_path is private to root)."""
    with tempfile.TemporaryDirectory(prefix="mqtt-pki-") as d:
        yield Path(d)


async def test_mqtts_verifies_the_broker_with_the_configured_ca(private_broker, prefix, running, pki_dir):
    ca, cert, key = _make_pki(pki_dir)
    broker: MosquittoProcess = private_broker(
        [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"], ready="tcp"
    )
    subs = [{"topic": f"{prefix}/{{device}}/hb"}]
    url = f"mqtts://{broker.host}:{broker.port}"
    sink = ListSink()
    adapter = await running(MqttAdapter(make_config(url, subs, tls={"ca_file": str(ca)})), sink)
    assert adapter.connected

    tls = aiomqtt.TLSParameters(ca_certs=str(ca))
    async with aiomqtt.Client(broker.host, broker.port, tls_params=tls) as pub:
        await pub.publish(f"{prefix}/secure-1/hb", b'{"ok": true}')
    await sink.wait_for(lambda ev: len(ev) == 1)
    assert sink.events[0].device == "secure-1"

    # Without the CA the broker's certificate is not trusted: counted as unreachable, not fatal.
    untrusting = ListSink()
    other = await running(MqttAdapter(make_config(url, subs, name="mqtt-untrusting")), untrusting)
    assert not other.connected
    assert [e.name for e in untrusting.events] == ["mqtt.broker_unreachable"]


async def test_stop_returns_with_the_tls_socket_closed_even_if_the_broker_hangs(private_broker, prefix, pki_dir):
    """A TLS close waits for the broker's close_notify: stop() must not return with the socket
    still open (and leave it to the garbage collector when the loop ends)."""
    ca, cert, key = _make_pki(pki_dir)
    broker: MosquittoProcess = private_broker(
        [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"], ready="tcp"
    )
    url = f"mqtts://{broker.host}:{broker.port}"
    adapter = MqttAdapter(make_config(url, [{"topic": f"{prefix}/{{device}}/hb"}], tls={"ca_file": str(ca)}))
    await adapter.start(ListSink())
    try:
        assert adapter.connected and _unclosed_client_sockets(broker.port) == 1
        with broker.frozen():
            await adapter.stop()
            assert _unclosed_client_sockets(broker.port) == 0
    finally:
        await adapter.stop()


async def test_a_slow_sink_pauses_reading_instead_of_shedding(private_broker, prefix):
    """The wire client stops reading while the sink's queue is ¾ full and resumes when it has
    drained: a burst far larger than the queue arrives whole, nothing shed. (aiomqtt has no
    such flow control: its bounded queue sheds and counts instead, tested above.)"""
    broker: MosquittoProcess = private_broker()

    class SlowSink(ListSink):
        queue_size = 100

        def __init__(self) -> None:
            super().__init__()
            self.queued = 0

        @property
        def depth(self) -> int:
            return self.queued

        def offer_many(self, events: Iterable[Event]) -> int:
            evs = list(events)
            room = self.queue_size - self.queued
            taken = evs[:room]
            self.events.extend(taken)
            self.queued += len(taken)
            return len(taken)

    sink = SlowSink()
    adapter = MqttAdapter(make_config(broker.url, [{"topic": f"{prefix}/{{device}}/hb"}]))
    await adapter.start(sink)

    async def consumer() -> None:
        # Nothing is taken until the adapter has had to pause (the queue fills up first,
        # however the broker's bytes happen to be split into reads); then slowly.
        await eventually(lambda: "paused" in adapter.stats(), timeout=20, interval=0.005)
        while True:
            await asyncio.sleep(0.01)  # why: a slow consumer's pace, 10 events per 10 ms
            sink.queued = max(0, sink.queued - 10)

    task = asyncio.create_task(consumer())
    try:
        n = 3000
        # The whole burst in one write, so reads bring far more than the sink has room for.
        _, writer = await asyncio.open_connection(broker.host, broker.port)
        writer.write(encode_connect(f"{prefix}-pub") + b"".join(
            encode_publish(f"{prefix}/d{i % 50}/hb", json.dumps({"i": i}).encode()) for i in range(n)))
        await writer.drain()
        await sink.wait_for(lambda ev: len(ev) >= n, timeout=20)
        stats = adapter.stats()
        assert "shed.sink" not in stats and stats["paused"] > 0
        assert [e.attrs["i"] for e in sink.events] == list(range(n))
    finally:
        task.cancel()
        writer.close()
        await adapter.stop()


async def test_broker_credentials_are_used_and_a_refusal_is_counted(private_broker, prefix, running, tmp_path):
    passwd = tmp_path / "passwd"
    await asyncio.to_thread(subprocess.run, ["mosquitto_passwd", "-b", "-c", str(passwd), "gw", "s3cret"],
                            check=True, capture_output=True)
    # "user root": as root, mosquitto would otherwise drop to a user that cannot read the test's
    # private temp directory (ignored when the tests do not run as root).
    auth = ("allow_anonymous false", f"password_file {passwd}", "user root")
    broker: MosquittoProcess = private_broker(extra_config=auth, ready="tcp")
    subs = [{"topic": f"{prefix}/{{device}}/hb"}]
    sink = ListSink()
    good = await running(MqttAdapter(make_config(broker.url, subs, username="gw", password="s3cret")), sink)
    assert await good.wait_connected(5)
    refused = await running(MqttAdapter(make_config(broker.url, subs, username="gw", password="wrong", name="bad")),
                            ListSink())
    await eventually(lambda: refused.stats().get("connect_failures", 0) >= 1)
    assert not refused.connected and "connects" not in refused.stats()
    async with aiomqtt.Client(broker.host, broker.port, username="gw", password="s3cret") as pub:
        await pub.publish(f"{prefix}/d1/hb", b'{"battery": 90}')
    await sink.wait_for(lambda ev: len(ev) == 1)
    assert sink.events[0].attrs == {"battery": 90}
