"""Hand-written BER codec for SNMP v1/v2c notifications: the trap receiver's hot path.

Decoding turns one datagram into a :class:`TrapMessage` in a few microseconds
(pyasn1 needs hundreds); encoding builds v1 traps, v2c traps and informs, and the
Response-PDU that acknowledges an INFORM. SNMPv3 is not handled here:
:func:`peek_version` tells the receiver which datagrams to route to pysnmp.

Value mapping (what :func:`decode` puts in ``varbinds``):

==========================================================  =====================
BER type                                                     Python value
==========================================================  =====================
INTEGER, Counter32, Gauge32/Unsigned32, TimeTicks, Counter64  ``int``
OCTET STRING, Opaque                                          ``bytes``
OBJECT IDENTIFIER                                             ``str`` ``"1.3.6.1"``
IpAddress                                                     :class:`IpAddress` (a ``str``) ``"10.0.0.1"``
NULL, noSuchObject, noSuchInstance, endOfMibView              ``None``
==========================================================  =====================

Encoding takes plain values where the type is unambiguous (``int`` → INTEGER,
``bytes``/``str`` → OCTET STRING, ``None`` → NULL) and :class:`Typed` for the rest,
e.g. ``Typed(TAG_TIMETICKS, 4711)`` or ``Typed(TAG_OID, "1.3.6.1.6.3.1.1.5.3")``.

What the decoder accepts mirrors pysnmp's (RFC 1157/3416) message schema and its
value ranges: v2c INTEGER and request-id are Integer32, Counter32/Gauge32/TimeTicks
are 0..2**32-1, Counter64 is 0..2**64-1 (and v2c only, as are the three exception
values), IpAddress is exactly four octets; v1 INTEGERs are unbounded as in pysnmp.
It is stricter than pyasn1 where BER leaves room for abuse: indefinite lengths,
more than four length octets, constructed strings, high tag numbers, empty
INTEGERs, trailing bytes, OID subidentifiers above 2**32-1, padded subidentifiers
and OIDs longer than 128 arcs are all rejected. It does not check that a v2c
notification starts with sysUpTime.0 and snmpTrapOID.0; that is the caller's call.

Every malformed input raises :class:`gateway.errors.DecodeError` with one of these
``reason`` labels: ``truncated`` (a length runs past the end of the datagram),
``bad_length`` (indefinite, over-long or inconsistent lengths), ``bad_tag``,
``bad_value`` (a value outside its type's range or size), ``bad_oid``,
``unsupported_version``, ``unsupported_pdu`` (a well-formed PDU this module does not
decode, e.g. GetRequest) and ``trailing_bytes``. The decoder walks a fixed schema
without recursion, so nesting depth is never a concern and time is linear in the
input size.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.errors import DecodeError

__all__ = [
    "MAX_OID_ARCS",
    "OID_CACHE_MAX",
    "PDU_GET",
    "PDU_GET_BULK",
    "PDU_GET_NEXT",
    "PDU_INFORM",
    "PDU_REPORT",
    "PDU_RESPONSE",
    "PDU_SET",
    "PDU_TRAP_V1",
    "PDU_TRAP_V2",
    "TAG_COUNTER32",
    "TAG_COUNTER64",
    "TAG_END_OF_MIB_VIEW",
    "TAG_GAUGE32",
    "TAG_INTEGER",
    "TAG_IPADDRESS",
    "TAG_NO_SUCH_INSTANCE",
    "TAG_NO_SUCH_OBJECT",
    "TAG_NULL",
    "TAG_OCTET_STRING",
    "TAG_OID",
    "TAG_OPAQUE",
    "TAG_TIMETICKS",
    "TAG_UNSIGNED32",
    "V1",
    "V2C",
    "V3",
    "IpAddress",
    "TrapMessage",
    "Typed",
    "decode",
    "encode_response",
    "encode_trap",
    "peek_version",
    "response_from_request",
]

V1, V2C, V3 = 0, 1, 3

PDU_GET = 0xA0
PDU_GET_NEXT = 0xA1
PDU_RESPONSE = 0xA2
PDU_SET = 0xA3
PDU_TRAP_V1 = 0xA4
PDU_GET_BULK = 0xA5
PDU_INFORM = 0xA6
PDU_TRAP_V2 = 0xA7
PDU_REPORT = 0xA8

TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_NULL = 0x05
TAG_OID = 0x06
TAG_SEQUENCE = 0x30
TAG_IPADDRESS = 0x40
TAG_COUNTER32 = 0x41
TAG_GAUGE32 = 0x42
TAG_UNSIGNED32 = 0x42  # same wire type as Gauge32 (RFC 2578 7.1.11)
TAG_TIMETICKS = 0x43
TAG_OPAQUE = 0x44
TAG_COUNTER64 = 0x46
TAG_NO_SUCH_OBJECT = 0x80
TAG_NO_SUCH_INSTANCE = 0x81
TAG_END_OF_MIB_VIEW = 0x82

#: OID encodings remembered by the decoder (and OID strings by the encoder). Once
#: full, new OIDs are still decoded but no longer remembered, so a sender spraying
#: random OIDs costs CPU, not memory.
OID_CACHE_MAX = 65_536
#: RFC 2578 3.5: at most 128 sub-identifiers, each at most 2**32-1.
MAX_OID_ARCS = 128

_INT32_MIN = -0x8000_0000
_INT32_MAX = 0x7FFF_FFFF
_U32_MAX = 0xFFFF_FFFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
_OCTETS_MAX = 65_535  # v2c OCTET STRING size limit (RFC 2578 7.1.2)
# 127 encoded subidentifiers (the first one carries two arcs) of at most 5 octets.
_MAX_OID_BYTES = (MAX_OID_ARCS - 1) * 5

# error-status 0, error-index 0: what every notification and our responses carry.
_ZERO_ERRORS = b"\x02\x01\x00\x02\x01\x00"

_OID_CACHE: dict[bytes, str] = {}
_OID_ENC_CACHE: dict[str, bytes] = {}

try:  # built from _cber.c at install time where a C compiler is present (pyproject.toml)
    from adapters.snmp import _cber
except ImportError:  # pragma: no cover - no compiler at install time: the Python loop below
    _cvarbinds = None
else:
    _cvarbinds = _cber.varbinds

#: Which VarBindList decoder this process runs: "compiled" or "python".
DECODER = "compiled" if _cvarbinds is not None else "python"


class IpAddress(str):
    """A decoded IpAddress value: a dotted-quad ``str`` that remembers its wire type, so a
    caller can tell it from an OBJECT IDENTIFIER that merely looks like one
    (``snmpTrapAddress.0`` is honoured only as an IpAddress)."""

    __slots__ = ()


class Typed(NamedTuple):
    """A varbind value with an explicit SNMP type, for :func:`encode_trap`.

    Attributes:
        tag: one of the ``TAG_*`` constants.
        value: ``int`` for the integer types; ``bytes`` or ``str`` (UTF-8) for OCTET
            STRING and Opaque; a dotted ``str`` or a tuple of ints for OBJECT
            IDENTIFIER; a dotted-quad ``str`` or 4 ``bytes`` for IpAddress; ignored
            for NULL and the three exception values.
    """

    tag: int
    value: object = None


@dataclass(slots=True)
class TrapMessage:
    """One SNMP v1/v2c message, as decoded or to be encoded.

    Attributes:
        version: ``V1`` (0) or ``V2C`` (1).
        community: community string, raw bytes.
        pdu_type: ``PDU_TRAP_V1``, ``PDU_TRAP_V2``, ``PDU_INFORM`` or ``PDU_RESPONSE``.
        request_id: request-id; 0 for v1 traps, which have none.
        varbinds: ``(oid, value)`` pairs; OIDs are dotted strings without a
            leading dot, values as in the module's mapping table (or
            :class:`Typed` when encoding).
        enterprise: v1 trap only: the enterprise OID.
        agent_addr: v1 trap only: agent address as a dotted quad.
        generic_trap: v1 trap only.
        specific_trap: v1 trap only.
        timestamp: v1 trap only: the time-stamp (TimeTicks).
        raw_varbinds: set by :func:`decode`: the VarBindList exactly as received
            (tag and length included). :func:`encode_response` echoes it verbatim,
            which keeps each value's wire type; clear it if you change
            ``varbinds`` and want those echoed instead. Not part of equality.
    """

    version: int
    community: bytes
    pdu_type: int
    request_id: int
    varbinds: list[tuple[str, object]]
    enterprise: str | None = None
    agent_addr: str | None = None
    generic_trap: int | None = None
    specific_trap: int | None = None
    timestamp: int | None = None
    raw_varbinds: bytes | None = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------- decoding


def _overrun(end: int, limit: int, size: int, what: str) -> DecodeError:
    # The message's own length is checked against the datagram first, so an inner element
    # that overruns its container is a bad length even when it also runs past the datagram.
    if end > size and (what == "message" or limit > size):
        return DecodeError("truncated", f"{what} needs {end} bytes, datagram has {size}")
    return DecodeError("bad_length", f"{what} runs {end - limit} bytes past its container")


def _long_length(data: bytes, pos: int, first: int, limit: int, what: str) -> tuple[int, int]:
    """Decode a long-form length whose first octet ``first`` sits at ``pos``.

    Returns:
        ``(content_start, content_end)``, checked against ``limit``.
    """
    k = first & 0x7F
    if k == 0:
        raise DecodeError("bad_length", f"indefinite length in {what} at offset {pos}")
    if k > 4:
        raise DecodeError("bad_length", f"{k} length octets in {what} at offset {pos}")
    start = pos + 1 + k
    if start > limit:
        raise _overrun(start, limit, len(data), what)
    end = start + int.from_bytes(data[pos + 1 : start], "big")
    if end > limit:
        raise _overrun(end, limit, len(data), what)
    return start, end


def _expect(data: bytes, pos: int, limit: int, tag: int, what: str) -> tuple[int, int]:
    """Check the TLV at ``pos`` has ``tag`` and fits before ``limit``; return its content span."""
    if pos + 2 > limit:
        raise _overrun(pos + 2, limit, len(data), what)
    t = data[pos]
    if t != tag:
        raise DecodeError("bad_tag", f"{what} at offset {pos}: expected 0x{tag:02x}, got 0x{t:02x}")
    first = data[pos + 1]
    if first < 0x80:
        end = pos + 2 + first
        if end > limit:
            raise _overrun(end, limit, len(data), what)
        return pos + 2, end
    return _long_length(data, pos + 1, first, limit, what)


def _int(data: bytes, start: int, end: int, what: str) -> int:
    if end - start == 1:
        v = data[start]
        return v - 0x100 if v & 0x80 else v
    if end == start:
        raise DecodeError("bad_length", f"empty INTEGER in {what} at offset {start}")
    return int.from_bytes(data[start:end], "big", signed=True)


def _parse_oid(b: bytes) -> str:
    n = len(b)
    if n == 0:
        raise DecodeError("bad_oid", "empty OBJECT IDENTIFIER")
    if n > _MAX_OID_BYTES:
        raise DecodeError("bad_oid", f"OBJECT IDENTIFIER of {n} octets")
    if b[-1] & 0x80:
        raise DecodeError("bad_oid", "OBJECT IDENTIFIER ends inside a subidentifier")
    arcs: list[int] = []
    v = 0
    for c in b:
        if c & 0x80:
            # A subidentifier may not start with 0x80 (X.690 8.19.2); v is 0 only there.
            if v == 0 and c == 0x80:
                raise DecodeError("bad_oid", "padded subidentifier (0x80)")
            v = (v << 7) | (c & 0x7F)
        else:
            arcs.append((v << 7) | c)
            v = 0
    first = arcs[0]
    if first < 40:
        arcs[0] = first
        arcs.insert(0, 0)
    elif first < 80:
        arcs[0] = first - 40
        arcs.insert(0, 1)
    else:
        arcs[0] = first - 80
        arcs.insert(0, 2)
    if len(arcs) > MAX_OID_ARCS:
        raise DecodeError("bad_oid", f"{len(arcs)} sub-identifiers (max {MAX_OID_ARCS})")
    if max(arcs) > _U32_MAX:
        raise DecodeError("bad_oid", "sub-identifier above 2**32-1")
    return ".".join(map(str, arcs))


def _oid_miss(key: bytes) -> str:
    name = _parse_oid(key)
    if len(_OID_CACHE) < OID_CACHE_MAX:
        _OID_CACHE[key] = name
    return name


def _oid(data: bytes, start: int, end: int) -> str:
    key = data[start:end]
    name = _OID_CACHE.get(key)
    return name if name is not None else _oid_miss(key)


def _ip(data: bytes, start: int, end: int, what: str) -> str:
    if end - start != 4:
        raise DecodeError("bad_value", f"{what}: IpAddress of {end - start} octets")
    return f"{data[start]}.{data[start + 1]}.{data[start + 2]}.{data[start + 3]}"


def _decode_varbinds(data: bytes, pos: int, end: int, v2: bool) -> list[tuple[str, object]]:
    """The VarBindList content ``data[pos:end]`` as ``(oid, value)`` pairs: the compiled
    decoder's answer when it has one, else :func:`_varbinds_py`'s (which also explains
    any error: the compiled one only tells valid from invalid)."""
    if _cvarbinds is not None:
        out = _cvarbinds(data, pos, end, v2, _OID_CACHE, OID_CACHE_MAX, IpAddress)
        if out is not None:
            return out
    return _varbinds_py(data, pos, end, v2)


def _varbinds_py(data: bytes, pos: int, end: int, v2: bool) -> list[tuple[str, object]]:
    # The reference for the compiled decoder (adapters/snmp/_cber.c), and the hot loop
    # where it is not built. TLV headers are parsed inline, short form first, and header
    # octets are read without bounds checks: a read past ``end`` only ever yields a
    # content end past ``end``, which the checks below reject, and a read past the
    # datagram raises IndexError, turned into "truncated" by the caller.
    cache_get = _OID_CACHE.get
    from_bytes = int.from_bytes
    out: list[tuple[str, object]] = []
    append = out.append
    while pos < end:
        if data[pos] != 0x30:
            raise DecodeError("bad_tag", f"varbind at offset {pos}: expected 0x30, got 0x{data[pos]:02x}")
        first = data[pos + 1]
        if first < 0x80:
            start = pos + 2
            vb_end = start + first
            if vb_end > end:
                raise _overrun(vb_end, end, len(data), "varbind")
        else:
            start, vb_end = _long_length(data, pos + 1, first, end, "varbind")

        if data[start] != 0x06:
            if start >= vb_end:
                raise _overrun(start + 2, vb_end, len(data), "varbind name")
            raise DecodeError(
                "bad_tag", f"varbind name at offset {start}: expected 0x06, got 0x{data[start]:02x}"
            )
        first = data[start + 1]
        if first < 0x80:
            o_start = start + 2
            o_end = o_start + first
            if o_end > vb_end:
                raise _overrun(o_end, vb_end, len(data), "varbind name")
        else:
            o_start, o_end = _long_length(data, start + 1, first, vb_end, "varbind name")
        key = data[o_start:o_end]
        name = cache_get(key)
        if name is None:
            name = _oid_miss(key)

        t = data[o_end]
        first = data[o_end + 1]
        if first < 0x80:
            vs = o_end + 2
            ve = vs + first
        else:
            vs, ve = _long_length(data, o_end + 1, first, vb_end, "varbind value")
        if ve != vb_end:
            if ve > vb_end:
                raise _overrun(ve, vb_end, len(data), "varbind value")
            raise DecodeError("trailing_bytes", f"{vb_end - ve} bytes after the varbind value at offset {vs}")

        value: object
        if t == 0x43 or t == 0x41 or t == 0x42:
            # Unsigned32 types arrive as signed INTEGER content: 2**32-1 needs 5
            # octets (00 ff ff ff ff); a set top bit means negative, which pysnmp
            # rejects, as it does anything above 2**32-1.
            if ve == vs or data[vs] & 0x80:
                raise DecodeError("bad_value", f"empty or negative 0x{t:02x} value at offset {vs}")
            value = from_bytes(data[vs:ve], "big")
            if value > _U32_MAX:
                raise DecodeError("bad_value", f"0x{t:02x} value {value} above 2**32-1 at offset {vs}")
        elif t == 0x06:
            key = data[vs:ve]
            value = cache_get(key)
            if value is None:
                value = _oid_miss(key)
        elif t == 0x02:
            if ve - vs == 1:
                value = data[vs]
                if value > 0x7F:
                    value -= 0x100
            else:
                if ve == vs:
                    raise DecodeError("bad_length", f"empty INTEGER at offset {vs}")
                value = from_bytes(data[vs:ve], "big", signed=True)
                if v2 and not _INT32_MIN <= value <= _INT32_MAX:
                    raise DecodeError("bad_value", f"INTEGER {value} out of Integer32 range at offset {vs}")
        elif t == 0x04 or t == 0x44:
            value = data[vs:ve]
            if v2 and ve - vs > _OCTETS_MAX:
                raise DecodeError("bad_value", f"OCTET STRING of {ve - vs} octets at offset {vs}")
        elif t == 0x40:
            value = IpAddress(_ip(data, vs, ve, "varbind value"))
        elif t == 0x05 or (v2 and 0x80 <= t <= 0x82):
            if ve != vs:
                raise DecodeError("bad_length", f"NULL-like value 0x{t:02x} with content at offset {vs}")
            value = None
        elif t == 0x46 and v2:
            if ve == vs or data[vs] & 0x80:
                raise DecodeError("bad_value", f"empty or negative Counter64 at offset {vs}")
            value = from_bytes(data[vs:ve], "big")
            if value > _U64_MAX:
                raise DecodeError("bad_value", f"Counter64 {value} above 2**64-1 at offset {vs}")
        else:
            raise DecodeError("bad_tag", f"varbind value type 0x{t:02x} at offset {o_end}")
        append((name, value))
        pos = vb_end
    return out


def peek_version(data: bytes) -> int:
    """Read the SNMP version without decoding the rest of the message.

    Only the outer SEQUENCE header and the version INTEGER are looked at, so this
    is the cheap first step that routes v3 datagrams away from :func:`decode`.

    Args:
        data: one datagram (``bytes``, ``bytearray`` or ``memoryview``).

    Returns:
        ``V1``, ``V2C`` or ``V3``.

    Raises:
        DecodeError: the header is malformed (``truncated``, ``bad_tag``,
            ``bad_length``) or the version is not 0, 1 or 3
            (``unsupported_version``).
    """
    n = len(data)
    start, end = _expect(data, 0, n, 0x30, "message")
    start, v_end = _expect(data, start, end, 0x02, "version")
    if v_end - start > 4:
        raise DecodeError("bad_length", f"version INTEGER of {v_end - start} octets")
    version = _int(data, start, v_end, "version")
    if version != V1 and version != V2C and version != V3:
        raise DecodeError("unsupported_version", f"version {version}")
    return version


def decode(data: bytes) -> TrapMessage:
    """Decode one SNMP v1 or v2c datagram carrying a notification.

    Decoded PDUs: v1 Trap, v2c SNMPv2-Trap and InformRequest, and (either
    version) Response, e.g. a manager's acknowledgement of an INFORM. A Response's
    error-status and error-index are range-checked but not returned.

    Args:
        data: one datagram (``bytes``; ``bytearray``/``memoryview`` are copied).

    Returns:
        The message; ``raw_varbinds`` holds the VarBindList as received.

    Raises:
        DecodeError: on any malformed or unsupported input; ``reason`` is one of
            the labels in the module docstring and ``detail`` says where.
    """
    if type(data) is not bytes:
        data = bytes(data)
    try:
        return _decode(data)
    except IndexError:
        # Only header octets are indexed, and only past the end of the datagram
        # when it stops inside a header.
        raise DecodeError("truncated", "datagram ends inside a TLV header") from None


def _decode(data: bytes) -> TrapMessage:
    n = len(data)
    if data[0] != 0x30:
        raise DecodeError("bad_tag", f"message: expected 0x30, got 0x{data[0]:02x}")
    first = data[1]
    if first < 0x80:
        pos = 2
        end = 2 + first
    elif first == 0x81:  # 128..255 octets: most traps
        pos = 3
        end = 3 + data[2]
    else:
        pos, end = _long_length(data, 1, first, n, "message")
    if end != n:
        if end > n:
            raise _overrun(end, n, n, "message")
        raise DecodeError("trailing_bytes", f"{n - end} bytes after the message")

    # Fast paths compare whole common encodings; anything else takes the general route.
    head = data[pos : pos + 3]
    if head == b"\x02\x01\x01":
        version = V2C
        pos += 3
    elif head == b"\x02\x01\x00":
        version = V1
        pos += 3
    else:
        start, pos = _expect(data, pos, end, 0x02, "version")
        version = _int(data, start, pos, "version")
        if version != V1 and version != V2C:
            raise DecodeError("unsupported_version", f"version {version}")
    v2 = version == V2C

    if data[pos] != 0x04:
        raise DecodeError("bad_tag", f"community at offset {pos}: expected 0x04, got 0x{data[pos]:02x}")
    first = data[pos + 1]
    if first < 0x80:
        start = pos + 2
        pos = start + first
        if pos > end:
            raise _overrun(pos, end, n, "community")
    else:
        start, pos = _long_length(data, pos + 1, first, end, "community")
    community = data[start:pos]

    pdu_type = data[pos]
    if pdu_type == PDU_TRAP_V2 or pdu_type == PDU_INFORM:
        if not v2:
            raise DecodeError("unsupported_pdu", f"PDU 0x{pdu_type:02x} in an SNMPv1 message")
    elif pdu_type == PDU_TRAP_V1:
        if v2:
            raise DecodeError("unsupported_pdu", "SNMPv1 Trap-PDU in an SNMPv2c message")
    elif pdu_type != PDU_RESPONSE:
        if PDU_GET <= pdu_type <= PDU_REPORT:
            raise DecodeError("unsupported_pdu", f"PDU 0x{pdu_type:02x}")
        raise DecodeError("bad_tag", f"PDU at offset {pos}: 0x{pdu_type:02x}")
    first = data[pos + 1]
    if first < 0x80:
        pos += 2
        pdu_end = pos + first
    elif first == 0x81:
        pdu_end = pos + 3 + data[pos + 2]
        pos += 3
    else:
        pos, pdu_end = _long_length(data, pos + 1, first, end, "PDU")
    if pdu_end != end:
        if pdu_end > end:
            raise _overrun(pdu_end, end, n, "PDU")
        raise DecodeError("trailing_bytes", f"{end - pdu_end} bytes after the PDU")

    enterprise = agent_addr = None
    generic_trap = specific_trap = timestamp = None
    if pdu_type == PDU_TRAP_V1:
        start, pos = _expect(data, pos, pdu_end, 0x06, "enterprise")
        enterprise = _oid(data, start, pos)
        start, pos = _expect(data, pos, pdu_end, 0x40, "agent-addr")
        agent_addr = _ip(data, start, pos, "agent-addr")
        start, pos = _expect(data, pos, pdu_end, 0x02, "generic-trap")
        generic_trap = _int(data, start, pos, "generic-trap")
        start, pos = _expect(data, pos, pdu_end, 0x02, "specific-trap")
        specific_trap = _int(data, start, pos, "specific-trap")
        start, pos = _expect(data, pos, pdu_end, 0x43, "time-stamp")
        timestamp = _int(data, start, pos, "time-stamp")
        if not 0 <= timestamp <= _U32_MAX:
            raise DecodeError("bad_value", f"time-stamp {timestamp} out of range")
        request_id = 0
    else:
        if data[pos] != 0x02:
            raise DecodeError("bad_tag", f"request-id at offset {pos}: expected 0x02, got 0x{data[pos]:02x}")
        first = data[pos + 1]
        if 0 < first <= 4:
            start = pos + 2
            pos = start + first
            if pos > pdu_end:
                raise _overrun(pos, pdu_end, n, "request-id")
            request_id = int.from_bytes(data[start:pos], "big", signed=True)
        else:
            start, pos = _expect(data, pos, pdu_end, 0x02, "request-id")
            request_id = _int(data, start, pos, "request-id")
            if v2 and not _INT32_MIN <= request_id <= _INT32_MAX:
                raise DecodeError("bad_value", f"request-id {request_id} out of Integer32 range")
        if data[pos : pos + 6] == _ZERO_ERRORS:
            pos += 6
        else:
            start, pos = _expect(data, pos, pdu_end, 0x02, "error-status")
            _int(data, start, pos, "error-status")
            start, pos = _expect(data, pos, pdu_end, 0x02, "error-index")
            error_index = _int(data, start, pos, "error-index")
            if v2 and not 0 <= error_index <= _INT32_MAX:
                raise DecodeError("bad_value", f"error-index {error_index} out of range")

    vbl_pos = pos
    if data[pos] != 0x30:
        raise DecodeError(
            "bad_tag", f"variable-bindings at offset {pos}: expected 0x30, got 0x{data[pos]:02x}"
        )
    first = data[pos + 1]
    if first < 0x80:
        start = pos + 2
        pos = start + first
    elif first == 0x81:
        start = pos + 3
        pos = start + data[pos + 2]
    else:
        start, pos = _long_length(data, pos + 1, first, pdu_end, "variable-bindings")
    if pos != pdu_end:
        if pos > pdu_end:
            raise _overrun(pos, pdu_end, n, "variable-bindings")
        raise DecodeError("trailing_bytes", f"{pdu_end - pos} bytes after the variable-bindings")
    return TrapMessage(
        version,
        community,
        pdu_type,
        request_id,
        _decode_varbinds(data, start, pos, v2),
        enterprise,
        agent_addr,
        generic_trap,
        specific_trap,
        timestamp,
        data[vbl_pos:pos],
    )


# --------------------------------------------------------------------------- encoding

_SHORT_LEN = [bytes((i,)) for i in range(0x80)]


def _len_octets(n: int) -> bytes:
    if n < 0x80:
        return _SHORT_LEN[n]
    if n > _U32_MAX:
        raise ValueError(f"content of {n} octets is too long to encode")
    k = (n.bit_length() + 7) // 8
    return bytes((0x80 | k,)) + n.to_bytes(k, "big")


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    return bytes((tag,)) + _len_octets(n) + content


def _int_tlv(tag: int, v: int) -> bytes:
    content = v.to_bytes(((v if v >= 0 else ~v).bit_length() + 8) // 8, "big", signed=True)
    if len(content) < 0x80:
        return bytes((tag, len(content))) + content
    return _tlv(tag, content)


def _checked_int(v: object, lo: int | None, hi: int | None, what: str) -> int:
    if not isinstance(v, int):
        raise TypeError(f"{what} must be an int, not {type(v).__name__}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{what} {v} out of range {lo}..{hi}")
    return v


def _oid_arcs(oid: object) -> list[int]:
    if isinstance(oid, str):
        parts = (oid.removeprefix(".")).split(".")
        if not all(part.isascii() and part.isdigit() for part in parts):
            raise ValueError(f"not a dotted OID: {oid!r}")
        return [int(part) for part in parts]
    if isinstance(oid, (tuple, list)) and all(isinstance(a, int) for a in oid):
        return list(oid)
    raise TypeError(f"OID must be a dotted str or a tuple of ints, not {type(oid).__name__}")


def _oid_tlv(oid: object) -> bytes:
    if type(oid) is str:
        cached = _OID_ENC_CACHE.get(oid)
        if cached is not None:
            return cached
    arcs = _oid_arcs(oid)
    if len(arcs) < 2 or len(arcs) > MAX_OID_ARCS:
        raise ValueError(f"OID {oid!r} must have 2..{MAX_OID_ARCS} sub-identifiers")
    a, b = arcs[0], arcs[1]
    if a > 2 or (a < 2 and b >= 40):
        raise ValueError(f"OID {oid!r} has an invalid first or second arc")
    if min(arcs) < 0 or max(arcs[1:]) > _U32_MAX:
        raise ValueError(f"OID {oid!r} has a sub-identifier outside 0..2**32-1")
    out = bytearray()
    for sub in [a * 40 + b, *arcs[2:]]:
        if sub < 0x80:
            out.append(sub)
            continue
        chunk = [sub & 0x7F]
        sub >>= 7
        while sub:
            chunk.append(0x80 | (sub & 0x7F))
            sub >>= 7
        out.extend(reversed(chunk))
    encoded = _tlv(TAG_OID, bytes(out))
    if type(oid) is str and len(_OID_ENC_CACHE) < OID_CACHE_MAX:
        _OID_ENC_CACHE[oid] = encoded
    return encoded


def _octets(v: object, what: str) -> bytes:
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    raise TypeError(f"{what} must be bytes or str, not {type(v).__name__}")


def _ip_octets(v: object) -> bytes:
    if isinstance(v, (bytes, bytearray)) and len(v) == 4:
        return bytes(v)
    if isinstance(v, str):
        try:
            return ipaddress.IPv4Address(v).packed
        except ValueError:
            pass
    raise ValueError(f"IpAddress must be a dotted quad or 4 bytes, not {v!r}")


def _encode_value(v: object, v2: bool) -> bytes:
    if v is None:
        return b"\x05\x00"
    if type(v) is Typed:
        tag, val = v
    elif isinstance(v, int):
        tag, val = TAG_INTEGER, v
    elif isinstance(v, (bytes, bytearray, memoryview, str)):
        tag, val = TAG_OCTET_STRING, v
    else:
        raise TypeError(f"cannot encode {type(v).__name__} {v!r}; wrap it in Typed(tag, value)")
    if tag == TAG_INTEGER:
        if v2:
            return _int_tlv(tag, _checked_int(val, _INT32_MIN, _INT32_MAX, "INTEGER"))
        return _int_tlv(tag, _checked_int(val, None, None, "INTEGER"))
    if tag == TAG_OCTET_STRING or tag == TAG_OPAQUE:
        content = _octets(val, "OCTET STRING")
        if v2 and len(content) > _OCTETS_MAX:
            raise ValueError(f"OCTET STRING of {len(content)} octets (max {_OCTETS_MAX})")
        return _tlv(tag, content)
    if tag == TAG_OID:
        return _oid_tlv(val)
    if tag == TAG_IPADDRESS:
        return b"\x40\x04" + _ip_octets(val)
    if tag == TAG_COUNTER32 or tag == TAG_GAUGE32 or tag == TAG_TIMETICKS:
        return _int_tlv(tag, _checked_int(val, 0, _U32_MAX, f"0x{tag:02x} value"))
    if tag == TAG_NULL:
        return b"\x05\x00"
    if v2 and tag == TAG_COUNTER64:
        return _int_tlv(tag, _checked_int(val, 0, _U64_MAX, "Counter64"))
    if v2 and TAG_NO_SUCH_OBJECT <= tag <= TAG_END_OF_MIB_VIEW:
        return bytes((tag, 0))
    raise ValueError(f"type tag 0x{tag:02x} cannot be encoded in SNMP{'v2c' if v2 else 'v1'}")


def _encode_varbinds(varbinds: Iterable[tuple[str, object]], v2: bool) -> bytes:
    parts = [_tlv(TAG_SEQUENCE, _oid_tlv(oid) + _encode_value(value, v2)) for oid, value in varbinds]
    return _tlv(TAG_SEQUENCE, b"".join(parts))


def _message(version: int, community: object, pdu_type: int, pdu_content: bytes) -> bytes:
    body = b"\x02\x01" + bytes((version,)) + _tlv(TAG_OCTET_STRING, _octets(community, "community"))
    return _tlv(TAG_SEQUENCE, body + _tlv(pdu_type, pdu_content))


def encode_trap(msg: TrapMessage) -> bytes:
    """Encode a v1 Trap, a v2c SNMPv2-Trap or a v2c InformRequest.

    Varbind values: ``int`` → INTEGER, ``bytes``/``str`` → OCTET STRING (UTF-8),
    ``None`` → NULL, :class:`Typed` for every other type. A v1 trap needs
    ``enterprise``; its other v1 fields default to 0 / ``"0.0.0.0"``. For v2c the
    caller supplies sysUpTime.0 and snmpTrapOID.0 as the first two varbinds.

    Args:
        msg: the message; ``raw_varbinds`` is ignored.

    Returns:
        The datagram.

    Raises:
        ValueError: a value is out of its type's range, a type is not allowed in
            the message's version, or the version/PDU combination is not a
            notification.
        TypeError: a value has a Python type that cannot be mapped.
    """
    version, pdu_type = msg.version, msg.pdu_type
    if version == V1:
        if pdu_type != PDU_TRAP_V1:
            raise ValueError(f"SNMPv1 notifications use PDU 0x{PDU_TRAP_V1:02x}, not 0x{pdu_type:02x}")
        if msg.enterprise is None:
            raise ValueError("an SNMPv1 trap needs an enterprise OID")
        head = (
            _oid_tlv(msg.enterprise)
            + b"\x40\x04"
            + _ip_octets(msg.agent_addr if msg.agent_addr is not None else "0.0.0.0")
            + _int_tlv(TAG_INTEGER, _checked_int(msg.generic_trap or 0, None, None, "generic-trap"))
            + _int_tlv(TAG_INTEGER, _checked_int(msg.specific_trap or 0, None, None, "specific-trap"))
            + _int_tlv(TAG_TIMETICKS, _checked_int(msg.timestamp or 0, 0, _U32_MAX, "time-stamp"))
        )
    elif version == V2C:
        if pdu_type != PDU_TRAP_V2 and pdu_type != PDU_INFORM:
            raise ValueError(f"SNMPv2c notifications use PDU 0xa7 or 0xa6, not 0x{pdu_type:02x}")
        rid = _checked_int(msg.request_id, _INT32_MIN, _INT32_MAX, "request-id")
        head = _int_tlv(TAG_INTEGER, rid) + _ZERO_ERRORS
    else:
        raise ValueError(f"cannot encode SNMP version {version}")
    return _message(version, msg.community, pdu_type, head + _encode_varbinds(msg.varbinds, version == V2C))


def response_from_request(data: bytes, msg: TrapMessage) -> bytes:
    """The Response to the v2c INFORM ``data`` (decoded as ``msg``), made by re-tagging the
    received datagram: RFC 3416 §4.2.7's Response repeats the version, community,
    request-id and varbinds, with error-status and error-index 0 — which an INFORM already
    carries, so only the PDU tag differs. Falls back to :func:`encode_response` when the
    request's error fields are not the canonical ``02 01 00`` pair. Equal to
    ``encode_response(msg)`` byte for byte for a minimally encoded INFORM (tested)."""
    if not _INT32_MIN <= msg.request_id <= _INT32_MAX:
        return encode_response(msg)  # which says why it cannot answer
    off = 2 if data[1] < 0x80 else 2 + (data[1] & 0x7F)  # outer SEQUENCE header
    if data[off : off + 3] != b"\x02\x01\x01":  # version 1 (v2c), minimally encoded
        return encode_response(msg)
    off += 3
    if data[off] != TAG_OCTET_STRING or data[off + 1] >= 0x80:
        return encode_response(msg)
    pdu = off + 2 + data[off + 1]
    if data[pdu] != PDU_INFORM:
        return encode_response(msg)
    first = data[pdu + 1]
    rid = pdu + 2 if first < 0x80 else pdu + 2 + (first & 0x7F)
    if data[rid] != TAG_INTEGER or data[rid + 1] >= 0x80:
        return encode_response(msg)
    errs = rid + 2 + data[rid + 1]
    if data[errs : errs + 6] != _ZERO_ERRORS:
        return encode_response(msg)
    return data[:pdu] + b"\xa2" + data[pdu + 1 :]


def encode_response(msg: TrapMessage) -> bytes:
    """Encode the Response-PDU that acknowledges a v2c INFORM (RFC 3416 4.2.7).

    Same version, community and request-id, error-status and error-index 0, and
    the INFORM's varbinds echoed: the received bytes when ``msg.raw_varbinds`` is
    set (as after :func:`decode`), else ``msg.varbinds`` encoded as in
    :func:`encode_trap`.

    Args:
        msg: the INFORM being answered.

    Returns:
        The datagram to send back to the INFORM's source address.

    Raises:
        ValueError: ``msg`` is not a v2c INFORM, or a varbind cannot be encoded.
        TypeError: a varbind value has a Python type that cannot be mapped.
    """
    if msg.version != V2C or msg.pdu_type != PDU_INFORM:
        raise ValueError("only a v2c InformRequest is answered with a Response")
    vbl = msg.raw_varbinds
    if vbl is None:
        vbl = _encode_varbinds(msg.varbinds, True)
    rid = _checked_int(msg.request_id, _INT32_MIN, _INT32_MAX, "request-id")
    return _message(V2C, msg.community, PDU_RESPONSE, _int_tlv(TAG_INTEGER, rid) + _ZERO_ERRORS + vbl)
