"""Hostile HTTP clients (issue 21 items 6, 7 and 13): a running gateway's API over real
sockets pages large lists with a capped limit and builds them off the event loop, drops
clients that never finish their request headers, closes idle keep-alive connections,
answers 503 beyond its connection limit, and sends the security headers on every response
(board, static files, API, errors); the Swagger UI page, which loads scripts from a public
CDN, is off unless configured."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import gateway.api.routes.devices as devices_route
from gateway.app import Gateway
from gateway.config import Config, config_from_dict
from tests.fixtures.api import OP, api_config
from tests.fixtures.netsnmp import LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import base_config, eventually

#: Generous bound on "the server closed it": a passing test never waits for it.
_CLOSED_WITHIN_S = 15.0


def _cfg(tmp_path: Path, **api: Any) -> Config:
    cfg = api_config(tmp_path, free_udp_port())
    return cfg.model_copy(update={"api": cfg.api.model_copy(update=api)})


@pytest.fixture
async def gw(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Gateway]:
    api = getattr(request, "param", {})
    async with Gateway(_cfg(tmp_path, **api)) as g:
        assert g.api is not None
        yield g


async def _connect(gw: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert gw.api is not None
    return await asyncio.open_connection("127.0.0.1", gw.api.port)


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection (a reset counts as closed:
    the server may close while the client is still writing)."""
    try:
        return await asyncio.wait_for(reader.read(), _CLOSED_WITHIN_S)
    except ConnectionResetError:
        return b""


# -- item 7: slow and idle clients ----------------------------------------------------------------


@pytest.mark.parametrize("gw", [{"header_timeout": 0.5, "idle_timeout": 1}], indirect=True)
async def test_clients_that_never_finish_their_headers_are_dropped(gw: Gateway) -> None:
    silent = [await _connect(gw) for _ in range(5)]
    partial = [await _connect(gw) for _ in range(5)]
    for _, w in partial:
        w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
        await w.drain()
    trickle_r, trickle_w = await _connect(gw)

    async def trickle() -> int:
        """A slowloris: one header byte at a time, for as long as the server lets it."""
        sent = 0
        for byte in b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 10_000:
            if trickle_r.at_eof():
                break
            try:
                trickle_w.write(bytes((byte,)))
                await trickle_w.drain()
            except ConnectionError:
                break
            sent += 1
            await asyncio.sleep(0.05)  # why: a slowloris sends slower than any header deadline
        return sent

    sender = asyncio.create_task(trickle())
    # Meanwhile a well-behaved client is served.
    async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as http:  # type: ignore[union-attr]
        assert (await http.get("/healthz")).status_code == 200
    for r, _ in silent + partial:
        assert await _closed_by_server(r) == b""
    await _closed_by_server(trickle_r)
    sent = await asyncio.wait_for(sender, _CLOSED_WITHIN_S)
    assert sent < 10_000  # cut off mid-header, not after the client gave up
    for _, w in [*silent, *partial, (trickle_r, trickle_w)]:
        w.close()


@pytest.mark.parametrize("gw", [{"header_timeout": 5, "idle_timeout": 1}], indirect=True)
async def test_an_idle_keep_alive_connection_is_closed(gw: Gateway) -> None:
    r, w = await _connect(gw)
    w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await w.drain()
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200")
    rest = await _closed_by_server(r)  # the body, then the close after idle_timeout
    assert b'"ok"' in rest
    w.close()


@pytest.mark.parametrize("gw", [{"max_connections": 4, "header_timeout": 30}], indirect=True)
async def test_beyond_max_connections_requests_get_503(gw: Gateway) -> None:
    held = [await _connect(gw) for _ in range(4)]
    for _, w in held:
        w.write(b"GET /healthz HTTP/1.1\r\n")  # occupy a connection slot each
        await w.drain()
    async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as http:  # type: ignore[union-attr]
        r = await eventually(lambda: _get_status(http, "/healthz", 503), what="a 503 beyond the limit")
        assert r == 503
    for _, w in held:
        w.close()
    async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as http:  # type: ignore[union-attr]
        assert await eventually(lambda: _get_status(http, "/healthz", 200)) == 200


async def _get_status(http: httpx.AsyncClient, path: str, want: int) -> int | None:
    r = await http.get(path)
    return r.status_code if r.status_code == want else None


