"""Coverage-guided fuzzing of the SNMP BER decoder (``adapters/snmp/ber.py``) with atheris.

Every datagram goes through ``peek_version`` and ``decode`` as the trap receiver does, and
(where the compiled VarBindList loop is built) through ``decode`` with the Python loop too:
both must give the same message or the same reason.
Only ``DecodeError`` with one of the documented reason labels may escape; anything else
(or an unknown label) is a crash that libFuzzer reports with the input that caused it.
An accepted INFORM must also yield a Response that decodes again (the receiver sends it).

Open-ended, so not part of the test suite. Needs ``pip install atheris`` in the venv::

    .venv/bin/python bench/fuzz_ber.py var/fuzz-ber -max_total_time=300 -max_len=1500

The corpus directory (created and seeded with valid v1/v2c traps and an INFORM when it
is missing or empty) keeps what libFuzzer learns between runs; further ``-flags`` go to
libFuzzer (``-help=1`` lists them). A crash is written to ``crash-<sha1>`` in the
current directory; replay it with ``.venv/bin/python bench/fuzz_ber.py crash-<sha1>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports():
    from adapters.snmp import ber
    from adapters.snmp.ber import (
        PDU_INFORM,
        PDU_TRAP_V1,
        PDU_TRAP_V2,
        TAG_OID,
        TAG_TIMETICKS,
        TrapMessage,
        Typed,
    )

from gateway.errors import DecodeError

#: The reason labels ber.py documents for malformed input.
REASONS = frozenset(
    {"truncated", "bad_length", "bad_tag", "bad_value", "bad_oid", "unsupported_version",
     "unsupported_pdu", "trailing_bytes"}
)


def _python_loop(data: bytes) -> object:
    """``decode`` with the VarBindList loop in Python (the compiled loop's reference)."""
    saved, ber._cvarbinds = ber._cvarbinds, None
    try:
        return ber.decode(data)
    except DecodeError as e:
        return e.reason
    finally:
        ber._cvarbinds = saved


def test_one_input(data: bytes) -> None:
    """One datagram: decoded, or refused with a documented DecodeError, the same with the
    compiled VarBindList loop as with the Python one."""
    reference = _python_loop(data) if ber._cvarbinds is not None else None
    try:
        ber.peek_version(data)
    except DecodeError as e:
        if e.reason not in REASONS:
            raise AssertionError(f"undocumented reason {e.reason!r}") from e
    try:
        msg = ber.decode(data)
    except DecodeError as e:
        if e.reason not in REASONS:
            raise AssertionError(f"undocumented reason {e.reason!r}") from e
        if reference is not None and reference != e.reason:
            raise AssertionError(f"compiled loop: {e.reason!r}, Python loop: {reference!r}") from e
        return
    if reference is not None and reference != msg:
        raise AssertionError(f"compiled loop: {msg!r}, Python loop: {reference!r}")
    if msg.pdu_type == PDU_INFORM:
        ber.decode(ber.encode_response(msg))


def seeds() -> list[bytes]:
    """A v1 trap, a v2c trap and a v2c INFORM, so mutation starts from the real schema."""
    v2 = [
        ("1.3.6.1.2.1.1.3.0", Typed(TAG_TIMETICKS, 4711)),
        ("1.3.6.1.6.3.1.1.4.1.0", Typed(TAG_OID, "1.3.6.1.6.3.1.1.5.3")),
        ("1.3.6.1.2.1.2.2.1.1.7", 7),
        ("1.3.6.1.2.1.2.2.1.2.7", b"eth7"),
    ]
    return [
        ber.encode_trap(TrapMessage(0, b"public", PDU_TRAP_V1, 0, v2[2:], enterprise="1.3.6.1.4.1.8072",
                                    agent_addr="10.0.0.1", generic_trap=2, specific_trap=0, timestamp=99)),
        ber.encode_trap(TrapMessage(1, b"public", PDU_TRAP_V2, 17, v2)),
        ber.encode_trap(TrapMessage(1, b"public", PDU_INFORM, 18, v2)),
    ]


def main() -> None:
    corpus = next((Path(a) for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus is not None and not corpus.is_file() and not (corpus.is_dir() and any(corpus.iterdir())):
        corpus.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds()):
            (corpus / f"seed-{i}").write_bytes(seed)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
