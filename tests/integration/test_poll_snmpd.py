"""Active liveness polling against a real net-snmp agent: a device that stops answering
raises ONE loss alarm on time (and clears when it answers again), a restart is seen from
sysUpTime going back, SNMPv3 credentials work (and wrong ones do not), ICMP echo to
127.0.0.1 counts as a sign of life where the machine allows ICMP sockets."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.poll.icmp import open_icmp_socket
from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.fixtures.snmpd import V3_AUTH, V3_PRIV, V3_USER, Snmpd
from tests.helpers import base_config, eventually

INTERVAL = 0.5
TOLERANCE = 2


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Snmpd]:
    a = Snmpd(tmp_path / "snmpd").start()
    yield a
    a.stop()


def _cfg(tmp_path: Path, devices: list[dict[str, Any]], priv_key: str = V3_PRIV) -> Any:
    d = base_config(tmp_path / "var", None)
    d["devices"] = devices
    d["liveness"] = {"default_interval": 60, "tolerance": TOLERANCE, "grace": 1.0}
    d["adapters"] = {"poll": [{
        "name": "poll", "interval": INTERVAL, "timeout": 0.3, "retries": 0, "jitter": 0.1,
        "credentials": [
            {"name": "public", "version": "2c", "community": "public"},
            {"name": "v3", "version": "3", "user": V3_USER, "auth_protocol": "SHA", "auth_key": V3_AUTH,
             "priv_protocol": "AES", "priv_key": priv_key},
        ],
        "targets": [{"classes": ["network.*"], "methods": ["snmp"], "credential": "public"}],
    }]}
    return config_from_dict(d, "t.toml", str(tmp_path))


def _switch(dev_id: str, port: int, poll: str = "") -> dict[str, Any]:
    return {"id": dev_id, "class": "network.switch", "site": "hq", "policy": "mine-monitoring",
            "addresses": [f"127.0.0.1:{port}"], "poll": poll}


def _alarms(gw: Gateway, key: str) -> list[dict[str, Any]]:
    return [a for a in gw.store.list_alarms() if a["key"] == key]


def _answering(gw: Gateway, dev: str, since: float) -> bool:
    """The poller has had an answer (the only device of these tests) and the watchdog heard it."""
    assert gw.watchdog is not None
    poller = next(a for a in gw.adapters if a.name == "poll")
    st = gw.watchdog.status(dev)
    return poller.stats().get("answered", 0) >= 1 and st is not None and not st.lost and st.last_seen > since


async def test_a_device_that_stops_answering_raises_one_loss_alarm_on_time(tmp_path: Path, agent: Snmpd) -> None:
    cfg = _cfg(tmp_path, [_switch("sw-1", agent.port)])
    async with Gateway(cfg) as gw:
        assert gw.watchdog is not None
        await eventually(lambda: _answering(gw, "sw-1", time.time() - 0.1), what="sw-1 answering GETs")
        st = gw.watchdog.status("sw-1")
        assert st is not None and st.interval == INTERVAL  # watched at the poll interval
        agent.pause()
        paused_at = time.time()
        lost = await eventually(lambda: _alarms(gw, "sw-1/reachability"), timeout=20, what="a loss alarm")
        # Deadline: the last answer (before the pause) + interval × tolerance; the pipeline's
        # timer wakes at least once a second.
        assert lost[0]["first_seen"] <= paused_at + INTERVAL * TOLERANCE + 0.1
        assert lost[0]["state"] == "active" and lost[0]["level"] == 1
        await asyncio.sleep(INTERVAL * TOLERANCE * 3)  # why: further silent intervals must not raise more alarms
        assert len(_alarms(gw, "sw-1/reachability")) == 1
        assert _alarms(gw, "sw-1/reachability")[0]["count"] == 1
        agent.resume()
        await eventually(lambda: [a for a in _alarms(gw, "sw-1/reachability") if a["state"] == "cleared"],
                         timeout=30, what="the loss cleared after answers resumed")


async def test_a_restart_is_seen_from_sysuptime(tmp_path: Path, agent: Snmpd) -> None:
    cfg = _cfg(tmp_path, [_switch("sw-1", agent.port)])
    async with Gateway(cfg) as gw:
        poller = next(a for a in gw.adapters if a.name == "poll")
        await eventually(lambda: poller.stats().get("answered", 0) >= 2, what="two answers before the restart")
        await asyncio.to_thread(agent.restart)
        alarm = await eventually(lambda: _alarms(gw, "sw-1/restart"), timeout=20, what="a restart alarm")
        assert alarm[0]["rule"] == "uptime-restart"
        attrs = alarm[0]["attrs"]
        assert attrs["uptime_after"] < attrs["uptime_before"]
        assert poller.stats()["restarts"] == 1


async def test_v3_credentials_answer_and_wrong_keys_do_not(tmp_path: Path, agent: Snmpd) -> None:
    cfg = _cfg(tmp_path, [_switch("sw-v3", agent.port, poll="snmp:v3")])
    async with Gateway(cfg) as gw:
        poller = next(a for a in gw.adapters if a.name == "poll")
        await eventually(lambda: _answering(gw, "sw-v3", time.time() - 0.1), timeout=20, what="v3 answers")
        assert poller.stats()["answered"] >= 1
    bad = _cfg(tmp_path / "bad", [_switch("sw-v3", agent.port, poll="snmp:v3")], priv_key="wrong-priv-key")
    async with Gateway(bad) as gw:
        poller = next(a for a in gw.adapters if a.name == "poll")
        await eventually(lambda: _alarms(gw, "sw-v3/reachability"), timeout=20, what="a loss with wrong keys")
        assert poller.stats().get("answered", 0) == 0


async def test_icmp_echo_to_localhost_is_a_heartbeat(tmp_path: Path) -> None:
    sock, mode, why = open_icmp_socket()
    if sock is None:
        pytest.skip(f"this machine allows no ICMP socket to this process: {why}")
    sock.close()
    cfg = _cfg(tmp_path, [{"id": "host-1", "class": "server", "site": "hq", "policy": "mine-monitoring",
                           "addresses": ["127.0.0.1"], "poll": "icmp"}])
    async with Gateway(cfg) as gw:
        poller = next(a for a in gw.adapters if a.name == "poll")
        await eventually(lambda: _answering(gw, "host-1", time.time() - 0.1), what=f"echo replies ({mode} socket)")
        assert poller.stats()["icmp.sent"] >= 1 and poller.stats().get("icmp.unavailable", 0) == 0


async def test_a_silent_parent_suppresses_its_silent_childs_loss(tmp_path: Path) -> None:
    """Two polled devices at ports where nothing answers: the core switch's loss is the alarm;
    the access switch behind it is suppressed (parent down), as for MQTT heartbeats."""
    from tests.fixtures.netsnmp import free_udp_port

    core = _switch("core", free_udp_port())
    acc = {**_switch("acc", free_udp_port()), "parent": "core"}
    cfg = _cfg(tmp_path, [core, acc])
    async with Gateway(cfg) as gw:
        await eventually(lambda: _alarms(gw, "core/reachability") and _alarms(gw, "acc/reachability"),
                         timeout=20, what="both losses recorded")
        assert _alarms(gw, "core/reachability")[0]["state"] == "active"
        assert _alarms(gw, "acc/reachability")[0]["state"] == "suppressed"
        assert not [t for t in gw.store.list_tickets() if t["device"] == "acc"]


def test_a_v3_agent_that_restarted_is_polled_again_and_its_restart_seen() -> None:
    """Runs the scenario below in a fresh interpreter. In the same process after
    ``test_v3_credentials_answer_and_wrong_keys_do_not`` it fails (the restart is not seen, even
    with a fresh pysnmp engine), so some state outlives a Gateway there; the cause is not found
    yet. A daemon is one process per gateway, which is what this checks."""
    node = f"{__file__}::test_v3_restart_scenario_in_its_own_process"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
                       capture_output=True, text=True, timeout=180, env={**os.environ, "GATEWAY_POLL_ISOLATED": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 passed" in r.stdout


@pytest.mark.skipif(not os.environ.get("GATEWAY_POLL_ISOLATED"), reason="run by the test above, in its own process")
async def test_v3_restart_scenario_in_its_own_process(tmp_path: Path, agent: Snmpd) -> None:
    """pysnmp keeps a v3 agent's engine time for minutes; after the agent restarts (engine time
    reset) the poller forgets it and discovers it again, instead of calling it lost."""
    cfg = _cfg(tmp_path, [_switch("sw-v3", agent.port, poll="snmp:v3")])
    async with Gateway(cfg) as gw:
        poller = next(a for a in gw.adapters if a.name == "poll")
        # A restart shows as an uptime that went back (or a boot time later by more than the
        # 10 s slack): the agent must have run longer before the restart than the restart and
        # the v3 rediscovery take (≈ 2 s) before its first answer after it — else the uptime
        # after is higher than before, and no poller could tell.
        await eventually(lambda: poller.stats().get("answered", 0) >= 2
                         and poller._uptimes.get("sw-v3", (0, 0.0))[0] >= 600, timeout=20, what="v3 answers for 6 s")
        await asyncio.to_thread(agent.restart)
        alarm = await eventually(lambda: _alarms(gw, "sw-v3/restart"), timeout=20,
                                 what=lambda: f"the v3 restart seen; poller {poller.stats()}")
        assert alarm[0]["rule"] == "uptime-restart"
        answered = poller.stats()["answered"]
        await eventually(lambda: poller.stats()["answered"] >= answered + 3, timeout=10, what="answers go on")