# -- item 13: security headers and the docs page --------------------------------------------------


def _security_headers(r: httpx.Response) -> None:
    where = f"{r.request.method} {r.request.url.path} ({r.status_code})"
    csp = r.headers.get("content-security-policy", "")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, where
    assert "script-src 'self'" in csp and "cdn" not in csp, where
    assert r.headers.get("x-content-type-options") == "nosniff", where
    assert r.headers.get("x-frame-options") == "DENY", where
    assert r.headers.get("referrer-policy") == "no-referrer", where


async def test_every_response_carries_the_security_headers(gw: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as http:  # type: ignore[union-attr]
        responses = [
            await http.get("/"),
            await http.get("/static/board.js"),
            await http.get("/static/board.css"),
            await http.get("/static/no-such-file.js"),
            await http.get("/healthz"),
            await http.get("/metrics"),
            await http.get("/api/v1/openapi.json"),
            await http.get("/api/v1/alarms"),  # 401
            await http.get("/api/v1/alarms", headers=OP),
            await http.get("/api/v1/alarms?limit=0", headers=OP),  # 422
            await http.post("/api/v1/rules/reload", content=b"x" * 200_000, headers=OP),  # 413
        ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 200, 200, 200, 401, 200, 422, 413]
    for r in responses:
        _security_headers(r)


async def test_the_docs_page_is_off_by_default(gw: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as http:  # type: ignore[union-attr]
        r = await http.get("/api/v1/docs")
        assert r.status_code == 404
        assert (await http.get("/api/v1/openapi.json")).status_code == 200


@pytest.mark.parametrize("gw", [{"docs": True}], indirect=True)
async def test_the_docs_page_when_enabled_has_its_own_policy(gw: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as http:  # type: ignore[union-attr]
        r = await http.get("/api/v1/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    csp = r.headers["content-security-policy"]
    assert "https://cdn.jsdelivr.net" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"


# -- item 6: big lists ----------------------------------------------------------------------------


def _many_devices_cfg(tmp_path: Path, snmp_port: int, n: int) -> Config:
    d = base_config(tmp_path / "var", snmp_port)
    d["api"] = {"enabled": True, "host": "127.0.0.1", "port": 0,
                "tokens": [{"token": OP["Authorization"].split()[1], "role": "operator", "name": "alice"}]}
    policy = d["devices"][0]["policy"]
    d["devices"] += [{"id": f"dev-{i:05d}", "name": f"Device {i}", "class": "network.switch", "site": "big",
                      "policy": policy} for i in range(n)]
    return config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))


async def test_devices_are_paged_by_cursor_with_a_capped_limit(tmp_path: Path) -> None:
    async with Gateway(_many_devices_cfg(tmp_path, free_udp_port(), 2500)) as g:
        assert g.api is not None
        async with httpx.AsyncClient(base_url=g.api.url, timeout=30, headers=OP) as http:
            r = await http.get("/api/v1/devices", params={"limit": 100_000})
            assert r.status_code == 422 and "limit" in r.json()["message"]
            seen: list[str] = []
            params: dict[str, Any] = {"site": "big"}
            pages = 0
            while True:
                r = await http.get("/api/v1/devices", params=params)
                assert r.status_code == 200
                pages += 1
                seen += [d["id"] for d in r.json()]
                cursor = r.headers.get("x-next-cursor")
                if cursor is None:
                    assert "link" not in r.headers
                    break
                assert 'rel="next"' in r.headers["link"] and f"cursor={cursor}" in r.headers["link"]
                params = {"site": "big", "cursor": cursor}
            assert pages == 3
            assert seen == [f"dev-{i:05d}" for i in range(2500)]
            bad = await http.get("/api/v1/devices", params={"cursor": "%%%"})
            assert bad.status_code == 422 and "cursor" in bad.json()["message"]


async def test_a_big_device_list_is_built_off_the_event_loop(
    tmp_path: Path, netsnmp: NetSnmp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Structural, not timed: the list's builder is held mid-way (in whatever thread runs
    it) until the gateway has received and committed an SNMP trap. Were it built on the
    event loop, holding it would hold the loop, and the trap could not commit."""
    entered, committed = threading.Event(), threading.Event()
    held_until_commit: list[bool] = []
    real = devices_route.device_out

    def holding_device_out(*args: Any) -> Any:
        if not entered.is_set():
            entered.set()
            held_until_commit.append(committed.wait(timeout=_CLOSED_WITHIN_S))
        return real(*args)

    monkeypatch.setattr(devices_route, "device_out", holding_device_out)
    snmp_port = free_udp_port()

    def send_trap_once_held() -> None:
        if entered.wait(timeout=_CLOSED_WITHIN_S):
            netsnmp.trap(snmp_port, LINK_DOWN, link_varbinds(7, "eth7"))

    async with Gateway(_many_devices_cfg(tmp_path, snmp_port, 3000)) as g:
        assert g.api is not None

        def on_commit(alarms: list[Any], tickets: list[Any], changes: list[Any]) -> None:
            if any(a.key == "sw-1/if/7" for a in alarms):
                committed.set()

        g.pipeline.listeners.append(on_commit)
        sender = threading.Thread(target=send_trap_once_held, daemon=True)
        sender.start()
        async with httpx.AsyncClient(base_url=g.api.url, timeout=60, headers=OP) as http:
            r = await http.get("/api/v1/devices")
        assert r.status_code == 200 and len(r.json()) == 1000
        await asyncio.to_thread(sender.join, _CLOSED_WITHIN_S)
    assert held_until_commit == [True], "the trap could not commit while the list was being built"


# -- item 12: who acted ---------------------------------------------------------------------------


async def test_the_timeline_records_the_caller_and_a_supplied_actor_only_as_on_behalf_of(
    gw: Gateway, netsnmp: NetSnmp
) -> None:
    assert gw.api is not None
    port = gw.cfg.adapters.snmp[0].port
    r = await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(7, "eth7"))
    assert r.returncode == 0, r.stderr
    t = await eventually(lambda: next(iter(gw.store.list_tickets()), None))
    async with httpx.AsyncClient(base_url=gw.api.url, timeout=10, headers=OP) as http:
        r = await http.post(f"/api/v1/tickets/{t['id']}/comment", json={"note": "hi", "actor": "somebody-else"})
        assert r.status_code == 200, r.text
        r = await http.post(f"/api/v1/tickets/{t['id']}/comment", json={"note": "mine"})
        assert r.status_code == 200, r.text
        timeline = (await http.get(f"/api/v1/tickets/{t['id']}")).json()["timeline"]
    comments = [(e["actor"], e["on_behalf_of"], e["note"]) for e in timeline if e["kind"] == "comment"]
    assert comments == [("alice", "somebody-else", "hi"), ("alice", "", "mine")]


async def test_alarms_and_tickets_are_paged_by_cursor(gw: Gateway, netsnmp: NetSnmp) -> None:
    assert gw.api is not None
    port = gw.cfg.adapters.snmp[0].port
    for index in range(1, 6):
        r = await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(index, f"eth{index}"))
        assert r.returncode == 0, r.stderr
    await eventually(lambda: len(gw.store.list_tickets()) == 5)
    async with httpx.AsyncClient(base_url=gw.api.url, timeout=10, headers=OP) as http:
        for path in ("/api/v1/alarms", "/api/v1/tickets"):
            seen: list[int] = []
            params: dict[str, Any] = {"limit": 2}
            while True:
                r = await http.get(path, params=params)
                assert r.status_code == 200, r.text
                seen += [row["id"] for row in r.json()]
                cursor = r.headers.get("x-next-cursor")
                if cursor is None:
                    break
                assert f"cursor={cursor}" in r.headers["link"]
                params = {"limit": 2, "cursor": cursor}
            assert len(seen) == 5 and seen == sorted(seen, reverse=True), (path, seen)
            assert (await http.get(path, params={"limit": 100_000})).status_code == 422
            assert (await http.get(path, params={"cursor": "x"})).status_code == 422


@pytest.mark.parametrize("gw", [{"header_timeout": 0.5}], indirect=True)
async def test_a_client_trickling_its_request_body_is_answered_408_and_dropped(gw: Gateway) -> None:
    r, w = await _connect(gw)
    w.write(b"POST /api/v1/rules/reload HTTP/1.1\r\nHost: x\r\nAuthorization: " + OP["Authorization"].encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")  # 99 bytes never come
    await w.drain()
    answer = await _closed_by_server(r)
    assert answer.startswith(b"HTTP/1.1 408") and b'"timeout"' in answer, answer
    w.close()
