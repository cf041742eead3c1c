"""The standby's API (gateway.api.standby) served for real on a loopback port, with the
leader lookup given by the test: no leader, an unreachable leader and a leader address
that leads back to a standby each get one clear answer, and nothing hangs or loops."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import httpx

from gateway.api.server import serve
from gateway.api.standby import standby_app


def _free_tcp() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _with_standby(leader: Callable[[int], tuple[str, str] | None],
                        body: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    port = _free_tcp()

    async def lookup() -> tuple[str, str] | None:
        return leader(port)

    app = standby_app(lookup, "gw-b", 2.0)
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
