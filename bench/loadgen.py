"""UDP trap load generator: sends pre-encoded SNMP traps at a paced rate (used by the benchmarks).

Run as its own process (pin it to a core of its own): it encodes ``variants`` distinct
linkDown traps (ifIndex 1..variants) once, then sends them round-robin at ``rate`` per
second for ``seconds``, pacing every millisecond. Prints one JSON line with what it sent.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.snmp import ber

LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"


def packets(variants: int, community: bytes = b"public", inform: bool = False) -> list[bytes]:
    out = []
    for i in range(1, variants + 1):
        msg = ber.TrapMessage(
            ber.V2C, community, ber.PDU_INFORM if inform else ber.PDU_TRAP_V2, i,
            [
                ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, 12345)),
                ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, LINK_DOWN)),
                (f"1.3.6.1.2.1.2.2.1.1.{i}", i),
                (f"1.3.6.1.2.1.2.2.1.2.{i}", f"GigabitEthernet0/{i}".encode()),
                (f"1.3.6.1.2.1.2.2.1.7.{i}", 1),
                (f"1.3.6.1.2.1.2.2.1.8.{i}", 2),
            ],
        )
        out.append(ber.encode_trap(msg))
    return out


def send(host: str, port: int, rate: float, seconds: float, variants: int) -> dict[str, float]:
    pkts = packets(variants)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    sock.connect((host, port))
    total = int(rate * seconds)
    sent = 0
    n = len(pkts)
    start = time.perf_counter()
    tick = 0.001
    per_tick = rate * tick
    due = 0.0
    while sent < total:
        now = time.perf_counter() - start
        due = min(total, int((now + tick) * rate))
        while sent < due:
            try:
                sock.send(pkts[sent % n])
            except OSError:
                pass
            sent += 1
        sleep = (sent / rate) - (time.perf_counter() - start)
        if sleep > 0:
            time.sleep(sleep)
    elapsed = time.perf_counter() - start
    _ = per_tick
    return {"sent": sent, "seconds": elapsed, "rate": sent / elapsed, "bytes": len(pkts[0])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--variants", type=int, default=100)
    a = ap.parse_args()
    print(json.dumps(send(a.host, a.port, a.rate, a.seconds, a.variants)), flush=True)


if __name__ == "__main__":
    main()
