"""Tests for the SNMP v1/v2c BER codec: pysnmp as the oracle, real net-snmp packets, fuzzing.

pysnmp (with pyasn1) is the reference implementation: generated messages are encoded
by it and decoded by us, encoded by us and decoded by it, and whenever our decoder
accepts a mutated packet pysnmp must accept it too and agree on every field. Our
decoder is deliberately stricter than pyasn1 in a few places (see the module
docstring), so the converse is not required.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder as asn1_decoder
from pyasn1.codec.ber import encoder as asn1_encoder
from pyasn1.error import PyAsn1Error
from pysnmp.proto import api as snmp_api
from pysnmp.proto.api import v1 as pv1
from pysnmp.proto.api import v2c as pv2c
from pysnmp.proto.error import ProtocolError

from adapters.snmp import ber
from adapters.snmp.ber import (
    MAX_OID_ARCS,
    PDU_INFORM,
    PDU_RESPONSE,
    PDU_TRAP_V1,
    PDU_TRAP_V2,
    TAG_COUNTER32,
    TAG_COUNTER64,
    TAG_END_OF_MIB_VIEW,
    TAG_GAUGE32,
    TAG_INTEGER,
    TAG_IPADDRESS,
    TAG_NO_SUCH_INSTANCE,
    TAG_NO_SUCH_OBJECT,
    TAG_NULL,
    TAG_OCTET_STRING,
    TAG_OID,
    TAG_OPAQUE,
    TAG_TIMETICKS,
    V1,
    V2C,
    V3,
    TrapMessage,
    Typed,
    decode,
    encode_response,
    encode_trap,
    peek_version,
    response_from_request,
)
from gateway.errors import DecodeError

REASONS = {
    "truncated",
    "bad_tag",
    "bad_length",
    "bad_value",
    "bad_oid",
    "unsupported_version",
    "unsupported_pdu",
    "trailing_bytes",
}
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
U32_MAX, U64_MAX = 2**32 - 1, 2**64 - 1
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"

# Modest counts: with pysnmp in the loop the whole file stays well under 20 s.
HEAVY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Datagrams captured from net-snmp 5.9 (snmptrap/snmpinform), so the byte-level tests
# below also run where the tools are absent.
NETSNMP_V2C_TRAP = bytes.fromhex(
    "306a02010104067075626c6963a75d020427248ebe020100020100304f300f06082b0601020101030043"
    "0301ada23017060a2b06010603010104010006092b0601060301010503300f060a2b0601020102020101"
    "070201073012060a2b060102010202010207040465746837"
)
NETSNMP_V1_TRAP = bytes.fromhex(
    "303c02010004067075626c6963a42f06092b06010401bf08020340047f000001020102020100430301ad"
    "a73011300f060a2b060102010202010107020107"
)
NETSNMP_V2C_INFORM = bytes.fromhex(
    "305602010104067075626c6963a649020438dcf169020100020100303b300f06082b0601020101030043"
    "0301adad3017060a2b06010603010104010006092b0601060301010503300f060a2b0601020102020101"
    "07020107"
)
CORPUS = [NETSNMP_V2C_TRAP, NETSNMP_V1_TRAP, NETSNMP_V2C_INFORM]


# --------------------------------------------------------------------------- the oracle


@dataclasses.dataclass
class Oracle:
    """pysnmp's reading of a datagram, in our vocabulary."""

    msg: TrapMessage
    tags: list[int]
    error_status: int | None
    error_index: int | None


def _tag_byte(tag_set: Any) -> int:
    tag = tag_set[-1]
    return int(tag.tagClass | tag.tagFormat | tag.tagId)


def _py_value(value: Any) -> tuple[int, object]:
    tag = _tag_byte(value.tagSet)
    if tag in (TAG_INTEGER, TAG_COUNTER32, TAG_GAUGE32, TAG_TIMETICKS, TAG_COUNTER64):
        return tag, int(value)
    if tag in (TAG_OCTET_STRING, TAG_OPAQUE):
        return tag, value.asOctets()
    if tag == TAG_OID:
        return tag, str(value)
    if tag == TAG_IPADDRESS:
        return tag, ".".join(map(str, value.asNumbers()))
    if tag in (TAG_NULL, TAG_NO_SUCH_OBJECT, TAG_NO_SUCH_INSTANCE, TAG_END_OF_MIB_VIEW):
        return tag, None
    raise AssertionError(f"unexpected value type 0x{tag:02x}")


def oracle_decode(data: bytes) -> Oracle | None:
    """Decode with pysnmp; ``None`` when pysnmp rejects the datagram (or leaves bytes over)."""
    try:
        version = int(snmp_api.decodeMessageVersion(data))
        mod = snmp_api.PROTOCOL_MODULES[version]
        msg, rest = asn1_decoder.decode(data, asn1Spec=mod.Message())
        if rest:
            return None
        pdu = mod.apiMessage.get_pdu(msg)
        pdu_type = _tag_byte(pdu.tagSet)
        fields: dict[str, Any] = {}
        if pdu_type == PDU_TRAP_V1:
            trap = mod.apiTrapPDU
            fields = {
                "enterprise": str(trap.get_enterprise(pdu)),
                "agent_addr": ".".join(map(str, trap.get_agent_address(pdu).asNumbers())),
                "generic_trap": int(trap.get_generic_trap(pdu)),
                "specific_trap": int(trap.get_specific_trap(pdu)),
                "timestamp": int(trap.get_timestamp(pdu)),
            }
            request_id, error_status, error_index = 0, None, None
            pairs = trap.get_varbinds(pdu)
        else:
            request_id = int(pdu.getComponentByPosition(0))
            error_status = int(pdu.getComponentByPosition(1))
            error_index = int(pdu.getComponentByPosition(2))
            pairs = mod.apiPDU.get_varbinds(pdu)
        typed = [(str(oid), _py_value(value)) for oid, value in pairs]
    except (PyAsn1Error, ProtocolError, KeyError):
        return None
    return Oracle(
        TrapMessage(
            version,
            msg.getComponentByPosition(1).asOctets(),
            pdu_type,
            request_id,
            [(oid, v) for oid, (_, v) in typed],
            **fields,
        ),
        [tag for _, (tag, _) in typed],
        error_status,
        error_index,
    )


