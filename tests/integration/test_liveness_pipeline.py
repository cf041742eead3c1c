"""Silence is a fault: real MQTT heartbeats through a real Mosquitto into a running gateway;
a device that stops gets a heartbeat.lost alarm and a ticket on time; resuming clears it;
a last will raises the loss at once; a broker restart raises no false losses; after a gateway
or broker restart a fast device is watched again after its own deadline, not the default's."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt

from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.fixtures.mqtt_broker import MosquittoProcess
from tests.helpers import base_config, committed, eventually

INTERVAL = 0.4
TOLERANCE = 2


def _cfg(tmp_path: Path, host: str, port: int, prefix: str, devices: list[str]) -> Any:
    d = base_config(tmp_path / "var", None)
    d["devices"] = [{"id": dev, "class": "mine.gas-sensor", "site": "s1", "policy": "mine-monitoring",
                     "heartbeat_interval": INTERVAL} for dev in devices]
    # A client id of its own: on a broker shared with other test runs on this host, the default
    # (gateway-test-<host>) would be everybody's.
    d["adapters"] = {"mqtt": [{
        "name": "mqtt", "url": f"mqtt://{host}:{port}", "client_id": f"gw-{prefix.replace('/', '-')}",
        "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
        "subscriptions": [
            {"topic": prefix + "/{device}/heartbeat", "kind": "heartbeat", "qos": 0},
            {"topic": prefix + "/{device}/lwt", "kind": "lwt", "qos": 1},
        ],
    }]}
    d["liveness"] = {"default_interval": INTERVAL, "tolerance": TOLERANCE, "grace": 1.0}
    return config_from_dict(d, "t.toml", str(tmp_path))


class Beats:
    """Publishes heartbeats for a set of devices until told to stop, per device."""

    def __init__(self, client: aiomqtt.Client, prefix: str, devices: list[str]) -> None:
        self.client, self.prefix = client, prefix
        self.on = {d: True for d in devices}

    async def run(self) -> None:
        while True:
            for d, on in self.on.items():
                if on:
                    await self.client.publish(f"{self.prefix}/{d}/heartbeat", json.dumps({"ch4": 0.2}).encode())
            await asyncio.sleep(INTERVAL / 2)  # why: the devices' heartbeat period


def _alarm(gw: Gateway, key: str, state: str | None = None) -> Callable[[], Any]:
    return lambda: [a for a in gw.store.list_alarms() if a["key"] == key and (state is None or a["state"] == state)]


def _alive_on_heartbeats(gw: Gateway, devices: list[str], since: float = 0.0) -> Callable[[], bool]:
    """Every device heard after ``since`` and watched on its own heartbeats: its deadline is
    last heard + interval × tolerance again, no longer held back by the restart (or broker
    re-arm) grace, so a silence from now on is timed from its last beat."""
    assert gw.watchdog is not None

    def check() -> bool:
        for d in devices:
            st = gw.watchdog.status(d)  # type: ignore[union-attr]
            if st is None or st.lost or st.deadline is None or st.last_seen <= since:
                return False
            if st.deadline > st.last_seen + INTERVAL * TOLERANCE + 1e-6:
                return False
        return True

    return check


async def test_lost_on_time_restored_and_lwt(tmp_path: Path, mqtt_broker: tuple[str, int]) -> None:
    host, port = mqtt_broker
    prefix = f"t/{uuid.uuid4().hex[:8]}"
    devs = ["gas-a", "gas-b", "gas-c"]
    async with Gateway(_cfg(tmp_path, host, port, prefix, devs)) as gw, \
            aiomqtt.Client(host, port, identifier=f"beats-{uuid.uuid4().hex[:6]}") as client:
        beats = Beats(client, prefix, devs)
        task = asyncio.create_task(beats.run())
        try:
            await eventually(_alive_on_heartbeats(gw, devs), timeout=10)  # past the restart grace
            await committed(gw.pipeline)
            assert gw.store.list_alarms() == []
            beats.on["gas-a"] = False
            stopped = time.time()
            [alarm] = await eventually(_alarm(gw, "gas-a/reachability"), timeout=5)
            deadline_max = stopped + INTERVAL * TOLERANCE + INTERVAL / 2  # last beat was at most INTERVAL/2 before
            assert alarm["level"] == 1 and alarm["state"] == "active"
            assert time.time() - deadline_max <= 1.0 + 0.5  # raised within a second of its deadline
            [ticket] = await eventually(lambda: gw.store.list_tickets(), timeout=2)
            assert ticket["alarm_key"] == "gas-a/reachability"
            beats.on["gas-a"] = True
            await eventually(_alarm(gw, "gas-a/reachability", "cleared"), timeout=3)
            # A last will ("offline") raises the loss at once, without waiting for the deadline.
            beats.on["gas-b"] = False
            await client.publish(f"{prefix}/gas-b/lwt", b"offline", qos=1)
            t0 = time.time()
            await eventually(_alarm(gw, "gas-b/reachability", "active"), timeout=2)
            assert time.time() - t0 < INTERVAL * TOLERANCE
            assert not _alarm(gw, "gas-c/reachability")()
        finally:
            task.cancel()


async def test_broker_restart_no_false_loss_storm(tmp_path: Path, private_broker: Callable[..., MosquittoProcess]) -> None:
    broker = private_broker()
    host, port = broker.address
    prefix = f"r/{uuid.uuid4().hex[:8]}"
    devs = [f"dev-{i}" for i in range(20)]
    async with Gateway(_cfg(tmp_path, host, port, prefix, devs)) as gw:
        async def beat_forever() -> None:
            while True:
                try:
                    # A short timeout: a QoS 0 publish into the connection the broker just dropped
                    # can otherwise wait aiomqtt's default 10 s, and the devices would not be back
                    # within their deadline for a reason of the test's own.
                    async with aiomqtt.Client(host, port, identifier=f"beats-{uuid.uuid4().hex[:6]}",
                                              timeout=1.0) as client:
                        await Beats(client, prefix, devs).run()
                except aiomqtt.MqttError:
                    await asyncio.sleep(0.1)  # why: a device's reconnect backoff while the broker is down

        task = asyncio.create_task(beat_forever())
        try:
            await eventually(_alive_on_heartbeats(gw, devs), timeout=10)  # past the restart grace
            broker.stop()
            # why: the scenario is silence: the broker stays down far past every device's deadline
            await asyncio.sleep(INTERVAL * TOLERANCE * 4)
            broker.start()
            mqtt = gw.adapters[0]
            await eventually(lambda: mqtt.stats().get("reconnects", 0) >= 1, timeout=10)
            # No false loss, without a blind wait: a loss could only be declared until each device
            # is heard again through the restarted broker; once all are (and that is committed),
            # every deadline runs from a fresh heartbeat.
            await eventually(_alive_on_heartbeats(gw, devs, since=time.time()), timeout=10)
            await committed(gw.pipeline)
            alarms = gw.store.list_alarms()
            lost = [a for a in alarms if a["key"].endswith("/reachability")]
            assert lost == [], f"false losses after a broker restart: {[a['key'] for a in lost]}"
            assert any(a["key"].startswith("gateway/") for a in alarms)  # the outage is one alarm of its own
        finally:
            task.cancel()


# A fast device among slow defaults: the grace after a restart is its own deadline.
FAST_INTERVAL = 4.0
FAST_TOLERANCE = 3
FAST_DEADLINE = FAST_INTERVAL * FAST_TOLERANCE  # 12 s; the default device's would be 180 s


def _fast_cfg(tmp_path: Path, host: str, port: int, prefix: str) -> Any:
    """One 4 s gas sensor; the default interval (60 s) and no grace, as shipped."""
    d = base_config(tmp_path / "var", None)
    d["devices"] = [{"id": "gas-fast", "class": "mine.gas-sensor", "site": "s1", "policy": "mine-monitoring",
                     "heartbeat_interval": FAST_INTERVAL}]
    d["adapters"] = {"mqtt": [{
        "name": "mqtt", "url": f"mqtt://{host}:{port}", "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
        "subscriptions": [{"topic": prefix + "/{device}/heartbeat", "kind": "heartbeat", "qos": 0}],
    }]}
    d["liveness"] = {"default_interval": 60.0, "tolerance": FAST_TOLERANCE}
    return config_from_dict(d, "t.toml", str(tmp_path))


async def _heard(gw: Gateway, client: aiomqtt.Client, prefix: str, after: float) -> None:
    """Publish heartbeats of gas-fast until the gateway has recorded one sent after ``after``."""
    async def beat_and_check() -> bool:
        await client.publish(f"{prefix}/gas-fast/heartbeat", json.dumps({"ch4": 0.2}).encode())
        s = gw.watchdog.status("gas-fast")
        return s is not None and s.last_seen > after

    deadline = time.monotonic() + 5
    while not await beat_and_check():
        assert time.monotonic() < deadline, "gas-fast's heartbeats did not arrive"
        # why: this is the device's own heartbeat pacing (a beat every 0.2 s until one is heard)
        await asyncio.sleep(0.2)


async def test_fast_device_is_lost_on_its_own_deadline_after_a_restart(
    tmp_path: Path, mqtt_broker: tuple[str, int]
) -> None:
    """A 4 s device heard before a gateway restart and silent after it is lost 12 s after the
    restart (its own interval x tolerance), not after the default device's 3 minutes."""
    host, port = mqtt_broker
    prefix = f"g/{uuid.uuid4().hex[:8]}"
    cfg = _fast_cfg(tmp_path, host, port, prefix)
    async with Gateway(cfg) as gw, \
            aiomqtt.Client(host, port, identifier=f"beats-{uuid.uuid4().hex[:6]}") as client:
        await _heard(gw, client, prefix, time.time())
    assert gw.watchdog.status("gas-fast").last_seen > 0  # type: ignore[union-attr]

    restarted = time.time()
    async with Gateway(_fast_cfg(tmp_path, host, port, prefix)) as gw:
        assert gw.watchdog.status("gas-fast").lost is False  # type: ignore[union-attr]
        [alarm] = await eventually(_alarm(gw, "gas-fast/reachability"), timeout=FAST_DEADLINE + 10)
        took = time.time() - restarted
        assert alarm["state"] == "active"
        assert FAST_DEADLINE <= took <= FAST_DEADLINE + 1.0, f"lost {took:.2f} s after the restart"


