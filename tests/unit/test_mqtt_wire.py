"""The MQTT 3.1.1 codec of the ``wire`` client, checked against itself (round trips over any
chunking), against garbage, and against paho-mqtt: paho connects to a fake broker here, so the
CONNECT and SUBSCRIBE it sends are compared byte for byte with ours, and PUBLISH packets are
read by both paho and :class:`StreamParser` and must come out the same."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.mqtt.wire import (
    PINGREQ,
    ProtocolError,
    StreamParser,
    encode_connect,
    encode_puback,
    encode_publish,
    encode_subscribe,
    remaining_length,
)

topics = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#"), min_size=1, max_size=40)
publishes = st.tuples(
    topics,
    st.binary(max_size=300),
    st.sampled_from([0, 1]),
    st.integers(1, 0xFFFF),
    st.booleans(),
    st.booleans(),
)


def _expected(pubs: list[tuple[str, bytes, int, int, bool, bool]]) -> list[tuple[bytes, bytes, int, int, bool, bool]]:
    return [(t.encode(), p, q, pid if q else 0, r, d) for t, p, q, pid, r, d in pubs]


def _stream(pubs: list[tuple[str, bytes, int, int, bool, bool]]) -> bytes:
    return b"".join(encode_publish(t, p, q, pid if q else 0, r, d) for t, p, q, pid, r, d in pubs)


@given(st.lists(publishes, max_size=20), st.lists(st.integers(1, 64), max_size=30))
@settings(max_examples=200, deadline=None)
def test_any_chunking_gives_the_same_publishes(pubs: list[Any], cuts: list[int]) -> None:
    data = b"\x20\x02\x00\x00" + _stream(pubs) + b"\xd0\x00"  # CONNACK ... PINGRESP
    parser = StreamParser()
    out = []
    pos = 0
    for c in cuts:
        out += parser.feed(data[pos : pos + c])
        pos += c
    out += parser.feed(data[pos:])
    assert out == _expected(pubs)
    assert [k for k, _, _ in parser.control] == [2, 13]
    assert parser.buffered == 0


def test_a_large_packet_over_many_reads_is_joined_once() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB
    data = encode_publish("a/b", big, 1, 7) + encode_publish("c", b"x")
    parser = StreamParser()
    out = []
    for i in range(0, len(data), 1000):
        out += parser.feed(data[i : i + 1000])
    assert out == [(b"a/b", big, 1, 7, False, False), (b"c", b"x", 0, 0, False, False)]


@given(st.lists(publishes, max_size=8), st.lists(st.integers(1, 700), max_size=40), st.sampled_from([0, 1]))
@settings(max_examples=200, deadline=None)
def test_an_oversized_publish_is_skipped_unbuffered_and_the_stream_goes_on(
    pubs: list[Any], cuts: list[int], qos: int
) -> None:
    """Issue 21 item 2: a PUBLISH over the limit is read past (topic and packet id kept so
    it can be acknowledged), never buffered, and what follows it still parses."""
    limit = 300 + 2 + 40 * 4 + 2  # the largest packet `publishes` makes
    big = encode_publish("big/topic", b"\xab" * 5000, qos, 4242)
    half = len(pubs) // 2
    data = _stream(pubs[:half]) + big + _stream(pubs[half:]) + b"\xd0\x00"
    parser = StreamParser(max_packet=limit)
    out = []
    pos = 0
    for c in cuts:
        out += parser.feed(data[pos : pos + c])
        assert parser.buffered <= max(c, limit) + 5  # never the oversized payload
        pos += c
    out += parser.feed(data[pos:])
    assert out == _expected(pubs)
    assert parser.oversized == [(b"big/topic", qos, 4242 if qos else 0, len(big) - 3)]
    assert [k for k, _, _ in parser.control] == [13]
    assert parser.buffered == 0


def test_an_oversized_control_packet_is_still_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        StreamParser(max_packet=10).feed(b"\x90\x20" + b"\x00" * 32)


@given(st.lists(publishes, min_size=1, max_size=5), st.data())
@settings(max_examples=100, deadline=None)
def test_a_truncated_stream_yields_a_prefix_and_waits(pubs: list[Any], data: st.DataObject) -> None:
    stream = _stream(pubs)
    cut = data.draw(st.integers(0, len(stream) - 1))
    got = StreamParser().feed(stream[:cut])
    assert got == _expected(pubs)[: len(got)]
    assert len(got) < len(pubs)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_garbage_raises_only_protocol_error(data: bytes) -> None:
    parser = StreamParser(max_packet=1 << 16)
    try:
        for pub in parser.feed(data):
            assert len(pub) == 6
    except ProtocolError:
        pass


@pytest.mark.parametrize(
    "data, why",
    [
        (b"\x36\x03\x00\x01a", "QoS 3"),
        (b"\x30\x01\x00", "too short"),
        (b"\x30\x03\x00\x05a", "overruns"),
        (b"\x32\x04\x00\x02ab", "overruns"),
        (b"\x60\x02\x00\x01", "unexpected packet type 6"),
        (b"\x30\xff\xff\xff\xff\x01", "longer than 4 bytes"),
    ],
)
def test_malformed_packets_are_named(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        StreamParser().feed(data)


def test_remaining_length_matches_the_spec_examples() -> None:
    # MQTT 3.1.1, table 2.4: the boundaries of 1-4 byte encodings.
    assert remaining_length(0) == b"\x00"
    assert remaining_length(127) == b"\x7f"
    assert remaining_length(128) == b"\x80\x01"
    assert remaining_length(16_383) == b"\xff\x7f"
    assert remaining_length(16_384) == b"\x80\x80\x01"
    assert remaining_length(268_435_455) == b"\xff\xff\xff\x7f"
    with pytest.raises(ValueError):
        remaining_length(268_435_456)


def test_puback_and_empty_client_id_rules() -> None:
    assert encode_puback(0x1234) == b"\x40\x02\x12\x34"
    with pytest.raises(ValueError, match="clean_session"):
        encode_connect("", clean_session=False)


# ====================================================================== paho as the reference


class FakeBroker:
    """A listening socket that records what paho sends and answers like a broker would."""

    def __init__(self) -> None:
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.conn: socket.socket | None = None
        self.parser_in = b""

    def accept(self) -> socket.socket:
        self.srv.settimeout(5)
        self.conn, _ = self.srv.accept()
        self.conn.settimeout(5)
        return self.conn

    def read_packet(self) -> bytes:
        """One whole packet as sent by the client."""
        assert self.conn is not None
        buf = self.parser_in
        while True:
            if len(buf) >= 2:
                size, shift, i = 0, 0, 1
                while i < len(buf):
                    b = buf[i]
                    size |= (b & 0x7F) << shift
                    i += 1
                    if b < 0x80:
                        if len(buf) >= i + size:
                            self.parser_in = buf[i + size :]
                            return buf[: i + size]
                        break
                    shift += 7
            chunk = self.conn.recv(65536)
            assert chunk, "client closed"
            buf += chunk

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.srv.close()


def _paho(client_id: str, clean: bool) -> paho.Client:
    return paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                       protocol=paho.MQTTv311)


@pytest.mark.parametrize(
    "client_id, clean, keepalive, user, password",
    [
        ("gw-1", True, 30, None, None),
        ("gw-persistent", False, 600, "gateway", "s3cret"),
        ("gw-ünïcode", True, 5, "user-only", None),
    ],
)
def test_connect_and_subscribe_bytes_equal_pahos(client_id: str, clean: bool, keepalive: int, user: str | None,
                                                 password: str | None) -> None:
    broker = FakeBroker()
    c = _paho(client_id, clean)
    if user is not None:
        c.username_pw_set(user, password)
    try:
        c.connect("127.0.0.1", broker.port, keepalive=keepalive)
        broker.accept()
        c.loop_write()
        assert broker.read_packet() == encode_connect(client_id, clean_session=clean, keepalive=keepalive,
                                                      username=user, password=password)
        broker.conn.sendall(b"\x20\x02\x00\x00")  # type: ignore[union-attr]
        c.loop_read()
        topics = [("site/+/device/+/heartbeat", 0), ("$share/g/lwt/+", 1)]
        _, mid = c.subscribe(topics)
        c.loop_write()
        assert broker.read_packet() == encode_subscribe(mid, topics)
    finally:
        c.socket() and c.socket().close()  # type: ignore[union-attr]
        broker.close()


@given(st.lists(publishes, min_size=1, max_size=15))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_publishes_read_by_paho_and_by_the_parser_agree(pubs: list[Any]) -> None:
    broker = FakeBroker()
    c = _paho("diff", True)
    got: list[tuple[bytes, bytes, int, int, bool, bool]] = []
    c.on_message = lambda _c, _u, m: got.append((m._topic, m.payload, m.qos, m.mid if m.qos else 0, m.retain, m.dup))
    try:
        c.connect("127.0.0.1", broker.port, keepalive=60)
        conn = broker.accept()
        c.loop_write()
        broker.read_packet()
        stream = b"\x20\x02\x00\x00" + _stream(pubs)
        conn.sendall(stream)
        deadline = time.monotonic() + 5
        while len(got) < len(pubs) and time.monotonic() < deadline:
            c.loop_read(max_packets=len(pubs) + 1)
        ours = StreamParser().feed(stream)
        assert got == ours == _expected(pubs)
    finally:
        c.socket() and c.socket().close()  # type: ignore[union-attr]
        broker.close()


def test_pingreq_is_what_paho_sends() -> None:
    broker = FakeBroker()
    c = _paho("ping", True)
    try:
        c.connect("127.0.0.1", broker.port, keepalive=1)
        broker.accept()
        c.loop_write()
        broker.read_packet()
        broker.conn.sendall(b"\x20\x02\x00\x00")  # type: ignore[union-attr]
        c.loop_read()
        done = threading.Event()
        deadline = time.monotonic() + 5
        pkt = b""
        while not done.is_set() and time.monotonic() < deadline:
            c.loop_misc()
            c.loop_write()
            broker.conn.settimeout(0.2)  # type: ignore[union-attr]
            try:
                pkt = broker.read_packet()
                done.set()
            except TimeoutError:
                continue
        assert pkt == PINGREQ
    finally:
        c.socket() and c.socket().close()  # type: ignore[union-attr]
        broker.close()