_PYSNMP_TYPES = {
    V1: {
        TAG_INTEGER: pv1.Integer,
        TAG_OCTET_STRING: pv1.OctetString,
        TAG_OID: pv1.ObjectIdentifier,
        TAG_IPADDRESS: pv1.IpAddress,
        TAG_COUNTER32: pv1.Counter,
        TAG_GAUGE32: pv1.Gauge,
        TAG_TIMETICKS: pv1.TimeTicks,
        TAG_OPAQUE: pv1.Opaque,
        TAG_NULL: pv1.Null,
    },
    V2C: {
        TAG_INTEGER: pv2c.Integer,
        TAG_OCTET_STRING: pv2c.OctetString,
        TAG_OID: pv2c.ObjectIdentifier,
        TAG_IPADDRESS: pv2c.IpAddress,
        TAG_COUNTER32: pv2c.Counter32,
        TAG_GAUGE32: pv2c.Gauge32,
        TAG_TIMETICKS: pv2c.TimeTicks,
        TAG_OPAQUE: pv2c.Opaque,
        TAG_COUNTER64: pv2c.Counter64,
        TAG_NULL: pv2c.Null,
        TAG_NO_SUCH_OBJECT: pv2c.NoSuchObject,
        TAG_NO_SUCH_INSTANCE: pv2c.NoSuchInstance,
        TAG_END_OF_MIB_VIEW: pv2c.EndOfMibView,
    },
}


def pysnmp_encode(msg: TrapMessage) -> bytes:
    """Encode a message whose varbind values are all :class:`Typed`, with pysnmp."""
    types = _PYSNMP_TYPES[msg.version]
    varbinds = [
        (oid, types[v.tag]("") if v.value is None else types[v.tag](v.value))  # type: ignore[union-attr]
        for oid, v in msg.varbinds
    ]
    if msg.version == V1:
        message = pv1.Message()
        pv1.apiMessage.set_defaults(message)
        pdu = pv1.TrapPDU()
        pv1.apiTrapPDU.set_defaults(pdu)
        pv1.apiTrapPDU.set_enterprise(pdu, msg.enterprise)
        pv1.apiTrapPDU.set_agent_address(pdu, msg.agent_addr)
        pv1.apiTrapPDU.set_generic_trap(pdu, msg.generic_trap)
        pv1.apiTrapPDU.set_specific_trap(pdu, msg.specific_trap)
        pv1.apiTrapPDU.set_timestamp(pdu, msg.timestamp)
        pv1.apiTrapPDU.set_varbinds(pdu, varbinds)
        pv1.apiMessage.set_community(message, msg.community)
        pv1.apiMessage.set_pdu(message, pdu)
    else:
        message = pv2c.Message()
        pv2c.apiMessage.set_defaults(message)
        pdu = pv2c.TrapPDU() if msg.pdu_type == PDU_TRAP_V2 else pv2c.InformRequestPDU()
        pv2c.apiPDU.set_defaults(pdu)
        pv2c.apiPDU.set_request_id(pdu, msg.request_id)
        pv2c.apiPDU.set_varbinds(pdu, varbinds)
        pv2c.apiMessage.set_community(message, msg.community)
        pv2c.apiMessage.set_pdu(message, pdu)
    return bytes(asn1_encoder.encode(message))


def plain(msg: TrapMessage) -> TrapMessage:
    """What decoding ``msg`` must give: ``Typed`` wrappers replaced by their values."""
    return dataclasses.replace(
        msg, varbinds=[(oid, v.value if isinstance(v, Typed) else v) for oid, v in msg.varbinds]
    )


def tags_of(msg: TrapMessage) -> list[int]:
    return [v.tag for _, v in msg.varbinds]  # type: ignore[union-attr]


# --------------------------------------------------------------------------- strategies

_arc = st.one_of(st.integers(0, 127), st.integers(0, U32_MAX))


@st.composite
def oids(draw: st.DrawFn) -> str:
    first = draw(st.integers(0, 2))
    second = draw(st.integers(0, 39)) if first < 2 else draw(_arc)
    if draw(st.integers(0, 7)):
        rest = draw(st.lists(_arc, max_size=14))
    else:
        # Near the 128-arc limit; drawn as one binary blob plus a few big arcs to keep generation cheap.
        rest = [*draw(st.binary(min_size=MAX_OID_ARCS - 16, max_size=MAX_OID_ARCS - 8))]
        rest += draw(st.lists(st.integers(0, U32_MAX), max_size=6))
    return ".".join(map(str, [first, second, *rest]))


_ips = st.binary(min_size=4, max_size=4).map(lambda b: ".".join(map(str, b)))


def values(v2: bool) -> st.SearchStrategy[Typed]:
    integers = st.integers(INT32_MIN, INT32_MAX) if v2 else st.integers(-(2**80), 2**80)
    choices = [
        st.builds(Typed, st.just(TAG_INTEGER), integers),
        st.builds(Typed, st.sampled_from([TAG_OCTET_STRING, TAG_OPAQUE]), st.binary(max_size=300)),
        st.builds(Typed, st.just(TAG_OID), oids()),
        st.builds(Typed, st.just(TAG_IPADDRESS), _ips),
        st.builds(
            Typed, st.sampled_from([TAG_COUNTER32, TAG_GAUGE32, TAG_TIMETICKS]), st.integers(0, U32_MAX)
        ),
        st.just(Typed(TAG_NULL, None)),
    ]
    if v2:
        choices += [
            st.builds(Typed, st.just(TAG_COUNTER64), st.integers(0, U64_MAX)),
            st.builds(
                Typed,
                st.sampled_from([TAG_NO_SUCH_OBJECT, TAG_NO_SUCH_INSTANCE, TAG_END_OF_MIB_VIEW]),
                st.none(),
            ),
        ]
    return st.one_of(choices)


