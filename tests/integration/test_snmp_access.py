"""SNMP listener behaviour with real net-snmp peers: v1 traps (RFC 3584 names), access control
(community, source CIDR, v3-only), device mapping (peer, snmpTrapAddress.0, alias), storm control."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from adapters.snmp import ber
from adapters.snmp.config import StormConfig
from adapters.snmp.storm import StormGuard
from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.fixtures.netsnmp import COLD_START, LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import base_config, eventually

SNMP_TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"


def _gw(tmp_path: Path, port: int, devices: list[dict[str, Any]] | None = None, **snmp: Any) -> Gateway:
    d = base_config(tmp_path / "var", port)
    d["adapters"]["snmp"][0].update(snmp)
    if devices is not None:
        d["devices"] = devices
    return Gateway(config_from_dict(d, "t.toml", str(tmp_path)))


async def test_v1_trap_mapped_per_rfc3584(tmp_path: Path, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    async with _gw(tmp_path, port) as gw:
        # generic-trap 2 (linkDown) from enterprise netSnmp, agent address 127.0.0.1
        r = await asyncio.to_thread(_snmptrap_v1, netsnmp, port)
        assert r.returncode == 0, r.stderr
        [alarm] = await eventually(lambda: gw.store.list_alarms())
        assert alarm["event"] == "IF-MIB::linkDown" and alarm["key"] == "sw-1/if/5"
        assert alarm["attrs"]["agentAddress"] == "127.0.0.1"
        assert alarm["attrs"]["enterprise"].endswith("8072.2.3") or "netSnmp" in alarm["attrs"]["enterprise"]


def _snmptrap_v1(netsnmp: NetSnmp, port: int) -> Any:
    import subprocess

    assert netsnmp.snmptrap
    return subprocess.run(
        [netsnmp.snmptrap, "-v", "1", "-c", "public", f"127.0.0.1:{port}", "1.3.6.1.4.1.8072.2.3", "127.0.0.1",
         "2", "0", "", *link_varbinds(5)],
        capture_output=True, text=True, timeout=15,
    )


async def test_source_cidr_allowlist_and_v3_only(tmp_path: Path, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    async with _gw(tmp_path / "a", port, allowed_sources=["10.0.0.0/8"]) as gw:
        await asyncio.to_thread(netsnmp.trap, port, COLD_START)
        await eventually(lambda: gw.adapters[0].counters.get("rejected.source_not_allowed") == 1)
        assert gw.store.list_alarms() == []
    port = free_udp_port()
    async with _gw(tmp_path / "b", port, allowed_sources=["127.0.0.0/8"]) as gw:
        await asyncio.to_thread(netsnmp.trap, port, COLD_START)
        await eventually(lambda: gw.store.list_alarms())
    port = free_udp_port()
    async with _gw(tmp_path / "c", port, v3_only=True) as gw:
        await asyncio.to_thread(netsnmp.trap, port, COLD_START)
        await eventually(lambda: gw.adapters[0].counters.get("rejected.v1v2c_disabled") == 1)
        assert gw.store.list_alarms() == []


async def test_device_mapping_by_relay_address_and_alias(tmp_path: Path, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    devices = [
        {"id": "relay", "class": "network.router", "addresses": ["127.0.0.1"]},
        {"id": "edge-7", "class": "network.switch", "addresses": ["192.0.2.7"], "parent": "relay"},
    ]
    async with _gw(tmp_path, port, devices=devices, trusted_relays=["127.0.0.1/32"]) as gw:
        # A trusted relay forwards a trap on behalf of 192.0.2.7: snmpTrapAddress.0 names the originator.
        await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, [*link_varbinds(2), SNMP_TRAP_ADDRESS, "a", "192.0.2.7"])
        [alarm] = await eventually(lambda: gw.store.list_alarms())
        assert alarm["device"] == "edge-7" and alarm["key"] == "edge-7/if/2"


def test_storm_guard_counts_and_summarises() -> None:
    g = StormGuard(StormConfig(enabled=True, rate=10, rearm_rate=2, window=1.0), "snmp")
    passed = sum(g.check("10.0.0.1", 0.001 * i)[0] for i in range(100))  # 100 traps in 0.1 s
    assert passed == 10  # the window's budget (rate × window), then suppressed
    ok, summary = g.check("10.0.0.1", 1.05)  # next window: a summary of the storm
    assert summary is not None and summary.name == "snmp.storm"
    assert summary.attrs["suppressed"] == 90 and summary.attrs["received"] == 100
    assert summary.attrs["state"] == "ongoing"
    assert not ok  # still storming until a quiet window
    _, end = g.check("10.0.0.1", 2.2)
    assert end is not None and end.attrs["state"] == "ended"
    assert g.check("10.0.0.2", 2.2) == (True, None)  # per sender


async def test_storm_becomes_one_summarised_alarm(tmp_path: Path) -> None:
    port = free_udp_port()
    async with _gw(tmp_path, port, storm={"enabled": True, "rate": 50, "rearm_rate": 10, "window": 0.5}) as gw:
        pkt = ber.encode_trap(ber.TrapMessage(ber.V2C, b"public", ber.PDU_TRAP_V2, 1, [
            ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, 1)),
            ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, LINK_DOWN)),
            ("1.3.6.1.2.1.2.2.1.1.9", 9),
        ]))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(3):  # three windows of a storm
            for _ in range(200):
                s.sendto(pkt, ("127.0.0.1", port))
            # why: the storm guard counts per 0.5 s window of real time: one burst in each
            await asyncio.sleep(0.55)
        s.close()
        snmp = gw.adapters[0]
        storm = await eventually(lambda: [a for a in gw.store.list_alarms() if a["key"] == "sw-1/trap-storm"], timeout=5)
        assert storm[0]["level"] == 4
        link = next(a for a in gw.store.list_alarms() if a["key"] == "sw-1/if/9")
        suppressed = snmp.counters.get("storm.suppressed", 0)
        assert suppressed > 0 and link["count"] + suppressed == 600  # nothing silently dropped
