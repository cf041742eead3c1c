"""BER codec cost per message: our decoder vs pyasn1/pysnmp on the same v2c linkDown trap
(~180 bytes, 4 varbinds), plus the INFORM Response encoder. Single core, in process.

Each figure is the best of several rounds (the least disturbed by other work on the
machine), in microseconds per call.

    .venv/bin/python bench/bench_ber.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyasn1.codec.ber import decoder as asn1_decoder
from pysnmp.proto.api import v2c as pv2c

from adapters.snmp import ber
from adapters.snmp.ber import (
    PDU_INFORM,
    PDU_TRAP_V2,
    TAG_OID,
    TAG_TIMETICKS,
    V2C,
    TrapMessage,
    Typed,
    decode,
    encode_response,
    encode_trap,
    peek_version,
)

LINK_DOWN = TrapMessage(
    V2C,
    b"noc-public",
    PDU_TRAP_V2,
    1_234_567,
    [
        ("1.3.6.1.2.1.1.3.0", Typed(TAG_TIMETICKS, 8_640_123)),
        ("1.3.6.1.6.3.1.1.4.1.0", Typed(TAG_OID, "1.3.6.1.6.3.1.1.5.3")),
        ("1.3.6.1.2.1.2.2.1.1.10107", 10107),
        ("1.3.6.1.2.1.2.2.1.2.10107", b"GigabitEthernet1/0/7 uplink to core-sw-02 port Te1/1/4 (LAG 12)"),
    ],
)


def per_call(fn: Callable[[], object], rounds: int, budget_s: float = 0.05) -> float:
    """Best-of-``rounds`` time per call in microseconds; each round runs ~``budget_s``."""
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t >= budget_s:
            break
        n *= 2
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def pysnmp_decode(data: bytes) -> list[tuple[str, object]]:
    """What a pysnmp-based receiver does: decode against the v2c schema, pull the varbinds."""
    msg, _ = asn1_decoder.decode(data, asn1Spec=pv2c.Message())
    pdu = pv2c.apiMessage.get_pdu(msg)
    return [(str(oid), value) for oid, value in pv2c.apiPDU.get_varbinds(pdu)]


def decode_cold(data: bytes) -> TrapMessage:
    ber._OID_CACHE.clear()
    return decode(data)


def decode_python_loop(data: bytes) -> TrapMessage:
    """``decode`` with the VarBindList loop in Python (the reference; what runs where the
    compiled loop was not built)."""
    saved, ber._cvarbinds = ber._cvarbinds, None
    try:
        return decode(data)
    finally:
        ber._cvarbinds = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds

    trap = encode_trap(LINK_DOWN)
    inform_msg = dataclasses.replace(LINK_DOWN, pdu_type=PDU_INFORM)
    inform = decode(encode_trap(inform_msg))
    rebuilt = dataclasses.replace(inform_msg, raw_varbinds=None)
    assert decode(trap) == dataclasses.replace(
        LINK_DOWN, varbinds=[(o, v.value if isinstance(v, Typed) else v) for o, v in LINK_DOWN.varbinds]
    )
    assert len(pysnmp_decode(trap)) == 4

    print(f"python {platform.python_version()} on {platform.machine()}, {len(trap)}-byte v2c linkDown, "
          f"4 varbinds, best of {rounds} rounds")  # fmt: skip
    ours = per_call(lambda: decode(trap), rounds)
    theirs = per_call(lambda: pysnmp_decode(trap), max(3, rounds // 3), budget_s=0.2)
    assert decode_python_loop(trap) == decode(trap)
    rows = [
        (f"decode (OID cache warm, {ber.DECODER} loop)", ours),
        ("decode (OID cache warm, Python loop)", per_call(lambda: decode_python_loop(trap), rounds)),
        ("decode (OID cache cleared each call)", per_call(lambda: decode_cold(trap), rounds)),
        ("peek_version", per_call(lambda: peek_version(trap), rounds)),
        ("pyasn1/pysnmp decode + get_varbinds", theirs),
        ("encode_response (echo received varbinds)", per_call(lambda: encode_response(inform), rounds)),
        ("encode_response (re-encode typed varbinds)", per_call(lambda: encode_response(rebuilt), rounds)),
        ("encode_trap", per_call(lambda: encode_trap(LINK_DOWN), rounds)),
    ]
    for name, us in rows:
        print(f"  {name:<46} {us:9.2f} µs")
    print(f"  speed-up of decode over pyasn1/pysnmp: {theirs / ours:.0f}x")


if __name__ == "__main__":
    main()
