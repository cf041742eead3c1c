"""MQTT 3.1.1 wire format for a subscriber: the packets it sends, and a stream parser for the
packets a broker sends it (OASIS MQTT 3.1.1, section 2 and 3).

Pure: bytes in, bytes or tuples out; no sockets, no clock. Only what a subscribing client
needs: CONNECT, SUBSCRIBE, PUBACK, PINGREQ, DISCONNECT out; CONNACK, SUBACK, PUBLISH,
PINGRESP (and, for completeness, UNSUBACK / PUBACK) in. QoS 2 is never requested, so
PUBREC/PUBREL/PUBCOMP never arrive; a broker that sends them anyway is a protocol error.

Why it exists next to paho: the receive loop is the hot path of heartbeat ingest. paho reads
each packet with several ``recv`` calls and one callback per message; :class:`StreamParser`
takes whatever one ``recv`` returned and splits every complete PUBLISH out of it in one
loop. paho stays the reference: ``tests/unit/test_mqtt_wire.py`` checks this parser
against paho's own packet handling and the encoders against paho's encoders.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CONNACK",
    "DISCONNECT",
    "PINGREQ",
    "PINGRESP",
    "PUBACK",
    "PUBLISH",
    "SUBACK",
    "UNSUBACK",
    "ProtocolError",
    "Publish",
    "StreamParser",
    "connack_error",
    "encode_connect",
    "encode_puback",
    "encode_publish",
    "encode_subscribe",
    "remaining_length",
]

CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
SUBSCRIBE: Final = 8
SUBACK: Final = 9
UNSUBACK: Final = 11
PINGREQ_T: Final = 12
PINGRESP: Final = 13
DISCONNECT_T: Final = 14

PINGREQ: Final = b"\xc0\x00"
DISCONNECT: Final = b"\xe0\x00"

#: A PUBLISH as parsed: (topic bytes, payload bytes, qos, packet id or 0, retain, dup).
Publish = tuple[bytes, bytes, int, int, bool, bool]

_CONNACK_TEXT: Final = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}
_MAX_REMAINING: Final = 268_435_455


class ProtocolError(Exception):
    """The byte stream is not MQTT 3.1.1 a broker may send to a subscriber."""


def connack_error(code: int) -> str:
    """Text for a CONNACK return code (``0`` is success)."""
    return _CONNACK_TEXT.get(code, f"refused (code {code})")


def remaining_length(n: int) -> bytes:
    """The variable-length "remaining length" field (1–4 bytes)."""
    if not 0 <= n <= _MAX_REMAINING:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    if len(b) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return len(b).to_bytes(2, "big") + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + remaining_length(len(body)) + body


def encode_connect(
    client_id: str,
    *,
    clean_session: bool = True,
    keepalive: int = 60,
    username: str | None = None,
    password: str | None = None,
    will: tuple[str, bytes, int, bool] | None = None,
) -> bytes:
    """CONNECT (MQTT 3.1.1, protocol level 4).

    Args:
        client_id: may be empty only with ``clean_session`` (the broker then assigns one).
        clean_session: start a new session (``False`` resumes the stored one).
        keepalive: seconds; the client must send something at least this often.
        username: user name, if any.
        password: password (sent only with a user name, as 3.1.1 requires).
        will: (topic, payload, qos, retain) published by the broker if the client dies.
    """
    if not client_id and not clean_session:
        raise ValueError("an empty client id needs clean_session")
    if not 0 <= keepalive <= 0xFFFF:
        raise ValueError("keepalive out of range")
    flags = 0x02 if clean_session else 0
    payload = _str(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + _str(message)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    body = _str("MQTT") + bytes((4, flags)) + keepalive.to_bytes(2, "big") + payload
    return _packet(CONNECT << 4, body)


def encode_subscribe(packet_id: int, topics: list[tuple[str, int]]) -> bytes:
    """SUBSCRIBE with one or more (filter, requested QoS)."""
    if not topics:
        raise ValueError("SUBSCRIBE needs at least one topic")
    body = packet_id.to_bytes(2, "big") + b"".join(_str(t) + bytes((q,)) for t, q in topics)
    return _packet((SUBSCRIBE << 4) | 0x02, body)


def encode_puback(packet_id: int) -> bytes:
    """PUBACK for a QoS 1 PUBLISH."""
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


def encode_publish(topic: str | bytes, payload: bytes, qos: int = 0, packet_id: int = 0, retain: bool = False,
                   dup: bool = False) -> bytes:
    """PUBLISH (used by load generators and tests; the gateway itself only subscribes)."""
    first = (PUBLISH << 4) | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
    body = _str(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return _packet(first, body)


class StreamParser:
    """Splits a TCP byte stream from a broker into packets.

    :meth:`feed` returns the PUBLISH packets completed by ``data`` (in order) and keeps the
    others (CONNACK, SUBACK, PINGRESP, ...) in :attr:`control` as ``(type, flags, body)``
    for the connection to act on. An incomplete packet at the end waits for the next feed.

    A PUBLISH whose remaining length exceeds ``max_packet`` is read past without being
    buffered: its topic and packet id are kept in :attr:`oversized` as
    ``(topic, qos, packet id or 0, remaining length)`` (the connection acknowledges and
    counts it) and its payload bytes are discarded as they arrive. One such message must
    not cost the connection: a broker redelivers an unacknowledged QoS 1 message on every
    reconnect, so dropping the connection over it would loop for good.

    Args:
        max_packet: larger PUBLISH packets are skipped as above; any other larger packet is
            a protocol error (a broker never sends big control packets).
    """

    __slots__ = ("_buf", "_held", "_need", "_skip", "control", "max_packet", "oversized")

    def __init__(self, max_packet: int = _MAX_REMAINING) -> None:
        self._buf = b""
        # A large packet arriving in many reads is collected in a list and joined once
        # (repeated bytes concatenation would copy it quadratically).
        self._held: list[bytes] = []
        self._need = 0
        self._skip = 0  # bytes of an oversized PUBLISH still to discard
        self.max_packet = max_packet
        self.control: list[tuple[int, int, bytes]] = []
        self.oversized: list[tuple[bytes, int, int, int]] = []

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete packet held back."""
        return len(self._buf) + sum(len(c) for c in self._held)

    def feed(self, data: bytes) -> list[Publish]:
        """Parse ``data`` (appended to what was held back).

        Raises:
            ProtocolError: a malformed packet; the stream cannot be resynchronised.
        """
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return []
            data = data[self._skip :]
            self._skip = 0
        if self._held:
            self._held.append(data)
            self._need -= len(data)
            if self._need > 0:
                return []
            data = b"".join(self._held)
            self._held = []
        buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        out: list[Publish] = []
        append = out.append
        control = self.control
        max_packet = self.max_packet
        while n - pos >= 2:
            first = buf[pos]
            b = buf[pos + 1]
            if b < 0x80:
                size = b
                hp = pos + 2
            else:
                size = b & 0x7F
                shift = 7
                hp = pos + 2
                while True:
                    if hp >= n:
                        size = -1
                        break
                    b = buf[hp]
                    hp += 1
                    size |= (b & 0x7F) << shift
                    if b < 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise ProtocolError("remaining length longer than 4 bytes")
                if size < 0:
                    break
            end = hp + size
            if size > max_packet:
                if first >> 4 != PUBLISH:
                    raise ProtocolError(f"packet of {size} bytes exceeds the limit of {max_packet}")
                qos = (first >> 1) & 3
                if qos == 3:
                    raise ProtocolError("PUBLISH with QoS 3")
                if n - hp < 2:
                    break  # the topic length is in the next read
                tend = hp + 2 + ((buf[hp] << 8) | buf[hp + 1])
                hend = tend + 2 if qos else tend
                if hend > end:
                    raise ProtocolError("PUBLISH topic/packet id overruns the packet")
                if hend > n:
                    break  # topic and packet id (at most 64 KiB) are in a later read
                self.oversized.append((bytes(buf[hp + 2 : tend]), qos, (buf[tend] << 8) | buf[tend + 1] if qos else 0,
                                       size))
                if end > n:
                    self._skip = end - n
                    self._buf = b""
                    return out
                pos = end
                continue
            if end > n:
                if end - pos > 65536:
                    self._held = [bytes(buf[pos:])]
                    self._need = end - n
                    self._buf = b""
                    return out
                break
            kind = first >> 4
            if kind == PUBLISH:
                qos = (first >> 1) & 3
                if size < 2:
                    raise ProtocolError("PUBLISH too short")
                tend = hp + 2 + ((buf[hp] << 8) | buf[hp + 1])
                if qos:
                    if qos == 3:
                        raise ProtocolError("PUBLISH with QoS 3")
                    if tend + 2 > end:
                        raise ProtocolError("PUBLISH topic/packet id overruns the packet")
                    append((buf[hp + 2 : tend], buf[tend + 2 : end], qos, (buf[tend] << 8) | buf[tend + 1],
                            bool(first & 1), bool(first & 8)))
                else:
                    if tend > end:
                        raise ProtocolError("PUBLISH topic overruns the packet")
                    append((buf[hp + 2 : tend], buf[tend:end], 0, 0, bool(first & 1), bool(first & 8)))
            elif kind in (CONNACK, SUBACK, PINGRESP, UNSUBACK, PUBACK):
                control.append((kind, first & 0x0F, bytes(buf[hp:end])))
            else:
                raise ProtocolError(f"unexpected packet type {kind} from the broker")
            pos = end
        self._buf = bytes(buf[pos:]) if pos < n else b""
        return out
