"""The repeat-trap fast path against the full decoder: the same datagrams must give the same
Events (and bad ones the same rejections) with and without it."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.snmp import ber
from adapters.snmp.config import SnmpListenerConfig
from adapters.snmp.fastpath import split_v2c_trap
from adapters.snmp.receiver import SnmpAdapter
from gateway.clock import ManualClock

LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
TRAP_ADDR = "1.3.6.1.6.3.18.1.3.0"


class _Resolver:
    """A stand-in MIB resolver with a few names (the real one is tested elsewhere)."""

    def name(self, oid: str) -> str:
        return {LINK_DOWN: "IF-MIB::linkDown"}.get(oid, oid)

    def split(self, oid: str) -> tuple[str, str, str]:
        if oid.startswith("1.3.6.1.2.1.2.2.1.1."):
            return "IF-MIB", "ifIndex", oid.rsplit(".", 1)[1]
        if oid.startswith("1.3.6.1.2.1.2.2.1.2."):
            return "IF-MIB", "ifDescr", oid.rsplit(".", 1)[1]
        if oid == TRAP_ADDR:
            return "SNMP-COMMUNITY-MIB", "snmpTrapAddress", "0"
        return "", oid, ""


def _adapter(fast: bool, relays: tuple[str, ...] = ("10.0.0.0/24",)) -> SnmpAdapter:
    cfg = SnmpListenerConfig(communities=["public"], trusted_relays=list(relays))
    a = SnmpAdapter(cfg, ManualClock(), resolver=_Resolver())
    if not fast:
        a.repeats = None
    return a


def _run(a: SnmpAdapter, packets: list[tuple[bytes, str]]) -> list[Any]:
    out: list[Any] = []
    for data, peer in packets:
        plain: list[Any] = []
        informs: list[Any] = []
        a._handle(data, (peer, 161), 100.0, plain, informs)
        out.append([(e.device, e.name, dict(e.attrs), e.peer) for e in plain] or sorted(k for k in a.counters if k.startswith("rejected")))
    return out


def _trap(uptime: int, index: int, descr: bytes, relay: str | None = None, community: bytes = b"public", req: int = 1) -> bytes:
    vbs: list[tuple[str, Any]] = [
        ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, uptime)),
        ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, LINK_DOWN)),
        (f"1.3.6.1.2.1.2.2.1.1.{index}", index),
        (f"1.3.6.1.2.1.2.2.1.2.{index}", descr),
    ]
    if relay:
        vbs.append((TRAP_ADDR, ber.Typed(ber.TAG_IPADDRESS, relay)))
    return ber.encode_trap(ber.TrapMessage(ber.V2C, community, ber.PDU_TRAP_V2, req, vbs))


def test_split_finds_the_parts() -> None:
    pkt = _trap(123456, 7, b"eth7")
    split = split_v2c_trap(pkt)
    assert split is not None and split[0] == b"public" and split[1] == 123456
    assert split_v2c_trap(pkt[:-1]) is None  # lengths must close exactly
    assert split_v2c_trap(b"\x30\x03\x02\x01\x00") is None


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**32 - 1),
            st.integers(1, 4),
            st.sampled_from([b"eth1", b"ge-0/0/1", b"\xff\x00bin", b""]),
            st.sampled_from([None, "192.0.2.7", "192.0.2.8"]),
            st.sampled_from(["10.0.0.1", "10.0.0.2"]),
            st.sampled_from([b"public", b"public", b"wrong"]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_fast_path_equals_full_decoder(items: list[tuple[int, int, bytes, str | None, str, bytes]]) -> None:
    packets = [(_trap(up, idx, d, relay, comm, req=i + 1), peer) for i, (up, idx, d, relay, peer, comm) in enumerate(items)]
    packets = packets + packets  # every second pass is a repeat
    for relays in (("10.0.0.0/24",), ("10.0.0.1/32",), ()):  # every peer, one of them, none trusted
        fast, slow = _adapter(True, relays), _adapter(False, relays)
        assert _run(fast, packets) == _run(slow, packets)
        assert dict(fast.counters) == dict(slow.counters)  # decoded, rejected.*, untrusted.*


def test_repeats_take_the_fast_path_and_mutations_do_not_break_it() -> None:
    a = _adapter(True)
    base = _trap(1, 3, b"eth3")
    _run(a, [(base, "10.0.0.1")])
    assert a.repeats is not None and len(a.repeats) == 1
    _run(a, [(_trap(999, 3, b"eth3", req=42), "10.0.0.2")] * 5)
    assert a.repeats.hits == 5
    rng = random.Random(3)
    # A mutated repeat never yields an event the full decoder would not (fresh adapters, so
    # the rejection counters compare too).
    for _ in range(2000):
        b = bytearray(base)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        pkt = bytes(b)
        f, s = _adapter(True), _adapter(False)
        _run(f, [(base, "10.0.0.1")])
        _run(s, [(base, "10.0.0.1")])
        assert _run(f, [(pkt, "10.0.0.1")])[0] == _run(s, [(pkt, "10.0.0.1")])[0]


@pytest.mark.parametrize("relay_first", [True, False])
def test_relay_named_device_is_remembered_per_bytes(relay_first: bool) -> None:
    a = _adapter(True)
    pkt = _trap(5, 2, b"x", relay="10.0.0.9")
    # First seen from the relay whose address equals the named one, then from another relay.
    peers = ["10.0.0.9", "10.0.0.1"] if relay_first else ["10.0.0.1", "10.0.0.9"]
    got = _run(a, [(pkt, p) for p in peers])
    assert [g[0][0] for g in got] == ["10.0.0.9", "10.0.0.9"]


def test_repeat_from_an_untrusted_peer_does_not_inherit_the_relay_named_device() -> None:
    """A trap first forwarded by a trusted relay, then sent byte-for-byte by an untrusted
    peer: the fast path must not hand the second the relay's named device."""
    a = _adapter(True, ("10.0.0.9/32",))
    pkt = _trap(5, 2, b"x", relay="192.0.2.7")
    got = _run(a, [(pkt, "10.0.0.9"), (pkt, "10.0.0.66"), (pkt, "10.0.0.9")])
    assert [g[0][0] for g in got] == ["192.0.2.7", "10.0.0.66", "192.0.2.7"]
    assert a.counters["untrusted.trap_address_untrusted"] == 1


def test_the_cache_rests_while_nothing_repeats_and_wakes_again() -> None:
    """All-distinct traffic gains nothing from the repeat cache and pays for each split and
    entry: after ``idle_after`` misses in a row it rests for ``rest_for`` packets (full decode,
    same events), then serves repeats again."""
    a, slow = _adapter(True), _adapter(False)
    assert a.repeats is not None
    a.repeats.idle_after, a.repeats.rest_for = 50, 20
    distinct = [(_trap(10_000 + i, 1 + i % 4, b"eth%d" % i, req=i + 1), "10.0.0.1") for i in range(50)]
    assert _run(a, distinct) == _run(slow, distinct)
    assert a.repeats.rests == 1 and a.repeats.resting == 20
    stored = len(a.repeats)
    again = [(_trap(7, 2, b"eth2", req=900 + i), "10.0.0.1") for i in range(25)]  # one trap, 25 times
    assert _run(a, again) == _run(slow, again)
    # 20 decoded in full while resting (nothing looked up, nothing stored), then one miss
    # that stores it, then hits.
    assert a.repeats.resting == 0 and len(a.repeats) == stored + 1 and a.repeats.hits == 4
    assert dict(a.counters) == dict(slow.counters)
