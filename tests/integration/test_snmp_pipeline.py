"""A running gateway (in process) fed by net-snmp's snmptrap/snmpinform over real UDP."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from adapters.snmp import ber
from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.fixtures.netsnmp import COLD_START, LINK_DOWN, LINK_UP, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import base_config, eventually


def _cfg(tmp_path: Path, port: int, **snmp: object):  # type: ignore[no-untyped-def]
    d = base_config(tmp_path / "var", port)
    d["adapters"]["snmp"][0].update(snmp)
    return config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))


async def test_link_down_opens_one_ticket_and_storm_folds(tmp_path: Path, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    async with Gateway(_cfg(tmp_path, port)) as gw:
        r = await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(7, "eth7"))
        assert r.returncode == 0, r.stderr
        [alarm] = await eventually(lambda: gw.store.list_alarms())
        assert (alarm["key"], alarm["level"], alarm["state"], alarm["device"]) == ("sw-1/if/7", 3, "active", "sw-1")
        assert alarm["event"] == "IF-MIB::linkDown" and alarm["attrs"]["ifDescr"] == "eth7"
        [ticket] = gw.store.list_tickets()
        assert ticket["alarm_key"] == "sw-1/if/7" and ticket["status"] == "open"
        # A storm of the same fault: one alarm, exact count, no second ticket.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        pkt = ber.encode_trap(ber.TrapMessage(ber.V2C, b"public", ber.PDU_TRAP_V2, 1, [
            ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, 5)),
            ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, LINK_DOWN)),
            ("1.3.6.1.2.1.2.2.1.1.7", 7),
        ]))
        for _ in range(2000):
            sock.sendto(pkt, ("127.0.0.1", port))
        sock.close()
        await eventually(lambda: gw.store.list_alarms()[0]["count"] == 2001, timeout=10)
        assert len(gw.store.list_tickets()) == 1
        assert gw.pipeline.stats.batches < 2001  # folded: far fewer transactions than events
        r = await asyncio.to_thread(netsnmp.trap, port, LINK_UP, link_varbinds(7))
        await eventually(lambda: gw.store.list_alarms()[0]["state"] == "cleared")
        [ticket] = gw.store.list_tickets()
        assert ticket["status"] == "restored"


async def test_bad_packets_are_counted_and_logged_with_peer(
    tmp_path: Path, netsnmp: NetSnmp, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_udp_port()
    caplog.set_level(logging.WARNING, logger="adapters.snmp")
    async with Gateway(_cfg(tmp_path, port)) as gw:
        snmp = gw.adapters[0]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(b"\x30\x82\xff\xff garbage", ("127.0.0.1", port))
        sock.sendto(b"not snmp at all", ("127.0.0.1", port))
        sock.close()
        r = await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(1), community="secret")
        assert r.returncode == 0
        await eventually(lambda: snmp.counters.get("rejected.bad_community") == 1)
        await eventually(lambda: sum(v for k, v in snmp.counters.items() if k.startswith("rejected.")) == 3)
        assert "127.0.0.1" in caplog.text and "bad_community" in caplog.text
        # ... and the receiver keeps working.
        r = await asyncio.to_thread(netsnmp.trap, port, COLD_START)
        await eventually(lambda: any(a["key"] == "sw-1/restart" for a in gw.store.list_alarms()))
        assert gw.store.list_alarms(state="active")


async def test_inform_answered_only_after_commit(tmp_path: Path, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    async with Gateway(_cfg(tmp_path, port)) as gw:
        gw.pipeline.paused_commit = True  # the store transaction cannot complete
        r = await asyncio.to_thread(netsnmp.inform, port, COLD_START, timeout=1, retries=0)
        assert r.returncode != 0, "INFORM was answered although nothing was committed"
        assert gw.store.list_alarms() == []
        gw.pipeline.paused_commit = False
        r = await asyncio.to_thread(netsnmp.inform, port, COLD_START, timeout=2, retries=1)
        assert r.returncode == 0, r.stderr
        [alarm] = gw.store.list_alarms()
        assert alarm["key"] == "sw-1/restart" and alarm["count"] == 2  # the held one, then the answered one


async def test_unknown_sender_visible_or_dropped(tmp_path: Path, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    d = base_config(tmp_path / "var", port)
    d["devices"] = []
    cfg = config_from_dict(d, "t.toml", str(tmp_path))
    async with Gateway(cfg) as gw:
        await asyncio.to_thread(netsnmp.trap, port, COLD_START)
        [alarm] = await eventually(lambda: gw.store.list_alarms())
        assert alarm["device"] == "127.0.0.1"  # unknown devices are accepted and shown
    port2 = free_udp_port()
    d2 = base_config(tmp_path / "var2", port2)
    d2["devices"] = []
    d2["adapters"]["snmp"][0]["unknown_devices"] = "drop"
    async with Gateway(config_from_dict(d2, "t.toml", str(tmp_path))) as gw:
        await asyncio.to_thread(netsnmp.trap, port2, COLD_START)
        await eventually(lambda: gw.adapters[0].counters.get("dropped.unknown_device") == 1)
        assert gw.store.list_alarms() == []


async def test_state_survives_restart(tmp_path: Path, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    cfg = _cfg(tmp_path, port)
    async with Gateway(cfg) as gw:
        await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(2))
        await eventually(lambda: gw.store.list_tickets())
    async with Gateway(cfg) as gw:
        assert len(gw.book.open) == 1 and len(gw.desk.open) == 1
        await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(2))
        await eventually(lambda: gw.store.list_alarms()[0]["count"] == 2)
        assert len(gw.store.list_tickets()) == 1


async def test_inform_retransmissions_are_recorded_once(tmp_path: Path, netsnmp: NetSnmp) -> None:
    """net-snmp resends an unanswered INFORM with the same request-id: one notification."""
    port = free_udp_port()
    async with Gateway(_cfg(tmp_path, port)) as gw:
        gw.pipeline.paused_commit = True

        async def release() -> None:
            # Held until snmpinform has resent the unanswered INFORM twice.
            await eventually(lambda: gw.adapters[0].counters.get("informs.retransmitted", 0) >= 2)
            gw.pipeline.paused_commit = False

        task = asyncio.create_task(release())
        r = await asyncio.to_thread(netsnmp.inform, port, COLD_START, timeout=1, retries=5)
        await task
        assert r.returncode == 0, r.stderr
        [alarm] = await eventually(lambda: gw.store.list_alarms())
        assert alarm["count"] == 1
        assert gw.adapters[0].counters.get("informs.retransmitted", 0) >= 1
