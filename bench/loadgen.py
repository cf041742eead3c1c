"""UDP trap load generator: sends pre-encoded SNMP traps at a paced rate (used by the benchmarks).

Run as its own process (pin it to a core of its own). Every packet is encoded before the
clock starts, so the sender is never the limit, then sent at ``rate`` per second for
``seconds``, pacing every millisecond. Prints one JSON line with what it sent.

Modes:

* ``repeat`` (default): ``variants`` distinct v2c linkDown traps (ifIndex 1..variants) sent
  round-robin — the receiver's repeat fast path sees the same bytes again and again.
* ``distinct``: v2c, no two traps alike: devices (snmpTrapAddress among ``devices``
  addresses) × 48 interfaces, with values, request-id and sysUpTime different in every
  trap, so the repeat fast path never hits.
* ``v3``: SNMPv3 authPriv traps (user ``--user``, SHA-256/AES-128 unless told), each unique:
  fresh msgID and request-id, the sender engine's time moving forward with the send
  clock from ``--time-base``, varying varbinds, spread over ``--engines`` sender engines
  (engine IDs ``0x80000000010000NNNN``).
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
SNMP_TRAP_ADDRESS_0 = "1.3.6.1.6.3.18.1.3.0"
#: Interfaces per device (a 48-port switch): values, uptime and ids vary, the OIDs repeat as
#: in a real network.
PORTS = 48
V3_USER = "bench"
V3_AUTH = ("SHA-256", "benchauth123")
V3_PRIV = ("AES", "benchpriv123")


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


def _varbinds(i: int, device: str | None, idx: int) -> list[tuple[str, object]]:
    vbs: list[tuple[str, object]] = [
        ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, 100_000 + i)),
        ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, LINK_DOWN)),
        (f"1.3.6.1.2.1.2.2.1.1.{idx}", idx),
        (f"1.3.6.1.2.1.2.2.1.2.{idx}", f"GigabitEthernet{i % 7}/{idx}".encode()),
        (f"1.3.6.1.2.1.2.2.1.7.{idx}", 1 + i % 2),
        (f"1.3.6.1.2.1.2.2.1.8.{idx}", 2),
        ("1.3.6.1.2.1.31.1.1.1.6." + str(idx), ber.Typed(ber.TAG_COUNTER64, i * 1500)),
    ]
    if device is not None:
        vbs.append((SNMP_TRAP_ADDRESS_0, ber.Typed(ber.TAG_IPADDRESS, device)))
    return vbs


def distinct_packets(total: int, devices: int) -> list[bytes]:
    """``total`` v2c traps, no two alike."""
    out = []
    for i in range(total):
        d = i % devices
        dev = f"10.{1 + (d >> 16) % 250}.{(d >> 8) & 255}.{d & 255}"
        idx = 1 + (i // devices) % PORTS
        out.append(ber.encode_trap(ber.TrapMessage(ber.V2C, b"public", ber.PDU_TRAP_V2, i + 1, _varbinds(i, dev, idx))))
    return out


def engine_id(n: int) -> bytes:
    return bytes.fromhex("8000000001") + n.to_bytes(4, "big")


def v3_packets(total: int, rate: float, engines: int, time_base: int, boots: int = 1) -> list[bytes]:
    """``total`` unique SNMPv3 authPriv traps; packet ``i`` carries engine time
    ``time_base + i / rate`` (the sender's clock moves on as the run does)."""
    from adapters.snmp.usm import V3Sender
    from adapters.snmp.v3 import UsmUser

    user = UsmUser(V3_USER, V3_AUTH[0], V3_AUTH[1], V3_PRIV[0], V3_PRIV[1])
    senders = [V3Sender(user, engine_id(e)) for e in range(engines)]
    out = []
    for i in range(total):
        s = senders[i % engines]
        out.append(s.encode(_varbinds(i, None, 1 + (i // engines) % PORTS), boots=boots, eng_time=time_base + int(i / rate),
                            msg_id=1 + (time_base * 1000 + i) % 2147483647,
                            request_id=1 + (time_base * 1000 + i) % 2147483647))
    return out


def send(host: str, port: int, rate: float, seconds: float, pkts: list[bytes]) -> dict[str, float]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    sock.connect((host, port))
    total = int(rate * seconds)
    sent = 0
    n = len(pkts)
    start = time.perf_counter()
    tick = 0.001
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
            time.sleep(sleep)  # why: pacing: the next packet is not due yet
    elapsed = time.perf_counter() - start
    return {"sent": sent, "seconds": elapsed, "rate": sent / elapsed, "bytes": len(pkts[0]), "unique": min(n, sent)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--variants", type=int, default=100)
    ap.add_argument("--mode", choices=["repeat", "distinct", "v3"], default="repeat")
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--engines", type=int, default=4)
    ap.add_argument("--time-base", type=int, default=None, help="v3: the senders' engine time at the start")
    a = ap.parse_args()
    total = int(a.rate * a.seconds)
    if a.mode == "distinct":
        pkts = distinct_packets(total, a.devices)
    elif a.mode == "v3":
        base = a.time_base if a.time_base is not None else int(time.time()) % 100_000_000
        pkts = v3_packets(total, a.rate, a.engines, base)
    else:
        pkts = packets(a.variants)
    print(json.dumps(send(a.host, a.port, a.rate, a.seconds, pkts)), flush=True)


if __name__ == "__main__":
    main()
