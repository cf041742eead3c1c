"""SNMPv1/v2c GetRequest for sysUpTime.0 and its Response, on the trap receiver's BER codec.

The request is built once per (community, request-id) from fixed byte pieces: the only
varying parts are the community and the request-id, so a poll costs a few hundred
nanoseconds to encode. Responses are decoded with :func:`adapters.snmp.ber.decode`, which
already reads Response-PDUs. pysnmp's command generator is the reference in
``tests/unit/test_poll_getpdu.py`` (byte-for-byte on requests, value-for-value on answers).
"""

from __future__ import annotations

from typing import NamedTuple

from adapters.snmp import ber

__all__ = ["SYS_UPTIME", "GetAnswer", "decode_answer", "encode_get"]

#: SNMPv2-MIB::sysUpTime.0
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
# VarBindList with one varbind: sysUpTime.0 = NULL (a request carries no values).
_VBL = b"\x30\x0e\x30\x0c\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x05\x00"
_ZERO_ERRORS = b"\x02\x01\x00\x02\x01\x00"
_INT32_MAX = 0x7FFF_FFFF


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    k = (n.bit_length() + 7) // 8
    return bytes((0x80 | k,)) + n.to_bytes(k, "big")


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _len(len(content)) + content


def encode_get(community: bytes, request_id: int, version: int = ber.V2C) -> bytes:
    """A GetRequest for sysUpTime.0 (SNMPv2c by default; ``ber.V1`` for v1 agents).

    Raises:
        ValueError: ``request_id`` outside 0..2**31-1 or an unknown version.
    """
    if not 0 <= request_id <= _INT32_MAX:
        raise ValueError(f"request-id {request_id} out of range 0..{_INT32_MAX}")
    if version not in (ber.V1, ber.V2C):
        raise ValueError(f"cannot encode SNMP version {version} here (v3 goes through USM)")
    rid = request_id.to_bytes((request_id.bit_length() + 8) // 8, "big")
    pdu = _tlv(ber.PDU_GET, b"\x02" + bytes((len(rid),)) + rid + _ZERO_ERRORS + _VBL)
    return _tlv(0x30, b"\x02\x01" + bytes((version,)) + _tlv(0x04, community) + pdu)


class GetAnswer(NamedTuple):
    """A decoded answer: its request-id, community, and sysUpTime.0 in hundredths of a
    second (``None`` when the agent answered without the value: noSuchObject and the like)."""

    request_id: int
    community: bytes
    uptime: int | None


def decode_answer(data: bytes) -> GetAnswer:
    """Decode a Response-PDU to :func:`encode_get`.

    Raises:
        gateway.errors.DecodeError: malformed, or not a Response (``reason``
            ``unsupported_pdu``).
    """
    msg = ber.decode(data)
    if msg.pdu_type != ber.PDU_RESPONSE:
        from gateway.errors import DecodeError

        raise DecodeError("unsupported_pdu", f"expected a Response, got PDU 0x{msg.pdu_type:02x}")
    uptime: int | None = None
    for oid, value in msg.varbinds:
        if oid == SYS_UPTIME and type(value) is int:
            uptime = value
    return GetAnswer(msg.request_id, msg.community, uptime)
