"""The ticket CLI against a real SQLite store: actions as the single writer when no daemon
runs (ticket, timeline and outbox in one commit), hand-over to the daemon's API when one
does, ``report`` and ``sla-report``."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.core.alarms import AlarmBook
from gateway.core.calendars import default_calendars
from gateway.cli.main import main
from gateway.config import build_policies, load_config
from gateway.model import Device, Event, FaultLevel
from gateway.store import BatchWrite
from gateway.store.sqlite import SqliteStore
from gateway.core.tickets import TicketDesk
from rules.engine import Classification
from tests.helpers import base_config, write_config

H = 3600.0


def _config(tmp_path: Path, **extra: Any) -> Path:
    cfg = base_config(tmp_path / "var", **extra)
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
    assert t["status"] == "acknowledged"
    # The response breach (due an hour ago) and the restore clock's 50 % warning were
    # recorded before the late acknowledgement.
    assert [(e["actor"], e["kind"], e["note"]) for e in timeline][-3:-1] == [
        ("sla", "sla_breach", "response deadline breached"),
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
    assert [e["kind"] for e in timeline] == ["opened"]  # failed actions wrote nothing


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
    assert s["tickets"] == 1 and [c["breached"] for c in s["clocks"]] == [1, 1]
    # 1 % for the missed response + 2 started days (26 h late) of 1 % on 1,000,000 CNY.
    assert (s["penalties"]["pct"], s["penalties"]["amount"], s["penalties"]["final"]) == (3.0, 30_000.0, True)
    rc, out, _ = _run(capsys, "sla-report", "-c", cfg, "--contract", "software-7x24", "--month", month)
    assert rc == 0 and "**30,000.00 CNY**" in out
    rc, _, err = _run(capsys, "sla-report", "-c", cfg, "--contract", "nope", "--month", month)
    assert rc == 1 and "no contract (policy) named 'nope'" in err
    rc, _, err = _run(capsys, "sla-report", "-c", cfg, "--contract", "software-7x24", "--month", "2026/02")
    assert rc == 1 and "YYYY-MM" in err


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
    start = datetime.fromtimestamp(w["start"], timezone.utc).isoformat()
    end = datetime.fromtimestamp(w["end"], timezone.utc).isoformat()
    assert (row["start_local"], row["end_local"]) == (_people(start, tz), _people(end, tz))
    rc, out, _ = _run(capsys, "maintenance", "list", "-c", cfg)
    assert _people(start, tz) in out and _people(end, tz) in out and "Z " not in out

    rc, out, _ = _run(capsys, "outbox", "list", "-c", cfg, "--json")
    msgs = json.loads(out)
    assert msgs and all(m["created"].endswith("Z") for m in msgs)
    assert [m["created_local"] for m in msgs] == [_people(m["created"], tz) for m in msgs]
    rc, out, _ = _run(capsys, "outbox", "list", "-c", cfg)
    assert all(_people(m["created"], tz) in out and m["created"] not in out for m in msgs)


@pytest.fixture
def other_process() -> Iterator[int]:
    """A live process that is not this one, to stand for a running daemon in a pid file
    (it waits on its stdin, so it lives until killed however long the test takes)."""
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        yield p.pid
    finally:
        p.kill()
        p.wait()
        assert p.stdin is not None
        p.stdin.close()


def test_running_daemon_without_api_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str], other_process: int) -> None:
    cfg = str(_config(tmp_path))
    tid = _seed(Path(cfg))
    (tmp_path / "var" / "gateway.pid").write_text(f"{other_process}\n")
    rc, _, err = _run(capsys, "ticket", "ack", str(tid), "-c", cfg)
    assert rc == 1 and f"running (pid {other_process})" in err and "API" in err
    _, timeline = _read(Path(cfg), tid)
    assert [e["kind"] for e in timeline] == ["opened"]
    # A stale pid file (no such process) is ignored.
    (tmp_path / "var" / "gateway.pid").write_text("999999999\n")
    rc, _, err = _run(capsys, "ticket", "ack", str(tid), "-c", cfg)
    assert rc == 0, err


class _FakeApi(BaseHTTPRequestHandler):
    """Stands in for the daemon's REST API: this test is about the CLI's hand-over (URL,
    token, body, error messages), not the API, which has its own tests against the real app."""

    calls: list[tuple[str, str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append((self.path, self.headers["Authorization"], body))
        if self.path.endswith("/propose_solution"):
            self._send(404, {"detail": "Not Found"})
        elif self.path.startswith("/api/v1/tickets/999/"):
            self._send(404, {"error": "not_found", "message": "no ticket 999"})
        else:
            self._send(200, {"id": 7, "level": 1, "status": "acknowledged", "device": "d", "alarm_key": "k",
                             "alarm_id": 1, "policy": "p", "opened_at": 0, "updated_at": 0, "clocks": []})

    def _send(self, code: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_running_daemon_gets_the_action_through_its_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], other_process: int
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        api = {"enabled": True, "host": "127.0.0.1", "port": server.server_address[1],
               "tokens": [{"token": "viewer-token", "role": "viewer"}, {"token": "op-token", "role": "operator"}]}
        cfg = str(_config(tmp_path, api=api))
        (tmp_path / "var").mkdir(parents=True, exist_ok=True)
        (tmp_path / "var" / "gateway.pid").write_text(f"{other_process}\n")
        _FakeApi.calls = []
        rc, out, err = _run(capsys, "ticket", "ack", "7", "-c", cfg, "--note", "on it", "--by", "alice")
        assert rc == 0, err
        assert out.startswith("ticket 7: acknowledged")
        rc, _, err = _run(capsys, "ticket", "level", "7", "-c", cfg, "--level", "2")
        assert rc == 0, err
        rc, _, err = _run(capsys, "ticket", "report-set", "7", "-c", cfg, "--cause", "x")
        assert rc == 0, err
        assert _FakeApi.calls == [
            ("/api/v1/tickets/7/acknowledge", "Bearer op-token", {"note": "on it", "actor": "user:alice"}),
            ("/api/v1/tickets/7/level", "Bearer op-token", {"note": "", "level": 2, "actor": _FakeApi.calls[1][2]["actor"]}),
            ("/api/v1/tickets/7/report", "Bearer op-token", {"note": "", "fields": {"cause": "x"}, "actor": _FakeApi.calls[2][2]["actor"]}),
        ]
        rc, _, err = _run(capsys, "ticket", "propose", "7", "-c", cfg)
        assert rc == 1 and "has no /api/v1/tickets/7/propose_solution" in err
        rc, _, err = _run(capsys, "ticket", "ack", "999", "-c", cfg)
        assert rc == 1 and "no ticket 999" in err
    finally:
        server.shutdown()
        server.server_close()
