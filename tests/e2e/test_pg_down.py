"""PostgreSQL down for 30 s under load (a private cluster, stopped for real; real
``snmpinform`` devices and a real Mosquitto): the HA leader stops acknowledging (the INFORMs
sent meanwhile get no answer, the QoS 1 messages stay unacknowledged in flight), says so on
/healthz (503, the store error), keeps its lease (nobody else can take it either) and sheds
nothing; when the server is back it commits and acknowledges what it held: every INFORM
and every QoS 1 message stored exactly once, the leader unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_ha_fencing import Instance
from tests.fixtures.mqtt_broker import MosquittoProcess
from tests.fixtures.netsnmp import free_tcp_port
from tests.fixtures.pgcluster import PgCluster
from tests.helpers import wait_until

pytestmark = pytest.mark.skipif(shutil.which("snmpinform") is None, reason="net-snmp snmpinform not installed")

#: How long the server stays down at least (the issue's outage).
DOWN = 30.0
HELD_INFORMS = range(2, 12)  # sent while the server is down
HELD_QOS1 = [f"gas-{n}" for n in range(1, 9)]


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    c = PgCluster()
    yield c
    c.destroy()


def _health(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _leader_ok(port: int) -> bool:
    status, body = _health(port)
    return status == 200 and body.get("status") == "ok" and body.get("role") == "leader"


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:  # a scrape answers at once, even now
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _mqtt(port: int, name: str) -> float:
    """An MQTT adapter counter or gauge from /metrics (0 before it first counts)."""
    m = _metrics(port)
    return m.get(("gateway_adapter_counter_total", (("adapter", "mqtt"), ("counter", name))),
                 m.get(("gateway_adapter_gauge", (("adapter", "mqtt"), ("name", name))), 0.0))


def _shed(port: int) -> float:
    return sum(v for (name, _), v in _metrics(port).items()
               if name in ("gateway_pipeline_shed_total", "gateway_adapter_shed_total"))


def _inform(port: int, n: int, retries: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["snmpinform", "-v", "2c", "-c", "public", "-r", str(retries), "-t", "1",
                             f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.3", f"1.3.6.1.2.1.2.2.1.1.{n}", "i", str(n),
                             f"1.3.6.1.2.1.2.2.1.8.{n}", "i", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True, options="-c search_path=gw") as db:
        return {str(k): int(c) for k, c in db.execute("SELECT key, count FROM alarms").fetchall()}


def test_the_leader_holds_its_acknowledgements_while_postgresql_is_down(
    tmp_path: Path, cluster: PgCluster, private_broker: Callable[..., MosquittoProcess]
) -> None:
    broker = private_broker()
    prefix = f"pgdown{os.getpid()}"
    api = free_tcp_port()
    setup = {
        "devices": [
            {"id": "sw-1", "class": "network.switch", "site": "hq", "policy": "mine-monitoring",
             "addresses": ["127.0.0.1"]},  # the INFORMs' sender
            *({"id": d, "class": "mine.gas-sensor", "site": "s1", "policy": "mine-monitoring"} for d in HELD_QOS1)],
        "adapters": {"mqtt": [{
            "name": "mqtt", "url": broker.url, "client_id": f"gw-{prefix}", "clean_session": False,
            "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
            "subscriptions": [{"topic": prefix + "/{device}/alarm", "kind": "alarm", "qos": 1}],
        }]},
    }
    gw = Instance(tmp_path, "gw-a", "pg#gw", dsn=cluster.dsn, api_port=api, lease=5.0, extra=setup)
    devices = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-devices")
    held: list[subprocess.Popen[bytes]] = []
    try:
        wait_until(lambda: "gateway ready" in gw.text() or gw.proc.poll() is not None, 60)
        assert gw.proc.poll() is None, gw.text()
        devices.connect(broker.host, broker.port)
        devices.loop_start()
        assert _inform(gw.port, 1, 5).wait(30) == 0
        wait_until(lambda: _leader_ok(api) and _mqtt(api, "connected") == 1, 30)

        cluster.stop()
        down = time.monotonic()
        held = [_inform(gw.port, n, int(DOWN) + 30) for n in HELD_INFORMS]  # resent every second until answered
        for d in HELD_QOS1:
            devices.publish(f"{prefix}/{d}/alarm", json.dumps({"ch4": 1.2}).encode(), qos=1).wait_for_publish(10)
        wait_until(lambda: _health(api)[0] == 503, 30)
        _, body = _health(api)
        assert body["status"] == "unhealthy" and "commit failed" in body["reason"], body  # the store alarm
        wait_until(lambda: "leader lease not renewed: the database does not answer" in gw.text(), 30)
        # The QoS 1 messages arrived and wait, unacknowledged, for their commit.
        wait_until(lambda: _mqtt(api, "inflight") == len(HELD_QOS1), 30)
        assert _mqtt(api, "acked") == 0

        # The whole outage: nothing answered, nothing acknowledged, nothing shed.
        wait_until(lambda: time.monotonic() >= down + DOWN, DOWN + 10, 1.0)
        assert [p.poll() for p in held] == [None] * len(held), "an INFORM was answered while PostgreSQL was down"
        assert _mqtt(api, "acked") == 0 and _mqtt(api, "inflight") == len(HELD_QOS1)
        assert _health(api)[0] == 503
        assert _shed(api) == 0

        cluster.start()
        assert [p.wait(60) for p in held] == [0] * len(held)  # answered once committed
        wait_until(lambda: _mqtt(api, "acked") == len(HELD_QOS1) and _mqtt(api, "inflight") == 0, 30)
        wait_until(lambda: _leader_ok(api), 30)
        assert gw.proc.poll() is None and "lost the leader lease" not in gw.text()
        counts = _counts(cluster.dsn)
        assert {int(k.rsplit("/", 1)[1]): c for k, c in counts.items() if k.startswith("sw-1/")} == {
            n: 1 for n in [1, *HELD_INFORMS]}
        assert {k: c for k, c in counts.items() if k.endswith("/gas/ch4")} == {f"{d}/gas/ch4": 1 for d in HELD_QOS1}
        assert _shed(api) == 0  # nothing shed, silently or not
    finally:
        for p in held:
            if p.poll() is None:
                p.kill()
        devices.loop_stop()
        gw.stop()
