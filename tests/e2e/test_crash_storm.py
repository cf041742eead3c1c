"""kill -9 in the middle of a trap storm, repeatedly: after each restart the database is intact,
every fault still has exactly one open alarm and one ticket, and counts only go up (what was
committed before the kill is kept; nothing is counted twice)."""

from __future__ import annotations

import random
import socket
import sqlite3
import time
from pathlib import Path

from adapters.snmp import ber
from tests.fixtures.daemon import Daemon
from tests.fixtures.netsnmp import LINK_DOWN, free_udp_port
from tests.helpers import base_config, write_config

KEYS = 20


def _storm(port: int, n: int, seed: int) -> None:
    rng = random.Random(seed)
    pkts = [ber.encode_trap(ber.TrapMessage(ber.V2C, b"public", ber.PDU_TRAP_V2, i, [
        ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, i)),
        ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, LINK_DOWN)),
        (f"1.3.6.1.2.1.2.2.1.1.{i}", i),
    ])) for i in range(1, KEYS + 1)]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for k in range(n):
        s.sendto(pkts[rng.randrange(KEYS)], ("127.0.0.1", port))
        if k % 200 == 0:
            time.sleep(0.002)
    s.close()


def _state(db: Path) -> tuple[dict[str, int], int, str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        counts = {k: n for k, n in c.execute("SELECT key, count FROM alarms WHERE state='active'")}
        dup = c.execute("SELECT COUNT(*) FROM (SELECT key FROM alarms WHERE state='active' GROUP BY key HAVING COUNT(*) > 1)").fetchone()[0]
        tickets = c.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
        assert dup == 0
        return counts, tickets, c.execute("PRAGMA integrity_check").fetchone()[0]


def test_kill9_during_storm_repeatedly(tmp_path: Path) -> None:
    port = free_udp_port()
    cfg = write_config(tmp_path / "config.toml", base_config(tmp_path / "var", port))
    db = tmp_path / "var" / "gateway.db"
    daemon = Daemon(cfg, tmp_path / "gateway.log")
    rng = random.Random(11)
    before: dict[str, int] = {}
    try:
        for round_ in range(4):
            daemon.start()
            if db.exists():
                counts, tickets, ok = _state(db)
                assert ok == "ok"
                assert all(counts.get(k, 0) >= n for k, n in before.items()), "a committed count went down"
                assert tickets == len(counts) <= KEYS  # one ticket per fault, never a second
                before = counts
            _storm(port, 6000, seed=round_)
            time.sleep(rng.uniform(0.0, 0.3))  # somewhere in the middle of committing it
            daemon.kill9()
        daemon.start()
        counts, tickets, ok = _state(db)
        assert ok == "ok" and tickets == len(counts) == KEYS
        assert all(counts[k] >= n for k, n in before.items())
        assert sum(counts.values()) <= 4 * 6000  # nothing counted twice
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()
