"""Many simulated SNMP agents in one small process: the poller benchmark's devices.

An agent is a (UDP port, community) pair: ``--ports`` sockets on 127.0.0.1 starting at
``--base-port``, each answering ``--communities`` communities ``c0``, ``c1``, ... — 100 × 100 =
10,000 agents. Each agent has its own boot time, so its sysUpTime.0 is its own. A GetRequest
(v1 or v2c) is answered like an agent does: sysUpTime.0 as TimeTicks, any other OID as
noSuchObject (v2c); an unknown community gets no answer. ``tests/integration/test_poll_responder.py``
checks it against net-snmp's ``snmpget``.

Run: ``python -m bench.poll_responder --base-port 20000 --ports 100 --communities 100``
(prints ``ready`` once listening; SIGTERM stops it and prints the answer count).
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import sys
import time
import zlib

__all__ = ["Responder", "answer"]

_SYS_UPTIME = bytes.fromhex("06082b06010201010300")  # OID TLV of 1.3.6.1.2.1.1.3.0


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    k = (n.bit_length() + 7) // 8
    return bytes((0x80 | k,)) + n.to_bytes(k, "big")


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _len(len(content)) + content


def _read(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at ``pos``."""
    tag = data[pos]
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    if pos + n > len(data):
        raise ValueError("truncated")
    return tag, pos, pos + n


def answer(request: bytes, uptime_of: dict[bytes, float], now: float) -> bytes | None:
    """The Response to a v1/v2c GetRequest, or ``None`` (not a GET, unknown community, garbage).

    ``uptime_of`` maps community → boot time (epoch seconds).
    """
    try:
        tag, pos, _end = _read(request, 0)
        if tag != 0x30:
            return None
        tag, s, e = _read(request, pos)
        version = int.from_bytes(request[s:e], "big")
        if tag != 0x02 or version not in (0, 1):
            return None
        tag, s, e = _read(request, e)
        community = request[s:e]
        boot = uptime_of.get(community)
        if tag != 0x04 or boot is None:
            return None
        tag, pdu_s, _pdu_e = _read(request, e)
        if tag != 0xA0:
            return None
        tag, s, rid_e = _read(request, pdu_s)
        rid_tlv = request[pdu_s:rid_e]
        _, _, e = _read(request, rid_e)  # error-status
        _, _, e = _read(request, e)  # error-index
        tag, vbl_s, vbl_e = _read(request, e)
        out = []
        pos = vbl_s
        ticks = int((now - boot) * 100) & 0xFFFF_FFFF
        errors = b"\x02\x01\x00\x02\x01\x00"
        index = 0
        while pos < vbl_e:
            index += 1
            _, vb_s, vb_e = _read(request, pos)
            _, _oid_s, oid_e = _read(request, vb_s)
            oid_tlv = request[vb_s:oid_e]
            if oid_tlv == _SYS_UPTIME:
                value = _tlv(0x43, ticks.to_bytes((ticks.bit_length() + 8) // 8, "big"))
            elif version == 1:
                value = b"\x80\x00"  # v2c: noSuchObject
            else:
                value = b"\x05\x00"  # v1: the varbind echoed, error-status noSuchName (2) at its index
                if errors.endswith(b"\x00\x02\x01\x00"):
                    errors = b"\x02\x01\x02" + _tlv(0x02, bytes((index,)) if index < 128 else index.to_bytes(2, "big"))
            out.append(_tlv(0x30, oid_tlv + value))
            pos = vb_e
        head = _tlv(0x02, bytes((version,))) + _tlv(0x04, community)
        pdu = _tlv(0xA2, rid_tlv + errors + _tlv(0x30, b"".join(out)))
        return _tlv(0x30, head + pdu)
    except (IndexError, ValueError):
        return None


class Responder:
    """The agents of ``ports`` × ``communities``; :meth:`serve` answers until stopped."""

    def __init__(self, base_port: int, ports: int, communities: int, host: str = "127.0.0.1") -> None:
        now = time.time()
        self.socks: list[socket.socket] = []
        self.boots: dict[int, dict[bytes, float]] = {}
        for i in range(ports):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            s.bind((host, base_port + i))
            s.setblocking(False)
            self.socks.append(s)
            port = s.getsockname()[1]
            # A stable boot time per agent, between 1 hour and ~11 days ago.
            self.boots[s.fileno()] = {
                f"c{c}".encode(): now - 3600 - zlib.crc32(f"{port}/{c}".encode()) % 900_000 for c in range(communities)
            }
        self.answered = 0
        self.ignored = 0
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def serve(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self.socks:
            sel.register(s, selectors.EVENT_READ)
        try:
            while not self._stop:
                for key, _ in sel.select(0.2):
                    s = key.fileobj
                    assert isinstance(s, socket.socket)
                    boots = self.boots[s.fileno()]
                    for _ in range(64):
                        try:
                            data, addr = s.recvfrom(2048)
                        except (BlockingIOError, InterruptedError):
                            break
                        resp = answer(data, boots, time.time())
                        if resp is None:
                            self.ignored += 1
                            continue
                        s.sendto(resp, addr)
                        self.answered += 1
        finally:
            sel.close()

    def close(self) -> None:
        for s in self.socks:
            s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-port", type=int, default=20000)
    ap.add_argument("--ports", type=int, default=100)
    ap.add_argument("--communities", type=int, default=100)
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    a = ap.parse_args()
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    r = Responder(a.base_port, a.ports, a.communities)
    signal.signal(signal.SIGTERM, lambda *_: r.stop())
    print("ready", flush=True)
    try:
        r.serve()
    finally:
        r.close()
        print(f"answered {r.answered} ignored {r.ignored}", flush=True)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
