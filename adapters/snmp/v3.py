"""SNMPv3 USM processing of received TRAPs and INFORMs; the caller owns the socket."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.carrier.base import AbstractTransportDispatcher
from pysnmp.entity import config as pconfig
from pysnmp.entity.engine import SnmpEngine
from pysnmp.proto import errind, rfc1902
from pysnmp.proto import error as perror
from pysnmp.proto.api import v2c
from pysnmp.proto.secmod.rfc3414.service import SnmpUSMSecurityModel

from adapters.snmp import ber
from adapters.snmp.ber import PDU_INFORM, PDU_TRAP_V2, TrapMessage
from gateway.errors import DecodeError

__all__ = [
    "AUTH_PROTOCOLS",
    "PDU_INFORM",
    "PDU_TRAP_V2",
    "PRIV_PROTOCOLS",
    "TrapMessage",
    "UsmUser",
    "V3DecodeError",
    "V3Processor",
    "V3Result",
    "load_or_create_engine_id",
    "parse_engine_id",
]

#: Accepted authentication protocol names (case-insensitive) → pysnmp constant name.
AUTH_PROTOCOLS: dict[str, str] = {
    "none": "USM_AUTH_NONE",
    "md5": "USM_AUTH_HMAC96_MD5",
    "sha": "USM_AUTH_HMAC96_SHA",
    "sha1": "USM_AUTH_HMAC96_SHA",
    "sha-224": "USM_AUTH_HMAC128_SHA224",
    "sha-256": "USM_AUTH_HMAC192_SHA256",
    "sha-384": "USM_AUTH_HMAC256_SHA384",
    "sha-512": "USM_AUTH_HMAC384_SHA512",
}

#: Accepted privacy protocol names (case-insensitive) → pysnmp constant name.
#: AES-192/AES-256 use the key extension net-snmp implements (draft-blumenthal);
#: the ``-C`` variants use the one Cisco devices use (draft-reeder).
PRIV_PROTOCOLS: dict[str, str] = {
    "none": "USM_PRIV_NONE",
    "des": "USM_PRIV_CBC56_DES",
    "3des": "USM_PRIV_CBC168_3DES",
    "aes": "USM_PRIV_CFB128_AES",
    "aes-128": "USM_PRIV_CFB128_AES",
    "aes-192": "USM_PRIV_CFB192_AES_BLUMENTHAL",
    "aes-256": "USM_PRIV_CFB256_AES_BLUMENTHAL",
    "aes-192-c": "USM_PRIV_CFB192_AES",
    "aes-256-c": "USM_PRIV_CFB256_AES",
}

_LEVEL_NAMES = {1: "noAuthNoPriv", 2: "authNoPriv", 3: "authPriv"}


class V3DecodeError(DecodeError):
    """A v3 message was rejected.

    Attributes:
        report: a Report PDU the sender asked for (reportable INFORMs only), to send
            back as is; ``None`` when nothing should be sent.
    """

    def __init__(self, reason: str, detail: str = "", peer: str | None = None, report: bytes | None = None):
        super().__init__(reason, detail, peer)
        self.report = report


@dataclass(frozen=True, slots=True)
class UsmUser:
    """One USM user.

    Attributes:
        user: the USM user name.
        auth_protocol: one of :data:`AUTH_PROTOCOLS` (case-insensitive).
        auth_key: authentication pass phrase (at least 8 characters).
        priv_protocol: one of :data:`PRIV_PROTOCOLS` (case-insensitive).
        priv_key: privacy pass phrase (at least 8 characters).
        engine_ids: engine IDs of senders whose traps are accepted for this user
            (hex text such as ``"0x8000000001020304"`` or raw bytes). INFORMs use
            the local engine ID and need none.
    """

    user: str
    auth_protocol: str = "none"
    auth_key: str | bytes | None = None
    priv_protocol: str = "none"
    priv_key: str | bytes | None = None
    engine_ids: tuple[str | bytes, ...] = ()

    @classmethod
    def from_config(cls, cfg: Any) -> UsmUser:
        """Build from a configuration object with the same attribute names.

        Secret fields may be pydantic ``SecretStr`` values.

        Args:
            cfg: an object with ``user``, ``auth_protocol``, ``auth_key``,
                ``priv_protocol``, ``priv_key`` and ``engine_ids``.

        Returns:
            The user.
        """

        def secret(v: Any) -> str | bytes | None:
            out: str | bytes | None = v.get_secret_value() if hasattr(v, "get_secret_value") else v
            return out

        return cls(
            user=cfg.user,
            auth_protocol=cfg.auth_protocol,
            auth_key=secret(cfg.auth_key),
            priv_protocol=cfg.priv_protocol,
            priv_key=secret(cfg.priv_key),
            engine_ids=tuple(getattr(cfg, "engine_ids", ()) or ()),
        )

    @property
    def level(self) -> int:
        """Required security level: 1 noAuthNoPriv, 2 authNoPriv, 3 authPriv."""
        if self.auth_protocol.lower() == "none":
            return 1
        return 2 if self.priv_protocol.lower() == "none" else 3


@dataclass(slots=True)
class V3Result:
    """Outcome of :meth:`V3Processor.process` for a message that was accepted.

    Attributes:
        message: the decoded notification, or ``None`` for an engine-ID discovery
            probe (nothing to record, only a Report to send).
        respond: for an INFORM or a discovery probe, a callable returning the bytes
            to send back to the peer. For an INFORM call it only after the event is
            committed; it returns ``None`` when called after ``response_ttl``
            (the state was released; the sender will retry). ``None`` for traps.
        user: USM user name.
        engine_id: the message's authoritative engine ID (the sender's for traps,
            ours for INFORMs).
        security_level: ``"noAuthNoPriv"``, ``"authNoPriv"`` or ``"authPriv"``.
        learned: this message taught us a new (engine ID, user) pair.
    """

    message: TrapMessage | None
    respond: Callable[[], bytes | None] | None = None
    user: str = ""
    engine_id: bytes = b""
    security_level: str = ""
    learned: bool = False


class _Header(NamedTuple):
    version: int
    flags: int
    security_model: int
    engine_id: bytes
    user: bytes


# -- engine ID ----------------------------------------------------------------------


def parse_engine_id(value: str | bytes) -> bytes:
    """Parse an engine ID given as bytes or hex text.

    Args:
        value: raw bytes, or hex such as ``"0x8000000001020304"``,
            ``"80:00:00:00:01:02:03:04"`` or ``"8000000001020304"``.

    Returns:
        The engine ID bytes.

    Raises:
        ValueError: not hex, or not 5..32 octets long (RFC 3411 SnmpEngineID).
    """
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        text = value.strip().lower().removeprefix("0x")
        text = text.replace(":", "").replace(" ", "")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"engine ID {value!r} is not hex") from None
    if not 5 <= len(raw) <= 32:
        raise ValueError(f"engine ID {value!r} must be 5..32 octets, not {len(raw)}")
    return raw


def load_or_create_engine_id(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """Read the local engine ID and bump the boot counter, creating the file if absent.

    The file holds two lines: the engine ID in hex, then ``boots N``. A new engine
    ID is RFC 3411 format 5 (administratively assigned octets) under pysnmp's
    enterprise number with 8 random octets. The file is rewritten atomically.

    Args:
        path: where the identity lives; parent directories are created.

    Returns:
        ``(engine_id, boots)`` with ``boots`` already incremented for this start.

    Raises:
        ValueError: the file exists but does not hold a valid identity (it is
            never silently replaced: senders have keys localized to it).
    """
    p = Path(path)
    boots = 0
    if p.exists():
        lines = p.read_text(encoding="ascii", errors="replace").split()
        if not lines:
            raise ValueError(f"{p}: empty engine ID file")
        engine_id = parse_engine_id(lines[0])
        if len(lines) >= 3 and lines[1] == "boots" and lines[2].isdigit():
            boots = int(lines[2])
    else:
        engine_id = b"\x80\x00\x4f\xb8\x05" + os.urandom(8)
    boots = boots + 1 if boots < 2147483646 else 1
    p.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)  # not for other users
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(f"{engine_id.hex()}\nboots {boots}\n")
    os.replace(tmp, p)
    return engine_id, boots


# -- minimal BER reading of the v3 header -------------------------------------------


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Return ``(tag, value_start, value_end)`` of the TLV at ``pos``."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise ValueError("bad length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise ValueError("truncated")
    return tag, pos, pos + length


def _int(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    tag, s, e = _tlv(buf, pos, end)
    if tag != 0x02 or s == e:
        raise ValueError("INTEGER expected")
    return int.from_bytes(buf[s:e], "big", signed=True), e


def _octets(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    tag, s, e = _tlv(buf, pos, end)
    if tag != 0x04:
        raise ValueError("OCTET STRING expected")
    return buf[s:e], e


def _parse_header(data: bytes) -> _Header:
    """Read version, flags, security model, engine ID and user of a v3 message."""
    end = len(data)
    tag, pos, end = _tlv(data, 0, end)
    if tag != 0x30:
        raise ValueError("SEQUENCE expected")
    version, pos = _int(data, pos, end)
    if version != 3:
        return _Header(version, 0, 0, b"", b"")
    tag, gpos, gend = _tlv(data, pos, end)
    if tag != 0x30:
        raise ValueError("msgGlobalData expected")
    _msg_id, gpos = _int(data, gpos, gend)
    _max_size, gpos = _int(data, gpos, gend)
    flags, gpos = _octets(data, gpos, gend)
    model, gpos = _int(data, gpos, gend)
    if len(flags) != 1:
        raise ValueError("msgFlags must be one octet")
    sec, pos = _octets(data, gend, end)
    engine_id = user = b""
    if model == 3:
        tag, spos, send = _tlv(sec, 0, len(sec))
        if tag != 0x30:
            raise ValueError("UsmSecurityParameters expected")
        engine_id, spos = _octets(sec, spos, send)
        _boots, spos = _int(sec, spos, send)
        _time, spos = _int(sec, spos, send)
        user, spos = _octets(sec, spos, send)
    return _Header(version, flags[0], model, engine_id, user)


# -- value mapping ------------------------------------------------------------------


def _convert(v: Any) -> Any:
    """pysnmp value → the codec's Python value (see the v1/v2c codec's mapping table)."""
    if isinstance(v, rfc1902.IpAddress):
        return ber.IpAddress(".".join(str(b) for b in v.asOctets()))
    if isinstance(v, univ.Null):  # before OCTET STRING: pyasn1's Null derives from it
        return None
    if isinstance(v, univ.OctetString):
        return v.asOctets()
    if isinstance(v, univ.Integer):
        return int(v)
    if isinstance(v, univ.ObjectIdentifier):
        return ".".join(map(str, v.asTuple()))
    return v.prettyPrint()  # pragma: no cover - no other SMI types exist


_REASONS: tuple[tuple[type, str], ...] = (
    (errind.UnknownEngineID, "unknown_engine_id"),
    (errind.EngineIDMismatch, "unknown_engine_id"),
    (errind.UnknownSecurityName, "unknown_user"),
    (errind.UnknownUserName, "unknown_user"),
    (errind.WrongDigest, "wrong_digest"),
    (errind.AuthenticationFailure, "wrong_digest"),
    (errind.AuthenticationError, "auth_failure"),
    (errind.UnsupportedAuthProtocol, "auth_failure"),
    (errind.DecryptionError, "decryption_error"),
    (errind.UnsupportedPrivProtocol, "decryption_error"),
    (errind.NotInTimeWindow, "not_in_time_window"),
    (errind.UnsupportedSecurityLevel, "unsupported_security_level"),
    (errind.UnsupportedSecurityModel, "unsupported_security_model"),
    (errind.UnsupportedPDUtype, "unsupported_pdu"),
)


def _reason(indication: Any) -> str:
    for cls, label in _REASONS:
        if isinstance(indication, cls):
            return label
    return "malformed"


class _CaptureDispatcher(AbstractTransportDispatcher):  # type: ignore[misc]  # pysnmp is untyped
    """A transport dispatcher that never touches the network: what pysnmp sends is kept."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def send_message(self, outgoingMessage: Any, transportDomain: Any, transportAddress: Any) -> None:
        self.sent.append(bytes(outgoingMessage))