@st.composite
def messages(
    draw: st.DrawFn,
    versions: tuple[int, ...] = (V1, V2C),
    pdus: tuple[int, ...] = (
        PDU_TRAP_V2,
        PDU_INFORM,
    ),
    max_varbinds: int = 8,
) -> TrapMessage:
    version = draw(st.sampled_from(versions))
    community = draw(st.binary(max_size=40))
    varbinds = draw(st.lists(st.tuples(oids(), values(version == V2C)), max_size=max_varbinds))
    if version == V1:
        return TrapMessage(
            V1,
            community,
            PDU_TRAP_V1,
            0,
            varbinds,
            enterprise=draw(oids()),
            agent_addr=draw(_ips),
            generic_trap=draw(st.one_of(st.integers(0, 6), st.integers(-(2**40), 2**40))),
            specific_trap=draw(st.integers(-(2**40), 2**40)),
            timestamp=draw(st.integers(0, U32_MAX)),
        )
    return TrapMessage(
        V2C, community, draw(st.sampled_from(pdus)), draw(st.integers(INT32_MIN, INT32_MAX)), varbinds
    )


# --------------------------------------------------------------------------- differential


@HEAVY
@given(messages())
def test_decode_agrees_with_pysnmp_on_pysnmp_encodings(msg: TrapMessage) -> None:
    data = pysnmp_encode(msg)
    oracle = oracle_decode(data)
    assert oracle is not None, "pysnmp cannot read back its own encoding"
    got = decode(data)
    assert got == oracle.msg
    assert got == plain(msg)
    assert oracle.tags == tags_of(msg)


@HEAVY
@given(messages())
def test_encode_trap_is_read_back_by_pysnmp(msg: TrapMessage) -> None:
    data = encode_trap(msg)
    oracle = oracle_decode(data)
    assert oracle is not None, f"pysnmp rejects our encoding {data.hex()}"
    assert oracle.msg == plain(msg)
    assert oracle.tags == tags_of(msg), "a value's wire type changed in encoding"
    assert decode(data) == plain(msg)
    assert_minimal(data)
    if has_negative_integer(msg):
        # pyasn1 encodes some negative integers non-minimally (-128 as 02 02 ff 80
        # where DER has 02 01 80); both readers agree on both encodings.
        assert decode(pysnmp_encode(msg)) == decode(data)
    else:
        assert data == pysnmp_encode(msg)


_CONSTRUCTED = {0x30, *range(0xA0, 0xA9)}
_INTEGERS = {TAG_INTEGER, TAG_COUNTER32, TAG_GAUGE32, TAG_TIMETICKS, TAG_COUNTER64}


