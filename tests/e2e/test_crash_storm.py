"""kill -9 in the middle of a trap storm, repeatedly: after each restart the database is intact,
every fault still has exactly one open alarm and one ticket, and counts only go up (what was
committed before the kill is kept; nothing is counted twice)."""

from __future__ import annotations

import random
import time
from contextlib import closing
from pathlib import Path

from tests.fixtures import traps
from tests.fixtures.daemon import Daemon, read_db
from tests.fixtures.netsnmp import free_udp_port
from tests.fixtures.traps import link_down
from tests.helpers import base_config, write_config

KEYS = 20


def _storm(port: int, n: int, seed: int) -> None:
    rng = random.Random(seed)
    pkts = [link_down(i, uptime=i) for i in range(1, KEYS + 1)]
    traps.send(port, (pkts[rng.randrange(KEYS)] for _ in range(n)))


def _state(db: Path) -> tuple[dict[str, int], int, str]:
    with closing(read_db(db)) as c:
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
            # why: the kill lands at a random instant while the gateway is still committing the storm
            time.sleep(rng.uniform(0.0, 0.3))
            daemon.kill9()
        daemon.start()
        counts, tickets, ok = _state(db)
        assert ok == "ok" and tickets == len(counts) == KEYS
        assert all(counts[k] >= n for k, n in before.items())
        assert sum(counts.values()) <= 4 * 6000  # nothing counted twice
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()
