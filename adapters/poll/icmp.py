"""ICMP echo (IPv4) for the poller, unprivileged where the kernel allows it.

Which socket, and why:

1. ``SOCK_DGRAM`` + ``IPPROTO_ICMP`` (Linux "ping sockets"): no privilege needed when the
   process's group is inside ``net.ipv4.ping_group_range``. The kernel fills in the echo
   identifier and routes replies to the socket, so nothing else's ICMP is seen. Preferred.
2. ``SOCK_RAW`` + ``IPPROTO_ICMP``: needs root or ``CAP_NET_RAW``; sees every ICMP packet
   the host receives, so replies are matched by our identifier and sequence number.
3. Neither: ICMP polling is unavailable. The adapter says so once, with the reason and the
   fix (``sysctl -w net.ipv4.ping_group_range="0 2147483647"`` or ``CAP_NET_RAW``), counts
   every ICMP check it could not make (``icmp.unavailable``) and keeps polling SNMP; a
   device polled by ICMP only then gets no heartbeats and is reported lost by the watchdog,
   which is the honest answer (the gateway cannot tell whether it is alive).

No ``ping`` subprocess: one process per echo costs milliseconds of CPU; a socket costs
microseconds, and one socket serves every device.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
from collections.abc import Callable

__all__ = ["IcmpPinger", "open_icmp_socket"]

_ECHO_REQUEST = 8
_ECHO_REPLY = 0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def open_icmp_socket() -> tuple[socket.socket | None, str, str]:
    """``(socket, mode, why)``: mode ``dgram`` or ``raw``; ``(None, "unavailable", reason)``."""
    problems = []
    for kind, mode in ((socket.SOCK_DGRAM, "dgram"), (socket.SOCK_RAW, "raw")):
        try:
            s = socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP)
        except OSError as e:
            problems.append(f"{mode}: {e.strerror or e}")
            continue
        s.setblocking(False)
        return s, mode, ""
    why = (
        "ICMP sockets are not allowed for this process (" + "; ".join(problems) + "): put its group in "
        "net.ipv4.ping_group_range (sysctl -w net.ipv4.ping_group_range=\"0 2147483647\") or give it CAP_NET_RAW"
    )
    return None, "unavailable", why


class IcmpPinger:
    """Echo requests and their replies over one socket.

    Args:
        sock_factory: opens the socket (tests pass one that fails); default
            :func:`open_icmp_socket`.
        bind: local address to bind to ("" = any).
    """

    def __init__(
        self,
        sock_factory: Callable[[], tuple[socket.socket | None, str, str]] = open_icmp_socket,
        bind: str = "",
    ) -> None:
        self._sock, self.mode, self.why = sock_factory()
        if self._sock is not None and bind:
            self._sock.bind((bind, 0))
        self._ident = os.getpid() & 0xFFFF
        self._seq = 0
        self._pending: dict[tuple[str, int], asyncio.Future[float]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Replies that matched no request (late, duplicated, or another program's).
        self.unmatched = 0

    @property
    def available(self) -> bool:
        return self._sock is not None

    def start(self) -> None:
        if self._sock is None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def close(self) -> None:
        if self._sock is None:
            return
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()

    async def echo(self, host: str, timeout: float) -> float | None:
        """Round-trip time in seconds of one echo to ``host`` (an IPv4 address), ``None``
        when no reply came within ``timeout``.

        Raises:
            OSError: the request could not be sent (no route, unavailable socket).
        """
        if self._sock is None or self._loop is None:
            raise OSError(errno.EPERM, self.why or "ICMP is not available")
        self._seq = (self._seq + 1) & 0xFFFF
        seq = self._seq
        key = (host, seq)
        while key in self._pending:  # 65,536 echoes to one host in flight: wait a sequence number
            self._seq = (self._seq + 1) & 0xFFFF
            seq = self._seq
            key = (host, seq)
        sent = self._loop.time()
        payload = struct.pack("!d", sent)
        header = struct.pack("!BBHHH", _ECHO_REQUEST, 0, 0, self._ident, seq)
        packet = struct.pack("!BBHHH", _ECHO_REQUEST, 0, _checksum(header + payload), self._ident, seq) + payload
        fut: asyncio.Future[float] = self._loop.create_future()
        self._pending[key] = fut
        try:
            self._sock.sendto(packet, (host, 0))
            return await asyncio.wait_for(fut, timeout) - sent
        except TimeoutError:
            return None
        finally:
            self._pending.pop(key, None)

    def _readable(self) -> None:
        sock, loop = self._sock, self._loop
        if sock is None or loop is None:
            return
        for _ in range(256):
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if self.mode == "raw":
                if len(data) < 20:
                    continue
                data = data[(data[0] & 0x0F) * 4 :]
            if len(data) < 8 or data[0] != _ECHO_REPLY:
                continue
            ident, seq = struct.unpack_from("!HH", data, 4)
            if self.mode == "raw" and ident != self._ident:
                continue  # another program's echo
            fut = self._pending.get((addr[0], seq))
            if fut is None or fut.done():
                self.unmatched += 1
                continue
            fut.set_result(loop.time())
