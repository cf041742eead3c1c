"""The ticket CLI against a real SQLite store: actions through the core started in-process
when no daemon runs (ticket, timeline and outbox in one commit), through the daemon's
control socket when one does (the same rows either way), ``report`` and ``sla-report``."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.cli.main import main
from gateway.config import build_policies, load_config
from gateway.core.alarms import AlarmBook
from gateway.core.calendars import default_calendars
from gateway.core.tickets import TicketDesk
from gateway.model import Device, Event, FaultLevel
from gateway.store import BatchWrite
from gateway.store.sqlite import SqliteStore
from rules.engine import Classification
from tests.fixtures.daemon import Daemon, read_db
from tests.helpers import ROOT, base_config, write_config

H = 3600.0


def _config(tmp_path: Path, data_dir: Path | None = None, **extra: Any) -> Path:
    cfg = base_config(data_dir or tmp_path / "var", **extra)
    cfg["devices"].append({"id": "app-1", "class": "software.app", "site": "dc", "policy": "software-7x24"})
    return write_config(tmp_path / "config.toml", cfg)


def _seed(cfg_path: Path, opened_ago: float = 2 * H) -> int:
    """One software-7x24 level-1 ticket opened ``opened_ago`` seconds ago, committed to the store."""
    cfg = load_config(cfg_path)
    store = SqliteStore(cfg.data_path(cfg.store.path))
    try:
        now = time.time() - opened_ago
        book, desk = AlarmBook(), TicketDesk(build_policies(cfg), default_calendars())
        ch = book.apply(Classification("app.down", "raise", "app-1/down", FaultLevel(1), "App down"),
                        Event(now, "test", "app-1", "app.down"), "app-1", now)
        assert ch is not None
        pol = build_policies(cfg)["software-7x24"]
        t = desk.open_for(ch.alarm, Device("app-1", site="dc", policy=pol.name), pol, now)
        store.commit(BatchWrite(alarms=book.take_dirty(), tickets=desk.take_dirty(), timeline=desk.take_timeline()))
        return t.id
    finally:
        store.close()


def _read(cfg_path: Path, tid: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    cfg = load_config(cfg_path)
    store = SqliteStore(cfg.data_path(cfg.store.path), readonly=True)
    try:
        t = store.get_ticket(tid)
        assert t is not None
        return t, store.timeline(tid)
    finally:
        store.close()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_actions_without_a_daemon_commit_through_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(_config(tmp_path))
    tid = _seed(Path(cfg))
    rc, out, err = _run(capsys, "ticket", "ack", str(tid), "-c", cfg, "--note", "on it", "--by", "alice")
    assert rc == 0, err
    assert out.startswith(f"ticket {tid}: acknowledged, level 1 (critical)")
    assert "response  due" in out and "breached" in out
    t, timeline = _read(Path(cfg), tid)
    # The contract's escalation steps (dispatch after 1 h, expert consultation) have their
    # own test (tests/unit/test_escalation.py); here the clocks and actions are looked at.
    assert {e["note"].split(":")[0] for e in timeline if e["kind"] == "escalation"} == {
        "dispatch-on-site", "expert-consultation"}
    timeline = [e for e in timeline if e["kind"] != "escalation"]
    assert t["status"] == "acknowledged"
    # The dispatch breach (the 1 h remote-fix window ended an hour ago) and the 50 % warnings
    # of the 4 h response and restore clocks were recorded before the acknowledgement.
    assert [(e["actor"], e["kind"], e["note"]) for e in timeline][-4:-1] == [
        ("sla", "sla_warning", "response at 50 % of its target"),
        ("sla", "sla_breach", "dispatch deadline breached"),
        ("sla", "sla_warning", "restore at 50 % of its target"),
    ]
    assert timeline[-1]["actor"] == "user:alice" and timeline[-1]["kind"] == "acknowledge"
    assert timeline[-1]["note"] == "on it"

    for argv in (
        ["ticket", "pause", str(tid), "--note", "waiting on customer"],
        ["ticket", "resume", str(tid)],
        ["ticket", "comment", str(tid), "--note", "called the customer"],
        ["ticket", "level", str(tid), "--level", "major"],
        ["ticket", "report-set", str(tid), "--cause", "disk full", "--follow-up", "alerting on disk"],
        ["ticket", "resolve", str(tid), "--note", "cleaned up"],
        ["ticket", "close", str(tid)],
        ["ticket", "reopen", str(tid), "--note", "back again"],
    ):
        rc, out, err = _run(capsys, *argv, "-c", cfg)
        assert rc == 0, (argv, err)
    t, timeline = _read(Path(cfg), tid)
    timeline = [e for e in timeline if e["kind"] != "escalation"]
    assert t["status"] == "open" and t["level"] == 2 and t["report"] == {"cause": "disk full", "follow_up": "alerting on disk"}
    kinds = [e["kind"] for e in timeline]
    assert kinds[-8:] == ["paused", "resumed", "comment", "level", "report", "restore", "close", "reopened"]
    assert all(e["actor"].startswith("user:") for e in timeline[-8:])


def test_action_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(_config(tmp_path))
    rc, _, err = _run(capsys, "ticket", "ack", "1", "-c", cfg)
    assert rc == 1 and "no store" in err
    tid = _seed(Path(cfg))
    cases = [
        (["ticket", "ack", "999"], "no ticket 999"),
        (["ticket", "resume", str(tid)], "is not paused"),
        (["ticket", "comment", str(tid)], "a comment needs --note"),
        (["ticket", "level", str(tid), "--level", "7"], "unknown fault level"),
        (["ticket", "report-set", str(tid)], "give at least one of"),
        (["ticket", "reopen", str(tid)], "only a restored or closed ticket"),
    ]
    for argv, msg in cases:
        rc, _, err = _run(capsys, *argv, "-c", cfg)
        assert rc == 1 and msg in err and "Traceback" not in err, (argv, err)
    _, timeline = _read(Path(cfg), tid)
    # Failed actions wrote nothing of their own (the core that ran them recorded the SLA
    # notices that were due, as the daemon would have).
    assert [e["kind"] for e in timeline if not e["kind"].startswith("sla_") and e["kind"] != "escalation"] == ["opened"]


def test_offline_actions_write_outbox_rows_for_each_help_desk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hd = [{"type": "webhook", "name": "hooks", "url": "http://127.0.0.1:9/x", "secret": "0123456789abcdef0123"}]
    cfg = str(_config(tmp_path, helpdesk=hd))
    tid = _seed(Path(cfg), opened_ago=10 * 60)
    rc, _, err = _run(capsys, "ticket", "ack", str(tid), "-c", cfg, "--by", "helpdesk:other")
    assert rc == 0, err
    db = sqlite3.connect(str(tmp_path / "var" / "gateway.db"))
    rows = db.execute("SELECT connector, ticket_id, key, kind, payload FROM outbox ORDER BY id").fetchall()
    db.close()
    assert [(r[0], r[1], r[3]) for r in rows] == [("hooks", tid, "update")]
    payload = json.loads(rows[0][4])
    assert rows[0][2].startswith(f"gw-test-t{tid}-m")
    assert payload["status"] == "acknowledged" and payload["event"] == "acknowledge"
    assert payload["actor"] == "helpdesk:other" and payload["count"] == 1 and payload["first_event"] == "app.down"


def test_report_and_sla_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(_config(tmp_path))
    tid = _seed(Path(cfg), opened_ago=30 * H)  # response and restore both late
    _run(capsys, "ticket", "report-set", str(tid), "-c", cfg, "--cause", "bad deploy", "--solution", "rolled back")
    _run(capsys, "ticket", "restore", str(tid), "-c", cfg)
    out_file = tmp_path / "report.md"
    rc, _, err = _run(capsys, "report", str(tid), "-c", cfg, "-o", str(out_file))
    assert rc == 0, err
    md = out_file.read_text("utf-8")
    assert md.startswith(f"# Post-incident report: ticket {tid}")
    assert "bad deploy" in md and "rolled back" in md and "+08:00" in md
    assert sum(1 for line in md.splitlines() if line.startswith("## ")) == 6
    rc, out, err = _run(capsys, "report", "999", "-c", cfg)
    assert rc == 1 and "no ticket 999" in err

    month = time.strftime("%Y-%m", time.gmtime(time.time() - 30 * H + 8 * H))  # opening month, Asia/Shanghai
    rc, out, err = _run(capsys, "sla-report", "-c", cfg, "--contract", "software-7x24", "--month", month, "--json")
    assert rc == 0, err
    s = json.loads(out)
    assert s["tickets"] == 1 and [c["breached"] for c in s["clocks"]] == [1, 1, 1]  # response, dispatch, restore
    # 1 % for the missed response + 2 started days (26 h late) of 1 % on 1,000,000 CNY.
    assert (s["penalties"]["pct"], s["penalties"]["amount"], s["penalties"]["final"]) == (3.0, 30_000.0, True)
    rc, out, _ = _run(capsys, "sla-report", "-c", cfg, "--contract", "software-7x24", "--month", month)
    assert rc == 0 and "**30,000.00 CNY**" in out
    rc, _, err = _run(capsys, "sla-report", "-c", cfg, "--contract", "nope", "--month", month)
    assert rc == 1 and "no contract (policy) named 'nope'" in err
    rc, _, err = _run(capsys, "sla-report", "-c", cfg, "--contract", "software-7x24", "--month", "2026/02")
    assert rc == 1 and "YYYY-MM" in err


def _normal(v: Any) -> Any:
    """Rows of two runs made at different instants, made comparable: every float (times,
    elapsed business seconds) becomes a placeholder."""
    if isinstance(v, dict):
        return {k: _normal(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_normal(x) for x in v)
    if isinstance(v, float):
        return "<float>"
    return v


def _rows(db: Path) -> tuple[list[Any], list[Any]]:
    """(outbox rows, timeline) of a store, normalised."""
    with read_db(db) as c:
        outbox = [(conn, tid, key.split("-m")[0] + ("-m<uuid>" if "-m" in key else ""), kind, json.loads(payload))
                  for conn, tid, key, kind, payload in
                  c.execute("SELECT connector, ticket_id, key, kind, payload FROM outbox ORDER BY id")]
        timeline = c.execute("SELECT ticket_id, actor, kind, note FROM timeline ORDER BY id").fetchall()
    c.close()
    return _normal(outbox), timeline


ACTIONS = [
    ["ticket", "ack", "1", "--by", "alice", "--note", "on it"],
    ["ticket", "comment", "1", "--note", "called the customer"],
    ["ticket", "level", "1", "--level", "major"],
    ["ticket", "report-set", "1", "--cause", "disk full"],
    ["ticket", "restore", "1", "--note", "cleaned up"],
]


def _cli(cfg: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *argv, "-c", str(cfg)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def test_offline_actions_and_actions_through_the_daemon_write_the_same_rows(tmp_path: Path) -> None:
    """The same actions, once with no daemon (the CLI starts the core in-process) and once
    through a running daemon: the same outbox rows (one writer's code shapes them) and timeline."""
    hd = [{"type": "webhook", "name": "hooks", "url": "http://127.0.0.1:9/x", "secret": "0123456789abcdef0123"}]
    results = []
    for name in ("offline", "daemon"):
        d = tmp_path / name
        d.mkdir()
        cfg = _config(d, helpdesk=hd, outbox={"retry_base": "1h"})
        _seed(cfg, opened_ago=10 * 60)
        daemon = Daemon(cfg, d / "gateway.log")
        if name == "daemon":
            daemon.start()
        try:
            for argv in ACTIONS:
                r = _cli(cfg, *argv)
                assert r.returncode == 0, (name, argv, r.stderr)
            if name == "daemon":
                assert daemon.alive()
                assert "ticket 1: restore by user:" in daemon.log.read_text()  # the daemon did it
        finally:
            if name == "daemon":
                assert daemon.stop() == 0
        results.append(_rows(d / "var" / "gateway.db"))
    (offline_outbox, offline_timeline), (daemon_outbox, daemon_timeline) = results
    assert [r[3] for r in offline_outbox] == ["update", "comment", "level", "resolve"]  # no message for report-set
    assert all(r[:3] == ("hooks", 1, "gw-test-t1-m<uuid>") for r in offline_outbox)
    assert offline_outbox == daemon_outbox
    assert offline_timeline == daemon_timeline
    assert [k for _, _, k, _ in offline_timeline if k != "escalation"] == ["opened", "acknowledge", "comment", "level", "report", "restore"]


def test_cli_writes_go_through_the_running_daemon_without_a_token(tmp_path: Path) -> None:
    """While a daemon holds the data dir, every CLI write goes to it over the control socket
    (no [[api.tokens]], API off): the CLI never opens the store for writing beside it."""
    # A data dir deep enough that its socket's path is longer than a Unix socket address may be.
    data_dir = tmp_path / ("d" * 60) / "var"
    cfg = _config(tmp_path, data_dir)
    tid = _seed(cfg)
    daemon = Daemon(cfg, tmp_path / "gateway.log")
    daemon.start()
    try:
        sock = data_dir / "gateway.sock"
        assert len(str(sock)) > 108 and stat.S_IMODE(sock.stat().st_mode) == 0o600
        r = _cli(cfg, "ticket", "ack", str(tid), "--by", "alice", "--note", "on it")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"ticket {tid}: acknowledged, level 1 (critical)")
        assert f"ticket {tid}: acknowledge by user:alice" in daemon.log.read_text()
        r = _cli(cfg, "ticket", "resume", str(tid))
        assert r.returncode == 1 and r.stderr.strip() == f"error: ticket {tid} is not paused", r.stderr
        r = _cli(cfg, "ticket", "ack", "999")
        assert r.returncode == 1 and r.stderr.strip() == "error: no ticket 999", r.stderr
        r = _cli(cfg, "maintenance", "add", "--site", "dc", "--for", "1h", "--reason", "r", "--id", "mw-1", "--author", "li")
        assert r.returncode == 0 and f"the running gateway (pid {daemon.proc.pid}) has it now" in r.stdout, r.stderr
        r = _cli(cfg, "maintenance", "end", "mw-1", "--author", "li")
        assert r.returncode == 0 and "ended maintenance window mw-1" in r.stdout, r.stderr
        assert "maintenance window mw-1 ended by li" in daemon.log.read_text()
        r = _cli(cfg, "rules", "reload")
        assert r.returncode == 0 and f"reloaded gateway (pid {daemon.proc.pid})" in r.stdout, r.stderr
        assert daemon.alive()
    finally:
        assert daemon.stop() == 0
    _, timeline = _read(cfg, tid)
    assert [(e["actor"], e["kind"], e["note"]) for e in timeline if e["kind"] == "acknowledge"] == \
        [("user:alice", "acknowledge", "on it")]


