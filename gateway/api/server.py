"""Runs the API in the daemon's event loop: ``serve`` (uvicorn without its signal handling)
and ``start_api`` (builds the change bus and the ApiContext from a running gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import uvicorn
from fastapi import FastAPI

from gateway.api import create_app
from gateway.api.deps import ApiContext
from gateway.api.render import alarm_out, ticket_out
from gateway.runtime.bus import ChangeBus
from gateway.store import OutboxEntry, Store

__all__ = ["ApiServer", "LiveRef", "StoreOutbox", "serve", "start_api"]

log = logging.getLogger("gateway.api")


class _Server(uvicorn.Server):
    """uvicorn without signal handlers: the daemon owns SIGTERM/SIGINT and stops us in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    """Bind here, so a taken port fails the start with an OSError (uvicorn would exit the process)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(app: FastAPI, host: str, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Start serving ``app`` on ``host:port`` in this event loop; returns once it listens.

    Raises:
        OSError: the address cannot be bound (e.g. the port is taken).
    """
    sock = _bind(host, port)
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=3,
        server_header=False,
        proxy_headers=False,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="api")
    while not server.started:
        if task.done():
            sock.close()
            task.result()
            raise RuntimeError("the API server stopped during start-up")
        await asyncio.sleep(0.01)
    server.bound_socket = sock  # type: ignore[attr-defined]
    return server, task


class LiveRef:
    """Forwards to whatever ``get()`` returns now: a reload swaps the gateway's inventory
    and policies, and the API must show the new ones without being rebuilt."""

    __slots__ = ("_get",)

    def __init__(self, get: Callable[[], Any]) -> None:
        self._get = get

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __getitem__(self, key: Any) -> Any:
        return self._get()[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._get()


class StoreOutbox:
    """Failed help-desk messages through the store's outbox methods; a retry wakes the worker."""

    def __init__(self, store: Store, worker: Any = None) -> None:
        self.store = store
        self.worker = worker

    async def list_failed(self, limit: int = 500) -> list[OutboxEntry]:
        return await asyncio.to_thread(self.store.outbox_list, "failed", limit)

    async def retry(self, message_id: int) -> bool:
        ok = bool(await asyncio.to_thread(self.store.outbox_requeue, message_id))
        if ok and self.worker is not None and hasattr(self.worker, "kick"):
            self.worker.kick()
        return ok

    async def discard(self, message_id: int) -> bool:
        return bool(await asyncio.to_thread(self.store.outbox_discard, message_id))


@dataclass(slots=True)
class ApiServer:
    """A running API: its context, uvicorn server and serving task."""

    ctx: ApiContext
    app: FastAPI
    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int

    @property
    def url(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """End the live streams, then stop serving (open requests get a few seconds)."""
        self.ctx.bus.close()
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout=10)
        except TimeoutError:
            log.error("API server did not stop within 10 s")
            self.task.cancel()
        with contextlib.suppress(ValueError):
            self.ctx.pipeline.listeners.remove(self.ctx.bus.on_commit)


async def start_api(gw: Any) -> ApiServer:
    """Build the change bus and the API for a started gateway and serve it on ``[api]``.

    Optional parts are taken from the gateway when it has them: ``reload`` (coroutine),
    ``maintenance_hooks`` (:class:`~gateway.api.deps.MaintenanceHooks`), ``outbox``
    (worker; failed messages are handled through the store's outbox methods),
    ``watchdog``.
    """
    cfg = gw.cfg
    clock = gw.clock
    calendars = gw.calendars
    inventory = LiveRef(lambda: gw.pipeline.inventory)
    bus = ChangeBus(
        render_alarm=lambda a: alarm_out(a.to_dict(), inventory),
        render_ticket=lambda t: ticket_out(t.to_dict(), calendars, clock.now()),
    )
    outbox = getattr(gw, "outbox_hooks", None)
    if outbox is None and all(
        hasattr(gw.store, m) for m in ("outbox_list", "outbox_requeue", "outbox_discard")
    ):
        outbox = StoreOutbox(gw.store, getattr(gw, "outbox", None))
    components = {}
    for name in ("watchdog", "outbox", "timeseries"):
        comp = getattr(gw, name, None)
        if comp is not None and getattr(comp, "stats", None) is not None:
            components[name] = comp
    ctx = ApiContext(
        pipeline=gw.pipeline,
        store=gw.store,
        desk=gw.desk,
        book=gw.book,
        inventory=inventory,
        policies=cast("Mapping[str, Any]", LiveRef(lambda: gw.pipeline.policies)),  # forwards to the live dict
        calendars=calendars,
        adapters=gw.adapters,
        config=cfg,
        clock=clock,
        bus=bus,
        reload=getattr(gw, "reload", None),
        maintenance=getattr(gw, "maintenance_hooks", None),
        outbox=outbox,
        watchdog=getattr(gw, "watchdog", None),
        components=components,
    )
    app = create_app(ctx)
    server, task = await serve(app, cfg.api.host, cfg.api.port)
    gw.pipeline.listeners.append(bus.on_commit)
    port = server.bound_socket.getsockname()[1]  # type: ignore[attr-defined]
    api = ApiServer(ctx, app, server, task, cfg.api.host, port)
    log.info("API and board on %s (%d token(s))", api.url, len(cfg.api.tokens))
    return api
