"""What the gateway leaves on disk is not for other local users (issue 21 item 8): a daemon
(``gateway run`` as a process, started under the common umask 022) creates its data dir 0750
and its store, WAL, lock, PID, SNMP engine-ID and liveness files 0640 at most; and
``gateway check-config`` warns when the config file, which holds every secret, can be read
by anyone but its owner."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.daemon import Daemon
from tests.fixtures.netsnmp import free_udp_port
from tests.helpers import ROOT, base_config, write_config

USER = {"user": "noc", "auth_protocol": "SHA-256", "auth_key": "authpass123", "priv_protocol": "AES-128",
        "priv_key": "privpass123"}


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what a shell usually has: files 0644, directories 0755
    try:
        yield
    finally:
        os.umask(old)


def test_the_daemon_creates_its_data_dir_and_files_for_owner_and_group_only(
    tmp_path: Path, loose_umask: None
) -> None:
    data = tmp_path / "var" / "gw"
    d = base_config(data, free_udp_port())
    d["adapters"]["snmp"][0]["users"] = [USER]
    d["liveness"] = {"default_interval": "60s"}
    cfg = write_config(tmp_path / "config.toml", d)
    daemon = Daemon(cfg, tmp_path / "daemon.log")
    try:
        daemon.start()
        assert _mode(data) == 0o750
        made = {p.name: _mode(p) for p in data.iterdir() if p.is_file()}
        for name in ("gateway.db", "gateway.lock", "gateway.pid", "snmp-snmp.engineid"):
            assert name in made, sorted(made)
        assert daemon.stop() == 0
        made.update({p.name: _mode(p) for p in data.iterdir() if p.is_file()})
        assert "liveness.json" in made, sorted(made)
    finally:
        daemon.cleanup()
    loose = {name: oct(m) for name, m in made.items() if m & 0o027}
    assert not loose, f"group-writable or readable by others: {loose}"


def _check_config(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", str(cfg)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_check_config_warns_about_a_config_file_others_can_read(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", base_config(tmp_path / "var", free_udp_port()))
    os.chmod(cfg, 0o644)
    r = _check_config(cfg)
    assert r.returncode == 0, r.stderr
    warning = [line for line in r.stderr.splitlines() if "holds every secret" in line]
    assert len(warning) == 1 and "mode 0644" in warning[0] and "every local user" in warning[0], r.stderr
    os.chmod(cfg, 0o600)
    r = _check_config(cfg)
    assert r.returncode == 0 and "holds every secret" not in r.stderr, r.stderr


def test_the_systemd_unit_keeps_the_data_dir_private() -> None:
    import configparser

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read(ROOT / "deploy" / "gateway.service")
    service = unit["Service"]
    assert service["UMask"] == "0027"
    assert service["StateDirectoryMode"] == "0750"
    assert service["StateDirectory"] == "gateway"
