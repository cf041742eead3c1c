"""Named accounts over real HTTP on a running gateway: an admin creates people, they sign in
to the board (session cookie) or use personal tokens, every action names the person, a
viewer cannot act, a customer sees only its own sites and contracts, a disabled account is
out at once, and ticket ownership (take, assign, hand over) is filterable."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.model import Event
from tests.fixtures.api import OP, api_config
from tests.helpers import eventually

ADMIN_TOKEN = "admin-Secret-0c8e2f"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BOARD = {"X-Requested-With": "gateway-board"}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    cfg = api_config(tmp_path, 0)
    cfg.api.tokens.append(type(cfg.api.tokens[0]).model_validate({"token": ADMIN_TOKEN, "role": "admin", "name": "root"}))
    cfg.adapters.snmp.clear()
    async with Gateway(cfg) as g:
        yield g


async def _tickets(gw: Gateway) -> dict[str, int]:
    """One ticket on site hq (sw-1) and one on pit-2 (gas-1); their ids by device."""
    now = gw.clock.now()
    assert gw.pipeline.offer(Event(now, "test", "sw-1", "IF-MIB::linkDown", {"ifIndex": 1, "ifDescr": "eth1"}))
    assert gw.pipeline.offer(Event(now, "test", "gas-1", "IF-MIB::linkDown", {"ifIndex": 2, "ifDescr": "eth2"}))
    rows = await eventually(lambda: (r := gw.store.list_tickets()) and len(r) == 2 and r)
    return {t["device"]: t["id"] for t in rows}


async def _add(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await http.post("/api/v1/users", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_people_sign_in_act_as_themselves_and_customers_see_only_their_own(gw: Gateway) -> None:
    assert gw.api is not None
    ids = await _tickets(gw)
    async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as http:
        # Only an admin manages accounts.
        r = await http.post("/api/v1/users", json={"name": "x", "role": "viewer"}, headers=OP)
        assert r.status_code == 403 and "admin" in r.json()["message"]
        made = await _add(http, name="li.wei", role="operator", display_name="Li Wei", password="night-shift-42")
        assert "password" not in made  # it was given, not made
        viewer = await _add(http, name="vera", role="viewer")
        assert len(viewer["password"]) >= 12  # made and shown once
        await _add(http, name="acme", role="customer", password="customer-pw-1", sites=["pit-2"])
        listed = (await http.get("/api/v1/users", headers=ADMIN)).json()
        assert [u["name"] for u in listed] == ["acme", "li.wei", "vera"]
        assert all("password" not in u and "password_hash" not in u for u in listed)
        # The password is kept as a salted scrypt hash, never in clear.
        db = sqlite3.connect(gw.store.path)
        [(stored,)] = db.execute("SELECT password_hash FROM users WHERE name='li.wei'").fetchall()
        db.close()
        assert stored.startswith("scrypt$16384$8$1$") and "night-shift-42" not in stored

    # Li Wei signs in on the board: a session cookie, HttpOnly and SameSite=Strict.
    async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as li:
        r = await li.post("/api/v1/session", json={"name": "li.wei", "password": "wrong"})
        assert r.status_code == 401
        r = await li.post("/api/v1/session", json={"name": "li.wei", "password": "night-shift-42"})
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        me = (await li.get("/api/v1/whoami")).json()
        assert (me["name"], me["role"], me["kind"], me["display_name"]) == ("li.wei", "operator", "user", "Li Wei")
        # A write with the cookie must come from the board (the header no other site can send).
        tid = ids["sw-1"]
        r = await li.post(f"/api/v1/tickets/{tid}/acknowledge", json={"note": "looking"})
        assert r.status_code == 403
        r = await li.post(f"/api/v1/tickets/{tid}/acknowledge", json={"note": "looking", "actor": "someone-else"}, headers=BOARD)
        assert r.status_code == 200, r.text
        r = await li.post(f"/api/v1/tickets/{tid}/take", json={}, headers=BOARD)
        assert r.status_code == 200 and r.json()["owner"] == "li.wei"
        # A personal token for scripts: shown once, stored as a digest; acts as the person.
        r = await li.post("/api/v1/me/tokens", json={"label": "script"}, headers=BOARD)
        assert r.status_code == 201
        token = r.json()["token"]
        assert token.startswith("gwu_")
        assert "token" not in (await li.get("/api/v1/me/tokens")).json()[0]
        await li.delete("/api/v1/session", headers=BOARD)
        assert (await li.get("/api/v1/whoami")).status_code == 401

    async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as script:
        mine = {"Authorization": f"Bearer {token}"}
        r = await script.post(f"/api/v1/tickets/{tid}/comment", json={"note": "from my script"}, headers=mine)
        assert r.status_code == 200, r.text
        # Every action names the person, whatever the body claims.
        actors = {(e["kind"], e["actor"]) for e in gw.store.timeline(tid)}
        assert {("acknowledge", "user:li.wei"), ("take", "user:li.wei"), ("comment", "user:li.wei")} <= actors
        assert not any(a == "someone-else" for _, a in actors)
        # Owner shown and filterable.
        owned = (await script.get("/api/v1/tickets", params={"owner": "li.wei"}, headers=mine)).json()
        assert [t["id"] for t in owned] == [tid]
        nobody = (await script.get("/api/v1/tickets", params={"owner": ""}, headers=mine)).json()
        assert [t["id"] for t in nobody] == [ids["gas-1"]]
        # Assign to someone who is not an operator is refused; hand over to a real one works.
        r = await script.post(f"/api/v1/tickets/{tid}/hand_over", json={"to": "vera"}, headers=mine)
        assert r.status_code == 422 and "cannot own" in r.json()["message"]

        # A viewer reads but cannot act.
        async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as vera:
            await vera.post("/api/v1/session", json={"name": "vera", "password": viewer["password"]})
            r = await vera.post(f"/api/v1/tickets/{tid}/take", json={}, headers=BOARD)
            assert r.status_code == 403 and "role viewer" in r.json()["message"]

        # The customer of site pit-2 sees its ticket and nothing else.
        async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as acme:
            await acme.post("/api/v1/session", json={"name": "acme", "password": "customer-pw-1"})
            seen = (await acme.get("/api/v1/tickets")).json()
            assert [t["device"] for t in seen] == ["gas-1"]
            assert (await acme.get(f"/api/v1/tickets/{tid}")).status_code == 404
            board = (await acme.get("/api/v1/board")).json()
            assert {t["device"] for t in board["tickets"]} == {"gas-1"}
            assert {a["device"] for a in board["alarms"]} == {"gas-1"}
            assert board["health"] is None
            assert [d["id"] for d in (await acme.get("/api/v1/devices")).json()] == ["gas-1"]
            assert (await acme.get("/api/v1/devices/sw-1")).status_code == 404
            r = await acme.post(f"/api/v1/tickets/{ids['gas-1']}/acknowledge", json={}, headers=BOARD)
            assert r.status_code == 403

        # Disabled: the token stops working at once, the password too.
        r = await script.post("/api/v1/users/li.wei/disable", headers=ADMIN)
        assert r.status_code == 200 and r.json()["disabled"] is True
        assert (await script.get("/api/v1/whoami", headers=mine)).status_code == 401
        r = await script.post("/api/v1/session", json={"name": "li.wei", "password": "night-shift-42"})
        assert r.status_code == 401
        # Reset: a new password, shown once.
        await script.post("/api/v1/users/li.wei/enable", headers=ADMIN)
        r = await script.post("/api/v1/users/li.wei/reset", headers=ADMIN)
        new = r.json()["password"]
        assert (await script.post("/api/v1/session", json={"name": "li.wei", "password": "night-shift-42"})).status_code == 401
        assert (await script.post("/api/v1/session", json={"name": "li.wei", "password": new})).status_code == 200
        # Guessing is slowed down: five failures for a name, then refused for a minute.
        codes = [(await script.post("/api/v1/session", json={"name": "vera", "password": f"guess-{i}"})).status_code
                 for i in range(6)]
        assert codes == [401] * 5 + [429]
        r = await script.post("/api/v1/session", json={"name": "vera", "password": viewer["password"]})
        assert r.status_code == 429  # even the right one, until the minute has passed
