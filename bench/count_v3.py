"""Instructions per SNMPv3 authPriv trap in the lean USM path plus event building, counted
by ``valgrind --tool=callgrind`` — a figure a busy machine does not change.

The generator's unique SHA-256/AES-128 packets (bench/loadgen.py) are encoded once into a
temporary file; callgrind then runs the processing of the first 500 and of the first 2,500
of them in fresh interpreters, and the difference ÷ 2,000 is the cost of one trap (start-up,
imports and key localisation cancel out).

    .venv/bin/python bench/count_v3.py
"""

from __future__ import annotations

import argparse
import pickle
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _inner(packets: Path, k: int) -> None:
    from adapters.snmp.receiver import EventBuilder
    from adapters.snmp.usm import LeanV3Processor
    from adapters.snmp.v3 import UsmUser
    from bench.loadgen import V3_AUTH, V3_PRIV, V3_USER, engine_id

    pk = pickle.loads(packets.read_bytes())[:k]
    user = UsmUser(V3_USER, V3_AUTH[0], V3_AUTH[1], "AES-128", V3_PRIV[1],
                   engine_ids=tuple(engine_id(e) for e in range(4)))
    with tempfile.TemporaryDirectory() as tmp:
        lean = LeanV3Processor([user], Path(tmp) / "eid")
        build = EventBuilder(None, "snmp").build
        peer = ("127.0.0.1", 5000)
        for p in pk:
            r = lean.process(p, peer)
            build(r.message, "127.0.0.1", 0.0)
        if lean.stats.accepted != k:
            raise SystemExit(f"only {lean.stats.accepted} of {k} accepted")


def _count(packets: Path, k: int, out: Path) -> int:
    res = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                          "--inner", str(k), "--packets", str(packets)], capture_output=True, text=True, check=True)
    m = re.search(r"Collected : (\d+)", res.stderr)
    if m is None:
        raise SystemExit(f"callgrind printed no count: {res.stderr[-500:]}")
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inner", type=int)
    ap.add_argument("--packets", type=Path)
    ap.add_argument("--small", type=int, default=500)
    ap.add_argument("--large", type=int, default=2500)
    a = ap.parse_args()
    if a.inner is not None:
        _inner(a.packets, a.inner)
        return
    from bench.loadgen import v3_packets

    with tempfile.TemporaryDirectory() as tmp:
        packets = Path(tmp) / "v3.pickle"
        packets.write_bytes(pickle.dumps(v3_packets(a.large, 20000.0, 4, int(time.time()) % 100_000_000 - 30)))
        small = _count(packets, a.small, Path(tmp) / "small.out")
        large = _count(packets, a.large, Path(tmp) / "large.out")
    print(f"{(large - small) // (a.large - a.small)} instructions per v3 trap (USM + event building), "
          f"from {small:,} and {large:,} for {a.small} and {a.large} traps")


if __name__ == "__main__":
    main()
