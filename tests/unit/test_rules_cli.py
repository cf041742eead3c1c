"""`gateway rules test|replay|reload` and `gateway maintenance add|list|end`, run in process
against config files and a real SQLite store in a temporary directory."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.main import main
from gateway.clock import ManualClock
from gateway.config import load_config
from gateway.runtime.recorder import JsonlRecorder, event_from_dict, read_events
from tests.helpers import base_config, write_config

DEVICES = [
    {"id": "router-1", "class": "network.router", "site": "hq", "policy": "mine-monitoring"},
    {"id": "sw-1", "class": "network.switch", "site": "hq", "policy": "mine-monitoring", "parent": "router-1"},
    {"id": "gs-1", "class": "mine.gas-sensor", "site": "north", "policy": "mine-monitoring"},
]


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.toml", base_config(tmp_path / "var", devices=DEVICES))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def event_file(tmp_path: Path, doc: Any, name: str = "ev.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps(doc), "utf-8")
    return str(p)


@pytest.mark.parametrize(
    "event, lines",
    [
        ({"name": "IF-MIB::linkDown", "device": "sw-1", "attrs": {"ifIndex": 7, "ifDescr": "ge-0/0/7"}},
         ["[x] network/if-link-down  raise level 3  priority 100",
          "classification: rule if-link-down → raise, level 3 (minor), key sw-1/if/7",
          "raised: would open ticket 1 (policy mine-monitoring, level 3)"]),
        ({"name": "status", "device": "gs-1", "attrs": {"ch4": 1.6}},
         ["[x] mine/ch4-cutoff  raise level 1  priority 10",
          "[-] mine/ch4-alarm  raise level 2  priority 20 (matched; an earlier rule won)",
          "[ ] mine/co-alarm  raise level 2  priority 20 (conditions not met)",
          "raised: would open ticket 1 (policy mine-monitoring, level 1)"]),
        ({"name": "SNMPv2-MIB::authenticationFailure", "device": "sw-1"},
         ["pending: would record alarm 1 as pending, no ticket until 3 occurrences within 600 s"]),
        ({"name": "IF-MIB::linkUp", "device": "sw-1", "attrs": {"ifIndex": 7}},
         ["classification: rule if-link-down → clear, key sw-1/if/7",
          "nothing would change (a clear with no open alarm for the key)"]),
        ({"name": "vendor.thing", "device": "10.9.9.9"},
         ["event vendor.thing from 10.9.9.9 (unknown device, class unknown", "no rule names this event",
          "unclassified: counted"]),
    ],
    ids=["link-down", "first-match-wins", "hold-count", "clear-nothing-open", "unclassified"],
)
def test_rules_test_dry_run(tmp_path: Path, cfg_file: Path, capsys: pytest.CaptureFixture[str],
                            event: dict[str, Any], lines: list[str]) -> None:
    code, out, err = run(capsys, "rules", "test", event_file(tmp_path, event), "-c", str(cfg_file))
    assert code == 0, err
    for line in lines:
        assert line in out, out


def test_rules_test_sees_the_current_store_state(tmp_path: Path, cfg_file: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.app import Gateway
    from gateway.model import Event

    clock = ManualClock()

    async def live() -> None:
        async with Gateway(load_config(cfg_file), clock=clock) as gw:
            for _ in range(4):
                gw.pipeline.offer(Event(clock.now(), "t", "sw-1", "IF-MIB::linkDown", {"ifIndex": 7}))
            gw.pipeline.offer(Event(clock.now(), "t", "router-1", "heartbeat.lost", {}))
            await gw.pipeline.execute(lambda now: None)

    asyncio.run(live())
    ev = event_file(tmp_path, [{"name": "IF-MIB::linkDown", "device": "sw-1", "attrs": {"ifIndex": 7}},
                               {"name": "IF-MIB::linkDown", "device": "sw-1", "attrs": {"ifIndex": 8}}])
    code, out, err = run(capsys, "rules", "test", ev, "-c", str(cfg_file), "--json")
    assert code == 0, err
    first, second = json.loads(out)
    assert [o["text"] for o in first["outcomes"]] == ["repeat of alarm 1 (count 5)"]
    assert second["outcomes"][0]["change"] == "suppressed"
    assert second["outcomes"][0]["suppressed_by"] == "parent:router-1"
    assert first["candidates"][0]["rule"] == "if-link-down-medical"  # not under the mine contract
    assert first["candidates"][1] == {"rule": "if-link-down", "pack": "network", "action": "raise", "level": 3,
                                      "priority": 100, "matched": True, "used": True, "policy": [],
                                      "other_contract": False}
    code, out, _ = run(capsys, "rules", "test", ev, "-c", str(cfg_file), "--json", "--no-state")
    assert json.loads(out)[0]["outcomes"][0]["text"] == "open ticket 1 (policy mine-monitoring, level 3)"


@pytest.mark.parametrize(
    "doc, problem",
    [("{not json", "cannot read an event"), ({"device": "sw-1"}, "non-empty string 'name'"),
     ([{"name": "x", "device": "d", "attrs": 3}], "[0]: 'attrs' must be an object")],
    ids=["bad-json", "no-name", "bad-attrs"],
)
def test_rules_test_rejects_bad_event_files(tmp_path: Path, cfg_file: Path, capsys: pytest.CaptureFixture[str],
                                            doc: Any, problem: str) -> None:
    p = tmp_path / "ev.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc), "utf-8")
    code, _, err = run(capsys, "rules", "test", str(p), "-c", str(cfg_file))
    assert code == 1 and problem in err


def test_rules_reload_without_a_daemon_and_with_a_bad_pack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = base_config(tmp_path / "var", devices=DEVICES, rules={"dirs": ["rules.d"]})
    (tmp_path / "rules.d").mkdir()
    cfg = write_config(tmp_path / "config.toml", d)
    code, _, err = run(capsys, "rules", "reload", "-c", str(cfg))
    assert code == 1 and "no running gateway" in err
    bad = tmp_path / "rules.d" / "x.toml"
    bad.write_text('[pack]\nname = "x"\n[[rules]]\nid = "a"\nevent = "e"\nlevel = 3\nwhen = { v = { regex = "(" } }\n')
    code, _, err = run(capsys, "rules", "reload", "-c", str(cfg))
    assert code == 2 and f"{bad}: rules[0].when.v" in err and "invalid regular expression" in err


def test_maintenance_cli_add_list_end(tmp_path: Path, cfg_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "maintenance", "add", "-c", str(cfg_file), "--device", "sw-*", "--class", "network.*",
                         "--for", "2h", "--author", "li", "--reason", "upgrade CR-9", "--id", "mw-9", "--json")
    assert code == 0, err
    w = json.loads(out.split("\n  (")[0])
    assert (w["id"], w["devices"], w["classes"], w["end"] - w["start"], w["source"]) == \
        ("mw-9", ["sw-*"], ["network.*"], 7200, "cli")
    assert "no running gateway" in out
    code, _, err = run(capsys, "maintenance", "add", "-c", str(cfg_file), "--device", "x", "--for", "1h",
                       "--reason", "r", "--id", "mw-9")
    assert code == 1 and "exists already" in err
    code, _, err = run(capsys, "maintenance", "add", "-c", str(cfg_file), "--for", "1h", "--reason", "r")
    assert code == 1 and "at least one of devices" in err
    code, out, _ = run(capsys, "maintenance", "list", "-c", str(cfg_file), "--json")
    [row] = json.loads(out)
    assert row["id"] == "mw-9" and row["active"] is True
    code, out, err = run(capsys, "maintenance", "end", "mw-9", "-c", str(cfg_file), "--author", "li")
    assert code == 0 and "ended maintenance window mw-9" in out, err
    code, out, _ = run(capsys, "maintenance", "list", "-c", str(cfg_file), "--json")
    assert json.loads(out) == []
    code, out, _ = run(capsys, "maintenance", "list", "-c", str(cfg_file), "--all", "--json")
    assert json.loads(out)[0]["ended_by"] == "li"
    code, _, err = run(capsys, "maintenance", "end", "nope", "-c", str(cfg_file))
    assert code == 1 and "no maintenance window 'nope'" in err


def test_replay_text_output_and_settle(tmp_path: Path, cfg_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "candidate.toml"
    rules.write_text('[pack]\nname = "c"\n[[rules]]\nid = "held"\nevent = "x"\nlevel = 2\nkey = "{device}/x"\n'
                     'hold_for = "5m"\n', "utf-8")
    cap = tmp_path / "cap.jsonl"
    t0 = 1_767_225_600
    cap.write_text(f'{{"ts": {t0}, "device": "gs-1", "name": "x"}}\n\n{{"ts": {t0 + 10}, "device": "gs-1", "name": "y"}}\n')
    code, out, err = run(capsys, "rules", "replay", str(cap), "--rules", str(rules), "-c", str(cfg_file))
    assert code == 0, err
    assert "replayed 2 events" in out and "classified 1, unclassified 1; alarms 1 (1 pending); tickets 0" in out
    code, out, err = run(capsys, "rules", "replay", str(cap), "--rules", str(rules), "-c", str(cfg_file),
                         "--settle", "5m", "--log")
    assert "alarms 1 (1 active); tickets 1" in out and "raised       gs-1/x  → open ticket 1" in out
    cap.write_text('{"ts": 1, "device": "gs-1"}\n')
    code, _, err = run(capsys, "rules", "replay", str(cap), "--rules", str(rules), "-c", str(cfg_file))
    assert code == 1 and f"{cap}:1: an event needs a non-empty string 'name'" in err


def test_recorder_round_trip_and_buffering(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "rec.jsonl"
    rec = JsonlRecorder(path, buffer_lines=3)
    evs = [event_from_dict({"ts": 1.5 + i, "source": "snmp", "device": "d", "name": "n", "attrs": {"i": i, "b": b"\x01"},
                            "peer": "10.0.0.1"}) for i in range(4)]
    for e in evs:
        rec(e)
    assert len(path.read_text().splitlines()) == 3  # one full buffer written
    rec.close()
    back = list(read_events(path))
    assert [(e.ts, e.device, e.peer, e.attrs["i"]) for e in back] == [(e.ts, e.device, e.peer, e.attrs["i"]) for e in evs]
    assert back[0].attrs["b"] == "b'\\x01'"  # not JSON: recorded as text, never an error
    assert rec.recorded == 4 and rec.errors == 0


def test_rules_test_shows_the_contract_that_decided(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same link-down is level 1 on a switch under the medical contract (a fibre-line
    fault, 光纤线路故障) and level 3 under the mine contract; `rules test` says which decided."""
    devices = [
        {"id": "ward-sw", "class": "network.switch", "site": "ward-3", "policy": "medical-devices"},
        {"id": "mine-sw", "class": "network.switch", "site": "north", "policy": "mine-monitoring"},
    ]
    cfg = base_config(tmp_path / "var", devices=devices)
    path = str(write_config(tmp_path / "config.toml", cfg))
    attrs = {"ifIndex": 3, "ifDescr": "fibre uplink"}
    ev = event_file(tmp_path, [{"name": "IF-MIB::linkDown", "device": d, "attrs": attrs} for d in ("ward-sw", "mine-sw")])
    code, out, err = run(capsys, "rules", "test", ev, "-c", path, "--no-state")
    assert code == 0, err
    ward, mine = out.split("event IF-MIB::linkDown from ")[1:]
    assert "[x] network/if-link-down-medical  raise level 1  priority 50  contract medical*" in ward
    assert "classification: rule if-link-down-medical → raise, level 1 (critical), key ward-sw/if/3" in ward
    assert "decided by contract medical-devices (the rule applies under it only)" in ward
    assert "(policy medical-devices, level 1)" in ward
    assert ("[ ] network/if-link-down-medical  raise level 1  priority 50  contract medical*"
            " (only under contract medical*; the device's is mine-monitoring)") in mine
    assert "classification: rule if-link-down → raise, level 3 (minor), key mine-sw/if/3" in mine
    assert "the same under every contract (the rule names none); device's contract mine-monitoring" in mine
    code, out, err = run(capsys, "rules", "test", ev, "-c", path, "--no-state", "--json")
    docs = json.loads(out)
    assert [d["classifications"][0]["contract"] for d in docs] == ["medical-devices", None]
    assert [d["classifications"][0]["level"] for d in docs] == [1, 3]
