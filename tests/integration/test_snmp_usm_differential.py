"""The lean USM path against pysnmp's, on the same datagrams.

net-snmp's snmptrap and snmpinform produce the packets (every auth × priv combination,
wrong keys, replays, the discovery exchange); each datagram, and truncations and random
mutations of it, goes through ``LeanV3Processor`` and through the pysnmp ``V3Processor``
it carries (``.reference``: same users, same engine ID and boots), and the outcomes must
be the same: the accepted notification field for field, or the same rejection reason
with a Report of the same kind. The one intended difference (replayed traps) is tested
as such.
"""

from __future__ import annotations

import select
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message

from adapters.snmp.usm import LeanV3Processor
from adapters.snmp.v3 import UsmUser, V3DecodeError, V3Processor, V3Result
from tests.integration.test_snmp_v3 import (
    AUTH_KEY,
    COMBOS,
    LINK_DOWN,
    PRIV_KEY,
    SENDER_ENGINE,
    VARBINDS,
    Receiver,
    make_user,
    user_name,
    usm_args,
)

pytestmark = pytest.mark.skipif(
    shutil.which("snmptrap") is None or shutil.which("snmpinform") is None,
    reason="net-snmp command line tools (snmptrap, snmpinform) are not installed",
)

PEER = ("127.0.0.1", 40000)


def _report_summary(report: bytes | None) -> Any:
    """What a Report says: security level bits, user, and the usmStats counter it names."""
    if report is None:
        return None
    msg, _ = decoder.decode(report, asn1Spec=SNMPv3Message())
    flags = msg["msgGlobalData"]["msgFlags"].asNumbers()[0]
    data = msg["msgData"]
    assert data.getName() == "plaintext", "a Report is never encrypted"
    pdu = data["plaintext"]["data"].getComponent()
    [vb] = list(pdu["variable-bindings"])
    return flags & 0x03, tuple(vb["name"].asTuple())


def outcome(proc: Any, data: bytes) -> Any:
    """A comparable summary of what a processor made of one datagram."""
    try:
        r: V3Result = proc.process(data, PEER)
    except V3DecodeError as e:
        return ("rejected", e.reason, _report_summary(e.report))
    m = r.message
    msg = None if m is None else (m.version, m.community, m.pdu_type, m.request_id, m.varbinds)
    answer = None
    if r.message is None and r.respond is not None:
        answer = _report_summary(r.respond())
    return ("accepted", msg, r.user, r.engine_id, r.security_level, r.learned, r.respond is None, answer)


def both(lean: LeanV3Processor, data: bytes) -> tuple[Any, Any]:
    before = lean.stats.fallback
    a = outcome(lean, data)
    took_lean = lean.stats.fallback == before
    b = outcome(lean.reference, data)
    return (a, took_lean), b


def capture(home: Path, tool: str, args: Sequence[str], answerer: V3Processor | None = None,
            varbinds: Sequence[str] = VARBINDS) -> list[bytes]:
    """Run a net-snmp tool against a socket; return every datagram it sent.

    With ``answerer`` the datagrams are answered through it (discovery, INFORM
    Response), so snmpinform goes through its whole exchange.
    """
    recv = Receiver(home)
    out: list[bytes] = []
    argv = [tool, *args]
    if tool == "snmpinform":
        argv += ["-r", "0", "-t", "1"]
    argv += [f"127.0.0.1:{recv.port}", "", LINK_DOWN, *varbinds]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=recv.env)
    deadline = time.monotonic() + 15
    try:
        while True:
            done = proc.poll() is not None
            ready, _, _ = select.select([recv.sock], [], [], 0.0 if done else 0.05)
            if not ready:
                if done or time.monotonic() > deadline:
                    break
                continue
            data, peer = recv.sock.recvfrom(65535)
            out.append(data)
            if answerer is None:
                continue
            try:
                res = answerer.process(data, peer)
            except V3DecodeError as e:
                if e.report is not None:
                    recv.sock.sendto(e.report, peer)
                continue
            if res.respond is not None:
                ans = res.respond()
                if ans is not None:
                    recv.sock.sendto(ans, peer)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        recv.close()
    return out