_UDP_DOMAIN = (1, 3, 6, 1, 6, 1, 1)
_INFORM_TAG = v2c.InformRequestPDU.tagSet
_TRAP_TAG = v2c.SNMPv2TrapPDU.tagSet


# -- the processor ------------------------------------------------------------------


@dataclass(slots=True)
class _Cred:
    user: UsmUser
    auth: Any  # pysnmp protocol id
    priv: Any
    auth_master: Any
    priv_master: Any
    level: int


@dataclass(slots=True)
class _Pending:
    deadline: float
    build: Callable[[], bytes | None]
    done: bool = False
    response: bytes | None = None


@dataclass(slots=True)
class V3Stats:
    """Counters of a v3 processor (the pysnmp one and the lean one report the same)."""

    accepted: int = 0
    discovery: int = 0
    learned: int = 0
    expired_responses: int = 0
    #: Messages the lean path handed to pysnmp (always 0 on the pysnmp processor itself).
    fallback: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


class V3Processor:
    """Authenticates and decrypts SNMPv3 notifications with pysnmp's USM.

    pysnmp's ``SnmpEngine`` runs here without a socket: a capture-only transport
    dispatcher is registered, each datagram is handed to the v3 message-processing
    model directly (``prepare_data_elements``: USM authentication, time window,
    decryption, PDU decoding), and whatever pysnmp would send (discovery Reports,
    INFORM Responses) is captured as bytes for the caller to send.

    Every call is synchronous and needs no event loop (it works inside a running
    one, and from any thread: a lock serialises use of the engine, so an INFORM's
    ``respond`` may run on another thread than :meth:`process`).

    Engine IDs: INFORMs are authoritative at our engine, whose ID is kept in
    ``engine_id_path`` and survives restarts. Traps are authoritative at the sender,
    so the sender's engine ID must be listed for the user (``UsmUser.engine_ids``),
    or, with ``learn_engine_ids``, it is accepted and remembered the first time a
    trap from it authenticates (the user's pass phrases localized to it); at most
    ``max_learned`` pairs are learned.

    Attributes:
        engine_id: the local engine ID.
        engine_boots: snmpEngineBoots for this start.
        stats: counters (accepted, discovery, learned, expired_responses, rejected
            by reason).
    """

    def __init__(
        self,
        users: Iterable[UsmUser],
        engine_id_path: str | os.PathLike[str],
        *,
        learn_engine_ids: bool = False,
        max_learned: int = 10_000,
        response_ttl: float = 30.0,
    ) -> None:
        """Build the engine and register the users.

        Args:
            users: USM users. A user name may appear more than once only if every
                repeat lists its own ``engine_ids``; the first entry for a name
                answers INFORMs and is the template for learned engine IDs.
            engine_id_path: file holding the local engine ID (created if absent).
            learn_engine_ids: accept traps from unlisted engine IDs of known users
                once they authenticate.
            max_learned: bound on learned (engine ID, user) pairs.
            response_ttl: seconds an INFORM's ``respond`` stays valid; after that
                the pysnmp state is released (capped at 50 s, below pysnmp's own
                expiry).

        Raises:
            ValueError: an unknown protocol name, a missing or short pass phrase,
                privacy without authentication, a bad engine ID, or a duplicate
                (engine ID, user) pair.
            RuntimeError: a privacy protocol is configured but the ``cryptography``
                package (which pysnmp needs for DES/AES) is not installed.
        """
        self._learn = learn_engine_ids
        self._max_learned = max_learned
        # pysnmp forgets request state after 600 timer ticks (60 s at the earliest).
        self._ttl = min(max(response_ttl, 0.0), 50.0)
        self._lock = threading.RLock()
        self.stats = V3Stats()

        # Validate every user before touching the engine ID file or building the engine.
        auth_services = SnmpUSMSecurityModel.AUTH_SERVICES
        priv_services = SnmpUSMSecurityModel.PRIV_SERVICES
        rows: list[tuple[bytes | None, bytes, _Cred]] = []  # None = the local engine
        templates: dict[bytes, _Cred] = {}
        seen: set[tuple[bytes | None, bytes]] = set()
        for u in users:
            cred = self._cred(u, auth_services, priv_services)
            name = u.user.encode()
            engines: list[bytes | None] = [parse_engine_id(e) for e in u.engine_ids]
            if name not in templates:
                templates[name] = cred
                engines.insert(0, None)
            elif not u.engine_ids:
                raise ValueError(f"user {u.user!r} repeated without engine_ids")
            for eid in engines:
                if (eid, name) in seen:
                    raise ValueError(
                        f"user {u.user!r} listed twice for engine ID {eid.hex() if eid else 'local'}"
                    )
                seen.add((eid, name))
                rows.append((eid, name, cred))
        if any(c.level == 3 for _, _, c in rows):
            try:
                from cryptography.hazmat.decrepit.ciphers.modes import CFB  # noqa: F401
            except ImportError:
                raise RuntimeError("SNMPv3 privacy (DES/AES) needs the 'cryptography' package") from None

        self.engine_id, self.engine_boots = load_or_create_engine_id(engine_id_path)

        engine = SnmpEngine()
        mib = engine.get_mib_builder()
        (eid_sym,) = mib.import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineID")
        eid_sym.syntax = eid_sym.syntax.clone(self.engine_id)
        engine.snmpEngineID = eid_sym.syntax
        (boots_sym,) = mib.import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineBoots")
        boots_sym.syntax = boots_sym.syntax.clone(self.engine_boots)
        self._dispatcher = _CaptureDispatcher()
        engine.register_transport_dispatcher(self._dispatcher)
        self._engine = engine
        self._mp = engine.message_processing_subsystems[3]
        self._sm = engine.security_models[3]

        self._creds: dict[tuple[bytes, bytes], _Cred] = {}  # (engine ID, user) → cred
        self._templates = templates  # user → first entry
        self._learned: set[tuple[bytes, bytes]] = set()
        for eid, name, cred in rows:
            self._register(eid or self.engine_id, name, cred)
        self._pending: dict[int, _Pending] = {}

    @classmethod
    def from_config(cls, config: Any, engine_id_path: str | os.PathLike[str]) -> V3Processor:
        """Build from a listener configuration (``users`` and ``learn_engine_ids``).

        Args:
            config: an object with ``users`` (each as accepted by
                :meth:`UsmUser.from_config`) and ``learn_engine_ids``.
            engine_id_path: file holding the local engine ID.

        Returns:
            The processor.
        """
        return cls(
            [UsmUser.from_config(u) for u in config.users],
            engine_id_path,
            learn_engine_ids=bool(getattr(config, "learn_engine_ids", False)),
        )

    @staticmethod
    def _cred(u: UsmUser, auth_services: dict[Any, Any], priv_services: dict[Any, Any]) -> _Cred:
        try:
            auth = getattr(pconfig, AUTH_PROTOCOLS[u.auth_protocol.lower()])
        except KeyError:
            raise ValueError(f"user {u.user!r}: unknown auth protocol {u.auth_protocol!r}") from None
        try:
            priv = getattr(pconfig, PRIV_PROTOCOLS[u.priv_protocol.lower()])
        except KeyError:
            raise ValueError(f"user {u.user!r}: unknown privacy protocol {u.priv_protocol!r}") from None
        if not u.user:
            raise ValueError("empty USM user name")
        level = u.level
        if level == 1 and priv != pconfig.USM_PRIV_NONE:
            raise ValueError(f"user {u.user!r}: privacy needs authentication")

        def phrase(v: str | bytes | None, what: str) -> bytes:
            raw = v.encode() if isinstance(v, str) else (v or b"")
            if len(raw) < 8:
                raise ValueError(f"user {u.user!r}: {what} pass phrase must have at least 8 characters")
            return raw

        auth_master = priv_master = None
        if level >= 2:
            auth_master = auth_services[auth].hash_passphrase(phrase(u.auth_key, "auth"))
        if level == 3:
            priv_master = priv_services[priv].hash_passphrase(auth, phrase(u.priv_key, "priv"))
        return _Cred(u, auth, priv, auth_master, priv_master, level)

    def _register(self, eid: bytes, name: bytes, cred: _Cred) -> None:
        pconfig.add_v3_user(
            self._engine,
            name,
            cred.auth,
            cred.auth_master,
            cred.priv,
            cred.priv_master,
            securityEngineId=rfc1902.OctetString(eid),
            authKeyType=pconfig.USM_KEY_TYPE_MASTER,
            privKeyType=pconfig.USM_KEY_TYPE_MASTER,
        )
        self._creds[(eid, name)] = cred

    def _unregister(self, eid: bytes, name: bytes) -> None:
        pconfig.delete_v3_user(self._engine, name, securityEngineId=rfc1902.OctetString(eid))
        self._creds.pop((eid, name), None)

    @property
    def learned(self) -> frozenset[tuple[bytes, str]]:
        """The (engine ID, user) pairs learned from traps since start."""
        return frozenset((e, n.decode(errors="replace")) for e, n in self._learned)

    # -- per packet -------------------------------------------------------------------

    def process(self, data: bytes, peer: tuple[Any, ...] | None = None) -> V3Result:
        """Authenticate, decrypt and decode one SNMPv3 datagram.

        Args:
            data: the datagram.
            peer: the sender's socket address (used in error messages only).

        Returns:
            The accepted notification, or a discovery exchange
            (``message is None``, ``respond`` gives the Report).

        Raises:
            V3DecodeError: the message is rejected; ``reason`` is one of
                ``malformed``, ``unsupported_version``, ``unsupported_security_model``,
                ``unknown_user``, ``unknown_engine_id``, ``wrong_digest``,
                ``auth_failure``, ``decryption_error``, ``not_in_time_window``,
                ``unsupported_security_level``, ``unsupported_pdu``. ``report``
                holds a Report to send back when the sender asked for one.
        """
        with self._lock:
            try:
                return self._process(data, peer)
            except V3DecodeError as exc:
                self.stats.rejected[exc.reason] = self.stats.rejected.get(exc.reason, 0) + 1
                raise

    def _process(self, data: bytes, peer: tuple[Any, ...] | None) -> V3Result:
        peer_s = _peer_str(peer)
        now = time.monotonic()
        self._dispatcher.handle_timer_tick(time.time())
        if self._pending:
            self._expire(now)
        try:
            hdr = _parse_header(data)
        except ValueError as exc:
            raise V3DecodeError("malformed", str(exc), peer_s) from None
        if hdr.version != 3:
            raise V3DecodeError("unsupported_version", f"version field {hdr.version}", peer_s)
        if hdr.security_model != 3:
            raise V3DecodeError("unsupported_security_model", f"model {hdr.security_model}", peer_s)
        level = {0: 1, 1: 2, 3: 3}.get(hdr.flags & 0x03)
        if level is None:
            raise V3DecodeError("malformed", "priv flag without auth flag", peer_s)

        eid, name = hdr.engine_id, hdr.user
        tentative = False
        if eid and eid != self.engine_id:
            # A trap: authoritative at the sender.
            cred = self._creds.get((eid, name))
            if cred is None:
                template = self._templates.get(name)
                if template is None:
                    raise V3DecodeError("unknown_user", _user_str(name), peer_s)
                if not self._learn:
                    raise V3DecodeError(
                        "unknown_engine_id", f"{eid.hex()} for user {_user_str(name)}", peer_s
                    )
                if len(self._learned) >= self._max_learned:
                    raise V3DecodeError(
                        "unknown_engine_id", f"{eid.hex()}: learned engine ID limit reached", peer_s
                    )
                if not 5 <= len(eid) <= 32:
                    raise V3DecodeError("malformed", f"engine ID of {len(eid)} octets", peer_s)
                cred = template
                if level == cred.level:
                    self._register(eid, name, cred)
                    tentative = True
            if level != cred.level:
                raise V3DecodeError(
                    "unsupported_security_level",
                    f"user {_user_str(name)} needs {_LEVEL_NAMES[cred.level]}, got {_LEVEL_NAMES[level]}",
                    peer_s,
                )

        sent = self._dispatcher.sent
        sent.clear()
        try:
            (
                _mpm,
                security_model,
                security_name,
                security_level,
                context_engine_id,
                context_name,
                pdu_version,
                pdu,
                _pdu_type,
                _send_handle,
                max_size_response,
                _status,
                state_ref,
            ) = self._mp.prepare_data_elements(self._engine, _UDP_DOMAIN, peer or ("", 0), data)
        except perror.StatusInformation as exc:
            if tentative:
                self._unregister(eid, name)
            report = sent[-1] if sent else None
            sent.clear()
            indication = exc.get("errorIndication")
            reason = _reason(indication)
            if not eid and reason == "unknown_engine_id" and report is not None:
                self.stats.discovery += 1
                answer = report
                return V3Result(message=None, respond=lambda: answer, user=_user_str(name))
            raise V3DecodeError(reason, f"{indication} (user {_user_str(name)})", peer_s, report) from None
        except (PyAsn1Error, perror.ProtocolError, ValueError, TypeError) as exc:
            if tentative:
                self._unregister(eid, name)
            sent.clear()
            raise V3DecodeError(
                "malformed", str(exc).splitlines()[0][:200] if str(exc) else "", peer_s
            ) from None

        if tentative:
            self._learned.add((eid, name))
            self.stats.learned += 1

        tag = pdu.tagSet
        api = v2c.apiPDU
        if tag == _INFORM_TAG:
            pdu_type = PDU_INFORM
        elif tag == _TRAP_TAG:
            pdu_type = PDU_TRAP_V2
        else:
            if state_ref is not None:
                self._release(state_ref)
            raise V3DecodeError("unsupported_pdu", f"PDU {pdu.__class__.__name__}", peer_s)

        varbinds = [(".".join(map(str, o.asTuple())), _convert(v)) for o, v in api.get_varbinds(pdu)]
        message = TrapMessage(
            version=3,
            community=name,
            pdu_type=pdu_type,
            request_id=int(api.get_request_id(pdu)),
            varbinds=varbinds,
            enterprise=None,
            agent_addr=None,
            generic_trap=None,
            specific_trap=None,
            timestamp=None,
        )
        self.stats.accepted += 1
        result = V3Result(
            message=message,
            user=_user_str(name),
            engine_id=bytes(eid),
            security_level=_LEVEL_NAMES.get(int(security_level), str(security_level)),
            learned=tentative,
        )
        if pdu_type == PDU_INFORM:
            engine = self._engine

            def build() -> bytes | None:
                rsp = api.get_response(pdu)
                api.set_error_status(rsp, 0)
                api.set_error_index(rsp, 0)
                api.set_varbinds(rsp, api.get_varbinds(pdu))
                sent.clear()
                try:
                    engine.message_dispatcher.return_response_pdu(
                        engine,
                        3,
                        security_model,
                        security_name,
                        security_level,
                        context_engine_id,
                        context_name,
                        pdu_version,
                        rsp,
                        max_size_response,
                        state_ref,
                        {},
                    )
                except (perror.StatusInformation, perror.ProtocolError):
                    sent.clear()
                    return None
                out = sent[-1] if sent else None
                sent.clear()
                return out

            pending = _Pending(now + self._ttl, build)
            self._pending[state_ref] = pending
            result.respond = lambda: self._respond(state_ref, pending)
        return result

    def _respond(self, state_ref: int, pending: _Pending) -> bytes | None:
        with self._lock:
            if not pending.done:
                if self._pending.pop(state_ref, None) is None:
                    return None  # expired and released
                pending.done = True
                pending.response = pending.build()
            return pending.response

    def _expire(self, now: float) -> None:
        pending = self._pending  # insertion order is deadline order
        while pending:
            ref = next(iter(pending))
            if pending[ref].deadline > now:
                break
            del pending[ref]
            self._release(ref)
            self.stats.expired_responses += 1

    def _release(self, state_ref: int) -> None:
        """Drop the message-processing and USM state kept for an unanswered request."""
        try:
            cached = self._mp._cache.pop_by_state_reference(state_ref)
        except perror.ProtocolError:  # already expired by pysnmp's own clock
            return
        ssr = cached.get("securityStateReference")
        if ssr is not None:
            with contextlib.suppress(perror.ProtocolError):
                self._sm.release_state_information(ssr)


def _peer_str(peer: tuple[Any, ...] | None) -> str | None:
    if not peer:
        return None
    return f"{peer[0]}:{peer[1]}" if len(peer) >= 2 else str(peer[0])


def _user_str(name: bytes) -> str:
    return name.decode("utf-8", errors="replace")
