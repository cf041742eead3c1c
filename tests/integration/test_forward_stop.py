"""A stop on a link that black-holes: through a real ``nats-server``, a proxy that keeps the
connection open but carries nothing (a WAN path that drops packets instead of resetting).
nats-py's ``close()`` then waits for its unsent data for ever; the gateway's stop must not."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from nats.errors import OutboundBufferLimitError

from gateway.forward.config import ForwardConfig
from gateway.forward.connect import CLOSE_WAIT_S, connect, shut_down
from tests.fixtures.natsjs import CuttableProxy, JetStreamServer
from tests.helpers import eventually


async def test_a_stop_on_a_black_holed_link_drops_the_connection_instead_of_hanging(
    tmp_path: Path, jetstream: JetStreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = CuttableProxy(("127.0.0.1", jetstream.port))
    try:
        cfg = ForwardConfig(mode="edge", servers=[proxy.url], site="a")
        nc = await connect(cfg, lambda p: tmp_path / p, "edge-a")
        await nc.publish("gw.test", b"before")
        await nc.flush(timeout=5)
        proxy.freeze()
        # Unsent data piles up in the client until its buffer is full: the socket carries nothing.
        filled = False
        for _ in range(1000):
            try:
                await asyncio.wait_for(nc.publish("gw.test", b"z" * 65536), 2)
            except (OutboundBufferLimitError, TimeoutError):
                filled = True
                break
        assert filled, "the client's buffer never filled: the link was not black-holed"
        caplog.set_level(logging.WARNING, "gateway.forward")
        t0 = time.monotonic()
        # Bounded here only so that a regression fails instead of hanging the run.
        await asyncio.wait_for(shut_down([], nc), CLOSE_WAIT_S * 4)
        assert time.monotonic() - t0 < CLOSE_WAIT_S * 2
        assert nc.is_closed
        assert any("did not close" in r.getMessage() for r in caplog.records), caplog.text
    finally:
        proxy.close()


async def test_a_stop_on_a_working_link_closes_cleanly(
    tmp_path: Path, jetstream: JetStreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The bound only applies to a link that carries nothing: a working one closes at once
    and what was published before the stop reaches the server."""
    cfg = ForwardConfig(mode="edge", servers=[jetstream.url], site="a")
    reader = await connect(cfg, lambda p: tmp_path / p, "reader")
    got: list[bytes] = []

    async def on_msg(m: object) -> None:
        got.append(m.data)  # type: ignore[attr-defined]

    await reader.subscribe("gw.test", cb=on_msg)
    await reader.flush(timeout=5)
    nc = await connect(cfg, lambda p: tmp_path / p, "edge-a")
    caplog.set_level(logging.WARNING, "gateway.forward")
    await nc.publish("gw.test", b"last words")
    await asyncio.wait_for(shut_down([], nc), CLOSE_WAIT_S * 4)
    assert nc.is_closed
    await reader.flush(timeout=5)
    await eventually(lambda: got == [b"last words"], what="the message published before the stop")
    await shut_down([], reader)
    assert not any("did not close" in r.getMessage() for r in caplog.records), caplog.text
