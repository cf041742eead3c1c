"""The full pipeline on PostgreSQL vs on SQLite, same run, same box.

``--mode rate``: loss-free v2c trap rate of two gateways (one on each store), both pinned
to the same core and taking turns at each rate (as bench_snmp.py), plus the CPU the
PostgreSQL server's backends spent for the PostgreSQL gateway (read from /proc).
``--mode inform``: v2c INFORMs at a fixed rate (1,000/s) with unique request-ids; each is
answered only after its batch committed, so the answer latency is trap → commit → answer.
Percentiles per store over every INFORM; unanswered ones are counted.

    .venv/bin/python bench/bench_store_pg.py --mode rate --seconds 5
    .venv/bin/python bench/bench_store_pg.py --mode inform --rate 1000 --seconds 10

The PostgreSQL server is ``$GATEWAY_BENCH_PG_DSN`` (default: 127.0.0.1:5432, user
postgres); the run works in a schema of its own and drops it at the end.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from bench_snmp import LOSS_MAX, PY, ROOT, free_port, settle, taskset, trial

from adapters.snmp import ber

DSN = os.environ.get("GATEWAY_BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def _policies() -> str:
    example = (ROOT / "config.example.toml").read_text()
    start = example.index("[policies.mine-monitoring]")
    return example[start: example.index("# ----", start)]


class Gw:
    """One gateway process on one store."""

    def __init__(self, work: Path, backend: str) -> None:
        self.backend = backend
        self.name = f"gateway on {backend}"
        self.port = free_port()
        data = work / f"gw-{backend}"
        self.app = f"gwbench-{uuid.uuid4().hex[:8]}"
        self.schema = f"bench_{uuid.uuid4().hex[:10]}"
        store = ""
        if backend == "postgresql":
            store = f'[store]\nbackend = "postgresql"\ndsn = "{DSN} application_name={self.app}"\nschema = "{self.schema}"\n'
        cfg = work / f"{backend}.toml"
        cfg.write_text(
            f'[gateway]\ndata_dir = "{data}"\nlog_level = "WARNING"\n[api]\nenabled = false\n{store}'
            f'[inventory]\ndefault_policy = "mine-monitoring"\n'
            f'[[adapters.snmp]]\nport = {self.port}\n'
            f'[[devices]]\nid = "sw-bench"\nclass = "network.switch"\naddresses = ["127.0.0.1"]\n' + _policies()
        )
        self.db = data / "gateway.db"
        self.log = (work / f"{backend}.log").open("wb")
        self.proc = subprocess.Popen([*taskset(1), PY, "-m", "gateway", "run", "-c", str(cfg)], cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self._pg = psycopg.connect(DSN, autocommit=True) if backend == "postgresql" else None
        deadline = time.monotonic() + 60
        while self.count() < 0 and time.monotonic() < deadline:
            time.sleep(0.2)  # why: waiting for the daemon to create its store (no event to wait on)
        time.sleep(1.5)  # why: the listener starts after the store; same grace as bench_snmp.py

    def count(self) -> int:
        """Traps folded into alarms, read back from the store (-1 before it exists)."""
        try:
            if self._pg is not None:
                row = self._pg.execute(f'SELECT COALESCE(SUM(count),0) FROM "{self.schema}".alarms').fetchone()
                return int(row[0]) if row else -1
            import sqlite3

            if not self.db.exists():
                return -1
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as db:
                return int(db.execute("SELECT COALESCE(SUM(count),0) FROM alarms").fetchone()[0])
        except Exception:  # noqa: BLE001 - not there yet
            return -1

    def cpu(self) -> tuple[float, float]:
        """(gateway process CPU s, PostgreSQL backends' CPU s serving it) so far."""
        tick = os.sysconf("SC_CLK_TCK")

        def of(pid: int) -> float:
            try:
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                return (int(f[11]) + int(f[12])) / tick
            except (OSError, IndexError):
                return 0.0

        pg = 0.0
        if self._pg is not None:
            pids = [r[0] for r in self._pg.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                                    (self.app,)).fetchall()]
            pg = sum(of(p) for p in pids)
        return of(self.proc.pid), pg

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        if self._pg is not None:
            self._pg.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            self._pg.close()


