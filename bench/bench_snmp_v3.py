"""SNMPv3 authPriv trap cost: net-snmp's snmptrap sends one real SHA-256/AES-128 trap, the
datagram is captured, then ``V3Processor.process`` (pysnmp's USM: authenticate, decrypt,
decode) is timed on it in a loop. Single core, in process, no network.

    .venv/bin/python bench/bench_snmp_v3.py
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.snmp.config import SnmpListenerConfig
from adapters.snmp.v3 import V3Processor


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    subprocess.run(
        ["snmptrap", "-v", "3", "-u", "noc", "-l", "authPriv", "-a", "SHA-256", "-A", "authpass123", "-x", "AES",
         "-X", "privpass123", "-e", "0x8000000001020304", f"127.0.0.1:{port}", "", "1.3.6.1.6.3.1.1.5.3",
         "1.3.6.1.2.1.2.2.1.1.7", "i", "7", "1.3.6.1.2.1.2.2.1.2.7", "s", "eth7"],
        check=True, capture_output=True, timeout=15,
    )
    data, peer = sock.recvfrom(65535)
    cfg = SnmpListenerConfig(users=[{"user": "noc", "auth_protocol": "SHA-256", "auth_key": "authpass123",
                                     "priv_protocol": "AES-128", "priv_key": "privpass123",
                                     "engine_ids": ["0x8000000001020304"]}])
    with tempfile.TemporaryDirectory() as tmp:
        proc = V3Processor.from_config(cfg, Path(tmp) / "engine-id")
        assert proc.process(data, peer).message is not None
        n = 3000
        t = time.perf_counter()
        for _ in range(n):
            proc.process(data, peer)
        dt = (time.perf_counter() - t) / n
    print(f"v3 authPriv (SHA-256/AES-128) trap, {len(data)} bytes: {dt * 1e6:.0f} µs per trap "
          f"= {1 / dt:,.0f} traps/s on one core (processing only)")


if __name__ == "__main__":
    main()
