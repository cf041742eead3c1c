"""The API of a partitioned central's supervisor (gateway.api.partitioned) served for real
on loopback ports, with two stand-in partition leaders (real HTTP servers) and the lease
lookups given by the test: reads are answered here, each change reaches the leader of its
partition with its body and credentials intact, and a partition with no leader answers 503
with ``Retry-After`` while the others keep working."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.api.partitioned import partitioned_app
from gateway.api.server import serve
from tests.helpers import eventually


def _free_tcp() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _recorder(name: str, seen: list[tuple[str, str, str, Any]]) -> Starlette:
    async def any_path(request: Request) -> JSONResponse:
        body = await request.body()
        seen.append((name, request.method, request.url.path, json.loads(body) if body else None))
        return JSONResponse({"by": name, "auth": request.headers.get("authorization")})

    methods = ["GET", "POST", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", any_path, methods=methods)])


async def test_reads_here_changes_to_their_partitions_leader_503_without_one() -> None:
    seen: list[tuple[str, str, str, Any]] = []
    leaders: dict[int, tuple[str, str] | None] = {}
    servers = []
    for p in (0, 1):
        port = _free_tcp()
        servers.append(await serve(_recorder(f"leader-{p}", seen), "127.0.0.1", port))
        leaders[p] = (f"noc#p{p}:1", f"http://127.0.0.1:{port}")

    def lookup(p: int) -> Any:
        async def get() -> tuple[str, str] | None:
            return leaders[p]
        return get

    async def about() -> dict[str, Any]:
        return {"member": "noc"}

    app = partitioned_app(_recorder("reads", seen), [lookup(0), lookup(1)], "noc", 2.0,
                          {"sw-one": 1, "sw-zero": 0}.get, about)
    port = _free_tcp()
    server, task = await serve(app, "127.0.0.1", port)  # type: ignore[arg-type]
    auth = {"Authorization": "Bearer t"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            r = await c.get("/api/v1/tickets/3", headers=auth)
            assert r.json()["by"] == "reads" and "database" in r.headers["x-gateway-served-by"]
            r = await c.post("/api/v1/tickets/3/acknowledge", headers=auth, json={"note": "n"})
            assert r.json() == {"by": "leader-1", "auth": "Bearer t"} and r.headers["x-gateway-partition"] == "1"
            r = await c.post("/api/v1/alarms/8/ack", headers=auth)
            assert r.json()["by"] == "leader-0"
            new = {"device": "sw-one", "level": 2, "title": "fan"}
            r = await c.post("/api/v1/tickets", headers=auth, json=new)
            assert r.json()["by"] == "leader-1"
            assert seen[-1] == ("leader-1", "POST", "/api/v1/tickets", new)  # the body, replayed whole
            r = await c.post("/api/v1/session", json={"user": "u", "password": "p"})
            assert r.json()["by"] == "leader-0"
            h = await c.get("/healthz")
            assert h.json() == {"status": "ok", "role": "partition-member", "member": "noc"}

            leaders[1] = None  # partition 1 has no leader right now (seen within a quarter lease)

            async def refused() -> httpx.Response | None:
                got = await c.post("/api/v1/tickets/5/acknowledge", headers=auth, json={})
                return got if got.status_code == 503 else None

            r = await eventually(refused, 5, 0.05)
            assert int(r.headers["retry-after"]) >= 1 and r.json()["error"] == "no_leader", r.text
            before = len(seen)
            r = await c.post("/api/v1/tickets", headers=auth, json=new)
            assert r.status_code == 503
            assert len(seen) == before  # nothing sent
            r = await c.post("/api/v1/tickets/4/acknowledge", headers=auth, json={})
            assert r.json()["by"] == "leader-0"  # the other partition keeps working
    finally:
        server.should_exit = True
        await task
        await app.close()
        for s, t in servers:
            s.should_exit = True
            await t
