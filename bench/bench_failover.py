"""HA failover time: two gateways on one PostgreSQL store; kill -9 the leader ``--kills``
times and measure how long until the standby holds the lease and until it is ready
(state loaded, listening). The killed one is restarted as the next standby.

    .venv/bin/python bench/bench_failover.py --kills 10 --lease 5

The PostgreSQL server is ``$GATEWAY_BENCH_PG_DSN`` (default 127.0.0.1:5432, user postgres);
the run uses a schema of its own and drops it at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from bench_snmp import PY, ROOT, free_port

DSN = os.environ.get("GATEWAY_BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def _policies() -> str:
    example = (ROOT / "config.example.toml").read_text()
    start = example.index("[policies.mine-monitoring]")
    return example[start: example.index("# ----", start)]


class Node:
    def __init__(self, work: Path, name: str, schema: str, lease: float, gen: int) -> None:
        self.name = name
        data = work / f"{name}-{gen}"
        cfg = work / f"{name}-{gen}.toml"
        cfg.write_text(
            f'[gateway]\ndata_dir = "{data}"\nlog_level = "INFO"\n[api]\nenabled = false\n'
            f'[store]\nbackend = "postgresql"\ndsn = "{DSN}"\nschema = "{schema}"\n'
            f'[ha]\nenabled = true\nlease = "{lease}s"\nname = "{name}"\n'
            f'[inventory]\ndefault_policy = "mine-monitoring"\n[[adapters.snmp]]\nport = {free_port()}\n'
            f'[[devices]]\nid = "sw-bench"\nclass = "network.switch"\naddresses = ["127.0.0.1"]\n' + _policies()
        )
        self.log = work / f"{name}-{gen}.log"
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen([PY, "-m", "gateway", "run", "-c", str(cfg)], cwd=ROOT, stdout=fh,
                                         stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        return "gateway ready" in self.log.read_text(errors="replace")


def holder(db: psycopg.Connection, schema: str) -> str | None:  # type: ignore[type-arg]
    try:
        row = db.execute(f'SELECT holder FROM "{schema}".gateway_lease WHERE name = %s', ("leader",)).fetchone()
    except psycopg.Error:
        return None
    return str(row[0]) if row else None


def wait(cond, limit: float = 120.0) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > limit:
            raise SystemExit("timed out")
        time.sleep(0.02)  # why: polling a condition of another process (the lease row, a log line)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--lease", type=float, default=5.0)
    a = ap.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    db = psycopg.connect(DSN, autocommit=True)
    takeover: list[float] = []
    ready: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nodes = {"gw-a": Node(work, "gw-a", schema, a.lease, 0)}
        wait(lambda: nodes["gw-a"].ready())
        nodes["gw-b"] = Node(work, "gw-b", schema, a.lease, 0)
        wait(lambda: "standby" in nodes["gw-b"].log.read_text(errors="replace"))
        try:
            for k in range(1, a.kills + 1):
                leader = holder(db, schema)
                assert leader in nodes, leader
                other = "gw-b" if leader == "gw-a" else "gw-a"
                os.kill(nodes[leader].proc.pid, signal.SIGKILL)
                nodes[leader].proc.wait()
                t0 = time.monotonic()
                wait(lambda: holder(db, schema) == other)  # noqa: B023
                takeover.append(time.monotonic() - t0)
                wait(nodes[other].ready)
                ready.append(time.monotonic() - t0)
                print(f"  kill {k}: {leader} killed; {other} holds the lease after {takeover[-1]:.2f} s, "
                      f"ready after {ready[-1]:.2f} s", flush=True)
                nodes[leader] = Node(work, leader, schema, a.lease, k)
                wait(lambda: "standby" in nodes[leader].log.read_text(errors="replace"))  # noqa: B023
        finally:
            for n in nodes.values():
                if n.proc.poll() is None:
                    n.proc.terminate()
                    n.proc.wait(30)
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            db.close()
    print(f"lease {a.lease:.0f} s, {len(takeover)} kills: takeover p50 {statistics.median(takeover):.2f} s "
          f"max {max(takeover):.2f} s; ready p50 {statistics.median(ready):.2f} s max {max(ready):.2f} s")


if __name__ == "__main__":
    main()
