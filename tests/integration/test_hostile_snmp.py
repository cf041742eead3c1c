"""Hostile SNMP input against a running gateway, with real net-snmp senders (issue 21):

* ``snmpTrapAddress.0`` names a device only as an IpAddress and only from ``trusted_relays``
  (before: any sender could attribute a trap to any device, or invent one with an OID value);
* a rejected community string is logged by length and a short keyed hash, never in full;
* SNMPv3 discovery Reports are rate-limited per source and never sent outside
  ``allowed_sources`` (an unauthenticated probe gets a larger answer: a reflector).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.fixtures.netsnmp import LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import base_config, eventually

SNMP_TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"
VICTIM = {"id": "victim", "class": "network.router", "site": "hq", "policy": "mine-monitoring",
          "addresses": ["10.20.30.40"]}


def _gw(tmp_path: Path, port: int, **snmp: Any) -> Gateway:
    d = base_config(tmp_path / "var", port)
    d["adapters"]["snmp"][0].update(snmp)
    d["devices"].append(VICTIM)
    return Gateway(config_from_dict(d, "t.toml", str(tmp_path)))


def _devices(gw: Gateway) -> set[str]:
    return {a["device"] for a in gw.store.list_alarms()}


async def test_trap_address_from_untrusted_sender_names_no_device(tmp_path: Path, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    async with _gw(tmp_path, port) as gw:
        snmp = gw.adapters[0]
        # An IpAddress naming another device, from a sender that is no trusted relay.
        r = await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, [*link_varbinds(1), SNMP_TRAP_ADDRESS, "a", "10.20.30.40"])
        assert r.returncode == 0, r.stderr
        await eventually(lambda: _devices(gw) == {"sw-1"})  # the sender's own device, not the victim
        assert snmp.counters["untrusted.trap_address_untrusted"] == 1
        # An OID-typed value: never a device name.
        r = await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, [*link_varbinds(2), SNMP_TRAP_ADDRESS, "o", "1.3.6.1.4.1.999"])
        await eventually(lambda: snmp.counters.get("untrusted.trap_address_not_ip") == 1)
        await eventually(lambda: len(gw.store.list_alarms()) == 2)
        assert _devices(gw) == {"sw-1"}
        assert not [t for t in gw.store.list_tickets() if t["device"] == "victim"]


async def test_trap_address_from_trusted_relay_is_honoured_only_as_ip(tmp_path: Path, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    async with _gw(tmp_path, port, trusted_relays=["127.0.0.0/8"]) as gw:
        snmp = gw.adapters[0]
        r = await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, [*link_varbinds(1), SNMP_TRAP_ADDRESS, "a", "10.20.30.40"])
        assert r.returncode == 0, r.stderr
        await eventually(lambda: _devices(gw) == {"victim"})
        r = await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, [*link_varbinds(2), SNMP_TRAP_ADDRESS, "o", "1.3.6.1.4.1.999"])
        await eventually(lambda: snmp.counters.get("untrusted.trap_address_not_ip") == 1)
        await eventually(lambda: _devices(gw) == {"victim", "sw-1"})
        assert "1.3.6.1.4.1.999" not in gw.inventory.unknown


async def test_rejected_community_is_logged_by_length_only(
    tmp_path: Path, netsnmp: NetSnmp, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_udp_port()
    caplog.set_level(logging.DEBUG)
    async with _gw(tmp_path, port) as gw:
        r = await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(1), community="COMMSECRET-privatX")
        assert r.returncode == 0, r.stderr
        await eventually(lambda: gw.adapters[0].counters.get("rejected.bad_community") == 1)
        assert "bad_community (18 bytes, hash " in caplog.text
        assert "COMMSECRET" not in caplog.text and "privat" not in caplog.text


def _discovery_probe() -> bytes:
    """The engine-ID discovery probe net-snmp's snmpinform sends first (captured on a socket
    of ours that never answers)."""
    inform = shutil.which("snmpinform")
    assert inform
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(10)
        p = subprocess.Popen(
            [inform, "-v", "3", "-u", "probe", "-l", "noAuthNoPriv", "-t", "5", "-r", "0",
             f"127.0.0.1:{s.getsockname()[1]}", "", LINK_DOWN],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            data, _ = s.recvfrom(65535)
        finally:
            p.kill()
            p.wait()
    return data


def _drain(s: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(s.recv(65535, socket.MSG_DONTWAIT))
        except BlockingIOError:
            return out


V3_USER = [{"user": "noc", "auth_protocol": "SHA", "auth_key": "authpass123"}]


async def test_v3_discovery_reports_are_rate_limited_per_source(tmp_path: Path) -> None:
    probe = await asyncio.to_thread(_discovery_probe)
    port = free_udp_port()
    async with _gw(tmp_path, port, users=V3_USER, report_burst=3, report_rate=0.001) as gw:
        snmp = gw.adapters[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            for _ in range(20):
                s.sendto(probe, ("127.0.0.1", port))
            await eventually(lambda: snmp.counters.get("v3.discovery") == 20)
            # Replies are sent while each probe is handled, so all have arrived by now.
            assert len(_drain(s)) == 3
            assert snmp.counters["v3.reports_limited"] == 17


async def test_v3_discovery_gets_no_report_outside_allowed_sources(tmp_path: Path) -> None:
    probe = await asyncio.to_thread(_discovery_probe)
    port = free_udp_port()
    async with _gw(tmp_path, port, users=V3_USER, allowed_sources=["192.0.2.0/24"]) as gw:
        snmp = gw.adapters[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            for _ in range(5):
                s.sendto(probe, ("127.0.0.1", port))
            await eventually(lambda: snmp.counters.get("rejected.source_not_allowed") == 5)
            assert _drain(s) == []
