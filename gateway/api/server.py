"""Runs the API in the daemon's event loop: ``serve`` (uvicorn without its signal handling),
``start_api`` (the API and board on ``[api]`` host and port) and ``start_control`` (the same
API on the data dir's Unix socket, for the CLI: whoever can open it owns the data dir, so
it needs no token); ``control_app`` is that API unserved, for a CLI acting in-process."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette

from gateway.api import create_app
from gateway.api.deps import ApiContext
from gateway.api.render import alarm_out, ticket_out
from gateway.api.slowclients import protocol_with_header_timeout
from gateway.config import ApiSection
from gateway.errors import ConfigError
from gateway.runtime.bus import ChangeBus
from gateway.store import OutboxEntry, Store

__all__ = [
    "ApiServer",
    "LiveRef",
    "StoreOutbox",
    "api_context",
    "bind_api",
    "close_context",
    "control_app",
    "serve",
    "start_api",
    "start_control",
]

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


def _bind_unix(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` with mode 0600 from its first moment: bound in a
    private (0700) directory beside it, then renamed into place over any stale one (only the
    data dir lock's holder calls this, so a socket already there is a dead daemon's).

    A path longer than a Unix socket address may be (~107 bytes) is bound through
    ``/proc/self/fd`` of its directory: only ``bind`` has that limit; the file is the same.
    """
    private = Path(tempfile.mkdtemp(prefix=".sock-", dir=path.parent))
    tmp = private / "s"
    dir_fd = os.open(private, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        address = str(tmp) if len(os.fsencode(str(tmp))) < 100 else f"/proc/self/fd/{dir_fd}/{tmp.name}"
        sock.bind(address)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    finally:
        os.close(dir_fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        with contextlib.suppress(OSError):
            private.rmdir()
    return sock


async def serve(
    app: Starlette, host: str, port: int, *, sock: socket.socket | None = None, limits: Any = None
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Start serving ``app`` on ``host:port`` (or on the bound ``sock``) in this event loop;
    returns once it listens. ``limits`` is the ``[api]`` section (connections at once,
    header and idle timeouts); its defaults apply without one.

    Raises:
        OSError: the address cannot be bound (e.g. the port is taken).
    """
    sock = sock if sock is not None else _bind(host, port)
    limits = limits if limits is not None else ApiSection()
    config = uvicorn.Config(
        app,
        http=protocol_with_header_timeout(limits.header_timeout),
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=max(1, round(limits.idle_timeout)),
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
    """A running API: its context, uvicorn server and serving task; ``path`` is the Unix
    socket's for the control API (``host`` and ``port`` are then empty)."""

    ctx: ApiContext
    app: FastAPI
    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int
    path: Path | None = None

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
        close_context(self.ctx)
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


def close_context(ctx: ApiContext) -> None:
    """End the context's live streams and unhook its bus from the pipeline (idempotent)."""
    ctx.bus.close()
    with contextlib.suppress(ValueError):
        ctx.pipeline.listeners.remove(ctx.bus.on_commit)


def api_context(gw: Any) -> ApiContext:
    """The change bus and the ApiContext of a started gateway; the bus listens to its pipeline.

    Optional parts are taken from the gateway when it has them: ``reload`` (coroutine;
    ``api_reload`` if it has one),
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
    for name in ("watchdog", "outbox", "timeseries", "ha", "notifier"):
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
        # A partitioned central's child also asks every other partition's leader to reload.
        reload=getattr(gw, "api_reload", None) or getattr(gw, "reload", None),
        maintenance=getattr(gw, "maintenance_hooks", None),
        outbox=outbox,
        watchdog=getattr(gw, "watchdog", None),
        service=getattr(gw, "service", None),
        devices=getattr(gw, "device_registry", None),
        edges=gw.edge_status if getattr(gw, "forwarder", None) is not None else None,
        components=components,
    )
    gw.pipeline.listeners.append(bus.on_commit)
    return ctx


def bind_api(cfg: Any) -> socket.socket:
    """The listening socket of ``[api]`` host and port (bound early, so that a taken port
    stops the start before anything else began).

    Raises:
        ConfigError: ``api.port`` cannot be listened on (taken, or not allowed).
    """
    try:
        return _bind(cfg.api.host, cfg.api.port)
    except OSError as e:
        why = "is in use by another program" if e.errno == errno.EADDRINUSE else f"cannot be listened on: {e.strerror or e}"
        raise ConfigError(cfg.source, "api.port", f"{cfg.api.host}:{cfg.api.port} {why}") from None


async def start_api(gw: Any, sock: socket.socket | None = None) -> ApiServer:
    """Build the API for a started gateway and serve it on ``[api]`` host and port (or on
    ``sock`` from :func:`bind_api`).

    Raises:
        ConfigError: ``api.port`` cannot be listened on (taken, or not allowed).
    """
    cfg = gw.cfg
    if sock is None:
        sock = bind_api(cfg)
    ctx = api_context(gw)
    app = create_app(ctx)
    try:
        server, task = await serve(app, cfg.api.host, cfg.api.port, sock=sock, limits=cfg.api)
    except BaseException:
        close_context(ctx)
        raise
    port = server.bound_socket.getsockname()[1]  # type: ignore[attr-defined]
    api = ApiServer(ctx, app, server, task, cfg.api.host, port)
    log.info("API and board on %s (%d token(s))", api.url, len(cfg.api.tokens))
    return api


def control_app(gw: Any, ctx: ApiContext | None = None) -> tuple[FastAPI, ApiContext]:
    """The control API of a started gateway (``ctx`` shared with its TCP API, if any): every
    caller is trusted as the data dir's owner, an operator named by ``X-Gateway-User``."""
    ctx = ctx if ctx is not None else api_context(gw)
    return create_app(ctx, local=True), ctx


async def start_control(gw: Any, path: Path, ctx: ApiContext | None = None) -> ApiServer:
    """Serve the control API on the Unix socket ``path`` (mode 0600)."""
    app, ctx = control_app(gw, ctx)
    try:
        sock = _bind_unix(path)
        server, task = await serve(app, "", 0, sock=sock, limits=gw.cfg.api)
    except BaseException:
        close_context(ctx)
        raise
    log.info("control socket %s", path)
    return ApiServer(ctx, app, server, task, "", 0, path)
