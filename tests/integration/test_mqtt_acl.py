"""Identity bound to the connection (issue 21, item 3): a real Mosquitto started with the
shipped ``deploy/mosquitto/acl``, password logins, and a gateway with ``identity = "topic"``.

Before, any client could publish ``site/mine-north/device/gas-sensor-7/status`` and open a
ticket on gas-sensor-7. With the ACL a device may publish only below its own id (its user
name), anonymous clients are refused, and the gateway still reads everything (shared
subscriptions included); the adapter rejects a payload that names another device.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.fixtures.mqtt_broker import MosquittoProcess
from tests.helpers import ROOT, base_config, eventually

ACL = ROOT / "deploy" / "mosquitto" / "acl"
USERS = {"gateway": "gw-Passw0rd-1", "gas-sensor-7": "gs7-Passw0rd-1", "intruder": "intr-Passw0rd-1"}
GAS = {"id": "gas-sensor-7", "class": "mine.gas-sensor", "site": "mine-north", "policy": "mine-monitoring"}
SUBS = [
    {"topic": "site/{site}/device/{device}/heartbeat", "qos": 0, "kind": "heartbeat"},
    {"topic": "site/{site}/device/{device}/status", "qos": 1, "kind": "status"},
    {"topic": "site/{site}/device/{device}/alarm", "qos": 1, "kind": "alarm", "shared_group": "gateways"},
    {"topic": "lwt/{device}", "qos": 1, "kind": "lwt"},
]


@pytest.fixture
def acl_broker(tmp_path: Path, private_broker: Callable[..., MosquittoProcess]) -> MosquittoProcess:
    tool = shutil.which("mosquitto_passwd")
    assert tool, "mosquitto_passwd is not installed (Debian: mosquitto)"
    pw = tmp_path / "passwd"
    for i, (user, password) in enumerate(USERS.items()):
        subprocess.run([tool, "-b", *(["-c"] if i == 0 else []), str(pw), user, password], check=True, timeout=30)
    # "user root": as root, mosquitto would otherwise drop to a user that cannot read the
    # test's files (the password file; the shipped ACL is read as it is in the checkout).
    return private_broker(
        extra_config=["allow_anonymous false", f"password_file {pw}", f"acl_file {ACL}", "user root"], ready="tcp"
    )


def _gw(tmp_path: Path, broker: MosquittoProcess, identity: str = "topic") -> Gateway:
    d = base_config(tmp_path / "var", None)
    # The intruder has an account of its own (a device of the same kind, or a stolen one).
    d["devices"] += [GAS, {**GAS, "id": "intruder", "site": "x"}]
    d["adapters"] = {"mqtt": [{"name": "mqtt", "url": broker.url, "client_id": "gw-acl-test", "username": "gateway",
                               "password": USERS["gateway"], "identity": identity, "subscriptions": SUBS}]}
    return Gateway(config_from_dict(d, "t.toml", str(tmp_path)))


def _client(broker: MosquittoProcess, user: str | None) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, identifier=f"c-{user}", username=user,
                          password=USERS.get(user or ""))


async def _pub(broker: MosquittoProcess, user: str, topic: str, payload: bytes) -> None:
    """``mosquitto_pub`` as ``user`` (QoS 1: the broker acknowledges, denied or not)."""
    tool = shutil.which("mosquitto_pub")
    assert tool, "mosquitto_pub is not installed (Debian: mosquitto-clients)"
    r = await asyncio.to_thread(
        subprocess.run,
        [tool, "-h", broker.host, "-p", str(broker.port), "-u", user, "-P", USERS[user], "-q", "1", "-t", topic, "-m",
         payload.decode()],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr


def _events(gw: Gateway, device: str) -> Callable[[], list[Any]]:
    return lambda: [a for a in gw.store.list_alarms() if a["device"] == device]


async def test_acl_binds_each_device_to_its_own_topics(tmp_path: Path, acl_broker: MosquittoProcess) -> None:
    fault = json.dumps({"ch4": 2.0}).encode()
    async with _gw(tmp_path, acl_broker) as gw:
        mqtt = gw.adapters[0]
        await eventually(lambda: mqtt.stats().get("connected") == 1, timeout=10)
        # The intruder writes as gas-sensor-7 (dropped by the broker), then as itself (let
        # through): once its own message is here, the forged ones (sent before) would have been.
        await _pub(acl_broker, "intruder", "site/mine-north/device/gas-sensor-7/status", fault)
        await _pub(acl_broker, "intruder", "lwt/gas-sensor-7", b"offline")
        await _pub(acl_broker, "intruder", "site/x/device/intruder/status", fault)
        await eventually(_events(gw, "intruder"), timeout=10)
        assert _events(gw, "gas-sensor-7")() == []
        assert not [t for t in gw.store.list_tickets() if t["device"] == "gas-sensor-7"]
        # The device itself gets through, on its status topic and on the shared alarm topic.
        await _pub(acl_broker, "gas-sensor-7", "site/mine-north/device/gas-sensor-7/alarm", json.dumps({"co": 30}).encode())
        await _pub(acl_broker, "gas-sensor-7", "site/mine-north/device/gas-sensor-7/status", fault)
        await eventually(lambda: {a["key"] for a in _events(gw, "gas-sensor-7")()}
                         >= {"gas-sensor-7/gas/ch4", "gas-sensor-7/gas/co"}, timeout=10)
        assert [t for t in gw.store.list_tickets() if t["device"] == "gas-sensor-7"]
        # A payload naming another device on the sender's own topic: rejected by the adapter.
        await _pub(acl_broker, "intruder", "site/x/device/intruder/status",
                   json.dumps({"device": "gas-sensor-7", "ch4": 3.0}).encode())
        await eventually(lambda: mqtt.stats().get("rejected.identity_mismatch") == 1, timeout=10)


async def test_acl_refuses_anonymous_clients(acl_broker: MosquittoProcess) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with _client(acl_broker, None):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(acl_broker.host, acl_broker.port, username="intruder", password="wrong"):
            pass


def test_identity_topic_needs_a_device_level(tmp_path: Path) -> None:
    from gateway.errors import ConfigError

    d = base_config(tmp_path / "var", None)
    d["adapters"] = {"mqtt": [{"name": "mqtt", "identity": "topic",
                               "subscriptions": [{"topic": "site/{site}/telemetry", "kind": "status"}]}]}
    with pytest.raises(ConfigError, match=r"adapters\.mqtt\[0\].*identity = \"topic\" needs a \{device\} level"):
        config_from_dict(d, "t.toml", str(tmp_path))
