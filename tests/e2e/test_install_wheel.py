"""Installed the way a user installs it: a wheel built from this tree goes into a fresh venv
without the test extra, and from a directory outside the repository the installed ``gateway``
checks a config, runs with an SNMPv3 authPriv user (SHA + AES), receives one trap from
net-snmp's ``snmptrap`` and stops on SIGTERM with exit status 0 and no traceback.

This is what catches a runtime dependency that only the test environment happens to have
(``cryptography`` once was one: ``check-config`` passed, then ``gateway run`` crashed). The
fresh venv holds nothing but the wheel and its dependency closure (no pip, no setuptools),
and it is built anew on every run from pip's cache: about half a minute on an idle machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.netsnmp import LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import ROOT, base_config, wait_until, write_config

pytestmark = pytest.mark.slow

ENGINE_ID = "0x80001f8880c0ffee0001"
USER = {"user": "ops", "auth_protocol": "SHA", "auth_key": "authpass-e2e", "priv_protocol": "AES",
        "priv_key": "privpass-e2e", "engine_ids": [ENGINE_ID]}

# Left out of the copy the wheel is built from: caches, virtualenvs and build output.
_SKIP_AT_TOP = {".git", ".venv", "build", "dist", "var", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache"}


@dataclass
class Installed:
    bin: Path        # the fresh venv's bin/ (python, gateway)
    work: Path       # the directory commands run in, outside the repository
    env: dict[str, str]


def _run(cmd: list[Any], timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _ignore(directory: str, names: list[str]) -> set[str]:
    skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
    if Path(directory) == ROOT:
        skip |= _SKIP_AT_TOP & set(names)
    return skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    # Build from a copy so the build leaves no build/ or *.egg-info in the working tree.
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=_ignore)
    wheels = base / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "-q", "-w", wheels, src], timeout=600)
    [wheel] = wheels.glob("device_alarm_gateway-*.whl")

    # The same interpreter as .venv; without pip, so nothing but the wheel's own dependency
    # closure is importable. .venv's pip installs into it (pip --python).
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=120)
    vpy = venv / "bin" / "python"
    # --no-compile: byte-compiling every dependency up front costs more CPU than the rest of
    # the install; the modules the gateway imports are compiled when first imported.
    _run([*pip, "--python", vpy, "install", "-q", "--no-compile", wheel], timeout=900)
    _run([*pip, "--python", vpy, "check"], timeout=120)

    work = base / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}}
    env["PYTHONNOUSERSITE"] = "1"
    probe = _run([vpy, "-c", "import os, sys, importlib.util, gateway; print(os.path.realpath(sys.executable));"
                  "print(gateway.__file__); print(importlib.util.find_spec('pytest') is not None)"],
                 timeout=60, cwd=work, env=env)
    interpreter, gateway_file, has_pytest = probe.stdout.splitlines()
    assert interpreter == os.path.realpath(sys.executable), "the fresh venv must use .venv's interpreter"
    assert Path(gateway_file).is_relative_to(venv), f"gateway imported from {gateway_file}, not the installed wheel"
    assert has_pytest == "False", "the test extra leaked into the fresh venv"
    return Installed(venv / "bin", work, env)


def _config(inst: Installed, port: int) -> Path:
    d = base_config(inst.work / f"var-{port}", port)
    d["adapters"]["snmp"][0].update({"users": [USER], "learn_engine_ids": False})
    return write_config(inst.work / f"gateway-{port}.toml", d)


def _alarms(inst: Installed, cfg: Path) -> list[dict[str, Any]]:
    r = _run([inst.bin / "gateway", "alarms", "-c", cfg, "--json"], timeout=60, cwd=inst.work, env=inst.env)
    assert "Traceback" not in r.stderr, r.stderr
    rows: list[dict[str, Any]] = json.loads(r.stdout)
    return rows


def test_installed_check_config_accepts_a_v3_privacy_user(installed: Installed) -> None:
    cfg = _config(installed, free_udp_port())
    r = _run([installed.bin / "gateway", "check-config", "-c", cfg], timeout=60, cwd=installed.work, env=installed.env)
    assert r.stdout.startswith("OK:"), r.stdout
    assert "v3 users=1" in r.stdout, r.stdout
    assert "Traceback" not in r.stderr, r.stderr


def test_installed_daemon_receives_a_v3_authpriv_trap_and_stops_cleanly(installed: Installed, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    cfg = _config(installed, port)
    out, err = installed.work / "run.out", installed.work / "run.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([str(installed.bin / "gateway"), "run", "-c", str(cfg)], stdout=o, stderr=e,
                                cwd=installed.work, env=installed.env)
    try:
        wait_until(lambda: "gateway ready" in err.read_text(errors="replace") or proc.poll() is not None, 60)
        assert proc.poll() is None, err.read_text(errors="replace")
        assert netsnmp.snmptrap
        r = subprocess.run([netsnmp.snmptrap, "-v", "3", "-u", USER["user"], "-l", "authPriv",
                            "-a", "SHA", "-A", USER["auth_key"], "-x", "AES", "-X", USER["priv_key"], "-e", ENGINE_ID,
                            f"127.0.0.1:{port}", "", LINK_DOWN, *link_varbinds(8)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        alarms = wait_until(lambda: [a for a in _alarms(installed, cfg) if a["key"] == "sw-1/if/8"], 30, 0.2)
        assert [(a["device"], a["state"], a["count"]) for a in alarms] == [("sw-1", "active", 1)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, err.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = err.read_text(errors="replace") + out.read_text(errors="replace")
    assert "Traceback" not in log, log
    assert not [line for line in log.splitlines() if " ERROR " in line or " CRITICAL " in line], log
    assert "stopped" in log, log


def test_installed_init_writes_the_documented_example(installed: Installed) -> None:
    """`gateway init` from the wheel writes the example config shipped inside the package
    (the same bytes as the top-level config.example.toml) and it passes check-config."""
    site = installed.work / "site-init"
    r = _run([installed.bin / "gateway", "init", site], timeout=60, cwd=installed.work, env=installed.env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    written = site / "config.toml"
    assert written.read_bytes() == (ROOT / "config.example.toml").read_bytes()
    assert (site / "var").is_dir()