def assert_minimal(data: bytes, pos: int = 0, end: int | None = None) -> None:
    """Assert every length and every integer in ``data`` uses the fewest octets (DER)."""
    end = len(data) if end is None else end
    while pos < end:
        tag, first = data[pos], data[pos + 1]
        if first < 0x80:
            start, length = pos + 2, first
        else:
            k = first & 0x7F
            length = int.from_bytes(data[pos + 2 : pos + 2 + k], "big")
            start = pos + 2 + k
            assert length >= 0x80 and data[pos + 2] != 0, f"non-minimal length at {pos}: {data.hex()}"
        content = data[start : start + length]
        if tag in _CONSTRUCTED:
            assert_minimal(data, start, start + length)
        elif tag in _INTEGERS and length > 1:
            redundant = (content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
            assert not redundant, f"non-minimal integer at {pos}: {data.hex()}"
        pos = start + length


def has_negative_integer(msg: TrapMessage) -> bool:
    fixed = (msg.request_id, msg.generic_trap or 0, msg.specific_trap or 0)
    return min(fixed) < 0 or any(
        isinstance(v, Typed) and v.tag == TAG_INTEGER and v.value < 0  # type: ignore[operator]
        for _, v in msg.varbinds
    )


def test_assert_minimal_catches_redundant_octets() -> None:
    assert_minimal(b"\x30\x81\x80" + b"\x04\x7e" + b"x" * 126 + b"\x02\x01\x80\x02\x02\x00\x80")
    for bad in (b"\x04\x81\x01x", b"\x02\x02\xff\x80", b"\x41\x02\x00\x01", b"\x30\x04\x02\x02\x00\x05"):
        with pytest.raises(AssertionError):
            assert_minimal(bad)


def decode_response(data: bytes) -> object:
    """A Response-PDU as pysnmp reads it (the comparison ignores encoding variants)."""
    o = oracle_decode(data)
    assert o is not None
    return (o.msg, o.tags, o.error_status, o.error_index)


@HEAVY
@given(messages(versions=(V2C,), pdus=(PDU_INFORM,)))
def test_encode_response_answers_an_inform(inform: TrapMessage) -> None:
    request = decode(pysnmp_encode(inform))
    response = encode_response(request)

    oracle = oracle_decode(response)
    assert oracle is not None, f"pysnmp rejects our response {response.hex()}"
    assert oracle.msg.version == V2C
    assert oracle.msg.pdu_type == PDU_RESPONSE
    assert oracle.msg.community == inform.community
    assert oracle.msg.request_id == inform.request_id
    assert (oracle.error_status, oracle.error_index) == (0, 0)
    assert oracle.msg.varbinds == plain(inform).varbinds
    assert oracle.tags == tags_of(inform), "echoed varbinds lost their wire types"
    # Without the received bytes, the typed varbinds give the same response (byte for byte
    # unless the sender encoded an integer non-minimally, as pyasn1 does for -128).
    rebuilt = encode_response(dataclasses.replace(inform, raw_varbinds=None))
    assert_minimal(rebuilt)
    assert decode_response(rebuilt) == decode_response(response)


@HEAVY
@given(messages(versions=(V2C,), pdus=(PDU_INFORM,)))
def test_response_from_request_equals_the_encoded_response(inform: TrapMessage) -> None:
    """The receiver answers an INFORM by re-tagging the received datagram; for every INFORM
    (as pysnmp encodes it) pysnmp reads the same Response as from encode_response, and
    byte for byte the same one when the INFORM was minimally encoded (pyasn1 writes -128 in
    two octets; the re-tagged answer then echoes the sender's own encoding)."""
    data = pysnmp_encode(inform)
    request = decode(data)
    fast = response_from_request(data, request)
    built = encode_response(request)
    assert decode_response(fast) == decode_response(built)
    try:
        minimal = encode_trap(request) == data
    except ValueError:  # a value our encoder refuses to write (e.g. a decoded 2**31 INTEGER)
        minimal = False
    if minimal:
        assert fast == built


def test_response_from_request_on_net_snmps_inform_and_odd_error_fields() -> None:
    request = decode(NETSNMP_V2C_INFORM)
    fast = response_from_request(NETSNMP_V2C_INFORM, request)
    assert fast == encode_response(request)
    assert fast[:20] != NETSNMP_V2C_INFORM[:20] and len(fast) == len(NETSNMP_V2C_INFORM)
    # error-status 5 in the request: the Response still says 0 (built, not re-tagged)
    at = NETSNMP_V2C_INFORM.index(b"\x02\x01\x00\x02\x01\x00")
    odd = NETSNMP_V2C_INFORM[: at + 2] + b"\x05" + NETSNMP_V2C_INFORM[at + 3 :]
    odd_req = decode(odd)
    answer = response_from_request(odd, odd_req)
    assert answer == encode_response(odd_req)
    assert oracle_decode(answer).error_status == 0  # type: ignore[union-attr]


def test_encode_response_reencodes_varbinds_when_raw_bytes_are_cleared() -> None:
    inform = TrapMessage(
        V2C, b"public", PDU_INFORM, 77, [(SYS_UPTIME, Typed(TAG_TIMETICKS, 5)), (SNMP_TRAP_OID, "x")]
    )
    request = decode(encode_trap(inform))
    edited = dataclasses.replace(request, varbinds=[(SYS_UPTIME, 9)], raw_varbinds=None)
    oracle = oracle_decode(encode_response(edited))
    assert oracle is not None
    assert oracle.msg.varbinds == [(SYS_UPTIME, 9)]
    assert oracle.tags == [TAG_INTEGER]


def test_plain_python_values_map_to_documented_types() -> None:
    msg = TrapMessage(
        V2C,
        b"c",
        PDU_TRAP_V2,
        1,
        [("1.3.6.1.1", 5), ("1.3.6.1.2", b"raw"), ("1.3.6.1.3", "h\u00e9llo"), ("1.3.6.1.4", None)],
    )
    oracle = oracle_decode(encode_trap(msg))
    assert oracle is not None
    assert oracle.tags == [TAG_INTEGER, TAG_OCTET_STRING, TAG_OCTET_STRING, TAG_NULL]
    assert [v for _, v in oracle.msg.varbinds] == [5, b"raw", "h\u00e9llo".encode(), None]


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("1.3.6", 2**31)]), ValueError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("1.3.6", Typed(TAG_COUNTER32, -1))]), ValueError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("1.3.6", Typed(TAG_COUNTER32, 2**32))]), ValueError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("1.3.6", Typed(TAG_COUNTER64, 2**64))]), ValueError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("1.3.6", Typed(TAG_IPADDRESS, "1.2.3"))]), ValueError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("1.3.6", Typed(0x47, 1))]), ValueError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("1.3.6", 1.5)]), TypeError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("1.3.x", 1)]), ValueError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("3.1", 1)]), ValueError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("1.40", 1)]), ValueError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("1", 1)]), ValueError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("1.3." + "1." * 127 + "1", 1)]), ValueError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("1.3.4294967296", 1)]), ValueError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V2, 2**31, []), ValueError),
        (TrapMessage(V2C, b"c", PDU_TRAP_V1, 0, [], enterprise="1.3"), ValueError),
        (TrapMessage(V2C, b"c", PDU_RESPONSE, 1, []), ValueError),
        (TrapMessage(V1, b"c", PDU_TRAP_V1, 0, [("1.3.6", Typed(TAG_COUNTER64, 1))], "1.3"), ValueError),
        (TrapMessage(V1, b"c", PDU_TRAP_V1, 0, [("1.3.6", Typed(TAG_NO_SUCH_OBJECT))], "1.3"), ValueError),
        (TrapMessage(V1, b"c", PDU_TRAP_V1, 0, []), ValueError),
        (TrapMessage(V1, b"c", PDU_TRAP_V1, 0, [], "1.3", timestamp=-1), ValueError),
        (TrapMessage(V3, b"c", PDU_TRAP_V2, 0, []), ValueError),
    ],
    ids=[
        "v2c-integer-over-int32",
        "counter32-negative",
        "counter32-over",
        "counter64-over",
        "ipaddress-3-parts",
        "unknown-tag",
        "float-value",
        "oid-not-numeric",
        "oid-first-arc-3",
        "oid-second-arc-40",
        "oid-one-arc",
        "oid-129-arcs",
        "oid-subid-2**32",
        "request-id-over-int32",
        "v1-pdu-in-v2c",
        "response-is-not-a-notification",
        "counter64-in-v1",
        "exception-value-in-v1",
        "v1-without-enterprise",
        "v1-negative-timestamp",
        "v3",
    ],
)
def test_encode_trap_rejects_what_it_cannot_encode(msg: TrapMessage, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_trap(msg)


_BOUNDARY_INTS = sorted(
    {s * (2**k) + d for k in (0, 7, 8, 15, 16, 23, 24, 31) for s in (1, -1) for d in (-1, 0, 1)}
)


@pytest.mark.parametrize("version", [V1, V2C], ids=["v1", "v2c"])
def test_integer_boundaries_encode_minimally_and_round_trip(version: int) -> None:
    ints = [i for i in _BOUNDARY_INTS if INT32_MIN <= i <= INT32_MAX]
    unsigned = [i for i in _BOUNDARY_INTS if 0 <= i <= U32_MAX]
    varbinds: list[tuple[str, object]] = [("1.3.6.1.1", Typed(TAG_INTEGER, i)) for i in ints]
    varbinds += [("1.3.6.1.2", Typed(TAG_COUNTER32, i)) for i in unsigned]
    if version == V1:
        varbinds += [("1.3.6.1.3", Typed(TAG_INTEGER, s * 2**63 + d)) for s in (1, -1) for d in (-1, 0, 1)]
        msg = TrapMessage(V1, b"c", PDU_TRAP_V1, 0, varbinds, "1.3.6.1.4.1", "10.0.0.1", 6, -128, 128)
    else:
        varbinds += [("1.3.6.1.4", Typed(TAG_COUNTER64, 2**k + d)) for k in (31, 32, 63) for d in (-1, 0)]
        msg = TrapMessage(V2C, b"c", PDU_INFORM, -128, varbinds)
    data = encode_trap(msg)
    assert_minimal(data)
    assert decode(data) == plain(msg)
    oracle = oracle_decode(data)
    assert oracle is not None and oracle.msg == plain(msg)


def test_encode_response_only_answers_v2c_informs() -> None:
    with pytest.raises(ValueError):
        encode_response(decode(NETSNMP_V2C_TRAP))
    with pytest.raises(ValueError):
        encode_response(decode(NETSNMP_V1_TRAP))


# --------------------------------------------------------------------------- real net-snmp packets

needs_netsnmp = pytest.mark.skipif(
    shutil.which("snmptrap") is None or shutil.which("snmpinform") is None,
    reason="net-snmp command-line tools (snmptrap, snmpinform) are not installed",
)


@pytest.fixture
def receiver() -> Any:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    yield sock
    sock.close()


def _target(sock: socket.socket) -> str:
    return f"127.0.0.1:{sock.getsockname()[1]}"


def _decode_both(data: bytes) -> TrapMessage:
    oracle = oracle_decode(data)
    assert oracle is not None, f"pysnmp rejects net-snmp's datagram {data.hex()}"
    got = decode(data)
    assert got == oracle.msg
    return got


@needs_netsnmp
def test_netsnmp_v2c_trap(receiver: socket.socket) -> None:
    subprocess.run(
        ["snmptrap", "-v", "2c", "-c", "public", _target(receiver), "", LINK_DOWN,
         "1.3.6.1.2.1.2.2.1.1.7", "i", "7", "1.3.6.1.2.1.2.2.1.2.7", "s", "eth7"],
        check=True, capture_output=True, timeout=10,
    )  # fmt: skip
    data, _ = receiver.recvfrom(65535)
    got = _decode_both(data)
    assert (got.version, got.community, got.pdu_type) == (V2C, b"public", PDU_TRAP_V2)
    assert got.varbinds[0][0] == SYS_UPTIME and isinstance(got.varbinds[0][1], int)
    assert got.varbinds[1:] == [
        (SNMP_TRAP_OID, LINK_DOWN),
        ("1.3.6.1.2.1.2.2.1.1.7", 7),
        ("1.3.6.1.2.1.2.2.1.2.7", b"eth7"),
    ]


@needs_netsnmp
def test_netsnmp_v1_trap(receiver: socket.socket) -> None:
    subprocess.run(
        ["snmptrap", "-v", "1", "-c", "public", _target(receiver), "1.3.6.1.4.1.8072.2.3",
         "127.0.0.1", "2", "0", "", "1.3.6.1.2.1.2.2.1.1.7", "i", "7"],
        check=True, capture_output=True, timeout=10,
    )  # fmt: skip
    data, _ = receiver.recvfrom(65535)
    got = _decode_both(data)
    assert (got.version, got.community, got.pdu_type, got.request_id) == (V1, b"public", PDU_TRAP_V1, 0)
    assert (got.enterprise, got.agent_addr, got.generic_trap, got.specific_trap) == (
        "1.3.6.1.4.1.8072.2.3",
        "127.0.0.1",
        2,
        0,
    )
    assert isinstance(got.timestamp, int)
    assert got.varbinds == [("1.3.6.1.2.1.2.2.1.1.7", 7)]


def _inform(receiver: socket.socket, timeout_s: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["snmpinform", "-v", "2c", "-r", "0", "-t", str(timeout_s), "-c", "public", _target(receiver), "",
         LINK_DOWN, "1.3.6.1.2.1.2.2.1.1.7", "i", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


@needs_netsnmp
def test_netsnmp_inform_is_acknowledged_by_our_response(receiver: socket.socket) -> None:
    proc = _inform(receiver, timeout_s=5)
    try:
        data, peer = receiver.recvfrom(65535)
        got = _decode_both(data)
        assert (got.version, got.pdu_type) == (V2C, PDU_INFORM)
        assert got.varbinds[1:] == [(SNMP_TRAP_OID, LINK_DOWN), ("1.3.6.1.2.1.2.2.1.1.7", 7)]
        receiver.sendto(encode_response(got), peer)
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    # snmpinform exits 0 only once it has received a matching Response.
    assert proc.returncode == 0, err


@needs_netsnmp
def test_netsnmp_inform_rejects_a_response_with_another_request_id(receiver: socket.socket) -> None:
    proc = _inform(receiver, timeout_s=1)
    try:
        data, peer = receiver.recvfrom(65535)
        got = decode(data)
        wrong = dataclasses.replace(got, request_id=(got.request_id + 1) & INT32_MAX)
        receiver.sendto(encode_response(wrong), peer)
        proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode != 0


# --------------------------------------------------------------------------- hand-made datagrams


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(octets))) + octets + content


SYS_UPTIME_BER = bytes.fromhex("2b06010201010300")
INT7 = b"\x02\x01\x07"
V1_ADDR = b"\x40\x04\x00\x00\x00\x00"
V2C_HEAD = tlv(0x02, b"\x01") + b"\x02\x01\x00\x02\x01\x00"


def vb(oid: bytes = SYS_UPTIME_BER, value: bytes = INT7) -> bytes:
    return tlv(0x30, tlv(0x06, oid) + value)


def v2c(*varbinds: bytes, pdu: int = PDU_TRAP_V2, version: int = 1, head: bytes = V2C_HEAD) -> bytes:
    pdu_tlv = tlv(pdu, head + tlv(0x30, b"".join(varbinds)))
    return tlv(0x30, tlv(0x02, bytes((version,))) + tlv(0x04, b"public") + pdu_tlv)


def v1(*varbinds: bytes, pdu: int = PDU_TRAP_V1, head: bytes | None = None) -> bytes:
    if head is None:
        head = (
            tlv(0x06, b"\x2b\x06\x01\x04\x01")
            + tlv(0x40, b"\x0a\x00\x00\x01")
            + b"\x02\x01\x06\x02\x01\x01"
            + tlv(0x43, b"\x64")
        )
    pdu_tlv = tlv(pdu, head + tlv(0x30, b"".join(varbinds)))
    return tlv(0x30, b"\x02\x01\x00" + tlv(0x04, b"public") + pdu_tlv)


def nested(depth: int) -> bytes:
    data = b"\x05\x00"
    for _ in range(depth):
        data = tlv(0x30, data)
    return data


BAD_CASES = [
    ("empty", b"", "truncated"),
    ("one-octet", b"\x30", "truncated"),
    ("length-0xffffffff", b"\x30\x84\xff\xff\xff\xff\x02\x01\x01", "truncated"),
    ("five-length-octets", b"\x30\x85\x00\x00\x00\x00\x03\x02\x01\x01", "bad_length"),
    ("indefinite-outer", b"\x30\x80" + v2c(vb())[2:] + b"\x00\x00", "bad_length"),
    ("indefinite-varbind", v2c(b"\x30\x80" + tlv(6, SYS_UPTIME_BER) + INT7 + b"\x00\x00"), "bad_length"),
    ("indefinite-value", v2c(vb(value=b"\x04\x80\x04\x01a\x00\x00")), "bad_length"),
    ("not-a-sequence", b"\x02\x01\x01", "bad_tag"),
    ("nested-2000-deep", nested(2000), "bad_tag"),
    ("nested-value", v2c(vb(value=nested(500))), "bad_tag"),
    ("oid-padding", v2c(vb(oid=b"\x2b\x80\x01")), "bad_oid"),
    ("oid-padding-first", v2c(vb(oid=b"\x80\x2b")), "bad_oid"),
    ("oid-unterminated", v2c(vb(oid=b"\x2b\x86")), "bad_oid"),
    ("oid-empty", v2c(vb(oid=b"")), "bad_oid"),
    ("oid-subid-2**32", v2c(vb(oid=b"\x2b\x90\x80\x80\x80\x00")), "bad_oid"),
    ("oid-huge-subid", v2c(vb(oid=b"\x2b" + b"\xff" * 40 + b"\x7f")), "bad_oid"),
    ("oid-129-arcs", v2c(vb(oid=b"\x2b" + b"\x01" * 127)), "bad_oid"),
    ("oid-value-padding", v2c(vb(value=tlv(6, b"\x2b\x80\x01"))), "bad_oid"),
    ("enterprise-empty", v1(head=b"\x06\x00" + V1_ADDR + INT7 + INT7 + b"\x43\x01\x00"), "bad_oid"),
    ("counter32-2**32", v2c(vb(value=b"\x41\x05\x01\x00\x00\x00\x00")), "bad_value"),
    ("counter32-negative", v2c(vb(value=b"\x41\x01\xff")), "bad_value"),
    ("gauge32-negative-5-octets", v2c(vb(value=b"\x42\x05\xff\x00\x00\x00\x00")), "bad_value"),
    ("timeticks-2**32", v2c(vb(value=b"\x43\x05\x01\x00\x00\x00\x00")), "bad_value"),
    ("counter64-2**64", v2c(vb(value=b"\x46\x09\x01" + b"\x00" * 8)), "bad_value"),
    ("counter64-negative", v2c(vb(value=b"\x46\x01\x80")), "bad_value"),
    ("v2c-integer-2**31", v2c(vb(value=b"\x02\x05\x00\x80\x00\x00\x00")), "bad_value"),
    ("v2c-integer-below-int32", v2c(vb(value=b"\x02\x05\xff\x7f\xff\xff\xff")), "bad_value"),
    ("ipaddress-3-octets", v2c(vb(value=b"\x40\x03\x01\x02\x03")), "bad_value"),
    ("ipaddress-5-octets", v2c(vb(value=b"\x40\x05\x01\x02\x03\x04\x05")), "bad_value"),
    (
        "agent-addr-3-octets",
        v1(head=tlv(6, b"\x2b") + b"\x40\x03\x01\x02\x03" + INT7 + INT7 + b"\x43\x01\x00"),
        "bad_value",
    ),
    (
        "v1-timestamp-negative",
        v1(head=b"\x06\x01\x2b" + V1_ADDR + INT7 + INT7 + b"\x43\x01\xff"),
        "bad_value",
    ),
    ("request-id-2**31", v2c(head=b"\x02\x05\x00\x80\x00\x00\x00\x02\x01\x00\x02\x01\x00"), "bad_value"),
    ("error-index-negative", v2c(head=b"\x02\x01\x01\x02\x01\x00\x02\x01\xff"), "bad_value"),
    ("null-with-content", v2c(vb(value=b"\x05\x01\x00")), "bad_length"),
    ("nosuchobject-with-content", v2c(vb(value=b"\x80\x01\x00")), "bad_length"),
    ("empty-integer", v2c(vb(value=b"\x02\x00")), "bad_length"),
    ("empty-counter32", v2c(vb(value=b"\x41\x00")), "bad_value"),
    ("empty-request-id", v2c(head=b"\x02\x00\x02\x01\x00\x02\x01\x00"), "bad_length"),
    ("counter64-in-v1", v1(vb(value=b"\x46\x01\x01")), "bad_tag"),
    ("nosuchobject-in-v1", v1(vb(value=b"\x80\x00")), "bad_tag"),
    ("nsap-address", v2c(vb(value=b"\x45\x01\x00")), "bad_tag"),
    ("constructed-octet-string", v2c(vb(value=tlv(0x24, tlv(4, b"ab") + tlv(4, b"cd")))), "bad_tag"),
    ("high-tag-number", v2c(vb(value=b"\x1f\x02\x01\x07")), "bad_tag"),
    ("sequence-value", v2c(vb(value=tlv(0x30, INT7))), "bad_tag"),
    ("varbind-not-sequence", v2c(INT7), "bad_tag"),
    ("varbind-name-not-oid", v2c(tlv(0x30, INT7 + INT7)), "bad_tag"),
    ("varbind-without-value", v2c(tlv(0x30, tlv(6, SYS_UPTIME_BER)), vb()), "bad_length"),
    ("varbind-empty", v2c(tlv(0x30, b""), vb()), "bad_length"),
    ("varbind-three-elements", v2c(tlv(0x30, tlv(6, SYS_UPTIME_BER) + INT7 + INT7)), "trailing_bytes"),
    ("varbind-past-list", v2c(vb()).replace(b"\x30\x0d\x06\x08", b"\x30\x0e\x06\x08"), "bad_length"),
    ("value-past-varbind", v2c(vb()).replace(b"\x02\x01\x07", b"\x02\x02\x07"), "bad_length"),
    ("trailing-after-message", v2c(vb()) + b"\x00", "trailing_bytes"),
    (
        "extra-after-varbinds",
        tlv(0x30, b"\x02\x01\x01" + tlv(4, b"public") + tlv(PDU_TRAP_V2, V2C_HEAD + tlv(0x30, vb()) + INT7)),
        "trailing_bytes",
    ),
    ("version-2", v2c(vb(), version=2), "unsupported_version"),
    ("version-3", v2c(vb(), version=3), "unsupported_version"),
    ("get-request", v2c(vb(), pdu=0xA0), "unsupported_pdu"),
    ("get-bulk", v2c(vb(), pdu=0xA5), "unsupported_pdu"),
    ("report", v2c(vb(), pdu=0xA8), "unsupported_pdu"),
    ("v1-get-next", v1(vb(), pdu=0xA1, head=V2C_HEAD), "unsupported_pdu"),
    ("v1-trap-in-v2c", v2c(vb(), pdu=PDU_TRAP_V1), "unsupported_pdu"),
    ("v2-trap-in-v1", v1(vb(), pdu=PDU_TRAP_V2, head=V2C_HEAD), "unsupported_pdu"),
    ("inform-in-v1", v1(vb(), pdu=PDU_INFORM, head=V2C_HEAD), "unsupported_pdu"),
    ("pdu-tag-0xa9", v2c(vb(), pdu=0xA9), "bad_tag"),
    ("pdu-tag-0x30", v2c(vb(), pdu=0x30), "bad_tag"),
    ("community-not-octets", b"\x30\x08\x02\x01\x01\x02\x01\x00\xa7\x00", "bad_tag"),
]


@pytest.mark.parametrize(("data", "reason"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_malformed_datagrams_raise_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert info.value.reason == reason, info.value


GOOD_CASES = [
    ("counter32-max-5-octets", v2c(vb(value=b"\x41\x05\x00\xff\xff\xff\xff")), U32_MAX),
    ("counter32-non-minimal", v2c(vb(value=b"\x41\x03\x00\x00\x07")), 7),
    ("timeticks-zero", v2c(vb(value=b"\x43\x01\x00")), 0),
    ("counter64-max-9-octets", v2c(vb(value=b"\x46\x09\x00" + b"\xff" * 8)), U64_MAX),
    ("v2c-integer-min", v2c(vb(value=b"\x02\x04\x80\x00\x00\x00")), INT32_MIN),
    ("v1-integer-2**31", v1(vb(value=b"\x02\x05\x00\x80\x00\x00\x00")), 2**31),
    ("v1-integer-huge-negative", v1(vb(value=b"\x02\x09\x80" + b"\x00" * 8)), -(2**71)),
    ("nosuchinstance", v2c(vb(value=b"\x81\x00")), None),
    ("endofmibview", v2c(vb(value=b"\x82\x00")), None),
    ("v1-null", v1(vb(value=b"\x05\x00")), None),
    ("opaque", v2c(vb(value=b"\x44\x02\x9f\x78")), b"\x9f\x78"),
    ("empty-octet-string", v2c(vb(value=b"\x04\x00")), b""),
    ("long-form-octet-string", v2c(vb(value=b"\x04\x82\x00\x03abc")), b"abc"),
    ("ipaddress", v2c(vb(value=b"\x40\x04\xc0\xa8\x00\xff")), "192.168.0.255"),
    ("oid-value-2-arcs", v2c(vb(value=b"\x06\x01\x2b")), "1.3"),
    ("oid-value-joint-iso", v2c(vb(value=b"\x06\x02\x81\x00")), "2.48"),
    ("oid-value-subid-2**32-1", v2c(vb(value=b"\x06\x06\x2b\x8f\xff\xff\xff\x7f")), "1.3.4294967295"),
    ("oid-value-128-arcs", v2c(vb(value=tlv(6, b"\x2b" + b"\x01" * 126))), "1.3" + ".1" * 126),
]


@pytest.mark.parametrize(("data", "value"), [c[1:] for c in GOOD_CASES], ids=[c[0] for c in GOOD_CASES])
def test_edge_values_decode_as_pysnmp_does(data: bytes, value: object) -> None:
    got = decode(data)
    assert got.varbinds == [(SYS_UPTIME, value)]
    oracle = oracle_decode(data)
    assert oracle is not None and oracle.msg == got


@pytest.mark.parametrize(
    "case",
    [c for c in BAD_CASES if c[2] in ("bad_value",) and not c[0].startswith("empty")],
    ids=lambda c: c[0],
)
def test_out_of_range_values_are_rejected_by_pysnmp_too(case: tuple[str, bytes, str]) -> None:
    assert oracle_decode(case[1]) is None


def test_extra_length_octets_and_nonminimal_lengths_are_accepted() -> None:
    data = v2c(vb())
    # Re-encode the community's length in the 4-octet long form (BER allows it).
    grown = data.replace(b"\x04\x06public", b"\x04\x84\x00\x00\x00\x06public")
    grown = bytes((grown[0], grown[1] + 4)) + grown[2:]
    assert decode(grown) == decode(data)
    oracle = oracle_decode(grown)
    assert oracle is not None and oracle.msg == decode(data)


def test_truncation_at_every_length_is_reported_as_truncated() -> None:
    for packet in [*CORPUS, encode_trap(plain_big_message())]:
        for cut in range(len(packet)):
            with pytest.raises(DecodeError) as info:
                decode(packet[:cut])
            assert info.value.reason == "truncated", (cut, packet[:cut].hex())


def plain_big_message() -> TrapMessage:
    """A v2c inform whose lengths need the long forms (0x81, 0x82)."""
    return TrapMessage(
        V2C,
        b"public",
        PDU_INFORM,
        -5,
        [
            (SYS_UPTIME, Typed(TAG_TIMETICKS, 99)),
            (SNMP_TRAP_OID, Typed(TAG_OID, LINK_DOWN)),
            ("1.3.6.1.4.1.9.9.1", b"x" * 300),
            ("1.3.6.1.4.1.9.9.2", Typed(TAG_COUNTER64, U64_MAX)),
        ],
    )


def test_decode_accepts_bytearray_and_memoryview() -> None:
    for packet in CORPUS:
        assert decode(bytearray(packet)) == decode(memoryview(packet)) == decode(packet)


def test_raw_varbinds_are_the_received_varbind_list() -> None:
    got = decode(NETSNMP_V2C_INFORM)
    assert got.raw_varbinds is not None
    assert NETSNMP_V2C_INFORM.endswith(got.raw_varbinds)
    assert got.raw_varbinds[0] == 0x30 and len(got.raw_varbinds) == got.raw_varbinds[1] + 2


# --------------------------------------------------------------------------- peek_version


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (NETSNMP_V1_TRAP, V1),
        (NETSNMP_V2C_TRAP, V2C),
        (tlv(0x30, b"\x02\x01\x03" + tlv(0x30, b"\x02\x01\x01")), V3),
        (tlv(0x30, b"\x02\x02\x00\x01"), V2C),
        (b"\x30\x81\x03\x02\x01\x03", V3),
    ],
    ids=["v1", "v2c", "v3", "non-minimal-version", "long-form-length"],
)
def test_peek_version(data: bytes, expected: int) -> None:
    assert peek_version(data) == expected
    assert peek_version(memoryview(data)) == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x30", "truncated"),
        (b"\x30\x05\x02\x01\x01", "truncated"),
        (b"\x04\x03\x02\x01\x01", "bad_tag"),
        (b"\x30\x03\x04\x01\x01", "bad_tag"),
        (b"\x30\x80\x02\x01\x01\x00\x00", "bad_length"),
        (b"\x30\x07\x02\x05\x00\x00\x00\x00\x01", "bad_length"),
        (b"\x30\x02\x02\x00", "bad_length"),
        (b"\x30\x03\x02\x01\x02", "unsupported_version"),
        (b"\x30\x03\x02\x01\xff", "unsupported_version"),
    ],
    ids=[
        "empty",
        "one-octet",
        "outer-truncated",
        "not-a-sequence",
        "version-not-integer",
        "indefinite",
        "version-too-long",
        "version-empty",
        "version-2",
        "version-negative",
    ],
)
def test_peek_version_rejects(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        peek_version(data)
    assert info.value.reason == reason


# --------------------------------------------------------------------------- OID cache


def test_oid_cache_stops_growing_at_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ber, "_OID_CACHE", {})
    monkeypatch.setattr(ber, "OID_CACHE_MAX", 10)
    for i in range(50):
        oid = f"1.3.6.1.4.1.{i}.{i * 1000}"
        msg = TrapMessage(V2C, b"c", PDU_TRAP_V2, i, [(oid, Typed(TAG_OID, oid + ".0"))])
        assert decode(encode_trap(msg)) == plain(msg)
    assert len(ber._OID_CACHE) == 10
    # Cached names are still served correctly.
    assert decode(encode_trap(TrapMessage(V2C, b"c", PDU_TRAP_V2, 1, [("1.3.6.1.4.1.0.0", 1)]))).varbinds == [
        ("1.3.6.1.4.1.0.0", 1)
    ]


