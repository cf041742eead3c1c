"""The README's tour, run as written: its commands are read from README.md itself.

config.example.toml is copied to a temporary directory (so its data dir, ``var`` next to the
file, is a fresh one) with free ports instead of 1162 and 8080, and a Mosquitto of the test's
own instead of the one on 1883 the README asks for; the daemon runs as README says, net-snmp's
``snmptrap`` sends the README's linkDown, and every CLI command of the tour must work as
shown, ``ticket ack`` included, with no API token configured.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import Daemon
from tests.fixtures.mqtt_broker import MosquittoProcess
from tests.fixtures.netsnmp import LINK_DOWN, LINK_UP, free_tcp_port, free_udp_port
from tests.helpers import EXAMPLE, ROOT, wait_until

README = ROOT / "README.md"


def _tour_commands() -> list[list[str]]:
    """Every command of the README's "A short tour" section, comments dropped."""
    text = README.read_text("utf-8")
    tour = text[text.index("## A short tour"):text.index("## Commands")]
    out = []
    for block in tour.split("```sh\n")[1:]:
        for line in block.split("```")[0].replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                out.append(argv)
    return out


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"config.example.toml no longer has exactly one {old!r}: update this test"
    return text.replace(old, new)


class Tour:
    def __init__(self, tmp_path: Path, broker_url: str) -> None:
        self.snmp_port = free_udp_port()
        self.cfg = tmp_path / "config.example.toml"
        text = EXAMPLE.read_text("utf-8")
        text = _replace_once(text, "port = 1162\n", f"port = {self.snmp_port}\n")
        text = _replace_once(text, "port = 8080\n", f"port = {free_tcp_port()}\n")
        text = _replace_once(text, 'url = "mqtt://127.0.0.1:1883"', f'url = "{broker_url}"')
        self.cfg.write_text(text, "utf-8")
        self.commands = _tour_commands()

    def argv(self, cmd: list[str]) -> list[str]:
        """A README command with this tour's config, port and interpreter."""
        out = [str(self.cfg) if a == "config.example.toml" else a.replace("127.0.0.1:1162", f"127.0.0.1:{self.snmp_port}")
               for a in cmd]
        if out[0] == "scripts/gateway":
            return [sys.executable, "-m", "gateway", *out[1:]]
        if out[0] == "snmptrap":
            exe = shutil.which("snmptrap")
            if exe is None:
                pytest.fail("net-snmp's snmptrap is missing: install the Debian package 'snmp' (scripts/test does)")
            return [exe, *out[1:]]
        raise AssertionError(f"unexpected command in the README's tour: {cmd}")

    def run(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(cmd), capture_output=True, text=True, cwd=self.cfg.parent, timeout=120, check=False)
        assert r.returncode == 0, (cmd, r.stderr)
        assert "Traceback" not in r.stderr
        return r

    def gateway(self, *args: str) -> Any:
        return json.loads(self.run(["scripts/gateway", *args, "-c", "config.example.toml", "--json"]).stdout)

    def alarm(self) -> dict[str, Any] | None:
        return next((a for a in self.gateway("alarms") if a["key"] == "core-switch-1/if/7"), None)


def test_the_readme_tour_works_as_written(tmp_path: Path, private_broker: Callable[[], MosquittoProcess]) -> None:
    assert "start one first" in README.read_text("utf-8")  # the broker this test starts, as the README says
    tour = Tour(tmp_path, private_broker().url)
    run_cmd, trap, *cli = [c for c in tour.commands if c[:2] != ["scripts/gateway", "demo"]]
    assert run_cmd == ["scripts/gateway", "run", "-c", "config.example.toml"]
    assert trap[0] == "snmptrap" and LINK_DOWN in trap
    assert [c[1:3] for c in cli] == [["alarms", "-c"], ["tickets", "-c"], ["ticket", "show"], ["ticket", "ack"],
                                     ["report", "1"]]
    daemon = Daemon(tour.cfg, tmp_path / "gateway.log")  # `gateway run -c FILE`, as above
    daemon.start()
    try:
        tour.run(trap)
        wait_until(tour.alarm, 30)
        a = tour.alarm()
        assert a is not None and (a["level"], a["state"], a["device"]) == (3, "active", "core-switch-1")

        outputs = [tour.run(c).stdout for c in cli]  # alarms, tickets, ticket show 1, ticket ack 1, report 1
        assert "core-switch-1/if/7" in outputs[0] and "core-switch-1/if/7" in outputs[1]
        assert outputs[2].startswith("Ticket 1  level 3 (minor)")
        assert outputs[3].startswith("ticket 1: acknowledged, level 3 (minor)")
        assert outputs[4].startswith("# Post-incident report: ticket 1")

        # "a ticket whose response clock is due in 24 h and on-site clock in 4 h"
        t = tour.gateway("ticket", "show", "1")
        due = {c["kind"]: datetime.fromisoformat(c["due_at"]) - datetime.fromisoformat(c["started_at"])
               for c in t["clocks"] if c["due_at"]}
        assert (due["response"].total_seconds(), due["on_site"].total_seconds()) == (24 * 3600, 4 * 3600)
        assert [(e["actor"], e["kind"]) for e in t["timeline"]][-1] == ("user:alice", "acknowledge")

        # "Send the trap again: the count goes up, no second ticket."
        tour.run(trap)
        wait_until(lambda: (tour.alarm() or {}).get("count") == 2, 30)
        assert len(tour.gateway("tickets")) == 1

        # "Send the linkUp: the alarm clears and the ticket moves to restored."
        tour.run([LINK_UP if a == LINK_DOWN else a for a in trap])
        wait_until(lambda: (tour.alarm() or {}).get("state") == "cleared", 30)
        [ticket] = tour.gateway("tickets")
        assert ticket["status"] == "restored"
        assert (tmp_path / "var" / "gateway.db").exists()  # "State lives in var/gateway.db next to the config file"
        assert daemon.alive()
    finally:
        assert daemon.stop() == 0
