"""MQTT client ids across gateways, against a real Mosquitto: gateways installed from the example
config share a broker without taking the connection from each other, and two gateways given
one client id each raise ONE gateway alarm instead of only logging "connection lost"."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from adapters.mqtt import default_client_id
from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.fixtures.mqtt_broker import MosquittoProcess
from tests.helpers import base_config, eventually, example_dict


def _gateway_cfg(tmp_path: Path, instance: str, mqtt: dict[str, Any]) -> Any:
    d = base_config(tmp_path / instance / "var", None)
    d["gateway"]["instance"] = instance
    d["adapters"] = {"mqtt": [mqtt]}
    return config_from_dict(d, "t.toml", str(tmp_path / instance))


async def test_gateways_installed_from_the_example_share_a_broker(tmp_path: Path, private_broker) -> None:
    """Two gateways with the example's MQTT section and their own instance names: neither
    takes the other's connection (the example once fixed client_id = "gateway-gw1")."""
    broker: MosquittoProcess = private_broker()
    (example,) = example_dict()["adapters"]["mqtt"]
    mqtt = {**example, "url": broker.url}
    async with Gateway(_gateway_cfg(tmp_path, "north", mqtt)) as north:
        a = north.adapters[0]
        assert await a.wait_connected(5)
        async with Gateway(_gateway_cfg(tmp_path, "south", mqtt)) as south:
            b = south.adapters[0]
            assert await b.wait_connected(5)
            # A heartbeat published after both subscribed reaches both: had south's CONNECT
            # taken north's session, the broker would have closed north's connection by then.
            async with aiomqtt.Client(broker.host, broker.port, identifier=f"pub-{uuid.uuid4().hex[:8]}") as pub:
                await pub.publish("site/s1/device/d1/heartbeat", b"{}")
            try:
                await eventually(lambda: a.stats().get("received") and b.stats().get("received"), timeout=10)
            except AssertionError:
                pytest.fail(f"the heartbeat did not reach both gateways: north {a.stats()}, south {b.stats()}")
            for s in (a.stats(), b.stats()):
                assert (s["connects"], s.get("disconnects", 0), s.get("connect_failures", 0)) == (1, 0, 0), s
            assert (a.client_id, b.client_id) == (default_client_id("north"), default_client_id("south"))


@pytest.mark.parametrize("client", ["wire", "aiomqtt"])
async def test_gateways_sharing_a_client_id_raise_one_gateway_alarm(tmp_path: Path, private_broker, client) -> None:
    broker: MosquittoProcess = private_broker()
    cid = f"shared-{uuid.uuid4().hex[:8]}"
    mqtt = {"url": broker.url, "client_id": cid, "client": client, "reconnect_min_s": 0.1, "reconnect_max_s": 0.4,
            "connect_timeout_s": 1.0, "subscriptions": [{"topic": "site/{site}/device/{device}/heartbeat"}]}
    key = f"gateway/broker:{broker.host}:{broker.port}/client-id"

    def alarms(gw: Gateway) -> list[dict[str, Any]]:
        return [al for al in gw.store.list_alarms() if al["key"] == key]

    async with Gateway(_gateway_cfg(tmp_path, "east", mqtt)) as east, \
            Gateway(_gateway_cfg(tmp_path, "west", mqtt)) as west:
        await eventually(lambda: alarms(east) and alarms(west))
        # They go on taking the connection from each other; still one alarm each.
        await eventually(lambda: all(gw.adapters[0].stats().get("disconnects", 0) >= 6 for gw in (east, west)))
        for gw in (east, west):
            (alarm,) = alarms(gw)
            assert (alarm["level"], alarm["state"], alarm["count"]) == (1, "active", 1)
            assert cid in alarm["title"]


def test_demos_sharing_a_broker_get_their_own_client_ids(tmp_path: Path) -> None:
    """The demo uses the broker on 127.0.0.1:1883 when one answers, which several people on one
    host may share: each demo connects with an id of its own, not gateway-demo-<host>."""
    from gateway.cli.demo import demo_config

    a, b = (demo_config(tmp_path / n, 1162, ("127.0.0.1", 1883), 8080, "demo-token-0123456789").adapters.mqtt[0] for n in "ab")
    assert a.client_id and b.client_id and a.client_id != b.client_id
