"""A lean SNMPv3 USM path for received TRAPs and INFORMs (RFC 3412 §7.2, RFC 3414 §3.2).

:class:`LeanV3Processor` has the interface of :class:`adapters.snmp.v3.V3Processor`
(pysnmp's USM) and handles the common case itself: a well-formed message of a user whose
protocols it knows is parsed with the BER helpers of :mod:`adapters.snmp.ber`, checked for
timeliness, authenticated with :mod:`hmac`, decrypted with ``cryptography`` and decoded
without pyasn1. Everything else (a BER encoding the strict parser does not take, a PDU
type other than a notification, a user with 3DES or a Reeder-extended AES key, an
INFORM whose security level does not match its user, a message with the reportable flag
on a trap) is handed to a pysnmp ``V3Processor`` built beside it, and counted in
``stats.fallback``.

Differences from pysnmp, on purpose:

* Traps (the sender is authoritative) get RFC 3414 §3.2.7b timeliness per sender engine:
  the engine's boots/time are cached when a message authenticates, and a message with
  older boots, or more than 150 s behind the sender's estimated clock, is rejected as
  ``not_in_time_window`` (pysnmp overwrites its cache with every authentic message, so it
  never rejects a replayed trap). The local clock is monotonic: a wall clock stepping
  back changes nothing.
* INFORM Responses are built here (same fields as pysnmp's) at ``respond`` time.

Key extension for AES-192/AES-256: net-snmp 5.9 ``-x AES-192``/``AES-256`` uses the
draft-blumenthal-aes-usm-04 extension (Kul' = Kul || H(Kul) || H(Kul || H(Kul)) ...),
which is what this module implements; the Reeder variant (``AES-192-C``/``AES-256-C``,
Cisco) stays with pysnmp.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from adapters.snmp import ber
from adapters.snmp.ber import PDU_INFORM, PDU_TRAP_V2, TrapMessage
from adapters.snmp.v3 import UsmUser, V3DecodeError, V3Processor, V3Result, V3Stats, parse_engine_id
from gateway.errors import DecodeError

__all__ = [
    "AUTH",
    "PRIV",
    "TIME_WINDOW",
    "LeanV3Processor",
    "V3Sender",
    "extend_key_blumenthal",
    "localize_key",
    "password_to_key",
]

#: RFC 3414 §3.2.7: seconds a message may lag the authoritative engine's clock.
TIME_WINDOW = 150
_BOOTS_MAX = 2147483647
_INT31 = 2147483647

#: auth name → (hash constructor, truncated MAC length) per RFC 3414 and RFC 7860.
AUTH: dict[str, tuple[Callable[..., Any], int]] = {
    "md5": (hashlib.md5, 12),
    "sha": (hashlib.sha1, 12),
    "sha1": (hashlib.sha1, 12),
    "sha-224": (hashlib.sha224, 16),
    "sha-256": (hashlib.sha256, 24),
    "sha-384": (hashlib.sha384, 32),
    "sha-512": (hashlib.sha512, 48),
}

#: priv name → (cipher, key length); AES-192/256 keys extended per draft-blumenthal.
PRIV: dict[str, tuple[str, int]] = {
    "des": ("des", 16),
    "aes": ("aes", 16),
    "aes-128": ("aes", 16),
    "aes-192": ("aes", 24),
    "aes-256": ("aes", 32),
}

_LEVEL_NAMES = {1: "noAuthNoPriv", 2: "authNoPriv", 3: "authPriv"}

# usmStats counters (SNMP-USER-BASED-SM-MIB), as Report varbind names.
_USM_STATS = "1.3.6.1.6.3.15.1.1."
UNSUPPORTED_SEC_LEVELS = _USM_STATS + "1.0"
NOT_IN_TIME_WINDOWS = _USM_STATS + "2.0"
UNKNOWN_USER_NAMES = _USM_STATS + "3.0"
UNKNOWN_ENGINE_IDS = _USM_STATS + "4.0"
WRONG_DIGESTS = _USM_STATS + "5.0"
DECRYPTION_ERRORS = _USM_STATS + "6.0"

_MAX_MESSAGE_SIZE = 65507
_ZEROS = {n: bytes(n) for n in (12, 16, 24, 32, 48)}


# -- keys (RFC 3414 §A.2, RFC 7860 §9.2) --------------------------------------------


def password_to_key(hash_new: Callable[..., Any], passphrase: bytes) -> bytes:
    """The user's master key Ku: the hash of 1 MiB of the repeated pass phrase."""
    if not passphrase:
        raise ValueError("empty pass phrase")
    n = 1048576
    stream = passphrase * (n // len(passphrase) + 1)
    return bytes(hash_new(memoryview(stream)[:n]).digest())


def localize_key(hash_new: Callable[..., Any], master: bytes, engine_id: bytes) -> bytes:
    """Kul = H(Ku || engineID || Ku)."""
    return bytes(hash_new(master + engine_id + master).digest())


def extend_key_blumenthal(hash_new: Callable[..., Any], key: bytes, size: int) -> bytes:
    """draft-blumenthal-aes-usm-04 §3.1.2.1: append H(key so far) until ``size`` octets."""
    while len(key) < size:
        key += hash_new(key).digest()
    return key[:size]


@dataclass(slots=True)
class _LeanCred:
    """A user's protocols and master keys (the lean path's half of a ``_Cred``)."""

    user: UsmUser
    level: int
    hash_new: Callable[..., Any] | None
    mac_len: int
    cipher: str | None
    key_len: int
    auth_master: bytes
    priv_master: bytes


@dataclass(slots=True)
class _Keys:
    """Keys localized to one engine ID, with the keyed primitives made once.

    ``mac`` is an HMAC already keyed (copied per message); ``block`` is a reusable ECB
    context: the AES encryptor that makes the CFB-128 key stream, or the DES decryptor of
    CBC. ECB has no state between whole blocks, so one context serves every message.
    """

    auth: bytes
    priv: bytes
    mac: Any = None
    block: Any = None


@dataclass(slots=True)
class _Timeline:
    """What we know of a sender engine's clock (RFC 3414 §2.3, the non-authoritative cache)."""

    boots: int
    time: int  # its snmpEngineTime when last updated
    latest: int  # latestReceivedEngineTime
    at: float  # our monotonic clock at the last update


class _Fallback(Exception):
    """The lean path does not take this message: pysnmp decides."""


class _Parsed:
    """The fields of one v3 message (offsets into the datagram where the MAC sits)."""

    __slots__ = (
        "boots",
        "data",
        "eng_time",
        "engine_id",
        "flags",
        "mac",
        "mac_at",
        "msg_id",
        "msgdata_at",
        "plain",
        "priv_params",
        "scoped",
        "scoped_end",
        "scoped_start",
        "user",
    )

    def __init__(self) -> None:
        self.data = b""
        self.msg_id = 0
        self.flags = 0
        self.engine_id = b""
        self.boots = 0
        self.eng_time = 0
        self.user = b""
        self.mac = b""
        self.mac_at = 0
        self.priv_params = b""
        self.scoped = False  # True: plaintext ScopedPDU; False: encryptedPDU
        self.msgdata_at = 0  # where the msgData TLV starts
        self.plain: _Scoped | None = None  # the plaintext ScopedPDU, decoded
        self.scoped_start = 0
        self.scoped_end = 0


def _uint31(data: bytes, pos: int, limit: int, lo: int = 0) -> tuple[int, int]:
    s, e = ber._expect(data, pos, limit, 0x02, "INTEGER")
    if e == s or e - s > 5:
        raise _Fallback
    v = int.from_bytes(data[s:e], "big", signed=True)
    if not lo <= v <= _INT31:
        raise _Fallback
    return v, e


def _int31_at(data: bytes, q: int, limit: int, lo: int) -> int:
    """The INTEGER at ``q`` (short form, 1–5 content octets, in lo..2**31-1), or -1."""
    if data[q] != 0x02:
        return -1
    k = data[q + 1]
    if not 1 <= k <= 5 or q + 2 + k > limit:
        return -1
    v = int.from_bytes(data[q + 2 : q + 2 + k], "big", signed=True)
    return v if lo <= v <= _INT31 else -1


def _parse_common(data: bytes) -> _Parsed | None:
    """The usual v3 message in one pass: every header field in short form, only the outer
    SEQUENCE and msgData in long form. Returns exactly what :func:`_parse` would, or
    ``None`` for anything else (then :func:`_parse` decides, with its own reasons)."""
    try:
        n = len(data)
        b = data[1]
        if data[0] != 0x30:
            return None
        if b < 0x80:
            pos = 2 + 3
            end = 2 + b
        elif b == 0x81:
            pos = 3 + 3
            end = 3 + data[2]
        elif b == 0x82:
            pos = 4 + 3
            end = 4 + ((data[2] << 8) | data[3])
        else:
            return None
        if end != n or data[pos - 3 : pos] != b"\x02\x01\x03" or data[pos] != 0x30:
            return None
        k = data[pos + 1]
        ge = pos + 2 + k
        if k >= 0x80 or ge > end:
            return None
        q = pos + 2
        msg_id = _int31_at(data, q, ge, 0)
        if msg_id < 0:
            return None
        q += 2 + data[q + 1]
        if _int31_at(data, q, ge, 484) < 0:
            return None
        q += 2 + data[q + 1]
        if data[q] != 0x04 or data[q + 1] != 1 or q + 6 != ge or data[q + 3 : q + 6] != b"\x02\x01\x03":
            return None
        flags = data[q + 2]
        # msgSecurityParameters: OCTET STRING { SEQUENCE { engine ID, boots, time, user, auth, priv } }
        k = data[ge + 1]
        if data[ge] != 0x04 or k >= 0x80 or data[ge + 2] != 0x30 or data[ge + 3] != k - 2:
            return None
        se = ge + 2 + k
        q = ge + 4
        if se > end or data[q] != 0x04 or data[q + 1] >= 0x80:
            return None
        e = q + 2 + data[q + 1]
        engine_id = data[q + 2 : e]
        boots = _int31_at(data, e, se, 0)
        if boots < 0:
            return None
        q = e + 2 + data[e + 1]
        eng_time = _int31_at(data, q, se, 0)
        if eng_time < 0:
            return None
        q += 2 + data[q + 1]
        k = data[q + 1]
        if data[q] != 0x04 or k > 32:
            return None
        user = data[q + 2 : q + 2 + k]
        q += 2 + k
        k = data[q + 1]
        if data[q] != 0x04 or k >= 0x80:
            return None
        mac_at = q + 2
        q = mac_at + k
        mac = data[mac_at:q]
        k = data[q + 1]
        if data[q] != 0x04 or k >= 0x80 or q + 2 + k != se:
            return None
        priv = data[q + 2 : se]
        if se > n - 2:
            return None
        tag = data[se]
        if tag != 0x04:
            return None  # a plaintext ScopedPDU (noAuth/authNoPriv, discovery): the full parser
        b = data[se + 1]
        if b < 0x80:
            start = se + 2
        elif b == 0x81:
            start = se + 3
            b = data[se + 2]
        elif b == 0x82:
            start = se + 4
            b = (data[se + 2] << 8) | data[se + 3]
        else:
            return None
        if start + b != n:
            return None
    except IndexError:
        return None
    p = _Parsed()
    p.data = data
    p.msg_id = msg_id
    p.flags = flags
    p.engine_id = engine_id
    p.boots = boots
    p.eng_time = eng_time
    p.user = user
    p.mac = mac
    p.mac_at = mac_at
    p.priv_params = priv
    p.msgdata_at = se
    p.scoped_start = start
    p.scoped_end = n
    return p


def _parse(data: bytes) -> _Parsed:
    """Strictly parse a v3 USM message; anything unusual raises :class:`_Fallback`."""
    return _parse_common(data) or _parse_full(data)


def _parse_full(data: bytes) -> _Parsed:
    """:func:`_parse` field by field, for every layout (the reference for :func:`_parse_common`)."""
    p = _Parsed()
    p.data = data
    n = len(data)
    try:
        start, end = ber._expect(data, 0, n, 0x30, "message")
        if end != n:
            raise _Fallback
        if data[start : start + 3] != b"\x02\x01\x03":
            raise _Fallback
        pos = start + 3
        gs, ge = ber._expect(data, pos, end, 0x30, "msgGlobalData")
        p.msg_id, q = _uint31(data, gs, ge)
        _max, q = _uint31(data, q, ge, 484)
        fs, fe = ber._expect(data, q, ge, 0x04, "msgFlags")
        if fe - fs != 1:
            raise _Fallback
        p.flags = data[fs]
        if data[fe : fe + 3] != b"\x02\x01\x03" or fe + 3 != ge:
            raise _Fallback
        ss, se = ber._expect(data, ge, end, 0x04, "msgSecurityParameters")
        us, ue = ber._expect(data, ss, se, 0x30, "UsmSecurityParameters")
        if ue != se:
            raise _Fallback
        a, b = ber._expect(data, us, ue, 0x04, "engine ID")
        p.engine_id = data[a:b]
        p.boots, q = _uint31(data, b, ue)
        p.eng_time, q = _uint31(data, q, ue)
        a, b = ber._expect(data, q, ue, 0x04, "user")
        if b - a > 32:
            raise _Fallback
        p.user = data[a:b]
        a, b = ber._expect(data, b, ue, 0x04, "auth params")
        p.mac, p.mac_at = data[a:b], a
        a, b = ber._expect(data, b, ue, 0x04, "priv params")
        if b != ue:
            raise _Fallback
        p.priv_params = data[a:b]
        tag = data[se] if se < end else -1
        if tag == 0x30:
            p.scoped = True
        elif tag != 0x04:
            raise _Fallback
        p.msgdata_at = se
        p.scoped_start, p.scoped_end = ber._expect(data, se, end, tag, "msgData")
        if p.scoped_end != end:
            raise _Fallback
    except (DecodeError, IndexError):
        raise _Fallback from None
    if p.scoped:
        # pysnmp decodes a plaintext ScopedPDU before anything else: so do we, so that a
        # malformed one is never judged on its digest instead.
        p.plain = _parse_scoped(data, se, end, False, _PLAIN_PDUS)
    return p


class _Scoped:
    __slots__ = ("context_engine", "context_name", "pdu_type", "request_id", "varbinds", "vb_raw")

    def __init__(self) -> None:
        self.context_engine = b""
        self.context_name = b""
        self.pdu_type = 0
        self.request_id = 0
        self.varbinds: list[tuple[str, object]] = []
        self.vb_raw = b""


_NOTIFICATIONS = frozenset((PDU_TRAP_V2, PDU_INFORM))
_CONFIRMED = frozenset((0xA0, 0xA1, 0xA3, PDU_INFORM))
#: PDUs with request-id, error-status, error-index, varbinds (not GetBulk): a discovery probe.
_PLAIN_PDUS = frozenset((0xA0, 0xA1, 0xA2, 0xA3, 0xA6, 0xA7, 0xA8))


def _span(data: bytes, pos: int) -> tuple[int, int]:
    """Content start and end of the TLV at ``pos`` in short, 0x81 or 0x82 form; (0, -1) else."""
    b = data[pos + 1]
    if b < 0x80:
        return pos + 2, pos + 2 + b
    if b == 0x81:
        return pos + 3, pos + 3 + data[pos + 2]
    if b == 0x82:
        return pos + 4, pos + 4 + ((data[pos + 2] << 8) | data[pos + 3])
    return 0, -1


def _small_int_at(data: bytes, q: int, limit: int, hi: int) -> int:
    """The short-form INTEGER at ``q`` of 1–4 content octets in 0..hi, or -1."""
    k = data[q + 1]
    if data[q] != 0x02 or not 1 <= k <= 4 or q + 2 + k > limit:
        return -1
    v = int.from_bytes(data[q + 2 : q + 2 + k], "big", signed=True)
    return v if 0 <= v <= hi else -1


def _scoped_common(data: bytes, end: int, padded: bool, tags: frozenset[int]) -> _Scoped | None:
    """The usual ScopedPDU at offset 0 in one pass (what :func:`_parse_scoped` returns), or
    ``None`` for anything else (then :func:`_parse_scoped` decides)."""
    try:
        if data[0] != 0x30:
            return None
        s, e = _span(data, 0)
        if e < 0 or e > end or (e != end and not padded):
            return None
        k = data[s + 1]
        if data[s] != 0x04 or k >= 0x80:
            return None
        a = s + 2 + k
        context_engine = data[s + 2 : a]
        k = data[a + 1]
        if data[a] != 0x04 or k >= 0x80:
            return None
        b = a + 2 + k
        context_name = data[a + 2 : b]
        if b > e:
            return None
        tag = data[b]
        if tag not in tags:
            return None
        ps, pe = _span(data, b)
        if pe != e:
            return None
        k = data[ps + 1]
        if data[ps] != 0x02 or not 1 <= k <= 4 or ps + 2 + k > pe:
            return None
        q = ps + 2 + k
        request_id = int.from_bytes(data[ps + 2 : q], "big", signed=True)
        if _small_int_at(data, q, pe, 18) < 0:
            return None
        q += 2 + data[q + 1]
        if _small_int_at(data, q, pe, _INT31) < 0:
            return None
        q += 2 + data[q + 1]
        if data[q] != 0x30:
            return None
        vs, ve = _span(data, q)
        if ve != pe:
            return None
        varbinds = ber._decode_varbinds(data, vs, ve, True)
    except (DecodeError, IndexError):
        return None
    sp = _Scoped()
    sp.context_engine = context_engine
    sp.context_name = context_name
    sp.pdu_type = tag
    sp.request_id = request_id
    sp.vb_raw = data[q:ve]
    sp.varbinds = varbinds
    return sp


def _parse_scoped(
    data: bytes, start: int, end: int, padded: bool, tags: frozenset[int] = _NOTIFICATIONS
) -> _Scoped:
    """ScopedPDU with one of the PDUs in ``tags``; ``padded``: bytes may follow it (block padding)."""
    sp = _Scoped()
    try:
        s, e = ber._expect(data, start, end, 0x30, "ScopedPDU")
        if e != end and not padded:
            raise _Fallback
        a, b = ber._expect(data, s, e, 0x04, "contextEngineID")
        sp.context_engine = data[a:b]
        a, b = ber._expect(data, b, e, 0x04, "contextName")
        sp.context_name = data[a:b]
        tag = data[b]
        if tag not in tags:
            raise _Fallback
        sp.pdu_type = tag
        ps, pe = ber._expect(data, b, e, tag, "PDU")
        if pe != e:
            raise _Fallback
        rs, re_ = ber._expect(data, ps, pe, 0x02, "request-id")
        if re_ == rs or re_ - rs > 4:
            raise _Fallback
        sp.request_id = int.from_bytes(data[rs:re_], "big", signed=True)
        q = re_
        for _ in range(2):  # error-status 0..18, error-index 0..2**31-1 as pysnmp's schema has them
            a, b = ber._expect(data, q, pe, 0x02, "error")
            if b == a or b - a > 4:
                raise _Fallback
            v = int.from_bytes(data[a:b], "big", signed=True)
            if v < 0 or (q == re_ and v > 18):
                raise _Fallback
            q = b
        vs, ve = ber._expect(data, q, pe, 0x30, "varbinds")
        if ve != pe:
            raise _Fallback
        sp.vb_raw = data[q:ve]
        sp.varbinds = ber._decode_varbinds(data, vs, ve, True)
    except (DecodeError, IndexError):
        raise _Fallback from None
    return sp


# -- the processor ------------------------------------------------------------------


class LeanV3Processor:
    """SNMPv3 USM for notifications without pysnmp on the common path.

    Same constructor, ``process`` contract, ``engine_id``/``engine_boots``/``learned``
    and ``stats`` as :class:`~adapters.snmp.v3.V3Processor`; ``stats.fallback`` counts
    the messages handed to the pysnmp processor (``self.reference``), whose own counters
    are added in.

    Args:
        users: USM users (validated as by ``V3Processor``).
        engine_id_path: file holding the local engine ID.
        learn_engine_ids: accept traps from unlisted engine IDs of known users.
        max_learned: bound on learned (engine ID, user) pairs.
        response_ttl: seconds an INFORM's ``respond`` stays valid.
        clock: monotonic seconds (injected by tests).
        max_timelines: bound on cached sender engine clocks (least recently used go).
    """

    def __init__(
        self,
        users: Iterable[UsmUser],
        engine_id_path: str | os.PathLike[str],
        *,
        learn_engine_ids: bool = False,
        max_learned: int = 10_000,
        response_ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        max_timelines: int = 100_000,
    ) -> None:
        users = list(users)
        self.reference = V3Processor(
            users,
            engine_id_path,
            learn_engine_ids=learn_engine_ids,
            max_learned=max_learned,
            response_ttl=response_ttl,
        )
        self.engine_id: bytes = self.reference.engine_id
        self.engine_boots: int = self.reference.engine_boots
        self._clock = clock
        self._start = clock()
        self._ttl = min(max(response_ttl, 0.0), 50.0)
        self._learn = learn_engine_ids
        self._max_learned = max_learned
        self._lock = threading.RLock()
        self._stats = V3Stats()
        self._masters: dict[tuple[str, str, bytes, bytes], tuple[bytes, bytes]] = {}
        self._creds: dict[tuple[bytes, bytes], _LeanCred | None] = {}  # None: pysnmp's
        self._templates: dict[bytes, _LeanCred | None] = {}
        self._keys: dict[tuple[bytes, bytes], _Keys] = {}
        self._learned: set[tuple[bytes, bytes]] = set()
        self._timelines: OrderedDict[bytes, _Timeline] = OrderedDict()
        self._peer_strs: dict[Any, str | None] = {}
        self._user_strs: dict[bytes, str] = {}
        self._max_timelines = max_timelines
        self._pending: OrderedDict[int, list[bytes | None]] = OrderedDict()  # id → answer box
        self._pending_deadline: dict[int, float] = {}
        self._pending_ids = itertools.count()
        self._salt = itertools.count(int.from_bytes(os.urandom(4), "big"))
        for u in users:
            name = u.user.encode()
            cred = self._cred(u)
            if name not in self._templates:
                self._templates[name] = cred
                self._creds[(self.engine_id, name)] = cred
            for e in u.engine_ids:
                self._creds[(parse_engine_id(e), name)] = cred

    @classmethod
    def from_config(cls, config: Any, engine_id_path: str | os.PathLike[str]) -> LeanV3Processor:
        """Build from a listener configuration (``users`` and ``learn_engine_ids``)."""
        return cls(
            [UsmUser.from_config(u) for u in config.users],
            engine_id_path,
            learn_engine_ids=bool(getattr(config, "learn_engine_ids", False)),
        )

    def _cred(self, u: UsmUser) -> _LeanCred | None:
        return _make_cred(u, self._masters)

    def _keys_for(self, eid: bytes, name: bytes, cred: _LeanCred, keep: bool = True) -> _Keys:
        k = self._keys.get((eid, name))
        if k is None:
            k = _localized(cred, eid)
            if keep:  # not for an engine ID still being learned: made-up ones cost no memory
                self._keys[(eid, name)] = k
        return k

    # -- views ------------------------------------------------------------------------

    @property
    def learned(self) -> frozenset[tuple[bytes, str]]:
        """The (engine ID, user) pairs learned from traps since start (both paths)."""
        own = frozenset((e, n.decode(errors="replace")) for e, n in self._learned)
        return own | self.reference.learned

    @property
    def stats(self) -> V3Stats:
        """Counters of both paths added up; ``fallback`` counts messages pysnmp handled."""
        r = self.reference.stats
        s = self._stats
        rejected = dict(s.rejected)
        for k, v in r.rejected.items():
            rejected[k] = rejected.get(k, 0) + v
        return V3Stats(
            accepted=s.accepted + r.accepted,
            discovery=s.discovery + r.discovery,
            learned=s.learned + r.learned,
            expired_responses=s.expired_responses + r.expired_responses,
            fallback=s.fallback,
            rejected=rejected,
        )

    def engine_time(self) -> int:
        """Our snmpEngineTime: whole seconds since start, from the monotonic clock."""
        return max(0, int(self._clock() - self._start))

    # -- per packet -------------------------------------------------------------------

    def process(self, data: bytes, peer: tuple[Any, ...] | None = None) -> V3Result:
        """Authenticate, decrypt and decode one SNMPv3 datagram (see ``V3Processor.process``)."""
        with self._lock:
            try:
                return self._process(bytes(data), peer)
            except _Fallback:
                self._stats.fallback += 1
            except V3DecodeError as exc:
                rej = self._stats.rejected
                rej[exc.reason] = rej.get(exc.reason, 0) + 1
                raise
        return self.reference.process(data, peer)

    def _expire(self, now: float) -> None:
        pending, deadlines = self._pending, self._pending_deadline
        while pending:
            ref = next(iter(pending))
            if deadlines[ref] > now:
                break
            box = pending.pop(ref)
            del deadlines[ref]
            if not box:
                box.append(None)  # too late: the sender retries and gets a fresh answer
                self._stats.expired_responses += 1

    def _process(self, data: bytes, peer: tuple[Any, ...] | None) -> V3Result:
        if self._pending:
            self._expire(self._clock())
        p = _parse(data)
        flags = p.flags
        level = {0: 1, 1: 2, 3: 3}.get(flags & 0x03)
        if level is None:
            raise _Fallback
        reportable = bool(flags & 0x04)
        eid = p.engine_id
        peer_s = self._peer_strs.get(peer) if peer else None
        if peer_s is None and peer:
            peer_s = _peer_str(peer)
            if len(self._peer_strs) < 4096:  # why: a bounded memo; a flood of new peers only formats
                self._peer_strs[peer] = peer_s
        if not eid:
            return self._discovery(p, level, reportable, peer_s)
        if eid == self.engine_id:
            return self._inform(p, level, reportable, peer_s)
        return self._trap(p, level, reportable, peer_s)

    # A trap: the sender is authoritative (RFC 3414 §3.2.7b).
    def _trap(self, p: _Parsed, level: int, reportable: bool, peer_s: str | None) -> V3Result:
        eid, name = p.engine_id, p.user
        learning = False
        key = (eid, name)
        if key in self._creds:
            cred = self._creds[key]
        else:
            if name not in self._templates:
                raise V3DecodeError("unknown_user", _user_str(name), peer_s)
            if not self._learn:
                raise V3DecodeError("unknown_engine_id", f"{eid.hex()} for user {_user_str(name)}", peer_s)
            if len(self._learned) + len(self.reference._learned) >= self._max_learned:
                raise V3DecodeError(
                    "unknown_engine_id", f"{eid.hex()}: learned engine ID limit reached", peer_s
                )
            if not 5 <= len(eid) <= 32:
                raise V3DecodeError("malformed", f"engine ID of {len(eid)} octets", peer_s)
            cred = self._templates[name]
            learning = True
        if cred is None or reportable:
            raise _Fallback
        if level != cred.level:
            raise V3DecodeError(
                "unsupported_security_level",
                f"user {_user_str(name)} needs {_LEVEL_NAMES[cred.level]}, got {_LEVEL_NAMES[level]}",
                peer_s,
            )
        keys = self._keys_for(eid, name, cred, not learning) if level >= 2 else None
        if keys is not None and not self._mac_ok(p, cred, keys):
            raise V3DecodeError("wrong_digest", f"wrong digest (user {_user_str(name)})", peer_s)
        if level >= 2:
            self._timeliness(p, peer_s)
        sp = self._scoped(p, cred, keys, peer_s)
        if sp.pdu_type != PDU_TRAP_V2:
            raise _Fallback  # an INFORM at the sender's engine ID: pysnmp reports the mismatch
        if learning:
            self._creds[(eid, name)] = cred
            if keys is not None:
                self._keys[(eid, name)] = keys
            self._learned.add((eid, name))
            self._stats.learned += 1
        self._stats.accepted += 1
        user = self._user_strs.get(name)
        if user is None:  # an authenticated user's name: as many as there are users
            user = self._user_strs[name] = _user_str(name)
        return V3Result(
            message=_message(name, sp),
            user=user,
            engine_id=eid,
            security_level=_LEVEL_NAMES[level],
            learned=learning,
        )

    def _timeliness(self, p: _Parsed, peer_s: str | None) -> None:
        """RFC 3414 §3.2.7b against the cached clock of the sender's engine."""
        now = self._clock()
        tl = self._timelines.get(p.engine_id)
        if tl is None:
            if len(self._timelines) >= self._max_timelines:
                self._timelines.popitem(last=False)
            self._timelines[p.engine_id] = _Timeline(p.boots, p.eng_time, p.eng_time, now)
            tl = self._timelines[p.engine_id]
        else:
            self._timelines.move_to_end(p.engine_id)
        estimated = tl.time + max(0, int(now - tl.at))
        if p.boots > tl.boots or (p.boots == tl.boots and p.eng_time > tl.latest):
            tl.boots, tl.time, tl.latest, tl.at = p.boots, p.eng_time, p.eng_time, now
            estimated = p.eng_time
        if (
            tl.boots == _BOOTS_MAX
            or p.boots < tl.boots
            or (p.boots == tl.boots and p.eng_time < estimated - TIME_WINDOW)
        ):
            raise V3DecodeError(
                "not_in_time_window",
                f"boots {p.boots} time {p.eng_time}, engine {p.engine_id.hex()} is at boots {tl.boots} "
                f"time ≈{estimated}",
                peer_s,
            )

    # An INFORM: we are authoritative (RFC 3414 §3.2.7a).
    def _inform(self, p: _Parsed, level: int, reportable: bool, peer_s: str | None) -> V3Result:
        name = p.user
        if not name or (reportable and p.plain is not None and p.plain.pdu_type != PDU_INFORM):
            raise _Fallback
        key = (self.engine_id, name)
        if key not in self._creds:
            raise V3DecodeError(
                "unknown_user",
                f"unknownSecurityName (user {_user_str(name)})",
                peer_s,
                self._report(p, UNKNOWN_USER_NAMES, 1) if reportable else None,
            )
        cred = self._creds[key]
        if cred is None or level != cred.level:
            raise _Fallback
        keys = self._keys_for(self.engine_id, name, cred) if level >= 2 else None
        if keys is not None:
            if not self._mac_ok(p, cred, keys):
                raise V3DecodeError(
                    "wrong_digest",
                    f"wrong digest (user {_user_str(name)})",
                    peer_s,
                    self._report(p, WRONG_DIGESTS, 1) if reportable else None,
                )
            local = self.engine_time()
            if (
                self.engine_boots == _BOOTS_MAX
                or p.boots != self.engine_boots
                or abs(local - p.eng_time) > TIME_WINDOW
            ):
                raise V3DecodeError(
                    "not_in_time_window",
                    f"boots {p.boots} time {p.eng_time}, ours {self.engine_boots}/{local}",
                    peer_s,
                    self._report(p, NOT_IN_TIME_WINDOWS, 2, cred, keys) if reportable else None,
                )
        sp = self._scoped(p, cred, keys, peer_s, reportable)
        self._stats.accepted += 1
        result = V3Result(
            message=_message(name, sp),
            user=_user_str(name),
            engine_id=self.engine_id,
            security_level=_LEVEL_NAMES[level],
        )
        if sp.pdu_type == PDU_INFORM:
            box: list[bytes | None] = []
            ref = next(self._pending_ids)
            self._pending[ref] = box
            self._pending_deadline[ref] = self._clock() + self._ttl

            def respond() -> bytes | None:
                with self._lock:
                    if not box:
                        self._expire(self._clock())
                    if not box:
                        self._pending.pop(ref, None)
                        self._pending_deadline.pop(ref, None)
                        box.append(self._response(p, sp, level, cred, keys))
                    return box[0]

            result.respond = respond
        return result

    def _discovery(self, p: _Parsed, level: int, reportable: bool, peer_s: str | None) -> V3Result:
        sp = p.plain
        if level != 1 or sp is None or sp.pdu_type not in _CONFIRMED:
            raise _Fallback  # pysnmp reports only on confirmed-class PDUs
        if not reportable:
            raise V3DecodeError("unknown_engine_id", f"unknownEngineID (user {_user_str(p.user)})", peer_s)
        report = self._report(
            p, UNKNOWN_ENGINE_IDS, 1, context=(sp.context_engine, sp.context_name), request_id=sp.request_id
        )
        self._stats.discovery += 1
        return V3Result(message=None, respond=lambda: report, user=_user_str(p.user))

    # -- crypto -----------------------------------------------------------------------

    @staticmethod
    def _mac_ok(p: _Parsed, cred: _LeanCred, keys: _Keys) -> bool:
        n = cred.mac_len
        if len(p.mac) != n:
            return False
        d = p.data
        h = keys.mac.copy()
        h.update(d[: p.mac_at])
        h.update(_ZEROS[n])
        h.update(d[p.mac_at + n :])
        return hmac.compare_digest(h.digest()[:n], p.mac)

    def _scoped(
        self, p: _Parsed, cred: _LeanCred, keys: _Keys | None, peer_s: str | None, reportable: bool = False
    ) -> _Scoped:
        if cred.level < 3:
            if p.plain is None or p.plain.pdu_type not in _NOTIFICATIONS:
                raise _Fallback
            return p.plain
        assert keys is not None
        if p.scoped:
            raise _Fallback
        cipher_text = p.data[p.scoped_start : p.scoped_end]
        plain = self._decrypt(cred, keys, p, cipher_text)
        if not plain or plain[0] != 0x30:  # a wrong key gives noise that no BER decoder takes
            raise V3DecodeError(
                "decryption_error",
                f"decryptionError (user {_user_str(p.user)})",
                peer_s,
                self._report(p, DECRYPTION_ERRORS, 1) if reportable else None,
            )
        return _scoped_common(plain, len(plain), True, _NOTIFICATIONS) or _parse_scoped(plain, 0, len(plain), True)

    @staticmethod
    def _decrypt(cred: _LeanCred, keys: _Keys, p: _Parsed, ct: bytes) -> bytes | None:
        salt = p.priv_params
        if len(salt) != 8:
            return None
        n = len(ct)
        if cred.cipher == "des":
            # CBC: P_i = D(C_i) xor C_(i-1), with C_(-1) = pre-IV xor salt (RFC 3414 §8.1.1.3).
            if n % 8 or not n:
                return None
            iv = bytes(a ^ b for a, b in zip(keys.priv[8:16], salt, strict=True))
            stream = keys.block.update(ct)
            chain = iv + ct[:-8]
        else:
            # CFB-128: P_i = C_i xor E(C_(i-1)), with C_(-1) = boots || time || salt (RFC 3826 §3.1.4).
            if not n:
                return b""
            iv = p.boots.to_bytes(4, "big") + p.eng_time.to_bytes(4, "big") + salt
            k = (n + 15) // 16
            stream = keys.block.update((iv + ct)[: 16 * k])[:n]
            chain = ct
        return (int.from_bytes(stream, "big") ^ int.from_bytes(chain, "big")).to_bytes(n, "big")

    # -- outgoing ---------------------------------------------------------------------

    def _encode(
        self,
        msg_id: int,
        level: int,
        user: bytes,
        scoped: bytes,
        cred: _LeanCred | None,
        keys: _Keys | None,
    ) -> bytes:
        return _encode_message(
            self.engine_id,
            self.engine_boots,
            self.engine_time(),
            msg_id,
            level,
            user,
            scoped,
            cred,
            keys,
            next(self._salt),
        )

    def _report(
        self,
        p: _Parsed,
        oid: str,
        level: int,
        cred: _LeanCred | None = None,
        keys: _Keys | None = None,
        *,
        context: tuple[bytes, bytes] | None = None,
        request_id: int = 0,
    ) -> bytes:
        """A Report PDU (RFC 3412 §7.1.3) with the usmStats counter ``oid``."""
        ctx_engine, ctx_name = context if context is not None else (self.engine_id, b"")
        counter = (
            self.stats.rejected.get(_REPORT_REASON[oid], 0) + 1
            if oid != UNKNOWN_ENGINE_IDS
            else (self.stats.discovery + 1)
        )
        vbs = ber._encode_varbinds([(oid, ber.Typed(ber.TAG_COUNTER32, counter))], True)
        pdu = ber._tlv(ber.PDU_REPORT, ber._int_tlv(0x02, request_id) + b"\x02\x01\x00\x02\x01\x00" + vbs)
        scoped = ber._tlv(0x30, ber._tlv(0x04, ctx_engine) + ber._tlv(0x04, ctx_name) + pdu)
        return self._encode(p.msg_id, level, p.user, scoped, cred, keys)

    def _response(self, p: _Parsed, sp: _Scoped, level: int, cred: _LeanCred, keys: _Keys | None) -> bytes:
        pdu = ber._tlv(
            ber.PDU_RESPONSE, ber._int_tlv(0x02, sp.request_id) + b"\x02\x01\x00\x02\x01\x00" + sp.vb_raw
        )
        scoped = ber._tlv(0x30, ber._tlv(0x04, sp.context_engine) + ber._tlv(0x04, sp.context_name) + pdu)
        return self._encode(p.msg_id, level, p.user, scoped, cred, keys)


_REPORT_REASON = {
    UNKNOWN_USER_NAMES: "unknown_user",
    WRONG_DIGESTS: "wrong_digest",
    NOT_IN_TIME_WINDOWS: "not_in_time_window",
    DECRYPTION_ERRORS: "decryption_error",
    UNSUPPORTED_SEC_LEVELS: "unsupported_security_level",
}


def _encrypt(
    cred: _LeanCred, keys: _Keys, boots: int, eng_time: int, pt: bytes, n: int
) -> tuple[bytes, bytes]:
    """Encrypt a ScopedPDU; ``n`` makes the salt (RFC 3414 §8.1.1.1, RFC 3826 §3.1.2.1)."""
    if cred.cipher == "des":
        salt = (boots & 0xFFFFFFFF).to_bytes(4, "big") + (n & 0xFFFFFFFF).to_bytes(4, "big")
        iv = bytes(a ^ b for a, b in zip(keys.priv[8:16], salt, strict=True))
        if len(pt) % 8:
            pt += bytes(8 - len(pt) % 8)
        enc = Cipher(TripleDES(keys.priv[:8] * 3), modes.CBC(iv)).encryptor()
    else:
        salt = (n & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
        iv = boots.to_bytes(4, "big") + eng_time.to_bytes(4, "big") + salt
        enc = Cipher(algorithms.AES(keys.priv[: cred.key_len]), CFB(iv)).encryptor()
    return enc.update(pt) + enc.finalize(), salt


def _encode_message(
    engine_id: bytes,
    boots: int,
    eng_time: int,
    msg_id: int,
    level: int,
    user: bytes,
    scoped: bytes,
    cred: _LeanCred | None,
    keys: _Keys | None,
    salt_n: int,
    reportable: bool = False,
) -> bytes:
    """A whole v3 USM message around ``scoped`` (a ScopedPDU), encrypted and signed as ``level`` says."""
    mac_len = cred.mac_len if (level >= 2 and cred is not None) else 0
    priv_params = b""
    msg_data = scoped
    if level == 3:
        assert cred is not None and keys is not None
        ct, priv_params = _encrypt(cred, keys, boots, eng_time, scoped, salt_n)
        msg_data = ber._tlv(0x04, ct)
    tail = ber._tlv(0x04, priv_params)
    usm = ber._tlv(
        0x30,
        ber._tlv(0x04, engine_id)
        + ber._int_tlv(0x02, boots)
        + ber._int_tlv(0x02, eng_time)
        + ber._tlv(0x04, user)
        + ber._tlv(0x04, bytes(mac_len))
        + tail,
    )
    flags = {1: 0, 2: 1, 3: 3}[level] | (4 if reportable else 0)
    header = ber._tlv(
        0x30,
        ber._int_tlv(0x02, msg_id)
        + ber._int_tlv(0x02, _MAX_MESSAGE_SIZE)
        + bytes((0x04, 1, flags))
        + b"\x02\x01\x03",
    )
    head = b"\x02\x01\x03" + header + ber._tlv(0x04, usm)
    out = ber._tlv(0x30, head + msg_data)
    if mac_len:
        assert cred is not None and keys is not None and cred.hash_new is not None
        at = len(out) - len(msg_data) - len(tail) - mac_len
        mac = hmac.new(keys.auth, out, cred.hash_new).digest()[:mac_len]
        out = out[:at] + mac + out[at + mac_len :]
    return out


class V3Sender:
    """Encodes SNMPv3 notifications as a sending agent does (for tests and the load generator).

    Args:
        user: the USM user (its protocols and pass phrases).
        engine_id: the authoritative engine: the sender's own for traps, the
            receiver's for INFORMs.
    """

    def __init__(self, user: UsmUser, engine_id: bytes) -> None:
        cred = _make_cred(user, {})
        if cred is None:
            raise ValueError(f"user {user.user!r}: protocols the lean path does not implement")
        self.cred = cred
        self.user = user.user.encode()
        self.engine_id = engine_id
        self.keys = _localized(cred, engine_id) if cred.level >= 2 else None
        self._salt = itertools.count(1)

    def encode(
        self,
        varbinds: list[tuple[str, object]],
        *,
        boots: int,
        eng_time: int,
        msg_id: int,
        request_id: int,
        pdu_type: int = PDU_TRAP_V2,
        reportable: bool | None = None,
        context_engine: bytes | None = None,
    ) -> bytes:
        """One datagram. ``reportable`` defaults to True for an INFORM, False for a trap."""
        vbs = ber._encode_varbinds(varbinds, True)
        pdu = ber._tlv(pdu_type, ber._int_tlv(0x02, request_id) + b"\x02\x01\x00\x02\x01\x00" + vbs)
        ctx = self.engine_id if context_engine is None else context_engine
        scoped = ber._tlv(0x30, ber._tlv(0x04, ctx) + ber._tlv(0x04, b"") + pdu)
        rep = pdu_type == PDU_INFORM if reportable is None else reportable
        return _encode_message(
            self.engine_id,
            boots,
            eng_time,
            msg_id,
            self.cred.level,
            self.user,
            scoped,
            self.cred,
            self.keys,
            next(self._salt),
            rep,
        )


def _raw(v: str | bytes | None) -> bytes:
    return v.encode() if isinstance(v, str) else (v or b"")


def _make_cred(
    u: UsmUser, masters: dict[tuple[str, str, bytes, bytes], tuple[bytes, bytes]]
) -> _LeanCred | None:
    """The lean path's view of a user; ``None`` when its protocols are pysnmp's only."""
    auth = AUTH.get(u.auth_protocol.lower()) if u.auth_protocol.lower() != "none" else None
    priv = PRIV.get(u.priv_protocol.lower()) if u.priv_protocol.lower() != "none" else None
    level = u.level
    if (level >= 2 and auth is None) or (level == 3 and priv is None):
        return None  # e.g. 3DES or a Reeder-extended AES key
    if auth is None:
        return _LeanCred(u, level, None, 0, None, 0, b"", b"")
    hash_new, mac_len = auth
    key = (u.auth_protocol.lower(), u.priv_protocol.lower(), _raw(u.auth_key), _raw(u.priv_key))
    got = masters.get(key)
    if got is None:
        am = password_to_key(hash_new, _raw(u.auth_key))
        pm = password_to_key(hash_new, _raw(u.priv_key)) if level == 3 else b""
        got = masters[key] = (am, pm)
    cipher, key_len = priv if priv is not None else (None, 0)
    return _LeanCred(u, level, hash_new, mac_len, cipher, key_len, got[0], got[1])


def _localized(cred: _LeanCred, eid: bytes) -> _Keys:
    assert cred.hash_new is not None
    auth = localize_key(cred.hash_new, cred.auth_master, eid)
    priv = b""
    if cred.level == 3:
        priv = localize_key(cred.hash_new, cred.priv_master, eid)
        if len(priv) < cred.key_len:
            priv = extend_key_blumenthal(cred.hash_new, priv, cred.key_len)
    mac = hmac.new(auth, digestmod=cred.hash_new)
    block = None
    if cred.cipher == "des":
        block = Cipher(TripleDES(priv[:8] * 3), modes.ECB()).decryptor()
    elif cred.cipher == "aes":
        block = Cipher(algorithms.AES(priv[: cred.key_len]), modes.ECB()).encryptor()
    return _Keys(auth, priv, mac, block)


def _message(name: bytes, sp: _Scoped) -> TrapMessage:
    return TrapMessage(
        version=3,
        community=name,
        pdu_type=sp.pdu_type,
        request_id=sp.request_id,
        varbinds=sp.varbinds,
        enterprise=None,
        agent_addr=None,
        generic_trap=None,
        specific_trap=None,
        timestamp=None,
        raw_varbinds=sp.vb_raw,
    )


def _peer_str(peer: tuple[Any, ...] | None) -> str | None:
    if not peer:
        return None
    return f"{peer[0]}:{peer[1]}" if len(peer) >= 2 else str(peer[0])


def _user_str(name: bytes) -> str:
    return name.decode("utf-8", errors="replace")