def test_invalid_oids_are_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ber, "_OID_CACHE", {})
    for case in ("oid-padding", "oid-huge-subid", "oid-129-arcs"):
        with pytest.raises(DecodeError):
            decode({c[0]: c[1] for c in BAD_CASES}[case])
    assert ber._OID_CACHE == {}


# --------------------------------------------------------------------------- fuzzing

_position = st.integers(0, 1 << 20)
_mutation = st.one_of(
    st.tuples(st.just("flip"), _position, st.integers(0, 7)),
    st.tuples(st.just("truncate"), _position),
    st.tuples(st.just("insert"), _position, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), _position, st.integers(1, 8)),
    st.tuples(
        st.just("set"),
        _position,
        st.one_of(
            st.sampled_from([0x00, 0x01, 0x05, 0x30, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x85, 0xFF]),
            st.integers(0, 255),
        ),
    ),
)


def mutate(data: bytes, mutations: list[tuple[Any, ...]]) -> bytes:
    out = bytearray(data)
    for kind, pos, *args in mutations:
        if not out:
            break
        pos %= len(out)
        if kind == "flip":
            out[pos] ^= 1 << args[0]
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = args[0]
        elif kind == "delete":
            del out[pos : pos + args[0]]
        else:
            out[pos] = args[0]
    return bytes(out)


