"""One clear line for every failure a user can cause: each case runs the real command in a
subprocess and wants exactly one line on stderr, no traceback, no bare ``[Errno n]``, and
the documented exit status (1: refused, 2: bad configuration or arguments)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import Daemon
from tests.fixtures.netsnmp import free_udp_port
from tests.helpers import ROOT, base_config, write_config


def gateway(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, check=False)


def one_line(r: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    """The single stderr line of a failed command, checked for ``parts`` and ``code``."""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith("error: ") and "Traceback" not in line and "[Errno" not in line, line
    for p in parts:
        assert p in line, (p, line)
    assert r.returncode == code, (r.returncode, line)
    return line


@pytest.fixture
def taken_tcp_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


def _cfg(tmp_path: Path, **sections: Any) -> Path:
    return write_config(tmp_path / "config.toml", base_config(tmp_path / "var", free_udp_port(), **sections))


def test_run_with_the_api_port_taken_names_the_port_and_the_key(tmp_path: Path, taken_tcp_port: int) -> None:
    cfg = _cfg(tmp_path, api={"enabled": True, "host": "127.0.0.1", "port": taken_tcp_port})
    r = gateway("run", "-c", str(cfg))
    one_line(r, 2, f"{cfg}: api.port: 127.0.0.1:{taken_tcp_port} is in use by another program")
    assert not (tmp_path / "var" / "gateway.db").exists()  # refused before anything began


def test_demo_with_its_port_taken_points_to_the_port_option(tmp_path: Path, taken_tcp_port: int) -> None:
    r = gateway("demo", "--port", str(taken_tcp_port), "--data-dir", str(tmp_path / "demo"), "--loops", "1")
    one_line(r, 1, f"port {taken_tcp_port}", "in use", "--port")


@pytest.mark.parametrize("where", ["is-a-file", "under-a-file"])
def test_a_data_dir_that_cannot_be_one_names_the_key(tmp_path: Path, where: str) -> None:
    (tmp_path / "blocker").write_text("a file\n")
    data_dir = tmp_path / "blocker" if where == "is-a-file" else tmp_path / "blocker" / "var"
    d = base_config(data_dir, free_udp_port())
    cfg = write_config(tmp_path / "config.toml", d)
    one_line(gateway("run", "-c", str(cfg)), 2, f"{cfg}: gateway.data_dir: {data_dir}", "not a directory")
    one_line(gateway("check-config", "-c", str(cfg)), 2, f"{cfg}: gateway.data_dir: {data_dir}", "a file")
    # A CLI write acting in-process meets the same check.
    one_line(gateway("maintenance", "add", "-c", str(cfg), "--site", "hq", "--for", "1h", "--reason", "r"), 2,
             "gateway.data_dir", "not a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: no unwritable directory to show")
def test_a_data_dir_that_is_not_writable_names_the_key(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        cfg = write_config(tmp_path / "config.toml", base_config(parent / "var", free_udp_port()))
        one_line(gateway("run", "-c", str(cfg)), 2, "gateway.data_dir", "not writable")
        one_line(gateway("check-config", "-c", str(cfg)), 2, "gateway.data_dir", "not writable")
    finally:
        parent.chmod(0o700)


def test_an_unknown_ticket_status_lists_the_valid_ones(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    line = one_line(gateway("tickets", "-c", str(cfg), "--status", "bogus"), 2, "--status", "'bogus'")
    for status in ("open", "acknowledged", "solution_proposed", "on_site", "restored", "closed"):
        assert status in line


@pytest.mark.parametrize("command", [["alarms"], ["tickets"], ["ticket", "show", "1"], ["outbox", "list"],
                                     ["report", "1"], ["ticket", "ack", "1"]])
def test_reading_a_store_that_does_not_exist_says_so(tmp_path: Path, command: list[str]) -> None:
    cfg = _cfg(tmp_path)
    one_line(gateway(*command, "-c", str(cfg)), 1, f"no store at {tmp_path / 'var' / 'gateway.db'}",
             "has not run with this config")
    assert not (tmp_path / "var").exists()  # and did not make one


def test_os_errors_are_words_not_errno(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    gateway("maintenance", "add", "-c", str(cfg), "--site", "hq", "--for", "1h", "--reason", "r")  # makes the store
    out = tmp_path / "no-such-dir" / "report.md"
    one_line(gateway("sla-report", "-c", str(cfg), "--contract", "mine-monitoring", "--month", "2026-01", "-o", str(out)),
             1, f"error: {out}: No such file or directory")


def test_check_config_finds_taken_ports_and_only_warns_about_its_own_daemon(tmp_path: Path, taken_tcp_port: int) -> None:
    cfg = _cfg(tmp_path, api={"enabled": True, "host": "127.0.0.1", "port": taken_tcp_port})
    one_line(gateway("check-config", "-c", str(cfg)), 2,
             f"{cfg}: api.port: 127.0.0.1:{taken_tcp_port} is in use by another program")

    snmp_port = free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", snmp_port))
        cfg = write_config(tmp_path / "config.toml", base_config(tmp_path / "var", snmp_port))
        one_line(gateway("check-config", "-c", str(cfg)), 2, f"adapters.snmp[0].port: 127.0.0.1:{snmp_port} is in use")

    # The daemon of this very config holds its ports: a warning, and the check passes.
    daemon = Daemon(cfg, tmp_path / "gateway.log")
    daemon.start()
    try:
        assert daemon.proc is not None
        r = gateway("check-config", "-c", str(cfg))
        assert r.returncode == 0 and r.stdout.startswith("OK: "), r.stderr
        assert r.stderr.splitlines() == [
            (f"warning: adapters.snmp[0].port: 127.0.0.1:{snmp_port} is in use by the running gateway "
             f"(pid {daemon.proc.pid}) of this data dir")
        ]
    finally:
        assert daemon.stop() == 0
