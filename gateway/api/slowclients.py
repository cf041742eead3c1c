"""uvicorn's HTTP/1.1 protocol with a deadline on request headers.

uvicorn closes a keep-alive connection that stays idle after a response
(``timeout_keep_alive``), but a connection that never completes a request's headers has no
deadline at all: a client sending nothing, or one header byte now and then ("slowloris"),
holds a connection and a slot of ``limit_concurrency`` for as long as it likes. Here every
request head (the first on a connection and each later one) must arrive complete within
``header_timeout`` seconds of its first byte or of the connection opening; otherwise the
connection is closed. The body and the response are not limited here (the body limit and
the change stream's own flow control deal with those).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["protocol_with_header_timeout"]

log = logging.getLogger("gateway.api")


class _HeaderDeadline(H11Protocol):
    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first byte of a later request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the head is complete (h11 has left IDLE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Idle from here on: uvicorn's keep-alive timeout applies until the next byte.
        self._disarm()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expired(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.debug("api: %s sent no complete request head within %gs; closing", self.client, self.header_timeout)
            self.transport.close()


def protocol_with_header_timeout(header_timeout: float) -> type[H11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with ``header_timeout`` seconds."""
    return type("HeaderDeadlineH11", (_HeaderDeadline,), {"header_timeout": float(header_timeout)})