_bases = st.one_of(
    st.sampled_from(CORPUS),
    messages(max_varbinds=4).map(encode_trap),
)


def _check_decode_or_decode_error(data: bytes) -> None:
    started = time.perf_counter()
    try:
        got = decode(data)
    except DecodeError as exc:
        assert exc.reason in REASONS, exc
        got = None
    assert time.perf_counter() - started < 0.25, f"slow decode of {len(data)} bytes"
    if got is not None:
        oracle = oracle_decode(data)
        assert oracle is not None, f"we accept what pysnmp rejects: {data.hex()}"
        assert oracle.msg == got
    try:
        peek_version(data)
    except DecodeError as exc:
        assert exc.reason in REASONS, exc


@HEAVY
@given(_bases, st.lists(_mutation, min_size=1, max_size=4))
def test_fuzz_mutated_packets_decode_or_raise_decode_error(
    base: bytes, mutations: list[tuple[Any, ...]]
) -> None:
    _check_decode_or_decode_error(mutate(base, mutations))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    _check_decode_or_decode_error(data)


def test_every_single_octet_change_of_corpus_packets() -> None:
    """Exhaustive: every position of every corpus packet set to every octet value."""
    for packet in CORPUS:
        for pos in range(len(packet)):
            for value in range(256):
                try:
                    decode(packet[:pos] + bytes((value,)) + packet[pos + 1 :])
                except DecodeError as exc:
                    assert exc.reason in REASONS, exc


def test_every_bit_flip_of_corpus_packets_agrees_with_pysnmp() -> None:
    for packet in CORPUS:
        for pos in range(len(packet)):
            for bit in range(8):
                data = packet[:pos] + bytes((packet[pos] ^ (1 << bit),)) + packet[pos + 1 :]
                _check_decode_or_decode_error(data)
