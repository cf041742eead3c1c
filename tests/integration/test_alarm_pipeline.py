"""The alarm behaviours through the running pipeline: an in-process Gateway on a manual clock
with its real SQLite store. Events are offered to the pipeline directly (adapters are not the
subject here); a no-op pipeline command waits until they are committed, and a clock advance
followed by one runs the alarm timers at the new time."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.config import config_from_dict, load_config
from gateway.errors import ConfigError
from gateway.model import Event
from tests.helpers import base_config, write_config

TEST_PACK = """
[pack]
name = "t"

[[rules]]
id = "held"
event = "t.hold"
# a test fault that must persist a minute
level = 2
key = "{device}/held"
hold_for = "60s"
clear_on = ["t.hold.ok"]

[[rules]]
id = "bouncy"
event = "t.down"
# a test fault that flaps
level = 3
key = "{device}/bouncy"
clear_on = ["t.up"]
flap_count = 4
flap_window = "10m"

[[rules]]
id = "slow"
event = "t.esc"
# a test fault that escalates when left alone
level = 3
key = "{device}/slow"
escalate = [["10m", 2]]
"""

DEVICES = [
    {"id": "router-1", "class": "network.router", "site": "hq", "region": "shanxi", "policy": "mine-monitoring"},
    {"id": "sw-1", "class": "network.switch", "site": "hq", "region": "shanxi", "policy": "mine-monitoring",
     "parent": "router-1"},
    {"id": "gs-1", "class": "mine.gas-sensor", "site": "north", "region": "shanxi", "policy": "mine-monitoring"},
]


def _config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    rules_dir = tmp_path / "rules.d"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "t.toml").write_text(TEST_PACK, "utf-8")
    d = base_config(tmp_path / "var", devices=DEVICES,
                    rules={"packs": ["network", "mine"], "dirs": [str(rules_dir)]}, **extra)
    return d


class Rig:
    def __init__(self, gw: Gateway, clock: ManualClock) -> None:
        self.gw, self.clock = gw, clock

    async def send(self, name: str, device: str, **attrs: Any) -> None:
        assert self.gw.pipeline.offer(Event(self.clock.now(), "test", device, name, attrs))
        await self.gw.pipeline.execute(lambda now: None)

    async def at(self, seconds: float) -> None:
        """Move the clock on and let the pipeline run its timers at the new time."""
        self.clock.advance(seconds)
        await self.gw.pipeline.execute(lambda now: None)

    def alarm(self, key: str) -> dict[str, Any]:
        rows = [a for a in self.gw.store.list_alarms() if a["key"] == key]
        assert rows, f"no alarm {key}"
        return rows[0]  # newest first

    def tickets(self, key: str | None = None) -> list[dict[str, Any]]:
        return [t for t in self.gw.store.list_tickets() if key is None or t["alarm_key"] == key]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def test_parent_down_suppresses_child_until_parent_recovers(tmp_path: Path, clock: ManualClock) -> None:
    async with Gateway(config_from_dict(_config(tmp_path), "t.toml", str(tmp_path)), clock=clock) as gw:
        rig = Rig(gw, clock)
        await rig.send("heartbeat.lost", "router-1")
        assert rig.alarm("router-1/reachability")["state"] == "active"
        assert len(rig.tickets("router-1/reachability")) == 1
        await rig.at(5)
        await rig.send("IF-MIB::linkDown", "sw-1", ifIndex=3)
        await rig.send("IF-MIB::linkDown", "sw-1", ifIndex=4)
        for key in ("sw-1/if/3", "sw-1/if/4"):
            a = rig.alarm(key)
            assert (a["state"], a["suppressed_by"], a["ticket_id"]) == ("suppressed", "parent:router-1", None)
        assert rig.tickets("sw-1/if/3") == [] and gw.pipeline.stats.alarms_suppressed == 2
        await rig.send("IF-MIB::linkUp", "sw-1", ifIndex=4)  # the child recovers first: never a ticket
        await rig.at(60)
        await rig.send("heartbeat.restored", "router-1")  # the parent recovers first: sw-1/if/3 is real
        assert rig.alarm("router-1/reachability")["state"] == "cleared"
        a = rig.alarm("sw-1/if/3")
        assert (a["state"], a["suppressed_by"]) == ("active", None)
        [t] = rig.tickets("sw-1/if/3")
        assert t["opened_at"] == clock.now() and a["ticket_id"] == t["id"]
        assert (t["device"], t["site"]) == ("sw-1", "hq")  # the child's ticket, not its parent's
        assert rig.alarm("sw-1/if/4")["state"] == "cleared" and rig.tickets("sw-1/if/4") == []


async def test_maintenance_window_records_alarms_without_tickets(tmp_path: Path, clock: ManualClock) -> None:
    start = clock.now() - 60
    cfg = _config(tmp_path, maintenance=[{"id": "north-works", "sites": ["north"], "start": start, "end": start + 7200,
                                          "author": "zhang", "reason": "sensor recalibration"}])
    async with Gateway(config_from_dict(cfg, "t.toml", str(tmp_path)), clock=clock) as gw:
        rig = Rig(gw, clock)
        await rig.send("status", "gs-1", ch4=1.2)  # the config's window covers site north
        a = rig.alarm("gs-1/gas/ch4")
        assert (a["state"], a["suppressed_by"]) == ("suppressed", "maintenance:north-works")
        w = await gw.add_maintenance(devices=["sw-*"], end=clock.now() + 3600, author="li", reason="upgrade CR-7")
        assert [d["id"] for d in gw.store.list_maintenance()] == [w.id]  # persisted
        await rig.send("IF-MIB::linkDown", "sw-1", ifIndex=1)
        assert rig.alarm("sw-1/if/1")["suppressed_by"] == f"maintenance:{w.id}"
        assert rig.tickets() == []
        await rig.at(600)
        await gw.end_maintenance(w.id, by="li")  # ended early: the fault is still there → ticket now
        assert rig.alarm("sw-1/if/1")["state"] == "active"
        [t] = rig.tickets("sw-1/if/1")
        assert t["opened_at"] == clock.now()
        assert gw.store.list_maintenance()[0]["ended_by"] == "li"
        listed = gw.maintenance_hooks.list(include_ended=True)
        assert {d["id"]: d["active"] for d in listed} == {"north-works": True, w.id: False}
        await rig.at(7200)  # the config window ends on its own
        assert rig.alarm("gs-1/gas/ch4")["state"] == "active"
        assert len(rig.tickets("gs-1/gas/ch4")) == 1


async def test_hold_for_opens_ticket_only_after_the_hold(tmp_path: Path, clock: ManualClock) -> None:
    async with Gateway(config_from_dict(_config(tmp_path), "t.toml", str(tmp_path)), clock=clock) as gw:
        rig = Rig(gw, clock)
        t0 = clock.now()
        await rig.send("t.hold", "gs-1")
        assert rig.alarm("gs-1/held")["state"] == "pending" and rig.tickets() == []
        assert gw.book.next_deadline() == t0 + 60
        await rig.at(30)
        await rig.send("t.hold", "gs-1")
        assert rig.alarm("gs-1/held")["state"] == "pending" and rig.tickets() == []
        await rig.at(45)  # past the hold: the timer makes it active and opens the ticket
        a = rig.alarm("gs-1/held")
        assert (a["state"], a["count"], a["active_since"]) == ("active", 2, t0 + 60)
        [t] = rig.tickets()
        assert (t["opened_at"], t["level"]) == (t0 + 60, 2)
        # A fault cleared within its hold never opens one.
        await rig.send("t.hold", "router-1")
        await rig.at(10)
        await rig.send("t.hold.ok", "router-1")
        await rig.at(120)
        assert rig.alarm("router-1/held")["state"] == "cleared" and rig.tickets("router-1/held") == []


async def test_hold_survives_a_restart(tmp_path: Path, clock: ManualClock) -> None:
    cfg = config_from_dict(_config(tmp_path), "t.toml", str(tmp_path))
    t0 = clock.now()
    async with Gateway(cfg, clock=clock) as gw:
        await Rig(gw, clock).send("t.hold", "gs-1")
    clock.advance(90)
    async with Gateway(cfg, clock=clock) as gw:
        rig = Rig(gw, clock)
        await rig.at(0)
        [t] = rig.tickets("gs-1/held")
        assert t["opened_at"] == t0 + 60


async def test_flapping_becomes_one_level_4_alarm(tmp_path: Path, clock: ManualClock) -> None:
    async with Gateway(config_from_dict(_config(tmp_path), "t.toml", str(tmp_path)), clock=clock) as gw:
        rig = Rig(gw, clock)
        for _ in range(10):  # 20 transitions in 100 s
            await rig.send("t.down", "sw-1")
            await rig.at(5)
            await rig.send("t.up", "sw-1")
            await rig.at(5)
        rows = [a for a in gw.store.list_alarms() if a["key"] == "sw-1/bouncy"]
        assert len(rows) == 2  # the first occurrence, then the one that turned intermittent
        flap = rows[0]
        assert (flap["level"], flap["state"], flap["flapping"], flap["count"]) == (4, "active", True, 9)
        assert flap["title"].startswith("Intermittent: ")
        tickets = rig.tickets("sw-1/bouncy")
        assert len(tickets) == 2  # not twenty: the second one was re-targeted to level 4
        assert sorted(t["level"] for t in tickets) == [3, 4]
        assert gw.pipeline.stats.alarms_flapping == 1
        await rig.at(600)  # quiet for the flap window, fault gone: it clears
        assert rig.alarm("sw-1/bouncy")["state"] == "cleared"
        assert {t["status"] for t in rig.tickets("sw-1/bouncy")} == {"restored"}


async def test_escalation_over_time_retargets_the_ticket(tmp_path: Path, clock: ManualClock) -> None:
    async with Gateway(config_from_dict(_config(tmp_path), "t.toml", str(tmp_path)), clock=clock) as gw:
        rig = Rig(gw, clock)
        t0 = clock.now()
        await rig.send("t.esc", "gs-1")
        [t] = rig.tickets()
        due = {c["kind"]: c["due_at"] for c in t["clocks"]}
        assert t["level"] == 3 and due["response"] == t0 + 2 * 3600  # mine-monitoring level 3
        await rig.at(599)
        assert rig.tickets()[0]["level"] == 3
        await rig.at(1)
        [t] = rig.tickets()
        due = {c["kind"]: c["due_at"] for c in t["clocks"]}
        assert t["level"] == 2 and rig.alarm("gs-1/slow")["level"] == 2
        assert due["response"] == t0 + 3600 and due["solution"] == t0 + 4 * 3600  # from the ticket's start
        assert any(e["kind"] == "level" for e in gw.store.timeline(t["id"]))


async def test_reload_with_a_bad_file_keeps_the_old_rules(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    cfg_file = write_config(tmp_path / "config.toml", _config(tmp_path))
    async with Gateway(load_config(cfg_file), clock=clock) as gw:
        rig = Rig(gw, clock)
        pid_file = tmp_path / "var" / "gateway.pid"
        assert pid_file.read_text().strip().isdigit()
        before = gw.pipeline.engine
        bad = tmp_path / "rules.d" / "zz-bad.toml"
        bad.write_text('[pack]\nname = "bad"\n[[rules]]\nid = "x"\nevent = "t.new"\nlevel = 9\n', "utf-8")
        caplog.set_level(logging.ERROR, logger="gateway")
        with pytest.raises(ConfigError) as e:
            await gw.reload()
        assert (e.value.file, e.value.key) == (str(bad), "rules[0].level")
        assert f"{bad}: rules[0].level:" in caplog.text and "stay live" in caplog.text
        assert gw.pipeline.engine is before
        status = json.loads((tmp_path / "var" / "reload.json").read_text())
        assert status["ok"] is False and "rules[0].level" in status["error"]
        await rig.send("t.esc", "gs-1")  # the old rules still classify
        assert rig.alarm("gs-1/slow")["state"] == "active"
        # Fixed: the new rule is live, switched between batches.
        bad.write_text('[pack]\nname = "good"\n[[rules]]\nid = "x"\nevent = "t.new"\nlevel = 1\n'
                       '# a new fault\nkey = "{device}/new"\n', "utf-8")
        result = await gw.reload()
        assert result["ok"] and result["rules"] == len(before.rules) + 1
        await rig.send("t.new", "gs-1")
        assert rig.alarm("gs-1/new")["level"] == 1
    assert not pid_file.exists()


async def test_reload_swaps_inventory_and_policies(tmp_path: Path, clock: ManualClock) -> None:
    d = _config(tmp_path)
    cfg_file = write_config(tmp_path / "config.toml", d)
    async with Gateway(load_config(cfg_file), clock=clock) as gw:
        rig = Rig(gw, clock)
        await rig.send("heartbeat.lost", "router-1")
        d["devices"][1].pop("parent")  # sw-1 no longer hangs off router-1
        d["policies"]["mine-monitoring"]["ticket_levels"] = [1, 2]
        write_config(cfg_file, d)
        await gw.reload()
        await rig.send("IF-MIB::linkDown", "sw-1", ifIndex=9)
        a = rig.alarm("sw-1/if/9")
        assert (a["state"], a["ticket_id"]) == ("active", None)  # not suppressed; level 3 no longer ticketed


async def test_record_and_replay(tmp_path: Path, clock: ManualClock, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "events.jsonl"
    d = _config(tmp_path)
    d["pipeline"] = {"record": str(capture)}
    cfg_file = write_config(tmp_path / "config.toml", d)
    async with Gateway(load_config(cfg_file), clock=clock) as gw:
        rig = Rig(gw, clock)
        await rig.send("IF-MIB::linkDown", "sw-1", ifIndex=2, ifDescr="ge-0/0/2")
        await rig.at(30)
        await rig.send("IF-MIB::linkUp", "sw-1", ifIndex=2)
        await rig.send("status", "gs-1", ch4=1.3)
        live_alarms = len(gw.store.list_alarms())
    lines = [json.loads(x) for x in capture.read_text().splitlines()]
    assert [x["name"] for x in lines] == ["IF-MIB::linkDown", "IF-MIB::linkUp", "status"]
    assert lines[0]["attrs"] == {"ifIndex": 2, "ifDescr": "ge-0/0/2"} and lines[1]["ts"] == lines[0]["ts"] + 30

    from gateway.cli.main import main

    new_rules = tmp_path / "candidate"
    new_rules.mkdir()
    (new_rules / "mine.toml").write_text(
        '[pack]\nname = "candidate"\n[[rules]]\nid = "ch4"\nevent = "status"\nwhen = { ch4 = { ge = 1.0 } }\n'
        '# stricter: any CH4 over the alarm limit is critical\nlevel = 1\nkey = "{device}/gas/ch4"\n', "utf-8")
    assert main(["rules", "replay", str(capture), "--rules", str(new_rules), "-c", str(cfg_file), "--compare",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["live"]["alarms"]) == live_alarms
    assert [(a["key"], a["level"]) for a in doc["new"]["alarms"]] == [("gs-1/gas/ch4", 1)]
    assert "- sw-1/if/2: level 3 cleared, count 1, 1 occurrence(s), 1 ticket" in doc["diff"]
    assert "~ gs-1/gas/ch4: level 2 → 1" in doc["diff"]


def test_rules_reload_signals_the_running_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`gateway rules reload` and `gateway maintenance add` reach a real daemon process through
    its control socket; a bad file sent straight to the daemon (SIGHUP) is rejected with file
    and key."""
    import os
    import signal
    import subprocess
    import sys

    from gateway.cli.main import main
    from tests.helpers import ROOT, wait_until

    cfg_file = write_config(tmp_path / "config.toml", _config(tmp_path))
    log = tmp_path / "gateway.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(cfg_file)],
                                stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_until(lambda: "gateway ready" in log.read_text(errors="replace") or proc.poll() is not None, 30)
        assert proc.poll() is None, log.read_text()
        assert main(["rules", "reload", "-c", str(cfg_file)]) == 0
        assert "reloaded gateway (pid" in capsys.readouterr().out
        bad = tmp_path / "rules.d" / "bad.toml"
        bad.write_text('[pack]\nname = "bad"\n[[rules]]\nid = "x"\nevent = "e"\nlevel = 3\nbogus = 1\n', "utf-8")
        os.kill(proc.pid, signal.SIGHUP)  # past the CLI's own check: the daemon must refuse it
        wait_until(lambda: f"{bad}: rules[0].bogus: unknown key" in log.read_text(errors="replace"), 10)
        assert proc.poll() is None
        bad.unlink()
        assert main(["maintenance", "add", "-c", str(cfg_file), "--site", "hq", "--for", "1h", "--reason", "r",
                     "--id", "mw-1", "--author", "li"]) == 0
        assert f"the running gateway (pid {proc.pid}) has it now" in capsys.readouterr().out
        assert "maintenance window mw-1 added by li" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    assert "Task exception was never retrieved" not in log.read_text()
