"""Signals a service manager sends: a SIGHUP (``systemctl reload``) that arrives while the
daemon is still starting does not end it; the reload happens once it is ready."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.netsnmp import free_udp_port
from tests.helpers import ROOT, base_config, wait_until, write_config


def test_sighup_while_starting_is_a_reload_once_ready(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", base_config(tmp_path / "var", free_udp_port()))
    log = tmp_path / "gateway.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(cfg)], stdout=fh,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        time.sleep(0.3)  # interpreter up, gateway not ready yet
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
