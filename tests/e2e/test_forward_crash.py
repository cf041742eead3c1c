"""kill -9 an edge mid-drain and a central mid-consume: nothing lost, nothing twice.

The crashes land at the worst points through failpoints (``gateway/failpoints.py``): the
edge dies right after JetStream acknowledged its first message and before the row is
deleted (so it publishes it again after its restart); the central dies right after
committing the first forwarded event and before acknowledging it (so JetStream delivers it
again). Real processes (``python -m gateway run``), a real ``nats-server -js``, real
``snmptrap``; the central on PostgreSQL where one answers, else SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from gateway.config import config_from_dict
from gateway.runtime.stores import open_store
from tests.fixtures.daemon import Daemon
from tests.fixtures.natsjs import CuttableProxy, JetStreamServer
from tests.fixtures.netsnmp import LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import wait_until, write_config
from tests.integration.test_forward import central_dict, central_store, edge_dict

__all__ = ["central_store"]

N = 20


def _queued(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return int(c.execute("SELECT COUNT(*) FROM forward_queue").fetchone()[0])
    except sqlite3.Error:
        return -1


def test_c_kill_edge_mid_drain_and_central_mid_consume(
    tmp_path: Path, jetstream: JetStreamServer, netsnmp: NetSnmp, central_store: dict[str, Any]
) -> None:
    proxy = CuttableProxy(("127.0.0.1", jetstream.port))
    port = free_udp_port()
    ed = edge_dict(tmp_path, "a", proxy.url, port)
    cd = central_dict(tmp_path, jetstream.url, central_store, {"a": "mine-monitoring"})
    edge = Daemon(write_config(tmp_path / "edge.toml", ed), tmp_path / "edge.log")
    central = Daemon(write_config(tmp_path / "central.toml", cd), tmp_path / "central.log")
    edge_db = Path(ed["gateway"]["data_dir"]) / "gateway.db"
    try:
        central.start(env={"GATEWAY_FAILPOINTS": "before_commit_callbacks=exit"})
        proxy.cut()
        edge.start(env={"GATEWAY_FAILPOINTS": "forward_after_ack=exit"})
        for i in range(1, N + 1):
            r = netsnmp.trap(port, LINK_DOWN, link_varbinds(i, f"eth{i}"))
            assert r.returncode == 0, r.stderr
        wait_until(lambda: _queued(edge_db) == N, timeout=15)
        proxy.mend()
        wait_until(lambda: not edge.alive() and not central.alive(), timeout=30)
        assert "failpoint forward_after_ack" in edge.log.read_text()
        assert "failpoint before_commit_callbacks" in central.log.read_text()
        assert _queued(edge_db) == N  # acknowledged but not deleted: it goes again
        central.start()
        edge.start()
        wait_until(lambda: _queued(edge_db) == 0, timeout=30)
        cfg = config_from_dict(cd, str(tmp_path / "central.toml"), str(tmp_path))

        def alarms() -> list[dict[str, Any]]:
            s = open_store(cfg, readonly=True)
            try:
                return [a for a in s.list_alarms() if a["device"] == "sw-a"]
            finally:
                s.close()

        wait_until(lambda: len(alarms()) == N, timeout=30)
        got = alarms()
        assert sorted(a["key"] for a in got) == sorted(f"sw-a/if/{i}" for i in range(1, N + 1))
        assert all(a["count"] == 1 for a in got), [a for a in got if a["count"] != 1]  # nothing twice
        assert edge.stop() == 0 and central.stop() == 0
    finally:
        edge.cleanup()
        central.cleanup()
        proxy.close()
