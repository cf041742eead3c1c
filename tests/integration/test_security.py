"""Security properties: secrets never printed by check-config, bad input logged at a bounded
rate (an attacker cannot fill the disk) while every rejection is still counted."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.fixtures.netsnmp import free_udp_port
from tests.helpers import ROOT, base_config, eventually, to_toml

SECRETS = ["tok-Operator-5ecret", "mqtt-Pa55word-xyz", "webhook-5ecret-0123456789", "authpass-5ecret", "privpass-5ecret",
           "pd-routing-Key-42"]


def test_check_config_never_prints_secrets(tmp_path: Path) -> None:
    d = base_config(tmp_path / "var", 1162)
    d["api"] = {"enabled": True, "tokens": [{"name": "noc", "token": SECRETS[0], "role": "operator"}]}
    d["adapters"]["snmp"][0]["users"] = [{"user": "noc", "auth_protocol": "SHA", "auth_key": SECRETS[3],
                                         "priv_protocol": "AES", "priv_key": SECRETS[4]}]
    d["adapters"]["mqtt"] = [{"url": "mqtt://127.0.0.1:1883", "username": "gw", "password": SECRETS[1],
                              "subscriptions": [{"topic": "t/{device}/heartbeat"}]}]
    d["helpdesk"] = [{"type": "webhook", "name": "wh", "url": "http://127.0.0.1:9/", "secret": SECRETS[2]},
                     {"type": "pagerduty", "name": "pd", "routing_key": SECRETS[5]}]
    cfg = tmp_path / "config.toml"
    cfg.write_text(to_toml(d))
    r = subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    for s in SECRETS:
        assert s not in r.stdout and s not in r.stderr
    # ...and a config error next to a secret does not echo the secret either.
    cfg.write_text(to_toml(d).replace('"role" = "operator"', '"role" = "root"'))
    r = subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode != 0 and "api.tokens[0].role" in r.stderr
    for s in SECRETS:
        assert s not in r.stdout and s not in r.stderr


async def test_bad_input_logging_is_rate_limited_but_every_packet_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_udp_port()
    caplog.set_level(logging.WARNING, logger="adapters.snmp")
    async with Gateway(config_from_dict(base_config(tmp_path / "var", port), "t.toml", str(tmp_path))) as gw:
        snmp = gw.adapters[0]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(10_000):
            s.sendto(b"\x30\x03\x02\x01" + bytes([i % 256]), ("127.0.0.1", port))
            if i % 500 == 0:  # paced by the reader: every 500 datagrams, until it has read them all
                await eventually(lambda i=i: snmp.counters.get("received", 0) > i, timeout=20)
        s.close()
        await eventually(lambda: snmp.counters.get("received", 0) == 10_000, timeout=20)
        rejected = sum(v for k, v in snmp.counters.items() if k.startswith("rejected."))
        assert rejected == 10_000
        lines = [r for r in caplog.records if r.name == "adapters.snmp" and "rejected" in r.getMessage()]
        assert 0 < len(lines) <= 50, len(lines)
