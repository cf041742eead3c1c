"""CPU per INFORM of the gateway daemon (full pipeline, answered after commit), read from
``/proc`` — a figure a shared machine changes far less than latency percentiles.

Starts the daemon as bench_inform.py does (pinned to core 1), sends ``rate × seconds`` v2c
INFORMs with unique request-ids per round from core 0, waits until every one is answered and
the store is quiet, and prints the daemon's user and system CPU per INFORM, also split by
thread (receiver ``snmp-…``, the event loop, the ``store`` thread), with the load average.

    .venv/bin/python bench/cpu_inform.py --rate 5000 --seconds 6 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_inform
import bench_snmp

TICK = os.sysconf("SC_CLK_TCK")


def _stat(path: Path) -> tuple[int, int]:
    f = path.read_text().rsplit(")", 1)[1].split()
    return int(f[11]), int(f[12])  # utime, stime in clock ticks


def threads(pid: int) -> dict[str, tuple[int, int]]:
    """Ticks (user, system) per thread name; threads of one name are summed."""
    out: dict[str, tuple[int, int]] = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (t / "comm").read_text().strip()
            u, s = _stat(t / "stat")
        except OSError:
            continue  # a thread that ended meanwhile
        if t.name == str(pid):
            name = "main"
        elif name.startswith("store"):
            name = "store"
        elif name.startswith("snmp-"):
            name = "receiver"
        else:  # this Python does not name its threads for the OS: by thread id
            name = f"tid+{int(t.name) - pid}"
        pu, ps = out.get(name, (0, 0))
        out[name] = (pu + u, ps + s)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if bench_snmp.taskset(0):
        os.sched_setaffinity(0, {0})
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    per: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        gw = bench_snmp.GatewayProc(Path(tmp))
        pid = gw.proc.pid
        try:
            bench_inform.round_trip(gw.port, a.rate, 1.0, 900_000_000)  # warm the caches and the code
            for r in range(a.rounds):
                c0 = bench_snmp.settle(gw.count, quiet=0.5)
                t0 = threads(pid)
                res = bench_inform.round_trip(gw.port, a.rate, a.seconds, 1 + r * 10_000_000)
                c1 = bench_snmp.settle(gw.count, quiet=0.5)
                t1 = threads(pid)
                n = res["sent"]
                d = {k: (t1[k][0] - t0.get(k, (0, 0))[0], t1[k][1] - t0.get(k, (0, 0))[1]) for k in t1}
                user = sum(u for u, _ in d.values()) / TICK / n * 1e6
                system = sum(s for _, s in d.values()) / TICK / n * 1e6
                per.append(user + system)
                split = "  ".join(f"{k} {(u + s) / TICK / n * 1e6:.0f}" for k, (u, s) in sorted(d.items(), key=lambda x: -sum(x[1]))
                                  if u + s)
                print(f"  round {r + 1}: sent {n} answered {res['answered']} committed {c1 - c0}  "
                      f"CPU per INFORM {user + system:.1f} µs (user {user:.1f}, system {system:.1f}; {split})  "
                      f"p50 {res['p50']:.2f} ms p99 {res['p99']:.2f} ms  load {os.getloadavg()[0]:.2f}", flush=True)
        finally:
            gw.stop()
    print(f"median CPU per INFORM {statistics.median(per):.1f} µs at {a.rate:.0f}/s")


if __name__ == "__main__":
    main()
