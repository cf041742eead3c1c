"""Helpers shared by tests: small configs built in code, waiting for conditions."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import http.client
import inspect
import json
import socket
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def example_dict() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE.read_text("utf-8"))


def base_config(data_dir: Path, snmp_port: int | None = None, **sections: Any) -> dict[str, Any]:
    """The example's policies with a test's own data dir, listener port and devices."""
    ex = example_dict()
    cfg: dict[str, Any] = {
        "gateway": {"instance": "test", "data_dir": str(data_dir), "log_level": "INFO"},
        "policies": copy.deepcopy(ex["policies"]),
        "inventory": {"default_policy": "mine-monitoring"},
        "api": {"enabled": False},
        "devices": [
            {"id": "sw-1", "class": "network.switch", "site": "hq", "region": "shanxi",
             "policy": "mine-monitoring", "addresses": ["127.0.0.1"]},
        ],
    }
    if snmp_port is not None:
        cfg["adapters"] = {"snmp": [{"name": "snmp", "host": "127.0.0.1", "port": snmp_port, "communities": ["public"]}]}
    for k, v in sections.items():
        cfg[k] = v
    return cfg


def to_toml(d: dict[str, Any]) -> str:
    """A minimal TOML writer for test configs (tables, arrays of tables, scalars, lists)."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f'"{k}" = {scalar(x)}' for k, x in v.items()) + " }"
        raise TypeError(type(v))

    def emit(prefix: str, table: dict[str, Any]) -> None:
        simple = {k: v for k, v in table.items() if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))}
        nested = {k: v for k, v in table.items() if k not in simple}
        if prefix and simple:
            lines.append(f"[{prefix}]")
        for k, v in simple.items():
            lines.append(f'"{k}" = {scalar(v)}')
        for k, v in nested.items():
            name = f'{prefix}."{k}"' if prefix else f'"{k}"'
            if isinstance(v, dict):
                if not v:
                    lines.append(f"[{name}]")
                emit(name, v)
            else:
                for item in v:
                    lines.append(f"[[{name}]]")
                    for ik, iv in item.items():
                        if isinstance(iv, dict):
                            continue
                        lines.append(f'"{ik}" = {scalar(iv)}')
                    for ik, iv in item.items():
                        if isinstance(iv, dict):
                            emit(f'{name}."{ik}"', iv)

    emit("", d)
    return "\n".join(lines) + "\n"


def write_config(path: Path, d: dict[str, Any]) -> Path:
    """Write ``d`` as TOML, owner-only as a deployment keeps it (check-config warns otherwise)."""
    path.write_text(to_toml(d), "utf-8")
    path.chmod(0o600)
    return path


async def eventually(
    cond: Callable[[], Any],
    timeout: float = 15.0,
    interval: float = 0.02,
    what: str | Callable[[], str] | None = None,
) -> Any:
    """Poll ``cond`` until it returns something truthy and return that; fail after ``timeout``
    seconds (generous: CI machines are shared, and a passing test never waits for it).

    ``cond`` may be a coroutine function (its result is awaited). ``what`` names the
    condition in the failure message; a callable is called then (e.g. to show what did
    arrive)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if inspect.isawaitable(v):
            v = await v
        if v:
            return v
        if time.monotonic() > deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"condition not met within {timeout} s" + (f": {detail}" if detail else ""))
        await asyncio.sleep(interval)


def wait_until(cond: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05) -> Any:
    """``eventually`` for synchronous tests (end-to-end tests that drive a daemon process)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


async def committed(pipeline: Any, timeout: float = 15.0) -> None:
    """Wait until everything queued in a gateway's pipeline so far is committed.

    A no-op command goes through the writer's FIFO queue behind every event offered before
    it, and its future resolves only after the batch it ran in has committed: a positive
    marker, so a test can then assert what did *not* happen without sleeping."""
    await asyncio.wait_for(pipeline.execute(lambda now: None), timeout)


class SseReader:
    """A client on a gateway's ``/api/v1/events/stream`` (``base``: its URL), read by a
    thread; entering waits for ``hello``, leaving shuts the socket (which wakes the reader
    at once). ``got``: (event, data) in order; ``ids``: the message ids; ``ended``: the
    stream ended (by the server, or the test)."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        u = urlsplit(base)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.headers = {**headers, "Accept": "text/event-stream"}
        self.ended = False
        self.got: list[tuple[str, Any]] = []
        self.ids: list[int] = []
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> SseReader:
        self._thread.start()
        wait_until(lambda: any(e == "hello" for e, _ in self.got) or self.ended, 10)
        assert not self.ended, "the stream ended before its hello"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def _read(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request("GET", "/api/v1/events/stream", headers=self.headers)
            self._sock = conn.sock
            r = conn.getresponse()
            assert r.status == 200, r.status
            ev = ""
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    self.ids.append(int(line[4:]))
                elif line.startswith("event: "):
                    ev = line[7:]
                elif line.startswith("data: "):
                    self.got.append((ev, json.loads(line[6:])))
        except (OSError, http.client.HTTPException, ValueError):
            pass  # closed by the test
        finally:
            conn.close()
            self.ended = True

    def tickets(self) -> set[tuple[int, str]]:
        return {(d["id"], d["status"]) for e, d in list(self.got) if e == "ticket"}
