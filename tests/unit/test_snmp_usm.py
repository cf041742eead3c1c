"""The lean USM path without the network: key vectors, timeliness and its hidden risks.

Datagrams are made by ``V3Sender`` (the lean encoder); that it speaks net-snmp's dialect is
shown by tests/integration/test_snmp_usm_differential.py and by the benchmark, whose
packets snmptrapd decodes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder
from pyasn1.type.univ import OctetString
from pysnmp.entity import config as pconfig
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
from pysnmp.proto.secmod.rfc3414.service import SnmpUSMSecurityModel, UsmSecurityParameters

from adapters.snmp import ber, usm
from adapters.snmp.ber import PDU_INFORM, TAG_OID, TAG_TIMETICKS, Typed
from adapters.snmp.receiver import inform_delivery_key, inform_key
from adapters.snmp.usm import (
    NOT_IN_TIME_WINDOWS,
    LeanV3Processor,
    V3Sender,
    extend_key_blumenthal,
    localize_key,
    password_to_key,
)
from adapters.snmp.v3 import UsmUser, V3DecodeError

SENDER = bytes.fromhex("8000000001020304")
USER = UsmUser("noc", "SHA-256", "authpass123", "AES", "privpass123", engine_ids=(SENDER.hex(),))
PEER = ("192.0.2.7", 162)


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def vbs(i: int = 1) -> list[tuple[str, object]]:
    return [
        ("1.3.6.1.2.1.1.3.0", Typed(TAG_TIMETICKS, 100 + i)),
        ("1.3.6.1.6.3.1.1.4.1.0", Typed(TAG_OID, "1.3.6.1.6.3.1.1.5.3")),
        (f"1.3.6.1.2.1.2.2.1.1.{i}", i),
    ]


# -- RFC 3414 Appendix A.3 ------------------------------------------------------------


def test_rfc3414_a3_1_md5_key_localization() -> None:
    ku = password_to_key(hashlib.md5, b"maplesyrup")
    assert ku.hex() == "9faf3283884e92834ebc9847d8edd963"
    kul = localize_key(hashlib.md5, ku, bytes.fromhex("000000000000000000000002"))
    assert kul.hex() == "526f5eed9fcce26f8964c2930787d82b"


def test_rfc3414_a3_2_sha_key_localization() -> None:
    ku = password_to_key(hashlib.sha1, b"maplesyrup")
    assert ku.hex() == "9fb5cc0381497b3793528939ff788d5d79145211"
    kul = localize_key(hashlib.sha1, ku, bytes.fromhex("000000000000000000000002"))
    assert kul.hex() == "6695febc9288e36282235fc7151f128497b38f3f"


def test_blumenthal_extension_matches_pysnmp() -> None:
    engine = bytes.fromhex("000000000000000000000002")
    kul = localize_key(hashlib.sha1, password_to_key(hashlib.sha1, b"maplesyrup"), engine)
    ours = extend_key_blumenthal(hashlib.sha1, kul, 32)
    blumenthal = SnmpUSMSecurityModel.PRIV_SERVICES[pconfig.USM_PRIV_CFB256_AES_BLUMENTHAL]
    master = blumenthal.hash_passphrase(pconfig.USM_AUTH_HMAC96_SHA, b"maplesyrup")
    theirs = bytes(blumenthal.localize_key(pconfig.USM_AUTH_HMAC96_SHA, master, OctetString(engine)))
    assert ours == theirs
    assert ours[:20] == kul and ours[20:] == hashlib.sha1(kul).digest()[:12]


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "priv"),
    [("none", "none"), ("MD5", "none"), ("SHA-224", "none"), ("MD5", "DES"), ("SHA", "AES"),
     ("SHA-384", "AES-192"), ("SHA-512", "AES-256")],
)
def test_sender_and_lean_agree_and_pysnmp_too(tmp_path: Path, auth: str, priv: str) -> None:
    user = UsmUser("u", auth, "authpass123" if auth != "none" else None, priv,
                   "privpass123" if priv != "none" else None, engine_ids=(SENDER.hex(),))
    lean = LeanV3Processor([user], tmp_path / "eid")
    data = V3Sender(user, SENDER).encode(vbs(), boots=3, eng_time=50, msg_id=9, request_id=77)
    r = lean.process(data, PEER)
    assert r.message is not None and r.message.request_id == 77
    assert r.message.varbinds[2] == ("1.3.6.1.2.1.2.2.1.1.1", 1)
    assert lean.reference.process(data, PEER).message == r.message  # pysnmp reads it alike
    assert lean.stats.fallback == 0


# -- timeliness (RFC 3414 §3.2.7b) and the hidden risks --------------------------------


def make(tmp_path: Path, clock: Clock | None = None, **kw: object) -> LeanV3Processor:
    return LeanV3Processor([USER], tmp_path / "eid", clock=clock or Clock(), **kw)  # type: ignore[arg-type]


def reason(lean: LeanV3Processor, data: bytes) -> str:
    with pytest.raises(V3DecodeError) as e:
        lean.process(data, PEER)
    return e.value.reason


def test_replay_outside_the_window_is_refused(tmp_path: Path) -> None:
    clock = Clock()
    lean = make(tmp_path, clock)
    s = V3Sender(USER, SENDER)
    first = s.encode(vbs(1), boots=5, eng_time=1000, msg_id=1, request_id=1)
    assert lean.process(first, PEER).message is not None
    assert lean.process(s.encode(vbs(2), boots=5, eng_time=851, msg_id=2, request_id=2), PEER).message
    assert reason(lean, s.encode(vbs(3), boots=5, eng_time=849, msg_id=3, request_id=3)) == "not_in_time_window"
    clock.t += 200  # the sender's clock has moved on by 200 s too: the first trap is now stale
    assert reason(lean, first) == "not_in_time_window"
    assert lean.stats.rejected == {"not_in_time_window": 2}


def test_boots_rollover_and_reboots(tmp_path: Path) -> None:
    lean = make(tmp_path)
    s = V3Sender(USER, SENDER)
    assert lean.process(s.encode(vbs(), boots=7, eng_time=5000, msg_id=1, request_id=1), PEER).message
    # A reboot: boots up, time back to 0 — accepted, and the older boot is refused from then on.
    assert lean.process(s.encode(vbs(), boots=8, eng_time=3, msg_id=2, request_id=2), PEER).message
    assert reason(lean, s.encode(vbs(), boots=7, eng_time=5001, msg_id=3, request_id=3)) == "not_in_time_window"
    # snmpEngineBoots at its latch value 2147483647: the engine must be re-keyed (RFC 3414 §2.2.2).
    latched = s.encode(vbs(), boots=2147483647, eng_time=1, msg_id=4, request_id=4)
    assert reason(lean, latched) == "not_in_time_window"
    assert reason(lean, s.encode(vbs(), boots=9, eng_time=1, msg_id=5, request_id=5)) == "not_in_time_window"


def test_our_clock_going_backwards(tmp_path: Path) -> None:
    clock = Clock(5000.0)
    lean = make(tmp_path, clock)
    s = V3Sender(USER, SENDER)
    assert lean.process(s.encode(vbs(), boots=1, eng_time=500, msg_id=1, request_id=1), PEER).message
    clock.t = 10.0  # an injected clock stepping back must not make old traps look fresh, nor fresh ones old
    assert lean.process(s.encode(vbs(), boots=1, eng_time=501, msg_id=2, request_id=2), PEER).message
    assert lean.process(s.encode(vbs(), boots=1, eng_time=400, msg_id=3, request_id=3), PEER).message
    assert reason(lean, s.encode(vbs(), boots=1, eng_time=300, msg_id=4, request_id=4)) == "not_in_time_window"
    assert lean.engine_time() == 0  # our own snmpEngineTime never goes negative


def test_unknown_engine_ids(tmp_path: Path) -> None:
    other = bytes.fromhex("80000000010a0b0c0d")
    s = V3Sender(USER, other)
    data = s.encode(vbs(), boots=1, eng_time=1, msg_id=1, request_id=1)
    assert reason(make(tmp_path / "a"), data) == "unknown_engine_id"
    learner = make(tmp_path / "b", learn_engine_ids=True, max_learned=1)
    bad = V3Sender(UsmUser("noc", "SHA-256", "wrongpass99", "AES", "privpass123"), other)
    assert reason(learner, bad.encode(vbs(), boots=1, eng_time=1, msg_id=1, request_id=1)) == "wrong_digest"
    assert not learner.learned and (other, b"noc") not in learner._keys  # nothing kept for a forgery
    r = learner.process(data, PEER)
    assert r.learned and learner.learned == {(other, "noc")}
    third = V3Sender(USER, bytes.fromhex("80000000010e0e0e0e")).encode(vbs(), boots=1, eng_time=1, msg_id=1,
                                                                        request_id=1)
    assert reason(learner, third) == "unknown_engine_id"  # the learning bound


def _report_of(data: bytes) -> tuple[int, int, int, tuple[int, ...]]:
    msg, _ = decoder.decode(data, asn1Spec=SNMPv3Message())
    usm, _ = decoder.decode(bytes(msg["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
    pdu = msg["msgData"]["plaintext"]["data"].getComponent()
    [vb] = list(pdu["variable-bindings"])
    return (msg["msgGlobalData"]["msgFlags"].asNumbers()[0], int(usm[1]), int(usm[2]), tuple(vb["name"].asTuple()))


def test_duplicate_inform_across_a_restart(tmp_path: Path) -> None:
    """An INFORM committed before a restart and resent after it: refused with a Report that
    carries the new boot count, then accepted once resent with it, under the same
    delivery key (so the store keeps one event and the sender gets its answer)."""
    path = tmp_path / "eid"
    before = LeanV3Processor([USER], path)
    s = V3Sender(USER, before.engine_id)
    sent = s.encode(vbs(), boots=before.engine_boots, eng_time=0, msg_id=1, request_id=4242, pdu_type=PDU_INFORM)
    first = before.process(sent, PEER)
    assert first.message is not None and first.respond is not None
    after = LeanV3Processor([USER], path)  # restart: same engine ID, boots + 1
    assert after.engine_boots == before.engine_boots + 1
    with pytest.raises(V3DecodeError) as e:
        after.process(sent, PEER)
    assert e.value.reason == "not_in_time_window" and e.value.report is not None
    flags, boots, _time, oid = _report_of(e.value.report)
    assert (flags & 3, boots, ".".join(map(str, oid))) == (1, after.engine_boots, NOT_IN_TIME_WINDOWS)
    resent = s.encode(vbs(), boots=boots, eng_time=_time, msg_id=2, request_id=4242, pdu_type=PDU_INFORM)
    second = after.process(resent, PEER)
    assert second.message is not None
    key = lambda r: inform_delivery_key("snmp", inform_key(PEER, r.message))  # noqa: E731
    assert key(first) == key(second)


def test_inform_response_is_authentic(tmp_path: Path) -> None:
    """Our Response decodes in pysnmp's message schema and answers the INFORM's request-id."""
    lean = make(tmp_path)
    s = V3Sender(USER, lean.engine_id)
    r = lean.process(s.encode(vbs(), boots=lean.engine_boots, eng_time=0, msg_id=5, request_id=99,
                              pdu_type=PDU_INFORM), PEER)
    assert r.respond is not None
    out = r.respond()
    assert out is not None and out == r.respond()
    msg, _ = decoder.decode(out, asn1Spec=SNMPv3Message())
    assert int(msg["msgGlobalData"]["msgID"]) == 5
    assert msg["msgGlobalData"]["msgFlags"].asNumbers()[0] == 3


def test_v3_engine_switch_and_counted_fallback(tmp_path: Path) -> None:
    from adapters.snmp.config import SnmpListenerConfig
    from adapters.snmp.receiver import SnmpAdapter
    from adapters.snmp.v3 import V3Processor
    from gateway.clock import SystemClock

    users = [{"user": "noc", "auth_protocol": "SHA-256", "auth_key": "authpass123", "priv_protocol": "AES-128",
              "priv_key": "privpass123", "engine_ids": ["0x" + SENDER.hex()]}]
    pysnmp_only = SnmpAdapter(SnmpListenerConfig(users=users, v3_engine="pysnmp"), SystemClock(),
                              state_dir=tmp_path / "a")
    assert type(pysnmp_only.v3) is V3Processor
    adapter = SnmpAdapter(SnmpListenerConfig(users=users), SystemClock(), state_dir=tmp_path / "b")
    assert type(adapter.v3) is LeanV3Processor
    s = V3Sender(USER, SENDER)
    plain: list[object] = []
    adapter._handle(s.encode(vbs(1), boots=1, eng_time=10, msg_id=1, request_id=1), PEER, 0.0, plain, [])
    # A trap with the reportable flag set is unusual: the lean path leaves it to pysnmp.
    odd = s.encode(vbs(2), boots=1, eng_time=11, msg_id=2, request_id=2, reportable=True)
    adapter._handle(odd, PEER, 0.0, plain, [])
    assert len(plain) == 2
    assert adapter.stats()["v3.fallback"] == 1 and adapter.stats()["decoded"] == 2


# -- the one-pass parsers against the field-by-field ones ------------------------------

_PARSED_FIELDS = ("msg_id", "flags", "engine_id", "boots", "eng_time", "user", "mac", "mac_at", "priv_params",
                  "scoped", "msgdata_at", "scoped_start", "scoped_end")


def _full_or_reason(fn: object, *args: object) -> object:
    try:
        return fn(*args)  # type: ignore[operator]
    except usm._Fallback:
        return "fallback"


def _encrypted_samples() -> list[bytes]:
    s = V3Sender(USER, SENDER)
    out = [s.encode(vbs(i), boots=1, eng_time=100 + i, msg_id=i, request_id=i) for i in range(1, 4)]
    big = [(f"1.3.6.1.4.1.9.{i}", b"x" * 60) for i in range(12)]  # a long-form msgData and outer length
    out.append(s.encode(vbs() + big, boots=2, eng_time=7, msg_id=2**31 - 1, request_id=-5))
    return out


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_one_pass_header_parser_agrees_with_the_full_one(data: st.DataObject) -> None:
    """Every datagram the one-pass parser takes, the field-by-field parser reads the same;
    mutated and truncated ones included (the one-pass parser may decline, never differ)."""
    base = data.draw(st.sampled_from(_encrypted_samples()))
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(0, len(buf) - 1))
        buf[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.just(len(buf)), st.integers(1, len(buf))))  # whole datagrams often
    d = bytes(buf[:cut])
    fast = usm._parse_common(d)
    if fast is None:
        return
    full = _full_or_reason(usm._parse_full, d)
    assert full != "fallback", d.hex()
    assert [getattr(fast, f) for f in _PARSED_FIELDS] == [getattr(full, f) for f in _PARSED_FIELDS]


def _scoped_samples() -> list[bytes]:
    out = []
    for i, pdu_type in enumerate((0xA7, PDU_INFORM, 0xA7)):
        extra = [(f"1.3.6.1.4.1.9.{k}", b"y" * 40) for k in range(4 * i)]  # short, 0x81 and 0x82 lengths
        vb = ber._encode_varbinds(vbs(i) + extra, True)
        pdu = ber._tlv(pdu_type, ber._int_tlv(0x02, 1000 - 700 * i) + b"\x02\x01\x00\x02\x01\x00" + vb)
        out.append(ber._tlv(0x30, ber._tlv(0x04, SENDER) + ber._tlv(0x04, b"ctx" * i) + pdu) + bytes(i * 5))
    return out


_SCOPED_FIELDS = ("context_engine", "context_name", "pdu_type", "request_id", "varbinds", "vb_raw")


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_one_pass_scoped_parser_agrees_with_the_full_one(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(_scoped_samples()))
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(0, len(buf) - 1))
        buf[at] = data.draw(st.integers(0, 255))
    d = bytes(buf[: data.draw(st.one_of(st.just(len(buf)), st.integers(1, len(buf))))])
    fast = usm._scoped_common(d, len(d), True, usm._NOTIFICATIONS)
    if fast is None:
        return
    full = _full_or_reason(usm._parse_scoped, d, 0, len(d), True)
    assert full != "fallback", d.hex()
    assert [getattr(fast, f) for f in _SCOPED_FIELDS] == [getattr(full, f) for f in _SCOPED_FIELDS]


def test_one_pass_parsers_take_the_usual_messages() -> None:
    """The common layouts really take the one-pass path, and read as the full parsers do."""
    for d in _encrypted_samples():
        fast, full = usm._parse_common(d), usm._parse_full(d)
        assert fast is not None
        assert [getattr(fast, f) for f in _PARSED_FIELDS] == [getattr(full, f) for f in _PARSED_FIELDS]
    for d in _scoped_samples():
        sfast, sfull = usm._scoped_common(d, len(d), True, usm._NOTIFICATIONS), usm._parse_scoped(d, 0, len(d), True)
        assert sfast is not None
        assert [getattr(sfast, f) for f in _SCOPED_FIELDS] == [getattr(sfull, f) for f in _SCOPED_FIELDS]
