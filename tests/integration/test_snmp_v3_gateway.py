"""SNMPv3 through a running gateway: authPriv traps and INFORMs from net-snmp, several users,
rejections counted by reason, and a local engine ID that survives a restart."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.fixtures.netsnmp import COLD_START, LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import base_config, eventually

USERS = [
    {"user": "noc", "auth_protocol": "SHA-256", "auth_key": "authpass123", "priv_protocol": "AES-128",
     "priv_key": "privpass123", "engine_ids": ["0x8000000001020304"]},
    {"user": "legacy", "auth_protocol": "MD5", "auth_key": "md5pass1234", "priv_protocol": "DES", "priv_key": "despass1234"},
]


def _gw(tmp_path: Path, port: int, **snmp: Any) -> Gateway:
    d = base_config(tmp_path / "var", port)
    d["adapters"]["snmp"][0].update({"users": USERS, "learn_engine_ids": False, **snmp})
    return Gateway(config_from_dict(d, "t.toml", str(tmp_path)))


def _v3(netsnmp: NetSnmp, cmd: str, port: int, user: str, a: str, A: str, x: str, X: str, oid: str,
        vbs: list[str], engine: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = netsnmp.snmptrap if cmd == "trap" else netsnmp.snmpinform
    assert exe
    args = [exe, "-v", "3", "-u", user, "-l", "authPriv", "-a", a, "-A", A, "-x", x, "-X", X]
    if engine:
        args += ["-e", engine]
    if cmd == "inform":
        args += ["-t", "2", "-r", "1"]
    return subprocess.run([*args, f"127.0.0.1:{port}", "", oid, *vbs], capture_output=True, text=True, timeout=30)


async def test_v3_traps_informs_users_and_rejections(tmp_path: Path, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    async with _gw(tmp_path, port) as gw:
        snmp = gw.adapters[0]
        r = await asyncio.to_thread(_v3, netsnmp, "trap", port, "noc", "SHA-256", "authpass123", "AES", "privpass123",
                                    LINK_DOWN, link_varbinds(8), "0x8000000001020304")
        assert r.returncode == 0, r.stderr
        await eventually(lambda: [a for a in gw.store.list_alarms() if a["key"] == "sw-1/if/8"])
        # An INFORM from the second user: success is net-snmp's own exit status.
        r = await asyncio.to_thread(_v3, netsnmp, "inform", port, "legacy", "MD5", "md5pass1234", "DES", "despass1234",
                                    COLD_START, [])
        assert r.returncode == 0, r.stderr
        assert any(a["key"] == "sw-1/restart" for a in gw.store.list_alarms())
        # Wrong key, unknown user, unknown engine ID: rejected and counted by reason.
        await asyncio.to_thread(_v3, netsnmp, "trap", port, "noc", "SHA-256", "wrongpass999", "AES", "privpass123",
                                LINK_DOWN, link_varbinds(9), "0x8000000001020304")
        await asyncio.to_thread(_v3, netsnmp, "trap", port, "mallory", "SHA-256", "authpass123", "AES", "privpass123",
                                LINK_DOWN, link_varbinds(9), "0x8000000001020304")
        await asyncio.to_thread(_v3, netsnmp, "trap", port, "noc", "SHA-256", "authpass123", "AES", "privpass123",
                                LINK_DOWN, link_varbinds(9), "0x80000000aabbccdd")
        await eventually(lambda: sum(v for k, v in snmp.counters.items() if k.startswith("rejected.")) >= 3)
        reasons = {k for k in snmp.counters if k.startswith("rejected.")}
        assert len(reasons) >= 2, reasons
        assert not [a for a in gw.store.list_alarms() if a["key"] == "sw-1/if/9"]
        engine_id = gw.adapters[0].v3.engine_id
    async with _gw(tmp_path, port) as gw:
        assert gw.adapters[0].v3.engine_id == engine_id  # stable across restarts
