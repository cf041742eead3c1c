"""Signals a service manager sends: a SIGHUP (``systemctl reload``) that arrives while the
daemon is still starting does not end it; the reload happens once it is ready."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.fixtures.netsnmp import free_udp_port
from tests.helpers import ROOT, base_config, wait_until, write_config


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (Linux: ``SigCgt`` in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def test_sighup_while_starting_is_a_reload_once_ready(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", base_config(tmp_path / "var", free_udp_port()))
    log = tmp_path / "gateway.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(cfg)], stdout=fh,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        # Starting: it has installed its SIGHUP handler (else a SIGHUP would end it) but is not ready yet.
        wait_until(lambda: _catches(proc.pid, signal.SIGHUP) or proc.poll() is not None, 30, interval=0.005)
        assert "gateway ready" not in log.read_text(errors="replace")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "gateway ready" in log.read_text(errors="replace") or proc.poll() is not None, 30)
        assert proc.poll() is None, log.read_text()
        wait_until(lambda: "SIGHUP received while starting" in log.read_text(errors="replace"), 10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