def _people(utc: str, tz: str) -> str:
    """What a person should read for an ISO-8601 UTC time: the gateway's local time, to the
    second, with its offset (computed here independently of the gateway's helpers)."""
    t = datetime.fromisoformat(utc.replace("Z", "+00:00")).astimezone(ZoneInfo(tz))
    return t.strftime("%Y-%m-%d %H:%M:%S") + t.strftime("%z")[:3] + ":" + t.strftime("%z")[3:]


@pytest.mark.parametrize(
    ("tz", "offset"), [("Asia/Shanghai", "+08:00"), ("UTC", "+00:00")], ids=["shanghai", "utc"]
)
def test_cli_text_shows_local_times_and_json_keeps_utc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tz: str, offset: str
) -> None:
    """alarms, tickets, ticket show, maintenance list and outbox list print times in
    gateway.timezone with the offset; their JSON keeps the UTC values and adds a *_local
    rendering beside them."""
    d = base_config(tmp_path / "var")
    d["gateway"]["timezone"] = tz
    d["helpdesk"] = [{"type": "webhook", "name": "hooks", "url": "http://127.0.0.1:9/x",
                      "secret": "0123456789abcdef0123"}]  # the comment below queues a message
    d["devices"].append({"id": "app-1", "class": "software.app", "site": "dc", "policy": "software-7x24"})
    cfg = str(write_config(tmp_path / "config.toml", d))
    tid = _seed(Path(cfg))
    _run(capsys, "ticket", "comment", str(tid), "-c", cfg, "--note", "looking")

    rc, out, err = _run(capsys, "alarms", "-c", cfg, "--json")
    assert rc == 0, err
    [alarm] = json.loads(out)
    assert alarm["last_seen"].endswith("Z") and alarm["first_seen"].endswith("Z")
    assert alarm["last_seen_local"] == _people(alarm["last_seen"], tz)
    assert alarm["first_seen_local"].endswith(offset) and alarm["cleared_at_local"] is None
    rc, out, _ = _run(capsys, "alarms", "-c", cfg)
    assert _people(alarm["last_seen"], tz) in out and alarm["last_seen"] not in out

    rc, out, _ = _run(capsys, "tickets", "-c", cfg, "--json")
    [ticket] = json.loads(out)
    assert ticket["opened_at"].endswith("Z") and ticket["opened_at_local"] == _people(ticket["opened_at"], tz)
    due = [c["due_at"] for c in ticket["clocks"] if c["due_at"]]
    assert due and all(c["due_at_local"] == _people(c["due_at"], tz) for c in ticket["clocks"] if c["due_at"])
    rc, out, _ = _run(capsys, "tickets", "-c", cfg)
    assert _people(ticket["opened_at"], tz) in out and all(_people(x, tz) in out for x in due)
    assert "Z " not in out and not out.rstrip().endswith("Z")

    rc, out, _ = _run(capsys, "ticket", "show", str(tid), "-c", cfg, "--json")
    shown = json.loads(out)
    assert shown["opened_at"] == ticket["opened_at"]
    assert [e["ts_local"] for e in shown["timeline"]] == [_people(e["ts"], tz) for e in shown["timeline"]]
    rc, out, _ = _run(capsys, "ticket", "show", str(tid), "-c", cfg)
    assert f"opened {_people(ticket['opened_at'], tz)}" in out
    assert all(_people(x, tz) in out for x in due)
    assert all(f"  {_people(e['ts'], tz)}  " in out for e in shown["timeline"])
    assert "Z  " not in out and "Z\n" not in out

    rc, out, err = _run(capsys, "maintenance", "add", "-c", cfg, "--device", "app-*", "--for", "2h",
                        "--reason", "upgrade", "--id", "mw-1", "--json")
    assert rc == 0, err
    w = json.loads(out.split("\n  (")[0])
    rc, out, _ = _run(capsys, "maintenance", "list", "-c", cfg, "--json")
    [row] = json.loads(out)
    assert (row["start"], row["end"]) == (w["start"], w["end"])  # epoch seconds, as before
    start = datetime.fromtimestamp(w["start"], UTC).isoformat()
    end = datetime.fromtimestamp(w["end"], UTC).isoformat()
    assert (row["start_local"], row["end_local"]) == (_people(start, tz), _people(end, tz))
    rc, out, _ = _run(capsys, "maintenance", "list", "-c", cfg)
    assert _people(start, tz) in out and _people(end, tz) in out and "Z " not in out

    rc, out, _ = _run(capsys, "outbox", "list", "-c", cfg, "--json")
    msgs = json.loads(out)
    assert msgs and all(m["created"].endswith("Z") for m in msgs)
    assert [m["created_local"] for m in msgs] == [_people(m["created"], tz) for m in msgs]
    rc, out, _ = _run(capsys, "outbox", "list", "-c", cfg)
    assert all(_people(m["created"], tz) in out and m["created"] not in out for m in msgs)
