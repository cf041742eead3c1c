"""``gateway user ...`` and the ownership verbs against a real store, with no daemon running
(the core starts in-process for each write, under the data dir's lock): accounts are made
with a password shown once (never an argument), listed without secrets, disabled and reset;
take / assign / handover move the owner and name the person in the timeline."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from gateway.cli.main import main
from tests.integration.test_ticket_cli import _config, _seed


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_user_commands_and_ownership(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = str(_config(tmp_path))
    tid = _seed(Path(cfg))
    code, out, _ = _run(capsys, "user", "add", "li.wei", "--role", "operator", "--display-name", "Li Wei", "-c", cfg)
    assert code == 0 and "user li.wei: operator" in out and "password: " in out
    monkeypatch.setattr("sys.stdin", io.StringIO("given-password-1\n"))
    code, out, _ = _run(capsys, "user", "add", "zhao", "--role", "operator", "--password-stdin", "-c", cfg)
    assert code == 0 and "password:" not in out
    code, _, err = _run(capsys, "user", "add", "acme", "--role", "customer", "-c", cfg)
    assert code == 1 and "customer needs at least one site" in err
    code, _, err = _run(capsys, "user", "add", "li.wei", "-c", cfg)
    assert code == 1 and "exists" in err
    code, out, _ = _run(capsys, "user", "list", "-c", cfg)
    assert code == 0 and "li.wei" in out and "Li Wei" in out and "scrypt" not in out

    code, out, _ = _run(capsys, "ticket", "take", str(tid), "--by", "li.wei", "-c", cfg)
    assert code == 0 and f"ticket {tid}: owner li.wei" in out
    code, out, _ = _run(capsys, "ticket", "handover", str(tid), "--to", "zhao", "--note", "router reboot pending",
                        "--by", "li.wei", "-c", cfg)
    assert code == 0 and "owner zhao" in out
    code, _, err = _run(capsys, "ticket", "assign", str(tid), "--to", "nobody-here", "-c", cfg)
    assert code == 1 and "no account named 'nobody-here'" in err
    code, out, _ = _run(capsys, "tickets", "--owner", "zhao", "-c", cfg)
    assert code == 0 and "zhao" in out and str(tid) in out
    code, out, _ = _run(capsys, "ticket", "show", str(tid), "-c", cfg)
    assert "owner zhao" in out and "handed over from li.wei to zhao. router reboot pending" in out

    code, out, _ = _run(capsys, "user", "disable", "zhao", "-c", cfg)
    assert code == 0 and "disabled" in out
    code, out, _ = _run(capsys, "user", "reset", "zhao", "-c", cfg)
    assert code == 0 and "password reset" in out and "password: " in out
    code, out, _ = _run(capsys, "user", "token", "li.wei", "--label", "cron", "-c", cfg)
    assert code == 0 and "gwu_" in out
    token = out.split(": ", 1)[1].split()[0]
    db = sqlite3.connect(Path(tmp_path / "var" / "gateway.db"))
    try:
        stored = [r[0] for r in db.execute("SELECT digest FROM user_tokens")]
        assert stored and token not in stored  # only the digest is kept
    finally:
        db.close()
    code, _, err = _run(capsys, "user", "disable", "ghost", "-c", cfg)
    assert code == 1 and "no account named 'ghost'" in err
