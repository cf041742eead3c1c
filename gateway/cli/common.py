"""What the CLI commands share: the config, the store opened read-only, the data dir's one
writer (the running daemon, reached over its control socket, or the core started
in-process when none runs) and output helpers.

Reads (``alarms``, ``tickets``, ``ticket show``, ``outbox list``, ``report``, ...) open the
store read-only (SQLite ``mode=ro``), beside a running daemon or not. Every write is one
request to the control API (:func:`call`): the daemon's, over ``<data_dir>/gateway.sock``
(only the data dir's owner can open it, so no token is needed), or, with no daemon, the
same API of a core started in this process for that one request, holding the data dir's
lock as a daemon would. Either way the change is made and committed by the pipeline.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError
from gateway.runtime.lock import DAEMON, DataDirBusy, Holder, holder

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.store import StoreReader

__all__ = [
    "CallError",
    "NoStore",
    "actor",
    "calendars",
    "call",
    "daemon",
    "err",
    "load",
    "login",
    "read_store",
    "read_store_if_any",
    "store_path",
    "write_out",
]

#: How long a command waits for a daemon that holds the data dir to answer on its socket
#: (it takes the lock first and opens the socket once ready) or for the lock to be free.
WAIT = 30.0


class CallError(GatewayError):
    """The writer refused a request (``status``: its HTTP status) or could not be reached (0)."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        #: The answer's ``detail`` (e.g. one entry per bad row of an import), when it has one.
        self.detail = detail


class NoStore(GatewayError):
    """The config's store does not exist yet: the gateway never ran with this config."""


def load(path: str) -> Config:
    """The config at ``path`` (raises ConfigError naming the file and key)."""
    from gateway.config import load_config

    return load_config(path)


def err(msg: str) -> int:
    """Print ``error: msg`` on stderr; returns 1, the exit status of a refused command."""
    print(f"error: {msg}", file=sys.stderr)
    return 1


def store_path(cfg: Config) -> Path:
    return Path(cfg.data_path(cfg.store.path))


def _no_store(cfg: Config) -> NoStore:
    from gateway.runtime.stores import describe_store

    return NoStore(f"no store at {describe_store(cfg)}: the gateway has not run with this config yet")


def read_store(cfg: Config) -> StoreReader:
    """The store opened read-only (the only way the CLI opens it).

    Raises:
        NoStore: it does not exist yet.
    """
    store = read_store_if_any(cfg)
    if store is None:
        raise _no_store(cfg)
    return store


def read_store_if_any(cfg: Config) -> StoreReader | None:
    """The store opened read-only, or ``None`` when it does not exist yet."""
    from gateway.runtime.stores import open_store, store_exists

    return open_store(cfg, readonly=True, pool_size=2) if store_exists(cfg) else None


def calendars(cfg: Config) -> Any:
    from gateway.core.calendars import default_calendars

    return default_calendars([str(cfg.resolve_path(d)) for d in cfg.calendars.holiday_dirs])


def daemon(cfg: Config) -> Holder | None:
    """The daemon holding this config's data dir, or ``None`` when none runs."""
    who = holder(cfg.data_path())
    return who if who is not None and who.kind == DAEMON else None


def login() -> str:
    """The OS login name ('' when there is none, e.g. a container without a passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def actor(by: str | None) -> str:
    """The timeline's actor for ``--by NAME`` (default: the login name): ``user:NAME``."""
    if by:
        return by if ":" in by else f"user:{by}"
    return f"user:{login() or 'cli'}"


def write_out(text: str, output: str) -> None:
    """``text`` to the file ``output`` (saying so on stderr), or to stdout when it is ''."""
    if output:
        Path(output).write_text(text, "utf-8")
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


