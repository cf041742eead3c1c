"""HA with real processes, a real Mosquitto and PostgreSQL: only the leader subscribes, with
a persistent session under one fixed client id shared by the instances. QoS 1 alarm
messages published before, during and after a kill -9 of the leader are all stored
exactly once (those sent while nobody leads wait in the broker's session and reach the new
leader), and the devices' heartbeats, which stop reaching any gateway during the failover,
raise no false loss on the new leader (restart grace)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest

from tests.e2e.test_ha_fencing import LEASE, Instance, _holder
from tests.fixtures.mqtt_broker import MosquittoProcess
from tests.helpers import wait_until
from tests.store_contract.backends import POSTGRESQL, pg_dsn, pg_schema

DEVICES = [f"gas-{n}" for n in range(1, 31)]
INTERVAL = 1.0


@pytest.fixture
def location(tmp_path: Path) -> Iterator[str]:
    loc = POSTGRESQL.location(tmp_path)
    yield loc
    POSTGRESQL.drop(loc)


def _alarms(location: str) -> dict[str, int]:
    try:
        with psycopg.connect(pg_dsn(), autocommit=True, options=f"-c search_path={pg_schema(location)}") as db:
            return {str(k): int(c) for k, c in db.execute("SELECT key, count FROM alarms").fetchall()}
    except psycopg.errors.UndefinedTable:
        return {}


def _setup(url: str, prefix: str, client_id: str) -> dict[str, Any]:
    return {
        "devices": [{"id": d, "class": "mine.gas-sensor", "site": "s1", "policy": "mine-monitoring",
                     "heartbeat_interval": INTERVAL} for d in DEVICES],
        "liveness": {"default_interval": INTERVAL, "tolerance": 3},
        "adapters": {"mqtt": [{
            "name": "mqtt", "url": url, "client_id": client_id, "clean_session": False,
            "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
            "subscriptions": [
                {"topic": prefix + "/{device}/alarm", "kind": "alarm", "qos": 1},
                {"topic": prefix + "/{device}/heartbeat", "kind": "heartbeat", "qos": 0},
            ],
        }]},
    }


class Devices:
    """The sensors: heartbeats (QoS 0) every half interval from a thread, alarms (QoS 1) on demand."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.prefix = prefix
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-devices")
        self.client.connect(host, port)
        self.client.loop_start()
        self.stopped = threading.Event()
        self.beats = threading.Thread(target=self._beat, daemon=True)
        self.beats.start()

    def _beat(self) -> None:
        while not self.stopped.wait(INTERVAL / 2):  # why: the devices' heartbeat period
            for d in DEVICES:
                self.client.publish(f"{self.prefix}/{d}/heartbeat", b"{}", qos=0)

    def alarm(self, device: str) -> None:
        info = self.client.publish(f"{self.prefix}/{device}/alarm", json.dumps({"ch4": 1.2}).encode(), qos=1)
        info.wait_for_publish(10)  # the broker has it (PUBACK): it is the broker's to deliver now

    def close(self) -> None:
        self.stopped.set()
        self.beats.join(5)
        self.client.loop_stop()
        self.client.disconnect()


def test_qos1_messages_across_a_failover_are_stored_once_and_no_heartbeat_is_lost(
    tmp_path: Path, location: str, private_broker: Callable[..., MosquittoProcess]
) -> None:
    broker = private_broker()
    prefix = f"ha{os.getpid()}"
    setup = _setup(broker.url, prefix, f"gw-ha-{os.getpid()}")
    devices = Devices(broker.host, broker.port, prefix)
    a = Instance(tmp_path, "gw-a", location, extra=setup)
    b: Instance | None = None
    try:
        wait_until(lambda: "gateway ready" in a.text() or a.proc.poll() is not None, 60)
        assert a.proc.poll() is None, a.text()
        b = Instance(tmp_path, "gw-b", location, extra=setup)
        wait_until(lambda: "standby: gw-a holds the leader lease" in b.text(), 60)  # type: ignore[union-attr]
        before, during, after = DEVICES[:10], DEVICES[10:20], DEVICES[20:]
        def gas() -> dict[str, int]:
            return {k: c for k, c in _alarms(location).items() if k.endswith("/gas/ch4")}

        for d in before:
            devices.alarm(d)
        wait_until(lambda: len(gas()) == len(before), 30)  # committed and acknowledged

        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        for d in during:  # nobody leads: the broker keeps them in the leaders' session
            devices.alarm(d)
        assert len(gas()) == len(before)
        wait_until(lambda: _holder(location) == "gw-b", 4 * LEASE + 20)
        wait_until(lambda: "gateway ready" in b.text(), 60)  # type: ignore[union-attr]
        for d in after:
            devices.alarm(d)
        wait_until(lambda: len(gas()) == len(DEVICES), 30)
        # Heartbeats flow to the new leader for a few deadlines (interval × tolerance = 3 s) past
        # its restart grace: a device it forgot or timed from the failover would be lost by now.
        settle = time.monotonic() + 3 * INTERVAL * 3
        wait_until(lambda: time.monotonic() >= settle, 30)
        alarms = _alarms(location)
        assert {k: c for k, c in alarms.items() if k.endswith("/reachability")} == {}  # no false loss
        assert alarms == {f"{d}/gas/ch4": 1 for d in DEVICES}  # every message, exactly once
        assert b.proc.poll() is None  # type: ignore[union-attr]
    finally:
        devices.close()
        a.stop()
        if b is not None:
            b.stop()
