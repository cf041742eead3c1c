"""The INFORM table of the SNMP adapter (retransmissions within INFORM_TTL are one
notification): recorded once, answered after the commit and again on every retransmission,
and made of objects the garbage collector does not track — at 10,000 INFORMs/s its entries
as lists made each full collection take 20-70 ms, the tail of the INFORM round trip."""

from __future__ import annotations

import gc
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.snmp import ber
from adapters.snmp.config import SnmpListenerConfig
from adapters.snmp.receiver import INFORM_TTL, SnmpAdapter
from gateway.clock import ManualClock
from gateway.model import Event


class _Sink:
    """Takes INFORM groups; the test decides when each group's commit is done."""

    def __init__(self) -> None:
        self.groups: list[tuple[list[Event], Callable[[bool], None]]] = []

    def offer_many(self, events: list[Event]) -> int:
        return len(events)

    def submit_many(self, events: list[Event], on_commit: Callable[[bool], None], keys: Any = None,
                    in_writer: bool = False) -> int:
        self.groups.append((events, on_commit))
        return len(events)

    def lookup_device(self, key: str) -> str | None:
        return None


def _inform(request_id: int, index: int) -> bytes:
    return ber.encode_trap(ber.TrapMessage(ber.V2C, b"public", ber.PDU_INFORM, request_id, [
        ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, 100)),
        ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, "1.3.6.1.6.3.1.1.5.3")),
        (f"1.3.6.1.2.1.2.2.1.1.{index}", index),
    ]))


@pytest.fixture
def rig() -> Iterator[tuple[SnmpAdapter, _Sink, socket.socket, ManualClock]]:
    clock = ManualClock(1000.0)
    a = SnmpAdapter(SnmpListenerConfig(communities=["public"]), clock)
    sink = _Sink()
    a._sink = sink  # type: ignore[assignment]
    a._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(2)
    try:
        yield a, sink, peer, clock
    finally:
        a._sock.close()
        peer.close()


def _receive(a: SnmpAdapter, data: bytes, peer: socket.socket) -> None:
    plain: list[Event] = []
    informs: list[Any] = []
    a._handle(data, peer.getsockname(), a.clock.now(), plain, informs)
    a._deliver(plain, informs)


def _answers(peer: socket.socket) -> list[int]:
    out = []
    peer.setblocking(False)
    try:
        while True:
            out.append(ber.decode(peer.recv(65535)).request_id)
    except BlockingIOError:
        pass
    finally:
        peer.setblocking(True)
    return out


def test_one_record_one_answer_after_commit_and_one_per_retransmission(rig: Any) -> None:
    a, sink, peer, _clock = rig
    pkt = _inform(7, 1)
    _receive(a, pkt, peer)
    _receive(a, pkt, peer)  # retransmitted before the commit: waits for it
    assert len(sink.groups) == 1 and len(sink.groups[0][0]) == 1
    assert _answers(peer) == []
    sink.groups[0][1](True)  # committed
    assert _answers(peer) == [7]
    _receive(a, pkt, peer)  # retransmitted after: answered again, not recorded again
    assert len(sink.groups) == 1
    assert _answers(peer) == [7]
    assert a.counters["informs.retransmitted"] == 2


def test_after_the_ttl_the_same_inform_is_a_new_notification(rig: Any) -> None:
    a, sink, peer, clock = rig
    pkt = _inform(8, 2)
    _receive(a, pkt, peer)
    sink.groups[0][1](True)
    clock.advance(INFORM_TTL + 1)
    _receive(a, pkt, peer)
    assert len(sink.groups) == 2
    assert not a._answered - set(a._informs)  # the marks leave with their entries


def test_the_table_holds_nothing_the_garbage_collector_tracks(rig: Any) -> None:
    a, sink, peer, _clock = rig
    for i in range(200):
        _receive(a, _inform(100 + i, i % 48), peer)
    for _events, on_commit in sink.groups:
        on_commit(True)
    gc.collect()
    assert len(a._informs) == 200 and len(a._answered) == 200
    tracked = [x for k, v in a._informs.items() for x in (k, v) if gc.is_tracked(x)]
    tracked += [k for k in a._answered if gc.is_tracked(k)]
    assert not tracked, tracked[:3]