# -- the writer ------------------------------------------------------------------------------
def call(
    cfg: Config,
    method: str,
    path: str,
    body: Any = None,
    *,
    user: str,
    offline: bool = True,
    need_store: bool = True,
    timeout: float = WAIT,
) -> tuple[Any, Holder | None]:
    """Send one request to the control API (``/api/v1{path}``) of the data dir's writer.

    Args:
        cfg: the config (its data dir names the writer).
        method, path, body: the request; ``body`` is sent as JSON.
        user: who acts (``X-Gateway-User``; the API's principal name).
        offline: with no daemon, start the core in this process for the request; when
            ``False``, no daemon is an error.
        need_store: with no daemon and no store yet, refuse (:class:`NoStore`) instead of
            creating one.
        timeout: seconds to wait for the daemon's answer or the lock.

    Returns:
        The decoded answer, and the daemon that gave it (``None``: done in-process).

    Raises:
        CallError: the writer refused the request, or no writer could be reached.
        NoStore: see ``need_store``.
        DataDirBusy: the lock stayed with another command for ``timeout`` seconds.
    """
    data_dir = cfg.data_path()
    deadline = time.monotonic() + timeout
    headers = {"X-Gateway-User": user}
    while True:
        who = daemon(cfg)
        if who is not None:
            try:
                return _via_socket(cfg, who, method, path, body, headers, deadline), who
            except _Gone:
                continue  # it stopped before answering: nothing was done; look again
        if not offline:
            raise CallError(0, f"no running gateway for {cfg.source} (nothing holds {data_dir})")
        if need_store:
            from gateway.runtime.stores import store_exists

            if not store_exists(cfg):
                raise _no_store(cfg)
        try:
            return asyncio.run(_in_process(cfg, method, path, body, headers)), None
        except DataDirBusy as e:
            # A daemon started between our look and our lock: it is the writer now.
            if e.holder.kind != DAEMON or time.monotonic() > deadline:
                raise


class _Gone(Exception):
    """The daemon let the data dir go before its socket answered (it was stopping)."""


def _decode(status: int, doc: Any, text: str) -> Any:
    if status < 400:
        return doc
    msg = ""
    detail = None
    if isinstance(doc, dict):
        msg = str(doc.get("message") or doc.get("detail") or "")
        detail = doc.get("detail")
    raise CallError(status, msg or text[:200] or f"HTTP {status}", detail)


def _json(r: Any) -> Any:
    try:
        return r.json() if r.content else None
    except ValueError:
        return None


async def _in_process(cfg: Config, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    import httpx

    from gateway.app import Gateway

    async with Gateway(cfg, mode="offline") as gw:
        transport = httpx.ASGITransport(app=gw.control_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=WAIT) as client:
            r = await client.request(method, "/api/v1" + path, json=body, headers=headers)
    return _decode(r.status_code, _json(r), r.text)


def _via_socket(
    cfg: Config, who: Holder, method: str, path: str, body: Any, headers: dict[str, str], deadline: float
) -> Any:
    import httpx

    from gateway.app import CONTROL_SOCKET

    sock = cfg.data_path(CONTROL_SOCKET)
    while True:
        # The daemon takes the lock first and opens its socket once ready: wait for it.
        try:
            with _UnixAddress(sock) as address:
                transport = httpx.HTTPTransport(uds=address)
                with httpx.Client(transport=transport, base_url="http://gateway", timeout=WAIT) as client:
                    r = client.request(method, "/api/v1" + path, json=body, headers=headers)
            return _decode(r.status_code, _json(r), r.text)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as e:
            if daemon(cfg) is None:
                raise _Gone from None
            if time.monotonic() > deadline:
                raise CallError(
                    0, f"the gateway (pid {who.pid}) holds {cfg.data_path()} but its control socket {sock} "
                    f"does not answer ({e or type(e).__name__})"
                ) from None
            time.sleep(0.1)
        except httpx.HTTPError as e:
            raise CallError(0, f"the gateway (pid {who.pid}) did not answer on {sock}: {e}") from None


class _UnixAddress:
    """``path`` as a connectable address: through ``/proc/self/fd`` of its directory when it
    is longer than Unix socket addresses may be (the descriptor lives as long as the block)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> str:
        if len(os.fsencode(str(self.path))) < 100:
            return str(self.path)
        self.fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return f"/proc/self/fd/{self.fd}/{self.path.name}"

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
