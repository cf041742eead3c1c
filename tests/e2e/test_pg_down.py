"""PostgreSQL down under load (a private cluster, stopped for real): the HA leader stops
acknowledging (an INFORM sent meanwhile gets no answer), says so on /healthz (503, the
store error), keeps its lease (nobody else can take it either) and, when the server is back,
commits and answers what it held: every INFORM stored exactly once, the leader unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.test_ha_fencing import Instance
from tests.fixtures.netsnmp import free_tcp_port
from tests.fixtures.pgcluster import PgCluster
from tests.helpers import wait_until

pytestmark = pytest.mark.skipif(shutil.which("snmpinform") is None, reason="net-snmp snmpinform not installed")

#: How long the server stays down at least (kept short for CI; bench-length outages behave
#: the same: nothing is committed or acknowledged until the server answers again).
DOWN = 15.0


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


def _inform(port: int, n: int, retries: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["snmpinform", "-v", "2c", "-c", "public", "-r", str(retries), "-t", "1",
                             f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.3", f"1.3.6.1.2.1.2.2.1.1.{n}", "i", str(n),
                             f"1.3.6.1.2.1.2.2.1.8.{n}", "i", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _counts(dsn: str) -> dict[int, int]:
    with psycopg.connect(dsn, autocommit=True, options="-c search_path=gw") as db:
        return {int(str(k).rsplit("/", 1)[1]): int(c) for k, c in db.execute("SELECT key, count FROM alarms").fetchall()}


def test_the_leader_holds_its_acknowledgements_while_postgresql_is_down(tmp_path: Path, cluster: PgCluster) -> None:
    api = free_tcp_port()
    gw = Instance(tmp_path, "gw-a", "pg#gw", dsn=cluster.dsn, api_port=api, lease=5.0)
    try:
        wait_until(lambda: "gateway ready" in gw.text() or gw.proc.poll() is not None, 60)
        assert gw.proc.poll() is None, gw.text()
        assert _inform(gw.port, 1, 5).wait(30) == 0
        wait_until(lambda: _leader_ok(api), 30)

        cluster.stop()
        held = _inform(gw.port, 2, int(DOWN) + 30)  # resends every second until answered
        wait_until(lambda: _health(api)[0] == 503, 30)
        _, body = _health(api)
        assert body["status"] == "unhealthy" and "commit failed" in body["reason"], body
        wait_until(lambda: "leader lease not renewed: the database does not answer" in gw.text(), 30)
        assert held.poll() is None  # not acknowledged: nothing is committed
        try:
            held.wait(DOWN)  # the outage: still no answer at its end
            raise AssertionError("an INFORM was answered while PostgreSQL was down")
        except subprocess.TimeoutExpired:
            pass
        cluster.start()
        assert held.wait(60) == 0  # answered once committed
        wait_until(lambda: _leader_ok(api), 30)
        assert gw.proc.poll() is None and "lost the leader lease" not in gw.text()
        assert _counts(cluster.dsn) == {1: 1, 2: 1}
    finally:
        gw.stop()
