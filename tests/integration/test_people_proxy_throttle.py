"""Sign-in behind a TLS proxy and the shared sign-in throttle, over HTTP on a running gateway.

The session cookie is ``Secure`` when a trusted proxy (``[api] trusted_proxies``) says the
client came over HTTPS; the same header from any other peer is ignored. Failed sign-ins are
kept in the store, so a restarted gateway (or another one on the same database) goes on
counting them: five for a name within a minute, and the next is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import Gateway
from gateway.config import Config
from tests.fixtures.api import api_config

ADMIN_TOKEN = "admin-Secret-proxy-7e21"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _cfg(tmp_path: Path, **api: object) -> Config:
    cfg = api_config(tmp_path, 0)
    cfg.api.tokens.append(type(cfg.api.tokens[0]).model_validate({"token": ADMIN_TOKEN, "role": "admin", "name": "root"}))
    for k, v in api.items():
        setattr(cfg.api, k, v)
    cfg.adapters.snmp.clear()
    return cfg


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with Gateway(_cfg(tmp_path, trusted_proxies=["127.0.0.1/32"])) as g:
        assert g.api is not None
        async with httpx.AsyncClient(base_url=g.api.url) as h:
            r = await h.post("/api/v1/users", json={"name": "li.wei", "role": "operator", "password": "night-shift-42"},
                             headers=ADMIN)
            assert r.status_code == 201, r.text
        yield g


async def _cookie(http: httpx.AsyncClient, **headers: str) -> str:
    r = await http.post("/api/v1/session", json={"name": "li.wei", "password": "night-shift-42"}, headers=headers)
    assert r.status_code == 200, r.text
    return r.headers["set-cookie"].lower()


async def test_the_cookie_is_secure_behind_a_trusted_proxy_only(gw: Gateway) -> None:
    assert gw.api is not None
    async with httpx.AsyncClient(base_url=gw.api.url) as direct:  # the peer is 127.0.0.1: trusted
        assert "; secure" in await _cookie(direct, **{"X-Forwarded-Proto": "https"})
        assert "; secure" in await _cookie(direct, Forwarded="for=198.51.100.4;proto=https")
        assert "; secure" not in await _cookie(direct)  # plain HTTP through the proxy
        assert "; secure" not in await _cookie(direct, **{"X-Forwarded-Proto": "http"})
    # The same header from a peer not in trusted_proxies is ignored.
    stranger = httpx.ASGITransport(app=gw.api.app, client=("192.0.2.7", 50000))
    async with httpx.AsyncClient(transport=stranger, base_url="http://gateway") as http:
        assert "; secure" not in await _cookie(http, **{"X-Forwarded-Proto": "https"})
        assert "; secure" not in await _cookie(http, Forwarded="proto=https")


async def test_cookie_secure_always_and_never(tmp_path: Path) -> None:
    for mode, want in (("always", True), ("never", False)):
        async with Gateway(_cfg(tmp_path / mode, cookie_secure=mode, trusted_proxies=["127.0.0.1"])) as g:
            assert g.api is not None
            async with httpx.AsyncClient(base_url=g.api.url) as h:
                r = await h.post("/api/v1/users", json={"name": "li.wei", "role": "operator",
                                                        "password": "night-shift-42"}, headers=ADMIN)
                assert r.status_code == 201
                assert ("; secure" in await _cookie(h, **{"X-Forwarded-Proto": "https"})) is want


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Config, Config]]:
    """Two gateways' configs on one store: the same SQLite data dir (a restart), or two
    instances with their own data dirs on one PostgreSQL schema (HA, one after the other)."""
    if request.param == "sqlite":
        cfg = _cfg(tmp_path)
        yield cfg, cfg
        return
    from tests.store_contract.backends import POSTGRESQL, pg_dsn, pg_schema

    loc = POSTGRESQL.location(tmp_path)
    a, b = _cfg(tmp_path / "a"), _cfg(tmp_path / "b")
    for c in (a, b):
        c.store.backend, c.store.dsn, c.store.db_schema = "postgresql", pg_dsn(), pg_schema(loc)
    try:
        yield a, b
    finally:
        POSTGRESQL.drop(loc)


async def test_failed_sign_ins_are_counted_across_a_restart(stores: tuple[Config, Config]) -> None:
    first, second = stores
    bad = {"name": "li.wei", "password": "guess"}
    async with Gateway(first) as g:
        assert g.api is not None
        async with httpx.AsyncClient(base_url=g.api.url) as h:
            r = await h.post("/api/v1/users", json={"name": "li.wei", "role": "operator", "password": "night-shift-42"},
                             headers=ADMIN)
            assert r.status_code == 201
            assert [(await h.post("/api/v1/session", json=bad)).status_code for _ in range(3)] == [401] * 3
    async with Gateway(second) as g:  # another process on the same store, later
        assert g.api is not None
        async with httpx.AsyncClient(base_url=g.api.url) as h:
            assert [(await h.post("/api/v1/session", json=bad)).status_code for _ in range(3)] == [401, 401, 429]
            r = await h.post("/api/v1/session", json={"name": "li.wei", "password": "night-shift-42"})
            assert r.status_code == 429  # even the right password, until the minute has passed