async def test_fast_device_is_lost_on_its_own_deadline_after_a_broker_restart(
    tmp_path: Path, private_broker: Callable[..., MosquittoProcess]
) -> None:
    """After a broker restart a 4 s device that does not come back is lost 12 s after the
    gateway reconnected (its own deadline re-armed), not after the default's 3 minutes."""
    broker = private_broker()
    host, port = broker.address
    prefix = f"b/{uuid.uuid4().hex[:8]}"
    async with Gateway(_fast_cfg(tmp_path, host, port, prefix)) as gw:
        async with aiomqtt.Client(host, port, identifier=f"beats-{uuid.uuid4().hex[:6]}") as client:
            await _heard(gw, client, prefix, time.time())
        mqtt = gw.adapters[0]
        broker.stop()
        await eventually(lambda: gw.watchdog.broker_outage_since is not None, timeout=5)
        broker.start()
        back = time.time()  # the reconnect (and the re-arm) comes after this
        await eventually(lambda: mqtt.stats().get("reconnects", 0) >= 1, timeout=10)
        seen = time.time()  # ... and before this
        [alarm] = await eventually(_alarm(gw, "gas-fast/reachability"), timeout=FAST_DEADLINE + 10)
        now = time.time()
        assert alarm["state"] == "active"
        assert now - back >= FAST_DEADLINE, f"lost {now - back:.2f} s after the broker came back"
        assert now - seen <= FAST_DEADLINE + 1.0, f"lost {now - seen:.2f} s after the reconnect"
