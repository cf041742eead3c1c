"""INFORM round trip through the full pipeline: send → decode → commit → Response.

The gateway runs as a daemon pinned to core 1 (as in bench_snmp.py); this process, pinned
to core 0, pre-encodes ``rate × seconds`` v2c INFORMs with unique request-ids, sends them
paced every millisecond from one socket, and a thread takes the Responses: latency is the
time from sending an INFORM to receiving its Response (which the gateway sends only after
the event is committed). Prints p50/p90/p99/max, how many were answered, and checks the
store holds every one.

    .venv/bin/python bench/bench_inform.py --rate 10000 --seconds 5 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_snmp

from adapters.snmp import ber


def informs(n: int, first_id: int) -> list[tuple[int, bytes]]:
    out = []
    for i in range(n):
        rid = first_id + i
        idx = 1 + i % 48
        msg = ber.TrapMessage(
            ber.V2C, b"public", ber.PDU_INFORM, rid,
            [
                ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, 1000 + i)),
                ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, "1.3.6.1.6.3.1.1.5.3")),
                (f"1.3.6.1.2.1.2.2.1.1.{idx}", idx),
                (f"1.3.6.1.2.1.2.2.1.2.{idx}", f"GigabitEthernet0/{idx}".encode()),
            ],
        )
        out.append((rid, ber.encode_trap(msg)))
    return out


def round_trip(port: int, rate: float, seconds: float, first_id: int) -> dict[str, float]:
    pkts = informs(int(rate * seconds), first_id)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    sock.connect(("127.0.0.1", port))
    sent_at: dict[int, float] = {}
    lat: list[float] = []
    done = threading.Event()

    def receive() -> None:
        sock.settimeout(0.2)
        while not done.is_set() or len(lat) < len(pkts):
            try:
                data = sock.recv(65535)
            except TimeoutError:
                if done.is_set():
                    return
                continue
            t = time.perf_counter()
            try:
                rid = ber.decode(data).request_id
            except Exception:  # noqa: BLE001 - count only well-formed answers
                continue
            s = sent_at.pop(rid, None)
            if s is not None:
                lat.append(t - s)

    th = threading.Thread(target=receive, daemon=True)
    th.start()
    start = time.perf_counter()
    sent = 0
    total = len(pkts)
    while sent < total:
        due = min(total, int((time.perf_counter() - start + 0.001) * rate))
        while sent < due:
            rid, p = pkts[sent]
            sent_at[rid] = time.perf_counter()
            try:
                sock.send(p)
            except OSError:
                pass
            sent += 1
        pause = sent / rate - (time.perf_counter() - start)
        if pause > 0:
            time.sleep(pause)  # why: pacing: the next INFORM is not due yet
    deadline = time.monotonic() + 10
    while len(lat) < total and time.monotonic() < deadline:
        time.sleep(0.05)  # why: waiting for the last Responses
    done.set()
    th.join(2)
    sock.close()
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    return {"sent": total, "answered": len(lat), "p50": q[49] * 1e3, "p90": q[89] * 1e3, "p99": q[98] * 1e3,
            "max": (lat[-1] if lat else float("nan")) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=10000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if bench_snmp.taskset(0):
        os.sched_setaffinity(0, {0})
    with tempfile.TemporaryDirectory() as tmp:
        gw = bench_snmp.GatewayProc(Path(tmp))
        rows = []
        try:
            for r in range(a.rounds):
                before = bench_snmp.settle(gw.count, quiet=0.5)
                res = round_trip(gw.port, a.rate, a.seconds, 1 + r * 10_000_000)
                committed = bench_snmp.settle(gw.count) - before
                res["committed"] = committed
                rows.append(res)
                print(f"  round {r + 1}: {a.rate:.0f}/s sent {res['sent']} answered {res['answered']} committed "
                      f"{committed}  p50 {res['p50']:.2f} ms  p90 {res['p90']:.2f}  p99 {res['p99']:.2f}  "
                      f"max {res['max']:.1f}", flush=True)
        finally:
            gw.stop()
    med = statistics.median(r["p99"] for r in rows)
    ok = all(r["answered"] == r["sent"] == r["committed"] for r in rows)
    print(f"median p99 {med:.2f} ms at {a.rate:.0f} INFORMs/s; every INFORM answered and committed: {ok}")


if __name__ == "__main__":
    main()
