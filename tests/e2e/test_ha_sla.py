"""HA with real processes on PostgreSQL: SLA warnings and breaches fire once across a
failover. One ticket's warning and breach fired on the old leader before it was killed
(the new leader must not fire them again); another ticket's warning falls due while nobody
leads (the new leader fires it once, when it takes over), and its breach after."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.test_ha_fencing import Instance, _holder
from tests.e2e.test_ha_standby_api import OP_TOKEN, _api, _free_tcp
from tests.helpers import wait_until
from tests.store_contract.backends import POSTGRESQL, pg_dsn, pg_schema

LEASE = 4.0  # the lease outlives the kill by at least 3 s: the slow ticket's warning falls due meanwhile


@pytest.fixture
def location(tmp_path: Path) -> Iterator[str]:
    loc = POSTGRESQL.location(tmp_path)
    yield loc
    POSTGRESQL.drop(loc)


def _sla(location: str) -> dict[tuple[int, str], int]:
    with psycopg.connect(pg_dsn(), autocommit=True, options=f"-c search_path={pg_schema(location)}") as db:
        rows = db.execute("SELECT ticket_id, kind, count(*) FROM timeline WHERE kind IN ('sla_warning', 'sla_breach') "
                          "GROUP BY ticket_id, kind").fetchall()
    return {(int(t), str(k)): int(c) for t, k, c in rows}


def _contracts(port: int) -> dict[str, Any]:
    return {
        **_api(port),
        "policies": {
            "fast": {"warn_at": [0.5], "levels": {"2": {"response": "4s"}}},
            "slow": {"warn_at": [0.5], "levels": {"2": {"response": "20s"}}},
        },
        "inventory": {"default_policy": "fast"},
        "devices": [
            {"id": "sw-1", "class": "network.switch", "site": "hq", "policy": "fast", "addresses": ["127.0.0.1"]},
            {"id": "sw-2", "class": "network.switch", "site": "hq", "policy": "slow", "addresses": ["127.0.0.2"]},
        ],
    }


def test_sla_warnings_and_breaches_fire_once_across_a_failover(tmp_path: Path, location: str) -> None:
    pa, pb = _free_tcp(), _free_tcp()
    a = Instance(tmp_path, "gw-a", location, lease=LEASE, extra=_contracts(pa))
    b: Instance | None = None
    try:
        wait_until(lambda: "gateway ready" in a.text() or a.proc.poll() is not None, 60)
        assert a.proc.poll() is None, a.text()
        b = Instance(tmp_path, "gw-b", location, lease=LEASE, extra=_contracts(pb))
        wait_until(lambda: "standby: gw-a holds the leader lease" in b.text(), 60)  # type: ignore[union-attr]
        with httpx.Client(base_url=f"http://127.0.0.1:{pa}", timeout=20,
                          headers={"Authorization": f"Bearer {OP_TOKEN}"}) as api:
            def report(device: str) -> int:
                r = api.post("/api/v1/tickets", json={"device": device, "level": 2, "title": f"{device} down",
                                                       "reported_by": "caller", "channel": "phone"})
                assert r.status_code == 201, r.text
                return int(r.json()["id"])

            fast = report("sw-1")
            slow = report("sw-2")
            reported = time.monotonic()
        # The fast ticket's warning (2 s) and breach (4 s) fire on the old leader.
        wait_until(lambda: _sla(location).get((fast, "sla_breach")) == 1, 30)
        # Killed 2 s before the slow ticket's warning is due (10 s); the lease lapses >= 3 s later.
        wait_until(lambda: time.monotonic() >= reported + 8, 30)
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        assert (slow, "sla_warning") not in _sla(location)  # not fired by the old leader
        wait_until(lambda: _holder(location) == "gw-b", 4 * LEASE + 20)
        wait_until(lambda: "gateway ready" in b.text(), 60)  # type: ignore[union-attr]
        # The slow ticket's breach (20 s) fires on the new leader; by then it has run its timers.
        wait_until(lambda: _sla(location).get((slow, "sla_breach")) == 1, 40)
        assert _sla(location) == {(fast, "sla_warning"): 1, (fast, "sla_breach"): 1,
                                  (slow, "sla_warning"): 1, (slow, "sla_breach"): 1}
    finally:
        a.stop()
        if b is not None:
            b.stop()
