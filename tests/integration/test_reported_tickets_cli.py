"""`gateway ticket open|link|no-visit|dispatch` from the CLI, with no daemon running: the core
starts in-process under the data-dir lock and commits through the store (the same path a
daemon's control socket takes). Times here are the wall clock's, so the checks are relative
to the reported time."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.cli.main import main
from gateway.config import load_config
from gateway.store.sqlite import SqliteStore
from tests.helpers import base_config, write_config

CST = ZoneInfo("Asia/Shanghai")


def _config(tmp_path: Path) -> str:
    cfg = base_config(tmp_path / "var")
    cfg["devices"].append({"id": "app-1", "class": "software.app", "site": "dc", "policy": "software-7x24"})
    cfg["devices"].append({"id": "gs-1", "class": "mine.gas-sensor", "site": "north", "policy": "mine-monitoring"})
    path = write_config(tmp_path / "config.toml", cfg)
    loaded = load_config(path)
    SqliteStore(loaded.data_path(loaded.store.path)).close()  # the gateway ran once
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _read(cfg: str, tid: int) -> dict[str, Any]:
    c = load_config(cfg)
    store = SqliteStore(c.data_path(c.store.path), readonly=True)
    try:
        t = store.get_ticket(tid)
        assert t is not None
        return t
    finally:
        store.close()


def test_open_a_back_dated_phone_report_and_act_on_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    reported = time.time() - 2 * 3600
    at = datetime.fromtimestamp(reported, CST).strftime("%Y-%m-%dT%H:%M:%S")
    rc, out, err = _run(capsys, "ticket", "open", "-c", cfg, "--device", "app-1", "--level", "major",
                        "--title", "orders page times out", "--reported-by", "wang@customer.example",
                        "--channel", "email", "--reported-at", at, "--reason", "mail arrived on the weekend",
                        "--by", "alice")
    assert rc == 0, err
    assert out.startswith("ticket 1: open, level 2 (major)")
    assert "reported by wang@customer.example via email" in out and "back-dated (entered " in out
    t = _read(cfg, 1)
    assert abs(t["opened_at"] - int(reported)) < 1 and t["entered_at"] is not None
    # Software 7x24 from the reported time: dispatch (1 h) already late, response 4 h not yet.
    clocks = {c["kind"]: c for c in t["clocks"]}
    assert clocks["dispatch"]["breached_at"] == pytest.approx(t["opened_at"] + 3600)
    assert clocks["response"]["due_at"] == pytest.approx(t["opened_at"] + 4 * 3600)
    rc, out, err = _run(capsys, "ticket", "dispatch", "1", "-c", cfg, "--note", "engineer Zhao on the way")
    assert rc == 0, err
    assert _read(cfg, 1)["milestones"].keys() == {"dispatch"}
    # The incident report names the reporter and the back-dated start.
    rc, out, err = _run(capsys, "report", "1", "-c", cfg)
    assert rc == 0, err
    assert "- Reported by wang@customer.example via email: " in out
    assert "(back-dated to the report: mail arrived on the weekend)" in out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--reported-at", "2999-01-01T00:00"], "is in the future (now "),
        (["--reported-at", "2020-01-01T08:00"], "a back-dated start needs a reason"),
        (["--reported-at", "yesterday"], "--reported-at 'yesterday': not an ISO 8601 time"),
        (["--level", "9"], "unknown fault level '9'"),
        (["--device", "nope"], "body.device: no device 'nope' in the inventory"),
    ],
    ids=["future", "no-reason", "not-a-time", "level", "device"],
)
def test_bad_reports_get_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    cfg = _config(tmp_path)
    base = {"--device": "gs-1", "--level": "2", "--title": "x", "--reported-by": "y", "--channel": "phone"}
    for i in range(0, len(extra), 2):
        base[extra[i]] = extra[i + 1]
    argv = [a for kv in base.items() for a in kv]
    rc, _, err = _run(capsys, "ticket", "open", "-c", cfg, *argv)
    assert rc == 1 and message in err and "Traceback" not in err, err
    assert err.count("\n") == 1


def test_no_visit_and_link_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    rc, _, err = _run(capsys, "ticket", "open", "-c", cfg, "--device", "gs-1", "--level", "3", "--title", "display dark",
                      "--reported-by", "Li Si", "--channel", "phone")
    assert rc == 0, err
    rc, out, err = _run(capsys, "ticket", "no-visit", "1", "-c", cfg, "--note", "reset remotely")
    assert rc == 0, err
    assert "on_site" in out and "not needed" in out
    rc, _, err = _run(capsys, "ticket", "link", "1", "-c", cfg, "--alarm", "5")
    assert rc == 1 and "no open alarm 5" in err
