"""Weak or broken secrets fail ``check-config`` with one clear line each (issue 21, item 11):
API tokens that are empty, the documented placeholder, too short, or shared by two entries;
SNMPv3 pass phrases shorter than USM's 8 characters (before, ``run`` died with a traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

BASE = "[inventory]\ndefault_policy = 'p'\n[policies.p]\n"
GOOD = "tok-0123456789abcdef"


def _check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "config.toml"
    f.write_text(BASE + text)
    return subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", str(f)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def _token(t: str, role: str = "operator") -> str:
    return f"[[api.tokens]]\ntoken = '{t}'\nrole = '{role}'\n"


def _user(**kw: str) -> str:
    body = "".join(f"{k} = '{v}'\n" for k, v in kw.items())
    return "[[adapters.snmp]]\n[[adapters.snmp.users]]\nuser = 'noc'\n" + body


@pytest.mark.parametrize(
    "text, key, fragment",
    [
        (_token("a"), "api.tokens[0].token", "token too short (1 characters; at least 16)"),
        (_token("change-me"), "api.tokens[0].token", "placeholder"),
        (_token(""), "api.tokens[0].token", "empty token"),
        (_token(GOOD) + _token(GOOD, "viewer"), "api.tokens", "tokens[1] repeats the token of tokens[0]"),
        (_user(auth_protocol="SHA", auth_key="short"), "adapters.snmp[0].users[0]", "auth_key too short (5"),
        (_user(auth_protocol="SHA", auth_key="authpass123", priv_protocol="AES", priv_key="priv"),
         "adapters.snmp[0].users[0]", "priv_key too short (4"),
        (_user(auth_protocol="SHA"), "adapters.snmp[0].users[0]", "auth_protocol SHA needs a auth_key"),
        (_user(priv_protocol="AES", priv_key="privpass123"), "adapters.snmp[0].users[0]", "priv_protocol needs an auth_protocol"),
    ],
    ids=["token-short", "token-placeholder", "token-empty", "token-two-roles", "v3-auth-short", "v3-priv-short",
         "v3-auth-missing", "v3-priv-without-auth"],
)
def test_weak_setting_is_one_clear_line(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    r = _check(tmp_path, text)
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    hits = [ln for ln in lines if f"config.toml: {key}" in ln and fragment in ln]
    assert len(hits) == 1, lines
    assert GOOD not in r.stderr and "authpass123" not in r.stderr and "privpass123" not in r.stderr


def test_strong_settings_pass(tmp_path: Path) -> None:
    text = _token(GOOD) + _token("view-0123456789abcdef", "viewer")
    text += _user(auth_protocol="SHA", auth_key="authpass123", priv_protocol="AES", priv_key="privpass123")
    r = _check(tmp_path, text)
    assert r.returncode == 0, r.stderr
