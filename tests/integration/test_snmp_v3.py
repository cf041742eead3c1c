"""SNMPv3 USM processing against net-snmp's snmptrap and snmpinform on loopback."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adapters.snmp.ber import PDU_INFORM, PDU_TRAP_V2
from adapters.snmp.v3 import (
    UsmUser,
    V3DecodeError,
    V3Processor,
    V3Result,
    load_or_create_engine_id,
    parse_engine_id,
)

pytestmark = pytest.mark.skipif(
    shutil.which("snmptrap") is None or shutil.which("snmpinform") is None,
    reason="net-snmp command line tools (snmptrap, snmpinform) are not installed",
)

SENDER_ENGINE = "0x8000000001020304"
AUTH = ["MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512"]
PRIV = ["DES", "AES", "AES-192", "AES-256"]  # the -x names net-snmp 5.9 accepts
AUTH_KEY = "authpass123"
PRIV_KEY = "privpass123"

LINK_DOWN = "1.3.6.1.6.3.1.1.5.3"
TRAP_OID_0 = "1.3.6.1.6.3.1.1.4.1.0"
VARBINDS = ["1.3.6.1.2.1.2.2.1.1.7", "i", "7", "1.3.6.1.2.1.2.2.1.2.7", "s", "eth7"]

COMBOS: list[tuple[str, str | None, str | None]] = (
    [("noAuthNoPriv", None, None)]
    + [("authNoPriv", a, None) for a in AUTH]
    + [("authPriv", a, p) for a in AUTH for p in PRIV]
)


def user_name(level: str, auth: str | None, priv: str | None) -> str:
    return "_".join(x for x in ("u", level, auth, priv) if x).replace("-", "")


def make_user(level: str, auth: str | None, priv: str | None, **kw: object) -> UsmUser:
    return UsmUser(
        user_name(level, auth, priv),
        auth_protocol=auth or "none",
        auth_key=AUTH_KEY if auth else None,
        priv_protocol=priv or "none",
        priv_key=PRIV_KEY if priv else None,
        **kw,  # type: ignore[arg-type]
    )


def usm_args(
    user: str,
    level: str,
    auth: str | None,
    priv: str | None,
    *,
    auth_key: str = AUTH_KEY,
    priv_key: str = PRIV_KEY,
) -> list[str]:
    args = ["-v", "3", "-u", user, "-l", level]
    if auth:
        args += ["-a", auth, "-A", auth_key]
    if priv:
        args += ["-x", priv, "-X", priv_key]
    return args


@dataclass
class Exchange:
    """What one run of a net-snmp tool produced on our side."""

    rc: int
    stderr: str
    results: list[V3Result] = field(default_factory=list)
    errors: list[V3DecodeError] = field(default_factory=list)

    @property
    def messages(self) -> list:
        return [r.message for r in self.results if r.message is not None]


class Receiver:
    """A UDP socket on loopback answered through a V3Processor, the way the gateway does."""

    def __init__(self, home: Path) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.home = home
        conf = home / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "snmp.conf").write_text("mibs :\n")
        # Keep net-snmp away from the user's and the system's configuration and state.
        self.env = dict(os.environ, SNMP_PERSISTENT_DIR=str(home / "state"), SNMPCONFPATH=str(conf))

    def close(self) -> None:
        self.sock.close()

    def exchange(
        self,
        processor: V3Processor,
        tool: str,
        args: Sequence[str],
        *,
        trap_oid: str = LINK_DOWN,
        varbinds: Sequence[str] = VARBINDS,
        answer: Callable[[V3Result], bytes | None] | None = None,
        timeout: float = 15.0,
    ) -> Exchange:
        """Run ``tool`` against our socket and answer it until it exits."""
        argv = [tool, *args]
        if tool == "snmpinform":
            argv += ["-r", "1", "-t", "1"]
        argv += [f"127.0.0.1:{self.port}", "", trap_oid, *varbinds]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        ex = Exchange(rc=-1, stderr="")
        deadline = time.monotonic() + timeout
        try:
            while True:
                done = proc.poll() is not None
                ready, _, _ = select.select([self.sock], [], [], 0.0 if done else 0.05)
                if not ready:
                    if done:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{tool} did not finish")
                    continue
                data, peer = self.sock.recvfrom(65535)
                try:
                    result = processor.process(data, peer)
                except V3DecodeError as exc:
                    ex.errors.append(exc)
                    if exc.report is not None:
                        self.sock.sendto(exc.report, peer)
                    continue
                ex.results.append(result)
                if result.respond is not None:
                    out = answer(result) if answer is not None else result.respond()
                    if out is not None:
                        self.sock.sendto(out, peer)
        finally:
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate()
        ex.rc = proc.returncode
        ex.stderr = err
        return ex


@pytest.fixture
def receiver(tmp_path: Path):
    r = Receiver(tmp_path / "netsnmp")
    yield r
    r.close()


@pytest.fixture(scope="module")
def all_users(tmp_path_factory: pytest.TempPathFactory) -> V3Processor:
    """One processor holding a user for every level and protocol pair."""
    path = tmp_path_factory.mktemp("engine") / "engine-id"
    return V3Processor([make_user(*c, engine_ids=(SENDER_ENGINE,)) for c in COMBOS], path)


def assert_link_down(msg, user: str, pdu_type: int) -> None:
    assert msg.version == 3
    assert msg.community == user.encode()
    assert msg.pdu_type == pdu_type
    vb = dict(msg.varbinds)
    assert msg.varbinds[0][0] == "1.3.6.1.2.1.1.3.0"
    assert vb[TRAP_OID_0] == LINK_DOWN
    assert vb["1.3.6.1.2.1.2.2.1.1.7"] == 7
    assert vb["1.3.6.1.2.1.2.2.1.2.7"] == b"eth7"


def _id(c: tuple[str, str | None, str | None]) -> str:
    return "-".join(x for x in c if x)


@pytest.mark.parametrize("combo", COMBOS, ids=_id)
def test_trap_every_level_and_protocol(receiver: Receiver, all_users: V3Processor, combo) -> None:
    user = user_name(*combo)
    ex = receiver.exchange(all_users, "snmptrap", [*usm_args(user, *combo), "-e", SENDER_ENGINE])
    assert ex.rc == 0, ex.stderr
    assert not ex.errors, [str(e) for e in ex.errors]
    [result] = ex.results
    assert result.respond is None
    assert result.user == user
    assert result.engine_id == parse_engine_id(SENDER_ENGINE)
    assert result.security_level == combo[0]
    assert_link_down(result.message, user, PDU_TRAP_V2)


@pytest.mark.parametrize("combo", COMBOS, ids=_id)
def test_inform_every_level_and_protocol(receiver: Receiver, all_users: V3Processor, combo) -> None:
    user = user_name(*combo)
    ex = receiver.exchange(all_users, "snmpinform", usm_args(user, *combo))
    assert ex.rc == 0, ex.stderr  # snmpinform got our Response
    assert not ex.errors, [str(e) for e in ex.errors]
    discovery = [r for r in ex.results if r.message is None]
    assert discovery and all(r.respond is not None for r in discovery)
    [msg] = ex.messages
    assert_link_down(msg, user, PDU_INFORM)
    [inform] = [r for r in ex.results if r.message is not None]
    assert inform.engine_id == all_users.engine_id
    assert inform.security_level == combo[0]


def test_value_mapping(receiver: Receiver, all_users: V3Processor) -> None:
    combo = ("authPriv", "SHA", "AES")
    varbinds = [
        "1.2.3.1", "i", "-7",
        "1.2.3.2", "u", "4294967295",
        "1.2.3.3", "c", "123",
        "1.2.3.4", "t", "500",
        "1.2.3.5", "a", "192.168.1.1",
        "1.2.3.6", "o", "1.3.6.1.4.1.9",
        "1.2.3.7", "s", "",
        "1.2.3.8", "x", "00ff",
        "1.2.3.9", "n", "",
        "1.2.3.10", "C", "12345678901234",
    ]  # fmt: skip
    ex = receiver.exchange(
        all_users, "snmptrap", [*usm_args(user_name(*combo), *combo), "-e", SENDER_ENGINE], varbinds=varbinds
    )
    assert ex.rc == 0, ex.stderr
    [msg] = ex.messages
    assert msg.varbinds[2:] == [
        ("1.2.3.1", -7),
        ("1.2.3.2", 4294967295),
        ("1.2.3.3", 123),
        ("1.2.3.4", 500),
        ("1.2.3.5", "192.168.1.1"),
        ("1.2.3.6", "1.3.6.1.4.1.9"),
        ("1.2.3.7", b""),
        ("1.2.3.8", b"\x00\xff"),
        ("1.2.3.9", None),
        ("1.2.3.10", 12345678901234),
    ]
    assert msg.enterprise is None and msg.generic_trap is None and msg.timestamp is None


# -- rejections -------------------------------------------------------------------------

SHA_AES = ("authPriv", "SHA", "AES")


def trap_error(receiver: Receiver, processor: V3Processor, args: list[str]) -> V3DecodeError:
    ex = receiver.exchange(processor, "snmptrap", args)
    assert ex.rc == 0, ex.stderr
    assert not ex.results
    [err] = ex.errors
    return err


def test_wrong_auth_key(receiver: Receiver, all_users: V3Processor) -> None:
    args = usm_args(user_name(*SHA_AES), *SHA_AES, auth_key="wrongpass99") + ["-e", SENDER_ENGINE]
    err = trap_error(receiver, all_users, args)
    assert err.reason == "wrong_digest"
    assert err.report is None
    assert err.peer and err.peer.startswith("127.0.0.1:")


def test_wrong_priv_key(receiver: Receiver, all_users: V3Processor) -> None:
    args = usm_args(user_name(*SHA_AES), *SHA_AES, priv_key="wrongpass99") + ["-e", SENDER_ENGINE]
    assert trap_error(receiver, all_users, args).reason == "decryption_error"


def test_unknown_user_trap(receiver: Receiver, all_users: V3Processor) -> None:
    args = usm_args("nobody", *SHA_AES) + ["-e", SENDER_ENGINE]
    assert trap_error(receiver, all_users, args).reason == "unknown_user"


def test_unknown_user_inform_gets_a_report(receiver: Receiver, all_users: V3Processor) -> None:
    ex = receiver.exchange(all_users, "snmpinform", usm_args("nobody", *SHA_AES))
    assert ex.rc != 0
    assert "nknown user" in ex.stderr  # net-snmp read our usmStatsUnknownUserNames report
    assert [e.reason for e in ex.errors] == ["unknown_user"]
    assert ex.errors[0].report is not None


def test_downgraded_security_level_trap(receiver: Receiver, all_users: V3Processor) -> None:
    # The authPriv user may not send authNoPriv (nor noAuthNoPriv) traps.
    user = user_name(*SHA_AES)
    for level, auth in (("authNoPriv", "SHA"), ("noAuthNoPriv", None)):
        err = trap_error(receiver, all_users, usm_args(user, level, auth, None) + ["-e", SENDER_ENGINE])
        assert err.reason == "unsupported_security_level"


def test_downgraded_security_level_inform(receiver: Receiver, all_users: V3Processor) -> None:
    ex = receiver.exchange(all_users, "snmpinform", usm_args(user_name(*SHA_AES), "authNoPriv", "SHA", None))
    assert ex.rc != 0
    assert "unsupported_security_level" in [e.reason for e in ex.errors]
    assert not ex.messages


def test_unknown_engine_id_without_learning(receiver: Receiver, all_users: V3Processor) -> None:
    args = usm_args(user_name(*SHA_AES), *SHA_AES) + ["-e", "0x80000000010A0B0C0D"]
    err = trap_error(receiver, all_users, args)
    assert err.reason == "unknown_engine_id"


def test_learning_engine_ids(receiver: Receiver, tmp_path: Path) -> None:
    proc = V3Processor(
        [UsmUser("learner", "SHA-256", AUTH_KEY, "AES-256", PRIV_KEY)],
        tmp_path / "eid",
        learn_engine_ids=True,
    )
    args = usm_args("learner", "authPriv", "SHA-256", "AES-256")
    engine = "0x800000000105060708"
    # A wrong key from a new engine ID teaches nothing.
    bad = receiver.exchange(
        proc,
        "snmptrap",
        usm_args("learner", "authPriv", "SHA-256", "AES-256", auth_key="wrongpass99") + ["-e", engine],
    )
    assert [e.reason for e in bad.errors] == ["wrong_digest"]
    assert proc.learned == frozenset()
    first = receiver.exchange(proc, "snmptrap", [*args, "-e", engine])
    second = receiver.exchange(proc, "snmptrap", [*args, "-e", engine])
    assert [r.learned for r in first.results + second.results] == [True, False]
    assert proc.learned == {(parse_engine_id(engine), "learner")}
    assert_link_down(second.messages[0], "learner", PDU_TRAP_V2)
    # Unknown users are still refused.
    err = trap_error(receiver, proc, usm_args("stranger", "authPriv", "SHA-256", "AES-256") + ["-e", engine])
    assert err.reason == "unknown_user"


def test_learning_limit(receiver: Receiver, tmp_path: Path) -> None:
    proc = V3Processor(
        [UsmUser("l", "SHA", AUTH_KEY)], tmp_path / "eid", learn_engine_ids=True, max_learned=1
    )
    args = usm_args("l", "authNoPriv", "SHA", None)
    assert receiver.exchange(proc, "snmptrap", [*args, "-e", "0x8000000001AAAAAA"]).results[0].learned
    err = trap_error(receiver, proc, [*args, "-e", "0x8000000001BBBBBB"])
    assert err.reason == "unknown_engine_id"


def test_several_users_same_name_per_engine(receiver: Receiver, tmp_path: Path) -> None:
    proc = V3Processor(
        [
            UsmUser("ops", "SHA", "firstpass11", engine_ids=("0x8000000001111111",)),
            UsmUser("ops", "MD5", "secondpass22", engine_ids=("0x8000000001222222",)),
        ],
        tmp_path / "eid",
    )
    a = receiver.exchange(
        proc,
        "snmptrap",
        usm_args("ops", "authNoPriv", "SHA", None, auth_key="firstpass11") + ["-e", "0x8000000001111111"],
    )
    b = receiver.exchange(
        proc,
        "snmptrap",
        usm_args("ops", "authNoPriv", "MD5", None, auth_key="secondpass22") + ["-e", "0x8000000001222222"],
    )
    assert len(a.messages) == len(b.messages) == 1
    # The first entry's credentials answer INFORMs.
    ex = receiver.exchange(
        proc, "snmpinform", usm_args("ops", "authNoPriv", "SHA", None, auth_key="firstpass11")
    )
    assert ex.rc == 0, ex.stderr


# -- INFORM response timing -------------------------------------------------------------


def test_inform_answered_only_when_respond_is_called(receiver: Receiver, tmp_path: Path) -> None:
    proc = V3Processor(
        [UsmUser("late", "SHA", AUTH_KEY, "AES", PRIV_KEY)], tmp_path / "eid", response_ttl=0.0
    )
    held: list[V3Result] = []

    def hold(result: V3Result) -> bytes | None:
        if result.message is None:
            return result.respond()  # discovery is answered at once
        held.append(result)
        return None  # "not committed yet"

    ex = receiver.exchange(proc, "snmpinform", usm_args("late", *SHA_AES), answer=hold)
    assert ex.rc != 0  # never acknowledged: the sender timed out after its retry
    assert len(held) == 2  # the original and one retry
    assert proc.stats.expired_responses >= 1
    assert held[0].respond() is None  # too late: its state was released


def test_inform_response_is_stable(receiver: Receiver, tmp_path: Path) -> None:
    proc = V3Processor([UsmUser("twice", "MD5", AUTH_KEY, "DES", PRIV_KEY)], tmp_path / "eid")
    responses: list[bytes | None] = []

    def twice(result: V3Result) -> bytes | None:
        first = result.respond()
        if result.message is not None:
            responses.extend([first, result.respond()])
        return first

    ex = receiver.exchange(proc, "snmpinform", usm_args("twice", "authPriv", "MD5", "DES"), answer=twice)
    assert ex.rc == 0, ex.stderr
    assert responses[0] and responses[0] == responses[1]


async def test_inside_a_running_event_loop(tmp_path: Path) -> None:
    proc = V3Processor([UsmUser("loop", "SHA-512", AUTH_KEY, "AES-192", PRIV_KEY)], tmp_path / "eid")
    recv = Receiver(tmp_path / "netsnmp")
    loop = asyncio.get_running_loop()
    recv.sock.setblocking(False)
    argv = ["snmpinform", *usm_args("loop", "authPriv", "SHA-512", "AES-192"), "-r", "1", "-t", "2"]
    argv += [f"127.0.0.1:{recv.port}", "", LINK_DOWN, *VARBINDS]
    tool = await asyncio.create_subprocess_exec(*argv, env=recv.env, stderr=asyncio.subprocess.PIPE)
    got = []
    try:
        while not got:
            data, peer = await asyncio.wait_for(loop.sock_recvfrom(recv.sock, 65535), 10)
            result = proc.process(data, peer)
            if result.message is not None:
                got.append(result.message)
                # why: stands for the commit: the answer goes out after the loop has run other work
                await asyncio.sleep(0.01)
            await loop.sock_sendto(recv.sock, result.respond(), peer)
        _, err = await asyncio.wait_for(tool.communicate(), 10)
    finally:
        if tool.returncode is None:
            tool.kill()
            await tool.wait()
        recv.close()
    assert tool.returncode == 0, err
    assert_link_down(got[0], "loop", PDU_INFORM)


# -- without the network ----------------------------------------------------------------


def tlv(tag: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes([tag, len(body)]) + body


def v3_message(flags: int, model: int = 3, sec: bytes | None = None) -> bytes:
    if sec is None:
        sec = tlv(
            0x30, tlv(4, b"") + tlv(2, b"\x00") + tlv(2, b"\x00") + tlv(4, b"") + tlv(4, b"") + tlv(4, b"")
        )
    header = tlv(
        0x30, tlv(2, b"\x01") + tlv(2, b"\x00\x80\x00") + tlv(4, bytes([flags])) + tlv(2, bytes([model]))
    )
    pdu = tlv(0xA7, tlv(2, b"\x01") + tlv(2, b"\x00") + tlv(2, b"\x00") + tlv(0x30, b""))
    return tlv(0x30, tlv(2, b"\x03") + header + tlv(4, sec) + tlv(0x30, tlv(4, b"") + tlv(4, b"") + pdu))


V2C_TRAP = tlv(
    0x30,
    tlv(2, b"\x01")
    + tlv(4, b"public")
    + tlv(0xA7, tlv(2, b"\x01") + tlv(2, b"\x00") + tlv(2, b"\x00") + tlv(0x30, b"")),
)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "malformed"),
        (b"\x30\x03\x02\x01", "malformed"),
        (b"garbage!", "malformed"),
        (V2C_TRAP, "unsupported_version"),
        (v3_message(0x00, model=1, sec=b""), "unsupported_security_model"),
        (v3_message(0x02), "malformed"),
        (v3_message(0x00, sec=b"\x30\x02\x04\x00"), "malformed"),
        (v3_message(0x00), "unknown_engine_id"),  # empty engine ID on an unreportable trap
    ],
    ids=[
        "empty",
        "truncated",
        "garbage",
        "v2c",
        "sec-model-1",
        "priv-without-auth",
        "short-usm",
        "trap-no-engine",
    ],
)
def test_malformed(all_users: V3Processor, data: bytes, reason: str) -> None:
    with pytest.raises(V3DecodeError) as info:
        all_users.process(data, ("192.0.2.1", 162))
    assert info.value.reason == reason


def test_engine_id_is_stable_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state" / "engine-id"
    a = V3Processor([UsmUser("x")], path)
    b = V3Processor([UsmUser("x")], path)
    assert a.engine_id == b.engine_id
    assert 5 <= len(a.engine_id) <= 32
    assert b.engine_boots == a.engine_boots + 1
    assert load_or_create_engine_id(path) == (a.engine_id, a.engine_boots + 2)


def test_corrupt_engine_id_file_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "engine-id"
    path.write_text("not hex\n")
    with pytest.raises(ValueError):
        V3Processor([UsmUser("x")], path)
    assert path.read_text() == "not hex\n"


@pytest.mark.parametrize(
    "user",
    [
        UsmUser("u", "SHA-1024", AUTH_KEY),
        UsmUser("u", "SHA", AUTH_KEY, "BLOWFISH", PRIV_KEY),
        UsmUser("u", "SHA", "short"),
        UsmUser("u", "SHA", None),
        UsmUser("u", "none", None, "AES", PRIV_KEY),
        UsmUser("u", "SHA", AUTH_KEY, "AES", "short"),
        UsmUser("u", engine_ids=("0x0102",)),
        UsmUser("u", engine_ids=("zz",)),
        UsmUser(""),
    ],
)
def test_invalid_users(tmp_path: Path, user: UsmUser) -> None:
    with pytest.raises(ValueError):
        V3Processor([user], tmp_path / "eid")
    assert not (tmp_path / "eid").exists()  # validated before the engine ID is touched


def test_duplicate_users(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        V3Processor([UsmUser("d"), UsmUser("d")], tmp_path / "eid")
    with pytest.raises(ValueError):
        V3Processor(
            [UsmUser("d", engine_ids=(SENDER_ENGINE,)), UsmUser("d", engine_ids=(SENDER_ENGINE,))],
            tmp_path / "eid",
        )


def test_from_config_reads_secret_values(tmp_path: Path) -> None:
    class Secret:
        def __init__(self, v: str) -> None:
            self._v = v

        def get_secret_value(self) -> str:
            return self._v

    class Cfg:
        user = "cfg"
        auth_protocol = "SHA-256"
        auth_key = Secret(AUTH_KEY)
        priv_protocol = "AES-128"
        priv_key = Secret(PRIV_KEY)
        engine_ids = (SENDER_ENGINE,)

    class Listener:
        users = (Cfg(),)
        learn_engine_ids = True

    proc = V3Processor.from_config(Listener(), tmp_path / "eid")
    assert proc.engine_id
    u = UsmUser.from_config(Cfg())
    assert (u.auth_key, u.priv_key, u.engine_ids, u.level) == (AUTH_KEY, PRIV_KEY, (SENDER_ENGINE,), 3)