def lean_for_all(path: Path, **kw: Any) -> LeanV3Processor:
    return LeanV3Processor([make_user(*c, engine_ids=(SENDER_ENGINE,)) for c in COMBOS], path, **kw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    """net-snmp's own datagrams: a trap and an INFORM exchange for every combination."""
    home = tmp_path_factory.mktemp("netsnmp")
    engine_path = tmp_path_factory.mktemp("engine") / "engine-id"
    answerer = lean_for_all(engine_path)
    out: dict[str, list[bytes]] = {"engine": [engine_path.read_bytes()]}
    for combo in COMBOS:
        user = user_name(*combo)
        tag = "-".join(x for x in combo if x)
        out["trap-" + tag] = capture(home, "snmptrap", [*usm_args(user, *combo), "-e", SENDER_ENGINE])
        out["inform-" + tag] = capture(home, "snmpinform", usm_args(user, *combo), answerer)
    out["wrong-auth"] = capture(
        home, "snmptrap", [*usm_args(user_name(*SHA_AES), *SHA_AES, auth_key="wrongpass99"), "-e", SENDER_ENGINE]
    )
    out["wrong-priv"] = capture(
        home, "snmptrap", [*usm_args(user_name(*SHA_AES), *SHA_AES, priv_key="wrongpass99"), "-e", SENDER_ENGINE]
    )
    out["unknown-user-inform"] = capture(home, "snmpinform", usm_args("nobody", *SHA_AES), answerer)
    out["wrong-auth-inform"] = capture(
        home, "snmpinform", usm_args(user_name(*SHA_AES), *SHA_AES, auth_key="wrongpass99"), answerer
    )
    out["wrong-priv-inform"] = capture(
        home, "snmpinform", usm_args(user_name(*SHA_AES), *SHA_AES, priv_key="wrongpass99"), answerer
    )
    out["downgrade-inform"] = capture(
        home, "snmpinform", usm_args(user_name(*SHA_AES), "authNoPriv", "SHA", None), answerer
    )
    return out


SHA_AES = ("authPriv", "SHA", "AES")


def _pair(tmp_path: Path, corpus: dict[str, list[bytes]]) -> LeanV3Processor:
    """A lean processor (and its pysnmp reference) on the corpus's engine ID, one boot later."""
    path = tmp_path / "engine-id"
    path.write_bytes(corpus["engine"][0])
    return lean_for_all(path)


def test_every_packet_gives_the_same_result(tmp_path: Path, corpus: dict[str, list[bytes]]) -> None:
    lean = _pair(tmp_path, corpus)
    # A restart in between: INFORMs carry the previous boot count, so both must refuse them
    # (not in time window, with an authNoPriv Report) until the sender resynchronises.
    compared = 0
    for name, packets in corpus.items():
        if name == "engine":
            continue
        assert packets, name
        for data in packets:
            (a, took_lean), b = both(lean, data)
            assert a == b, (name, data.hex())
            compared += 1
            if name.startswith("trap-"):
                assert took_lean, name
    assert compared > 2 * len(COMBOS)


def test_same_boot_informs_are_accepted_by_both(tmp_path: Path) -> None:
    """INFORMs captured while the pair is up (same boot): accepted alike, lean path taken."""
    lean = lean_for_all(tmp_path / "engine-id")
    home = tmp_path / "netsnmp"
    for combo in COMBOS:
        user = user_name(*combo)
        packets = capture(home, "snmpinform", usm_args(user, *combo), lean)
        assert len(packets) == 2, combo  # discovery probe, then the INFORM answered at once
        fallback = lean.stats.fallback
        for data in packets:
            (a, _), b = both(lean, data)
            assert a == b, combo
        assert lean.stats.fallback == fallback, combo
        assert a[0] == "accepted" and a[1][2] == 0xA6


def test_wrong_keys_and_unknown_users(tmp_path: Path, corpus: dict[str, list[bytes]]) -> None:
    lean = _pair(tmp_path, corpus)
    reasons = {}
    for name in ("wrong-auth", "wrong-priv"):
        [data] = corpus[name]
        (a, took_lean), b = both(lean, data)
        assert a == b and took_lean
        reasons[name] = a[1]
    assert reasons == {"wrong-auth": "wrong_digest", "wrong-priv": "decryption_error"}


def test_truncations(tmp_path: Path, corpus: dict[str, list[bytes]]) -> None:
    lean = _pair(tmp_path, corpus)
    for name in ("trap-authPriv-SHA-256-AES", "trap-authPriv-MD5-DES", "trap-noAuthNoPriv", "inform-authPriv-SHA-AES"):
        for data in corpus[name]:
            for cut in range(len(data)):
                (a, _), b = both(lean, data[:cut])
                assert a == b, (name, cut)


MUTATED = ["trap-authPriv-SHA-256-AES", "trap-authNoPriv-SHA-512", "trap-noAuthNoPriv", "trap-authPriv-SHA-AES-256",
           "inform-authPriv-MD5-DES", "inform-noAuthNoPriv"]


@settings(
    max_examples=300,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: the failing bytes are printed as is
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    which=st.sampled_from(MUTATED),
    edits=st.lists(
        st.tuples(st.sampled_from(["flip", "set", "insert", "delete"]), st.integers(0, 10_000), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    ),
)
def test_mutations(tmp_path: Path, mutation_pair: _Holder, which: str,
                   edits: list[Any]) -> None:
    lean, corpus = mutation_pair.pair
    # The corpus's traps come from successive snmptrap runs (one engine ID, rising boots):
    # forget the sender's clock so each example stands alone (replays are tested apart).
    lean._timelines.clear()
    data = bytearray(corpus[which][-1])
    for op, pos, val in edits:
        if not data:
            break
        i = pos % len(data)
        if op == "flip":
            data[i] ^= 1 << (val % 8)
        elif op == "set":
            data[i] = val
        elif op == "insert":
            data.insert(i, val)
        else:
            del data[i]
    (a, _), b = both(lean, bytes(data))
    assert a == b, bytes(data).hex()


class _Holder:
    """Keeps the corpus out of hypothesis's failure report (it would print all of it)."""

    def __init__(self, pair: tuple[LeanV3Processor, dict[str, list[bytes]]]) -> None:
        self.pair = pair

    def __repr__(self) -> str:
        return "<lean/pysnmp pair>"


@pytest.fixture
def mutation_pair(tmp_path: Path, corpus: dict[str, list[bytes]]) -> _Holder:
    return _Holder((_pair(tmp_path, corpus), corpus))


def test_net_snmp_traps_stay_on_the_lean_path(tmp_path: Path, corpus: dict[str, list[bytes]]) -> None:
    """Every net-snmp trap of a supported combination stays on the lean path (no fallback)."""
    lean = _pair(tmp_path, corpus)
    for name, packets in corpus.items():
        if name.startswith("trap-"):
            for data in packets:
                lean.process(data, PEER)
    assert lean.stats.fallback == 0
    assert lean.stats.accepted == len(COMBOS)


def test_replayed_traps_outside_the_window(tmp_path: Path) -> None:
    """The one intended difference: pysnmp takes any authentic trap, the lean path applies
    RFC 3414 §3.2.7b per sender engine (older boots, or 150 s behind its clock: refused)."""
    lean = LeanV3Processor([UsmUser("r", "SHA-256", AUTH_KEY, "AES", PRIV_KEY, engine_ids=(SENDER_ENGINE,))],
                           tmp_path / "eid")
    home = tmp_path / "netsnmp"
    args = usm_args("r", "authPriv", "SHA-256", "AES") + ["-e", SENDER_ENGINE]
    [late] = capture(home, "snmptrap", [*args, "-Z", "5,1000"])
    [old] = capture(home, "snmptrap", [*args, "-Z", "5,800"])
    [older_boot] = capture(home, "snmptrap", [*args, "-Z", "4,5000"])
    [inside] = capture(home, "snmptrap", [*args, "-Z", "5,900"])
    assert lean.process(late, PEER).message is not None
    for data in (old, older_boot):
        with pytest.raises(V3DecodeError) as e:
            lean.process(data, PEER)
        assert e.value.reason == "not_in_time_window" and e.value.report is None
        assert lean.reference.process(data, PEER).message is not None  # pysnmp: accepted
    assert lean.process(inside, PEER).message is not None  # 100 s behind: inside the window
    assert lean.stats.fallback == 0


def test_unsupported_protocols_fall_back_and_are_counted(tmp_path: Path) -> None:
    """A user with a Reeder-extended AES key (AES-256-C) is pysnmp's: the packet still works."""
    lean = LeanV3Processor(
        [UsmUser("c", "SHA", AUTH_KEY, "aes-256-c", PRIV_KEY, engine_ids=(SENDER_ENGINE,))], tmp_path / "eid"
    )
    home = tmp_path / "netsnmp"
    [data] = capture(home, "snmptrap", usm_args("c", "authPriv", "SHA", "AES-256-C") + ["-e", SENDER_ENGINE])
    r = lean.process(data, PEER)
    assert r.message is not None and lean.stats.fallback == 1
    assert lean.stats.accepted == 1


def test_net_snmp_extends_aes_256_keys_as_blumenthal(tmp_path: Path) -> None:
    """net-snmp 5.9's ``-x AES-256`` key is the draft-blumenthal extension, not Reeder's."""
    home = tmp_path / "netsnmp"
    [data] = capture(home, "snmptrap", usm_args("b", "authPriv", "SHA", "AES-256") + ["-e", SENDER_ENGINE])
    blumenthal = LeanV3Processor(
        [UsmUser("b", "SHA", AUTH_KEY, "AES-256", PRIV_KEY, engine_ids=(SENDER_ENGINE,))], tmp_path / "e1"
    )
    reeder = V3Processor(
        [UsmUser("b", "SHA", AUTH_KEY, "aes-256-c", PRIV_KEY, engine_ids=(SENDER_ENGINE,))], tmp_path / "e2"
    )
    assert blumenthal.process(data, PEER).message is not None
    with pytest.raises(V3DecodeError) as e:
        reeder.process(data, PEER)
    assert e.value.reason == "decryption_error"
