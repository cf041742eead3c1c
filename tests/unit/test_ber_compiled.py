"""The compiled VarBindList decoder (adapters/snmp/_cber.c) against its reference, the
Python loop ``ber._varbinds_py`` (itself checked against pysnmp in test_ber.py).

The compiled decoder must return exactly what the Python loop returns (same OIDs, same
values, same value types, same cache contents) whenever the Python loop succeeds, and
``None`` whenever it raises, so that the Python loop can explain the error. Inputs:
hand-built VarBindLists of every type with short and long-form lengths, then random
mutations of them, of encoded traps and of net-snmp's own packets.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.snmp import ber
from adapters.snmp._cber import varbinds as compiled  # a missing build fails here, loudly
from gateway.errors import DecodeError
from tests.unit.test_ber import CORPUS, _mutation, messages, mutate

SETTINGS = settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

_TAGS = [0x02, 0x04, 0x05, 0x06, 0x40, 0x41, 0x42, 0x43, 0x44, 0x46, 0x80, 0x81, 0x82, 0x30, 0x00, 0x45, 0x83]


def _length(n: int, long_form: int) -> bytes:
    """``n`` as a BER length: short form, or long form with ``long_form`` octets (1..4,
    non-minimal allowed, as the decoders accept it)."""
    if not long_form and n < 0x80:
        return bytes((n,))
    k = max(long_form, (n.bit_length() + 7) // 8, 1)
    return bytes((0x80 | k,)) + n.to_bytes(k, "big")


def _tlv(tag: int, content: bytes, long_form: int) -> bytes:
    return bytes((tag,)) + _length(len(content), long_form) + content


@st.composite
def oid_content(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from([0, 0, 0, 1, 2, 2, 3]))
    if kind == 0:  # a valid OID, as the encoder writes it
        arcs = draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=6))
        first = draw(st.integers(0, 2))
        second = draw(st.integers(0, 39 if first < 2 else 2**32 - 1))
        return ber._oid_tlv(".".join(map(str, [first, second, *arcs])))[2:] if len(arcs) < 20 else b""
    if kind == 1:  # near the limits: many arcs, huge arcs, padding
        n = draw(st.integers(126, 130))
        body = b"\x2b" + b"\x01" * (n - 2)
        return draw(st.sampled_from([body, b"\x80\x01", b"\x2b\x90\x80\x80\x80\x00", b"\x2b\x8f\xff\xff\xff\x7f", b"\x2b\x81"]))
    if kind == 2:  # a cached, common one
        return draw(st.sampled_from([b"\x2b\x06\x01\x02\x01\x01\x03\x00", b"\x2b\x06\x01\x06\x03\x01\x01\x04\x01\x00"]))
    return draw(st.binary(max_size=12))


_valid_values = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.binary(max_size=20),
    st.none(),
    st.builds(ber.Typed, st.sampled_from([ber.TAG_COUNTER32, ber.TAG_GAUGE32, ber.TAG_TIMETICKS]), st.integers(0, 2**32 - 1)),
    st.builds(ber.Typed, st.just(ber.TAG_COUNTER64), st.integers(0, 2**64 - 1)),
    st.builds(ber.Typed, st.just(ber.TAG_IPADDRESS), st.ip_addresses(v=4).map(str)),
    st.builds(ber.Typed, st.just(ber.TAG_OPAQUE), st.binary(max_size=8)),
    st.builds(ber.Typed, st.sampled_from([ber.TAG_NO_SUCH_OBJECT, ber.TAG_END_OF_MIB_VIEW])),
    st.builds(ber.Typed, st.just(ber.TAG_OID), st.sampled_from(["1.3.6.1.6.3.1.1.5.3", "0.0", "2.999.4294967295"])),
)


@st.composite
def value_tlv(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) < 6:  # mostly well-typed values, as an agent sends them
        return ber._encode_value(draw(_valid_values), True)
    tag = draw(st.sampled_from(_TAGS))
    if tag == 0x06:
        content = draw(oid_content())
    elif tag in (0x02, 0x41, 0x42, 0x43, 0x46):
        size = draw(st.integers(0, 12))
        content = draw(st.one_of(st.binary(min_size=size, max_size=size), st.just(b"\x00" * size + b"\x01")))
    elif tag == 0x40:
        content = draw(st.binary(min_size=3, max_size=5))
    else:
        content = draw(st.binary(max_size=6))
    return _tlv(tag, content, draw(st.integers(0, 4)))


@st.composite
def varbind_list(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 5))):
        name = _tlv(0x06, draw(oid_content()), draw(st.integers(0, 2)))
        out += _tlv(0x30, name + draw(value_tlv()), draw(st.integers(0, 2)))
    return out


def _both(data: bytes, pos: int, end: int, v2: bool, cap: int = ber.OID_CACHE_MAX) -> None:
    saved_cache, saved_cap = ber._OID_CACHE, ber.OID_CACHE_MAX
    ber._OID_CACHE, ber.OID_CACHE_MAX = {}, cap
    try:
        try:
            want: Any = ber._varbinds_py(data, pos, end, v2)
        except (DecodeError, IndexError):
            want = None
        py_cache = ber._OID_CACHE
    finally:
        ber._OID_CACHE, ber.OID_CACHE_MAX = saved_cache, saved_cap
    c_cache: dict[bytes, str] = {}
    got = compiled(data, pos, end, v2, c_cache, cap, ber.IpAddress)
    if want is None:
        assert got is None, f"compiled decoder accepts what the Python one rejects: {data[pos:end].hex()}"
        return
    assert got is not None, f"compiled decoder refuses what the Python one accepts: {data[pos:end].hex()}"
    assert got == want
    assert [type(v) for _, v in got] == [type(v) for _, v in want]
    assert all(type(o) is str for o, _ in got)
    assert c_cache == py_cache


@SETTINGS
@given(varbind_list(), st.booleans(), st.binary(max_size=3), st.binary(max_size=3))
def test_same_result_on_built_varbind_lists(vbl: bytes, v2: bool, before: bytes, after: bytes) -> None:
    data = before + vbl + after
    _both(data, len(before), len(before) + len(vbl), v2)


@SETTINGS
@given(varbind_list(), st.booleans(), st.lists(_mutation, min_size=1, max_size=3), st.integers(0, 8))
def test_same_result_on_mutated_varbind_lists(vbl: bytes, v2: bool, mutations: list[tuple[Any, ...]], cut: int) -> None:
    data = mutate(vbl, mutations) if vbl else vbl
    _both(data, 0, max(0, len(data) - cut), v2)


def _span(packet: bytes) -> tuple[int, int, bool] | None:
    """Where a packet's VarBindList content lies, as the Python decoder finds it."""
    try:
        msg = ber.decode(packet)
    except DecodeError:
        return None
    raw = msg.raw_varbinds or b""
    at = packet.rindex(raw)
    header = 2 if raw[1] < 0x80 else 2 + (raw[1] & 0x7F)
    return at + header, at + len(raw), msg.version == ber.V2C


