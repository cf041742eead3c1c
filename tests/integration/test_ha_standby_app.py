"""The standby's API (gateway.api.standby) served for real on a loopback port, with the
leader lookup given by the test: no leader, an unreachable leader and a leader address
that leads back to a standby each get one clear answer, and nothing hangs or loops. With a
read-only API (``reads``), a standby that reaches no leader answers the reads itself, marked,
and still refuses every change."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.api.server import serve
from gateway.api.standby import standby_app


def _free_tcp() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _with_standby(leader: Callable[[int], tuple[str, str] | None],
                        body: Callable[[httpx.AsyncClient], Awaitable[None]], reads: Starlette | None = None) -> None:
    port = _free_tcp()

    async def lookup() -> tuple[str, str] | None:
        return leader(port)

    app = standby_app(lookup, "gw-b", 2.0, reads)
    server, task = await serve(app, "127.0.0.1", port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            await body(c)
    finally:
        server.should_exit = True
        await task
        await app.state.close()


async def test_no_leader_is_a_503_with_retry_after_and_healthz_still_answers() -> None:
    async def body(c: httpx.AsyncClient) -> None:
        r = await c.post("/api/v1/tickets/1/acknowledge", json={})
        assert r.status_code == 503 and r.json()["error"] == "no_leader" and r.headers["retry-after"] == "1"
        h = await c.get("/healthz")
        assert h.status_code == 200 and h.json() == {"status": "ok", "role": "standby", "leader": None}
        assert (await c.get("/healthz", params={"role": "leader"})).status_code == 503
        assert "gateway_ha_leader 0" in (await c.get("/metrics")).text

    await _with_standby(lambda port: None, body)


async def test_an_unreachable_leader_is_a_503_nothing_sent() -> None:
    dead = _free_tcp()

    async def body(c: httpx.AsyncClient) -> None:
        r = await c.get("/api/v1/tickets")
        assert r.status_code == 503 and "gw-a cannot be reached" in r.json()["detail"]

    await _with_standby(lambda port: ("gw-a", f"http://127.0.0.1:{dead}"), body)


async def test_a_leader_address_that_reaches_a_standby_is_refused_not_looped() -> None:
    async def body(c: httpx.AsyncClient) -> None:
        r = await c.get("/api/v1/tickets")
        assert r.status_code == 508 and "advertise_url" in r.json()["detail"]

    await _with_standby(lambda port: ("gw-a", f"http://127.0.0.1:{port}"), body)


def _reads() -> tuple[Starlette, list[str]]:
    """A stand-in for the read-only API: it records what reached it."""
    seen: list[str] = []

    async def any_path(request: Request) -> JSONResponse:
        seen.append(f"{request.method} {request.url.path}?{request.url.query}")
        return JSONResponse({"from": "database"}, headers={"x-page": "1"})

    return Starlette(routes=[Route("/{path:path}", any_path, methods=["GET", "HEAD", "POST"])]), seen


async def test_with_no_leader_reads_are_answered_from_the_database_and_changes_refused() -> None:
    reads, seen = _reads()

    async def body(c: httpx.AsyncClient) -> None:
        r = await c.get("/api/v1/tickets", params={"status": "open"})
        assert r.status_code == 200 and r.json() == {"from": "database"}
        assert r.headers["x-gateway-served-by"] == "standby gw-b (database)" and r.headers["x-page"] == "1"
        r = await c.post("/api/v1/tickets/1/acknowledge", json={})
        assert r.status_code == 503 and r.json()["error"] == "no_leader" and r.headers["retry-after"] == "1"
        h = (await c.get("/healthz")).json()
        assert h == {"status": "ok", "role": "standby", "leader": None, "reads": "from the database"}

    await _with_standby(lambda port: None, body, reads)
    assert seen == ["GET /api/v1/tickets?status=open"]  # the change never reached it


async def test_with_the_leader_unreachable_reads_are_answered_from_the_database() -> None:
    reads, seen = _reads()
    dead = _free_tcp()

    async def body(c: httpx.AsyncClient) -> None:
        r = await c.get("/api/v1/board")
        assert r.status_code == 200 and r.headers["x-gateway-served-by"] == "standby gw-b (database)"
        r = await c.post("/api/v1/tickets", json={})
        assert r.status_code == 503 and "gw-a cannot be reached" in r.json()["detail"]

    await _with_standby(lambda port: ("gw-a", f"http://127.0.0.1:{dead}"), body, reads)
    assert seen == ["GET /api/v1/board?"]
