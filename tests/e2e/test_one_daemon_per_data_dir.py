"""One store, one writer process: a second ``gateway run`` on a data dir in use refuses with
one line naming the data dir and the holder's PID, and writes nothing; the first daemon's PID
file survives it; after a kill -9 the data dir is free at once."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from tests.fixtures.daemon import Daemon, read_db
from tests.fixtures.netsnmp import free_udp_port
from tests.helpers import ROOT, base_config, write_config


def _files(data_dir: Path) -> dict[str, str]:
    """Every file of the data dir with a digest of its content (the socket: its inode)."""
    out = {}
    for p in sorted(data_dir.iterdir()):
        if p.is_socket():
            out[p.name] = f"socket {p.stat().st_ino}"
        elif p.is_file():
            out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_a_second_daemon_on_the_same_data_dir_refuses_and_writes_nothing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", base_config(tmp_path / "var", free_udp_port()))
    data_dir = tmp_path / "var"
    first = Daemon(cfg, tmp_path / "first.log")
    first.start()
    try:
        assert first.proc is not None
        pid = first.proc.pid
        with read_db(data_dir / "gateway.db") as db:
            rows_before = db.execute("SELECT (SELECT count(*) FROM alarms), (SELECT count(*) FROM tickets)").fetchone()
        db.close()
        files_before = _files(data_dir)

        second = subprocess.run([sys.executable, "-m", "gateway", "run", "-c", str(cfg)],
                                capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
        assert second.returncode == 1, second.stderr
        assert second.stderr.splitlines() == [
            f"error: data dir {data_dir} is in use by a gateway daemon (pid {pid}); one gateway per data dir"
        ]
        assert second.stdout == ""
        # Nothing written by it: the store, the lock naming the first, the first's PID file.
        assert _files(data_dir) == files_before
        assert (data_dir / "gateway.pid").read_text() == f"{pid}\n"
        assert (data_dir / "gateway.lock").read_text() == f"{pid} daemon\n"
        with read_db(data_dir / "gateway.db") as db:
            assert db.execute("SELECT (SELECT count(*) FROM alarms), (SELECT count(*) FROM tickets)").fetchone() \
                == rows_before
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()
        assert first.alive()
    finally:
        first.cleanup()


def test_kill_9_frees_the_data_dir_at_once(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", base_config(tmp_path / "var", free_udp_port()))
    daemon = Daemon(cfg, tmp_path / "gateway.log")
    daemon.start()
    try:
        daemon.kill9()
        # Its lock file, PID file and socket are left behind; none of them holds anything.
        assert (tmp_path / "var" / "gateway.pid").exists()
        daemon.start()  # at once: no stale lock to wait out or clean up
        assert daemon.proc is not None
        assert (tmp_path / "var" / "gateway.lock").read_text() == f"{daemon.proc.pid} daemon\n"
        assert (tmp_path / "var" / "gateway.pid").read_text() == f"{daemon.proc.pid}\n"
        assert daemon.stop() == 0
        assert not (tmp_path / "var" / "gateway.pid").exists()  # removed by its owner
    finally:
        daemon.cleanup()
