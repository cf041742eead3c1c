"""Silence is a fault: real MQTT heartbeats through a real Mosquitto into a running gateway;
a device that stops gets a heartbeat.lost alarm and a ticket on time; resuming clears it;
a last will raises the loss at once; a broker restart raises no false losses."""

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
from tests.helpers import base_config, eventually

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
            await asyncio.sleep(INTERVAL / 2)


def _alarm(gw: Gateway, key: str, state: str | None = None) -> Callable[[], Any]:
    return lambda: [a for a in gw.store.list_alarms() if a["key"] == key and (state is None or a["state"] == state)]


async def test_lost_on_time_restored_and_lwt(tmp_path: Path, mqtt_broker: tuple[str, int]) -> None:
    host, port = mqtt_broker
    prefix = f"t/{uuid.uuid4().hex[:8]}"
    devs = ["gas-a", "gas-b", "gas-c"]
    async with Gateway(_cfg(tmp_path, host, port, prefix, devs)) as gw, \
            aiomqtt.Client(host, port, identifier=f"beats-{uuid.uuid4().hex[:6]}") as client:
        beats = Beats(client, prefix, devs)
        task = asyncio.create_task(beats.run())
        try:
            await asyncio.sleep(2.0)  # past the restart grace, all alive
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
                    async with aiomqtt.Client(host, port, identifier=f"beats-{uuid.uuid4().hex[:6]}") as client:
                        await Beats(client, prefix, devs).run()
                except aiomqtt.MqttError:
                    await asyncio.sleep(0.1)

        task = asyncio.create_task(beat_forever())
        try:
            await asyncio.sleep(2.0)
            broker.stop()
            await asyncio.sleep(INTERVAL * TOLERANCE * 4)  # far past every device's deadline
            broker.start()
            mqtt = gw.adapters[0]
            await eventually(lambda: mqtt.stats().get("reconnects", 0) >= 1, timeout=10)
            await asyncio.sleep(INTERVAL * TOLERANCE * 2)
            alarms = gw.store.list_alarms()
            lost = [a for a in alarms if a["key"].endswith("/reachability")]
            assert lost == [], f"false losses after a broker restart: {[a['key'] for a in lost]}"
            assert any(a["key"].startswith("gateway/") for a in alarms)  # the outage is one alarm of its own
        finally:
            task.cancel()
