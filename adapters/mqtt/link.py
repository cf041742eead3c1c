"""One MQTT 3.1.1 subscriber connection on asyncio: connect, subscribe, receive in batches,
acknowledge, keep alive. The default receive path of the MQTT adapter (``client = "wire"``).

Shape::

    link = await Link.open(host, port, on_publishes, client_id=..., ssl=ctx, ...)   # CONNECT/CONNACK
    granted = await link.subscribe([(filter, qos), ...])                               # SUBSCRIBE/SUBACK
    link.start_delivery()        # from now on_publishes(list_of_publish_tuples) is called
                                 # from data_received (earlier arrivals first)
    link.ack(packet_id)          # PUBACKs are coalesced and written once per loop turn
    await link.wait_closed()     # raises LinkError when the connection ends, whoever ended it
    link.close()                 # DISCONNECT (after the pending PUBACKs), then close
    await link.aclose(timeout)   # the same, returning once the socket is closed

Everything one ``recv`` brought is parsed in one go (:class:`~adapters.mqtt.wire.StreamParser`)
and handed over as one list: no task, future or queue hop per message. ``pause()`` /
``resume()`` stop and restart reading from the socket, so a consumer that falls behind pushes
back on the broker through TCP instead of buffering here (the broker then queues or drops per
its own limits, and counts what it drops in ``$SYS``).

Keepalive: a PINGREQ every ``keepalive / 2`` seconds; no PINGRESP (or any other byte) within
``keepalive`` of it means the connection is dead, and it is aborted.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Any

from adapters.mqtt.wire import (
    CONNACK,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    SUBACK,
    ProtocolError,
    Publish,
    StreamParser,
    connack_error,
    encode_connect,
    encode_puback,
    encode_subscribe,
)

__all__ = ["Link", "LinkError"]


class LinkError(ConnectionError):
    """The connection could not be made, was refused, or ended."""


OnPublishes = Callable[[list[Publish]], None]
#: Called with (topic, qos, packet id or 0, remaining length) of a discarded oversized PUBLISH.
OnOversized = Callable[[bytes, int, int, int], None]


class Link(asyncio.Protocol):
    """A subscriber connection; build it with :meth:`open`."""

    def __init__(self, on_publishes: OnPublishes, keepalive: int, max_packet: int,
                 on_oversized: OnOversized | None = None) -> None:
        self._on_publishes = on_publishes
        self._on_oversized = on_oversized
        self._keepalive = keepalive
        self._parser = StreamParser(max_packet)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._connack: asyncio.Future[tuple[bool, int]] = self._loop.create_future()
        self._subacks: dict[int, asyncio.Future[bytes]] = {}
        self._next_id = 0
        self._acks: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._ping_sent: float | None = None
        self._last_rx = time.monotonic()
        self._pinger: asyncio.Task[None] | None = None
        self._paused = False
        # A persistent session's messages can arrive in the same read as the CONNACK: they
        # wait here until the owner says it is ready for them (start_delivery).
        self._early: list[Publish] | None = []
        self.session_present = False

    # ------------------------------------------------------------------ opening

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        on_publishes: OnPublishes,
        *,
        client_id: str = "",
        clean_session: bool = True,
        keepalive: int = 60,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        max_packet: int = 16 * 2**20,
        on_oversized: OnOversized | None = None,
    ) -> Link:
        """Connect, send CONNECT and wait for a successful CONNACK.

        A PUBLISH larger than ``max_packet`` is read past unbuffered, acknowledged (QoS 1)
        and reported to ``on_oversized``; the connection stays up.

        Raises:
            LinkError: refused by the broker, or no CONNACK within ``timeout``.
            OSError: the TCP or TLS connection failed (``ssl.SSLError`` included).
        """
        loop = asyncio.get_running_loop()
        link = cls(on_publishes, keepalive, max_packet, on_oversized)
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: link, host, port, ssl=ssl_context,
                                             server_hostname=host if ssl_context else None)
                link._write(encode_connect(client_id, clean_session=clean_session, keepalive=keepalive,
                                           username=username, password=password))
                session_present, code = await asyncio.shield(link._connack)
        except TimeoutError:
            link.abort()
            raise LinkError(f"no CONNACK from {host}:{port} within {timeout:g}s") from None
        except BaseException:
            link.abort()
            raise
        if code:
            link.abort()
            raise LinkError(f"broker refused the connection: {connack_error(code)}")
        link.session_present = session_present
        link._pinger = asyncio.create_task(link._keep_alive(), name="mqtt-keepalive")
        return link

    async def subscribe(self, topics: list[tuple[str, int]], timeout: float = 10.0) -> list[int]:
        """SUBSCRIBE and wait for the SUBACK; returns the granted QoS (or 0x80) per topic."""
        self._next_id = self._next_id % 0xFFFF + 1
        pid = self._next_id
        fut: asyncio.Future[bytes] = self._loop.create_future()
        self._subacks[pid] = fut
        self._write(encode_subscribe(pid, topics))
        try:
            async with asyncio.timeout(timeout):
                waiting: set[asyncio.Future[Any]] = {fut, self._closed}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            raise LinkError(f"no SUBACK within {timeout:g}s") from None
        finally:
            self._subacks.pop(pid, None)
        if not fut.done():
            raise LinkError("connection closed before SUBACK")
        body = fut.result()
        return list(body[2:])

    # ------------------------------------------------------------------ use

    def ack(self, packet_id: int) -> None:
        """Queue a PUBACK; all PUBACKs queued in one loop turn go out in one write."""
        if self._transport is None or self._closed.done():
            return
        self._acks.append(encode_puback(packet_id))
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def start_delivery(self) -> None:
        """Hand over what arrived before now, and every later message as it arrives."""
        early, self._early = self._early, None
        if early:
            self._on_publishes(early)

    def pause(self) -> None:
        """Stop reading from the socket (TCP pushes back on the broker)."""
        if not self._paused and self._transport is not None and not self._closed.done():
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        """Read from the socket again."""
        if self._paused and self._transport is not None and not self._closed.done():
            self._paused = False
            self._last_rx = time.monotonic()
            self._transport.resume_reading()

    @property
    def paused(self) -> bool:
        """Whether reading is paused."""
        return self._paused

    async def wait_closed(self) -> None:
        """Return never; raise :class:`LinkError` when the connection has ended."""
        await asyncio.shield(self._closed)
        raise LinkError("connection closed")

    @property
    def is_closed(self) -> bool:
        """Whether the connection has ended."""
        return self._closed.done()

    def close(self) -> None:
        """Send the pending PUBACKs and DISCONNECT, then close (idempotent)."""
        if self._transport is not None and not self._closed.done():
            self._flush()
            self._transport.write(DISCONNECT)
            self._transport.close()
        self._stop_pinger()

    async def aclose(self, timeout: float) -> None:
        """:meth:`close`, and return once the socket is closed; abort after ``timeout``.

        A TLS connection closes only when the broker has answered our close_notify: without
        waiting, ``stop()`` returned with the socket still open, and a broker that did not
        answer (or an event loop closed right after) left it to the garbage collector.
        """
        self.close()
        if self._transport is None or self._closed.done():
            return
        try:
            await asyncio.wait({self._closed}, timeout=timeout)
        finally:  # timed out, or cancelled while waiting
            if not self._closed.done():
                self.abort()

    def abort(self, why: str | None = None) -> None:
        """Drop the connection at once (no DISCONNECT: the broker publishes the will, if any)."""
        if self._transport is not None:
            self._transport.abort()
        if why and not self._closed.done():
            self._closed.set_exception(LinkError(why))
            self._closed.exception()  # retrieved: wait_closed raises its own
        self._stop_pinger()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._last_rx = time.monotonic()
        try:
            pubs = self._parser.feed(data)
        except ProtocolError as exc:
            self.abort(f"protocol error from the broker: {exc}")
            return
        if self._parser.control:
            self._on_control()
        if self._parser.oversized:
            self._discard_oversized()
        if pubs:
            if self._early is None:
                self._on_publishes(pubs)
            else:
                self._early.extend(pubs)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)
        if not self._connack.done():
            self._connack.set_exception(LinkError(f"connection closed before CONNACK: {exc or 'EOF'}"))
            self._connack.exception()
        self._acks.clear()
        self._stop_pinger()

    # ------------------------------------------------------------------ internals

    def _discard_oversized(self) -> None:
        skipped, self._parser.oversized = self._parser.oversized, []
        for topic, qos, packet_id, size in skipped:
            if qos:
                # Acknowledged, or the broker sends it again on every reconnect.
                self.ack(packet_id)
            if self._on_oversized is not None:
                self._on_oversized(topic, qos, packet_id, size)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._closed.done():
            self._transport.write(data)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._acks:
            acks, self._acks = self._acks, []
            self._write(b"".join(acks))

    def _on_control(self) -> None:
        for kind, _flags, body in self._parser.control:
            if kind == CONNACK:
                if len(body) != 2:
                    self.abort("malformed CONNACK")
                    return
                if not self._connack.done():
                    self._connack.set_result((bool(body[0] & 1), body[1]))
            elif kind == SUBACK:
                fut = self._subacks.get(int.from_bytes(body[:2], "big")) if len(body) >= 3 else None
                if fut is not None and not fut.done():
                    fut.set_result(body)
            elif kind == PINGRESP:
                self._ping_sent = None
        self._parser.control.clear()

    async def _keep_alive(self) -> None:
        period = max(1.0, self._keepalive / 2)
        while not self._closed.done():
            await asyncio.sleep(period)
            now = time.monotonic()
            overdue = self._ping_sent is not None and now - self._ping_sent > self._keepalive
            if overdue and not self._paused and now - self._last_rx > self._keepalive:
                self.abort(f"no answer from the broker within keepalive ({self._keepalive}s)")
                return
            if self._ping_sent is None or now - self._ping_sent > self._keepalive:
                self._ping_sent = now
                self._write(PINGREQ)

    def _stop_pinger(self) -> None:
        p = self._pinger
        if p is not None and not p.done() and p is not asyncio.current_task():
            p.cancel()