@SETTINGS
@given(st.one_of(st.sampled_from(CORPUS), messages(max_varbinds=6).map(ber.encode_trap)), st.lists(_mutation, max_size=3))
def test_same_result_inside_whole_packets(packet: bytes, mutations: list[tuple[Any, ...]]) -> None:
    span = _span(packet)
    if span is None:
        return
    start, end, v2 = span
    data = mutate(packet, mutations) if mutations else packet
    _both(data, min(start, len(data)), min(end, len(data)), v2)


def test_valid_traps_are_decoded_by_the_compiled_loop_not_handed_back() -> None:
    """An encoded trap of every value type takes the compiled path (no fallback)."""
    msg = ber.TrapMessage(ber.V2C, b"public", ber.PDU_TRAP_V2, 7, [
        ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, 4711)),
        ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, "1.3.6.1.6.3.1.1.5.3")),
        ("1.3.6.1.2.1.2.2.1.1.3", -2**31),
        ("1.3.6.1.2.1.2.2.1.2.3", b"x" * 300),
        ("1.3.6.1.6.3.18.1.3.0", ber.Typed(ber.TAG_IPADDRESS, "10.0.0.9")),
        ("1.3.6.1.2.1.31.1.1.1.6.3", ber.Typed(ber.TAG_COUNTER64, 2**64 - 1)),
        ("1.3.6.1.2.1.2.2.1.10.3", ber.Typed(ber.TAG_COUNTER32, 2**32 - 1)),
        ("1.3.6.1.4.1.9.9.0", None),
        ("1.3.6.1.4.1.9.9.1", ber.Typed(ber.TAG_NO_SUCH_INSTANCE)),
        ("1.3.6.1.4.1.9.9.2", ber.Typed(ber.TAG_OPAQUE, b"\x01")),
    ])
    packet = ber.encode_trap(msg)
    span = _span(packet)
    assert span is not None
    start, end, _ = span
    got = compiled(packet, start, end, True, {}, ber.OID_CACHE_MAX, ber.IpAddress)
    assert got == ber._varbinds_py(packet, start, end, True)
    assert type(got[4][1]) is ber.IpAddress
    assert got[5][1] == 2**64 - 1


def test_compiled_decoder_respects_the_cache_cap() -> None:
    packet = ber.encode_trap(ber.TrapMessage(ber.V2C, b"c", ber.PDU_TRAP_V2, 1, [(f"1.3.6.1.4.1.{i}", i) for i in range(20)]))
    span = _span(packet)
    assert span is not None
    for cap in (0, 5, 1000):
        _both(packet, span[0], span[1], True, cap)


def test_the_receiver_runs_the_compiled_decoder() -> None:
    """Where a C compiler was present at install time (CI and any machine that runs
    scripts/bootstrap.sh as root), the hot path is the compiled one."""
    assert ber.DECODER == "compiled"
    assert ber._cvarbinds is compiled
