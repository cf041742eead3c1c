"""SNMPv3 authPriv trap cost in process, no network: the lean USM path
(``adapters/snmp/usm.py``) and pysnmp's (``adapters/snmp/v3.py``) on the same unique
SHA-256/AES-128 traps (bench/loadgen.py's v3 packets: fresh msgID, engine time moving
forward, varying varbinds), alternating in rounds; a real snmptrap datagram is checked to
decode on both first. Single core.

    .venv/bin/python bench/bench_snmp_v3.py --count 3000 --rounds 3
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.snmp.usm import LeanV3Processor
from adapters.snmp.v3 import UsmUser, V3Processor
from bench.loadgen import V3_AUTH, V3_PRIV, V3_USER, engine_id, v3_packets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    user = UsmUser(V3_USER, V3_AUTH[0], V3_AUTH[1], "AES-128", V3_PRIV[1], engine_ids=(engine_id(0),))
    with tempfile.TemporaryDirectory() as tmp:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        subprocess.run(
            ["snmptrap", "-v", "3", "-u", V3_USER, "-l", "authPriv", "-a", V3_AUTH[0], "-A", V3_AUTH[1], "-x", "AES",
             "-X", V3_PRIV[1], "-e", "0x" + engine_id(0).hex(), f"127.0.0.1:{sock.getsockname()[1]}", "",
             "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.1.7", "i", "7"],
            check=True, capture_output=True, timeout=15, env={"SNMP_PERSISTENT_DIR": tmp, "PATH": "/usr/bin:/bin"},
        )
        real, _ = sock.recvfrom(65535)
        # net-snmp's own trap decodes on both (fresh processors: its engine time is not ours).
        assert LeanV3Processor([user], Path(tmp) / "c").process(real).message is not None
        assert V3Processor([user], Path(tmp) / "d").process(real).message is not None
        procs = {"lean": LeanV3Processor([user], Path(tmp) / "a"), "pysnmp": V3Processor([user], Path(tmp) / "b")}
        per: dict[str, list[float]] = {k: [] for k in procs}
        for r in range(a.rounds):
            pkts = v3_packets(a.count, 1000.0, 1, 1000 + r * 1000)
            for name, p in procs.items():
                t = time.perf_counter()
                for d in pkts:
                    p.process(d)
                per[name].append((time.perf_counter() - t) / a.count)
        assert procs["lean"].stats.fallback == 0
    for name, xs in per.items():
        print(f"{name:7} v3 authPriv SHA-256/AES-128, {len(pkts[0])} bytes: rounds "
              + " / ".join(f"{x * 1e6:.0f}" for x in xs)
              + f" µs; median {statistics.median(xs) * 1e6:.0f} µs per trap = {1 / statistics.median(xs):,.0f}/s")
    print(f"lean / pysnmp speed-up: {statistics.median(per['pysnmp']) / statistics.median(per['lean']):.1f}x")


if __name__ == "__main__":
    main()
