"""The after-sales CLI as a user runs it (``python -m gateway …``, no daemon: writes go through
the core started in-process, reads open the store read-only): generating planned work twice
inserts nothing twice, completing one with its report and a file, warranty status on given
dates, expiring warranties, spare actions on a ticket, a device's history; bad input gets one
line and no traceback. Dates are the real clock's here, so expectations use nominal dates."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.helpers import ROOT, base_config, example_dict, write_config


def _config(tmp_path: Path) -> Path:
    d = base_config(tmp_path / "var")
    d["service"] = {"medical-devices": example_dict()["service"]["medical-devices"]}
    d["devices"].append({"id": "pump-1", "class": "medical.infusion-pump", "site": "ward-3",
                         "policy": "medical-devices", "installation": "2026-01-31"})
    return write_config(tmp_path / "config.toml", d)


def gw(cfg: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *argv, "-c", str(cfg)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def ok(cfg: Path, *argv: str) -> str:
    r = gw(cfg, *argv)
    assert r.returncode == 0, r.stderr
    return r.stdout


def as_json(cfg: Path, *argv: str) -> Any:
    return json.loads(ok(cfg, *argv, "--json"))


def test_planned_work_warranty_spares_and_history_from_the_cli(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert "no planned work" in ok(cfg, "planned", "list")  # no store yet: nothing, no error
    out = ok(cfg, "planned", "generate")
    assert "new" in out and "0 new" not in out
    assert ok(cfg, "planned", "generate").startswith("planned work: 0 new, 0 updated")
    items = as_json(cfg, "planned", "list", "--device", "pump-1", "--kind", "inspection")
    assert [i["nominal"] for i in items[:3]] == ["2026-02-28", "2026-03-31", "2026-04-30"]
    assert len({i["id"] for i in items}) == len(items)
    first = items[0]["id"]

    (tmp_path / "photo.txt").write_text("巡检照片", "utf-8")
    out = ok(cfg, "planned", "done", first, "--report", "all fine / 正常", "--check", "self-test",
             "--file", str(tmp_path / "photo.txt"), "--by", "wang")
    assert out.startswith(f"{first}: done")
    shown = ok(cfg, "planned", "show", first)
    assert "[x] self-test" in shown and "[ ] calibration check" in shown and "file: photo.txt" in shown
    assert "by wang" in shown

    w = ok(cfg, "warranty", "show", "pump-1", "--on", "2027-01-30")
    assert "in_warranty (保修期内)" in w and "2026-01-31 … 2027-01-31" in w
    assert "out_of_warranty (已过保修期)" in ok(cfg, "warranty", "show", "pump-1", "--on", "2027-01-31")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    left = (datetime(2027, 1, 31).date() - today).days
    rows = as_json(cfg, "warranty", "expiring", "--within", "3660")
    expected = [{"device": "pump-1", "warranty_end": "2027-01-31", "days_left": left, "contract": "medical-devices",
                 "notice_days": 30}] if left > 0 else []
    assert rows == expected

    # Overdue planned work raised alarms that opened tickets; spare actions on one of them.
    tickets = json.loads(ok(cfg, "tickets", "--json"))
    tid = next(t["id"] for t in tickets if t["device"] == "pump-1")
    out = ok(cfg, "ticket", "spare", str(tid), "spare_requested", "--part", "motor", "--by", "wang")
    assert "clock provide (vendor)" in out and "clock ship (vendor)" in out
    ok(cfg, "ticket", "spare", str(tid), "loaner_out", "--unit", "P-2")
    svc = ok(cfg, "ticket", "service", str(tid))
    assert "medical-devices" in svc and "loaner P-2 out" in svc and "not back / 未归还" in svc
    hist = as_json(cfg, "device", "history", "pump-1")
    assert {"spare_requested", "loaner_out", "done"} <= {e["what"] for e in hist["entries"]}
    assert "spare_requested" in ok(cfg, "device", "history", "pump-1")

    # The SLA report of February shows inspection 1 done late and visit 1 missed.
    rep = ok(cfg, "sla-report", "--contract", "medical-devices", "--month", "2026-02")
    assert "## Planned work" in rep
    assert "| inspection | 1 | 0 | 1 | 0 | 0 |" in rep and "| visit | 1 | 0 | 0 | 1 | 0 |" in rep
    assert "| medical-devices/visit:pump-1:2026-02-28 | pump-1 | visit | 2026-02-28 | missed |" in rep
    doc = json.loads(ok(cfg, "sla-report", "--contract", "medical-devices", "--month", "2026-02", "--json"))
    assert [p["result"] for p in doc["planned"]["problems"]] == ["late", "missed"]


def test_bad_input_gets_one_line(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    ok(cfg, "planned", "generate")
    for argv, fragment in [
        (("warranty", "show", "pump-1", "--on", "2026-13-01"), "is not a date"),
        (("warranty", "show", "nope"), "no device 'nope'"),
        (("planned", "done", "nope:1", "--report", "x"), "no planned work"),
        (("planned", "show", "nope:1"), "no planned work"),
        (("ticket", "spare", "999", "loaner_out"), "no ticket 999"),
        (("ticket", "service", "999"), "no ticket 999"),
        (("warranty", "expiring", "--within", "0"), "--within"),
        (("planned", "done", "x", "--report", "y", "--file", str(tmp_path / "missing")), "missing"),
    ]:
        r = gw(cfg, *argv)
        assert r.returncode != 0, argv
        assert fragment in r.stderr and "Traceback" not in r.stderr, (argv, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