def mode_rate(a: argparse.Namespace, work: Path) -> None:
    rates = [float(r) for r in a.rates.split(",")]
    gws = [Gw(work, "sqlite"), Gw(work, "postgresql")]
    best = {g.name: 0.0 for g in gws}
    fail: dict[str, float | None] = {g.name: None for g in gws}
    try:
        def one(g: Gw, r: float) -> None:
            c0 = g.cpu()
            t0 = time.monotonic()
            loss, info = trial(g, r, a.seconds)
            c1, wall = g.cpu(), time.monotonic() - t0
            print(f"  {g.name:<24} {r:>8.0f}/s sent {info['sent']:>7.0f} got {info['received']:>7.0f} "
                  f"loss {loss * 100:6.3f} %  gateway cpu {(c1[0] - c0[0]) / wall * 100:5.1f} %"
                  + (f"  postgres cpu {(c1[1] - c0[1]) / wall * 100:5.1f} %" if g.backend == "postgresql" else ""),
                  flush=True)
            if loss <= LOSS_MAX:
                best[g.name] = r
            else:
                fail[g.name] = r

        for r in rates:
            for g in gws:
                if fail[g.name] is None:
                    one(g, r)
            if all(f is not None for f in fail.values()):
                break
        for _ in range(a.bisect):
            for g in gws:
                lo, hi = best[g.name], fail[g.name]
                if hi is None:
                    continue
                mid = round((lo + hi) / 2, -2)
                if mid not in (lo, hi):
                    one(g, mid)
    finally:
        for g in gws:
            g.stop()
    for name, b in best.items():
        capped = " (never lost: the rate list's ceiling)" if fail[name] is None else ""
        print(f"{name}: highest loss-free rate (≤ 0.1 % over {a.seconds:.0f} s): {b:.0f} traps/s{capped}")
    s, p = best["gateway on sqlite"], best["gateway on postgresql"]
    print(f"ratio postgresql / sqlite: {p / s:.2f}" if s else "sqlite rate 0")


def informs(n: int, first_id: int) -> list[bytes]:
    out = []
    for k in range(n):
        i = k % 100 + 1
        msg = ber.TrapMessage(ber.V2C, b"public", ber.PDU_INFORM, first_id + k, [
            ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, 12345)),
            ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, "1.3.6.1.6.3.1.1.5.3")),
            (f"1.3.6.1.2.1.2.2.1.1.{i}", i),
            (f"1.3.6.1.2.1.2.2.1.8.{i}", 2),
        ])
        out.append(ber.encode_trap(msg))
    return out


def inform_run(g: Gw, rate: float, seconds: float, first_id: int) -> dict[str, Any]:
    n = int(rate * seconds)
    pkts = informs(n, first_id)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.connect(("127.0.0.1", g.port))
    sock.setblocking(False)
    sent_at: dict[int, float] = {}
    lat: list[float] = []
    start = time.perf_counter()
    k = 0

    def drain(wait: float) -> None:
        r, _, _ = select.select([sock], [], [], max(0.0, wait))
        while r:
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                break
            rid = ber.decode(data).request_id
            t = sent_at.pop(rid, None)
            if t is not None:
                lat.append(time.perf_counter() - t)
            r, _, _ = select.select([sock], [], [], 0)

    while k < n:
        due = min(n, int((time.perf_counter() - start) * rate) + 1)
        while k < due:
            sent_at[first_id + k] = time.perf_counter()
            sock.send(pkts[k])
            k += 1
        drain((k / rate) - (time.perf_counter() - start))
    end = time.perf_counter() + 5
    while sent_at and time.perf_counter() < end:
        drain(end - time.perf_counter())
    sock.close()
    lat.sort()
    q = statistics.quantiles(lat, n=1000) if len(lat) > 2 else [float("nan")] * 999
    return {"sent": n, "answered": len(lat), "unanswered": len(sent_at), "p50": q[499] * 1e3, "p99": q[989] * 1e3,
            "p999": q[998] * 1e3, "max": lat[-1] * 1e3 if lat else float("nan")}


def mode_inform(a: argparse.Namespace, work: Path) -> None:
    gws = [Gw(work, "sqlite"), Gw(work, "postgresql")]
    try:
        first = 1
        for rnd in range(a.rounds):
            for g in gws:
                r = inform_run(g, a.rate, a.seconds, first)
                first += int(a.rate * a.seconds)
                print(f"  round {rnd + 1} {g.name:<24} {a.rate:.0f}/s sent {r['sent']} answered {r['answered']} "
                      f"unanswered {r['unanswered']}  p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  "
                      f"p99.9 {r['p999']:.2f} ms  max {r['max']:.1f} ms", flush=True)
        for g in gws:
            print(f"  {g.name}: alarms' trap count in the store {settle(g.count, quiet=1.0)}")
    finally:
        for g in gws:
            g.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["rate", "inform"], default="rate")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rates", default="10000,20000,30000,40000,50000,60000")
    ap.add_argument("--bisect", type=int, default=2)
    ap.add_argument("--rate", type=float, default=1000.0, help="INFORMs per second (--mode inform)")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (mode_rate if a.mode == "rate" else mode_inform)(a, Path(tmp))


if __name__ == "__main__":
    main()
