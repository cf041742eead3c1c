"""One NATS connection from ``[forward]``: servers, auth (token, user/password, NKEY seed,
.creds file), TLS; reconnects forever (a WAN cut is normal life for an edge)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

import nats
from nats.aio.client import Client

from gateway.forward.config import ForwardConfig

__all__ = ["CLOSE_WAIT_S", "close_within", "connect", "shut_down"]

log = logging.getLogger("gateway.forward")


def _tls(cfg: ForwardConfig, resolve: Callable[[str], Any]) -> ssl.SSLContext | None:
    if not (cfg.tls_ca or cfg.tls_cert):
        return None
    ctx = ssl.create_default_context(cafile=str(resolve(cfg.tls_ca)) if cfg.tls_ca else None)
    if cfg.tls_cert:
        ctx.load_cert_chain(str(resolve(cfg.tls_cert)), str(resolve(cfg.tls_key)) if cfg.tls_key else None)
    return ctx


async def connect(cfg: ForwardConfig, resolve: Callable[[str], Any], name: str) -> Client:
    """Connect (raises on the first failure; the callers retry with a backoff)."""
    kw: dict[str, Any] = {}
    if cfg.token is not None:
        kw["token"] = cfg.token.get_secret_value()
    if cfg.user:
        kw["user"] = cfg.user
        kw["password"] = cfg.password.get_secret_value() if cfg.password is not None else ""
    if cfg.nkeys_seed:
        kw["nkeys_seed"] = str(resolve(cfg.nkeys_seed))
    if cfg.credentials:
        kw["user_credentials"] = str(resolve(cfg.credentials))
    tls = _tls(cfg, resolve)
    if tls is not None:
        kw["tls"] = tls

    async def on_error(e: Exception) -> None:
        log.debug("nats: %s", e)

    async def on_disconnect() -> None:
        log.warning("%s: JetStream link down; buffering", name)

    async def on_reconnect() -> None:
        log.warning("%s: JetStream link back", name)

    return await nats.connect(
        servers=list(cfg.servers), name=name, allow_reconnect=True, max_reconnect_attempts=-1,
        reconnect_time_wait=0.5, connect_timeout=2, ping_interval=2, max_outstanding_pings=2,
        error_cb=on_error, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect, **kw,
    )


async def shut_down(tasks: list[asyncio.Task[None]], nc: Any) -> None:
    """Stop a side's tasks (waiting for each to end), then close its connection if any."""
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
    if nc is not None:
        await close_within(nc, CLOSE_WAIT_S)


#: How long a stop waits for the NATS connection to flush and close before dropping it.
CLOSE_WAIT_S = 5.0


async def close_within(nc: Any, timeout: float) -> None:
    """Close ``nc``; on a link that stopped carrying data (a WAN path that black-holes instead
    of resetting) nats-py's ``close()`` waits for its unsent data for ever, so after ``timeout``
    the socket is dropped. Nothing is lost: what was not acknowledged is sent again later."""
    try:
        await asyncio.wait_for(nc.close(), timeout)
    except TimeoutError:
        log.warning("JetStream link: the connection did not close within %.0f s (the link carries "
                    "nothing); dropped it", timeout)
        # nats-py has no abort(); its TCP transport keeps the asyncio stream in _io_writer.
        writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
        if writer is not None:
            writer.transport.abort()
    except Exception as e:  # noqa: BLE001 - closing a broken connection: nothing left to do
        log.debug("closing the JetStream connection: %s", e)
