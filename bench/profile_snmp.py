"""Where the gateway's CPU goes per trap: py-spy samples the daemon (full pipeline) while
bench/loadgen.py sends at a fixed rate; prints the share of samples per frame (self and
inclusive) and µs of CPU per trap.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile_snmp.py --mode v3 --rate 2000 --seconds 10
    .venv/bin/python bench/profile_snmp.py --mode distinct --rate 10000 --seconds 10
    .venv/bin/python bench/profile_snmp.py --mode inform --rate 10000 --seconds 5
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_inform
import bench_snmp


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["repeat", "distinct", "v3", "inform"], default="v3")
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    bench_snmp.MODE = "repeat" if a.mode == "inform" else a.mode
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gw = bench_snmp.GatewayProc(work)
        raw = work / "stacks.txt"
        try:
            bench_snmp.run_load(gw.port, a.rate, 2.0)  # warm the name caches, as a long run would
            before = bench_snmp.settle(gw.count, quiet=0.5)
            prof = subprocess.Popen([spy, "record", "--format", "raw", "--threads", "--gil", "-r", "200",
                                     "-o", str(raw), "-p", str(gw.proc.pid), "-d", str(int(a.seconds) + 1)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # why: let py-spy attach before the load starts
            cpu0 = _cpu(gw.proc.pid)
            if a.mode == "inform":  # v2c INFORMs with unique request-ids, answered after commit
                if bench_snmp.taskset(0):
                    os.sched_setaffinity(0, {0})  # the sender on core 0, as bench_inform.py
                res = bench_inform.round_trip(gw.port, a.rate, a.seconds, 50_000_000)
                sent = {"sent": res["sent"]}
                print(f"INFORM round trip: answered {res['answered']}, p50 {res['p50']:.2f} ms, p99 {res['p99']:.2f} ms")
            else:
                sent = bench_snmp.run_load(gw.port, a.rate, a.seconds)
            cpu1 = _cpu(gw.proc.pid)
            prof.wait(60)
            got = bench_snmp.settle(gw.count) - before
        finally:
            gw.stop()
        print(f"sent {sent['sent']:.0f}, committed {got}; gateway CPU during the send "
              f"{cpu1 - cpu0:.2f} s = {(cpu1 - cpu0) / max(got, 1) * 1e6:.0f} µs per trap")
        _summarise(raw, a.top)


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks of 10 ms


def _summarise(raw: Path, top: int) -> None:
    self_n: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [f.split(" (")[0] + " " + f.split("/")[-1].split(":")[0].rstrip(")") for f in stack.split(";")[1:]]
        if not frames or any(w in frames[-1] for w in ("select ", "poll ", "epoll", "recvfrom", "wait ")):
            continue  # idle waiting, not work
        k = int(n)
        total += k
        self_n[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    print(f"{total} busy samples")
    print("inclusive:")
    for f, k in incl.most_common(top):
        print(f"  {k / total * 100:5.1f} %  {f}")
    print("self:")
    for f, k in self_n.most_common(top):
        print(f"  {k / total * 100:5.1f} %  {f}")


if __name__ == "__main__":
    main()
