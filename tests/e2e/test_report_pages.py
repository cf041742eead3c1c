"""The customer's read-only page and the board's service-report link, in a real headless
Chromium against a running gateway.

A customer contact signs in at /customer and sees only its contract's tickets (with their
clocks), the incident report of its restored ticket, and its contract's service reports — no
action buttons, and the API refuses it an operator's action. An operator on the board picks
a contract and period and opens the service report as a page and as a PDF.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.core.report_schedule import period_containing, previous_period
from gateway.model import Event
from tests.e2e.test_board_browser import Browser
from tests.helpers import base_config, eventually

ADMIN_TOKEN = "reports-admin-token-5d1e"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TZ = "Asia/Shanghai"


def _config(tmp_path: Path) -> Any:
    d = base_config(tmp_path / "var")
    d["gateway"]["timezone"] = TZ
    d["api"] = {"enabled": True, "host": "127.0.0.1", "port": 0,
                "tokens": [{"token": ADMIN_TOKEN, "role": "admin", "name": "root"}]}
    d["policies"]["acme-net"] = {"calendar": "24x7", "customer": "Acme Mining", "levels": {"1": {"response": "1h"}}}
    d["policies"]["mine-monitoring"]["customer"] = "Shanxi Coal"
    d["devices"] += [
        {"id": "gas-7", "name": "Gas 7", "class": "mine.gas-sensor", "site": "pit-7", "policy": "acme-net"},
        {"id": "gas-1", "name": "Gas 1", "class": "mine.gas-sensor", "site": "hq", "policy": "mine-monitoring"},
    ]
    return config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with Gateway(_config(tmp_path)) as g:
        assert g.api is not None
        async with httpx.AsyncClient(base_url=g.api.url, headers=ADMIN) as h:
            for body in ({"name": "li.wei", "role": "operator", "password": "night-shift-42"},
                         {"name": "acme", "role": "customer", "display_name": "Acme NOC", "password": "acme-contact-1",
                          "policies": ["acme-net"]}):
                r = await h.post("/api/v1/users", json=body)
                assert r.status_code == 201, r.text
        yield g


async def _tickets(gw: Gateway) -> dict[str, int]:
    for dev in ("gas-7", "gas-1"):
        assert gw.pipeline.offer(Event(time.time(), "test", dev, "status", {"ch4": 2.0}))
    rows = await eventually(lambda: (r := gw.store.list_tickets()) and len(r) == 2 and r)
    return {t["device"]: t["id"] for t in rows}


async def _sign_in(b: Browser, url: str, name: str, password: str) -> None:
    await b.wait_js("!document.getElementById('login').hidden")
    await b.type_text("#login-name", name)
    await b.type_text("#login-password", password)
    await b.click("#login-save")
    await b.wait_js("document.body.dataset.ready === '1'")


async def _fetch(b: Browser, url: str, method: str = "GET") -> dict[str, Any]:
    """Status, content type and the first bytes of a same-origin request made by the page."""
    out: dict[str, Any] = await b.js(
        f"fetch({json.dumps(url)}, {{method: {json.dumps(method)}, credentials: 'same-origin', headers: "
        "{'X-Requested-With': 'gateway-board', 'Content-Type': 'application/json'}, "
        f"body: {json.dumps(method)} === 'GET' ? undefined : '{{}}'}})"
        ".then(async r => { const b = new Uint8Array(await r.arrayBuffer()); "
        "return {status: r.status, type: r.headers.get('content-type') || '', csp: r.headers.get('content-security-policy'), "
        "head: new TextDecoder().decode(b.slice(0, 4000))}; })")
    return out


async def test_a_customer_sees_only_its_own_and_cannot_act(gw: Gateway) -> None:
    assert gw.api is not None
    url = gw.api.url
    ids = await _tickets(gw)
    async with httpx.AsyncClient(base_url=url, headers=ADMIN) as h:  # its ticket restored: a report to read
        r = await h.post(f"/api/v1/tickets/{ids['gas-7']}/resolve", json={"note": "sensor recalibrated"})
        assert r.status_code == 200, r.text
    b = await Browser.launch()
    try:
        await b.goto(url + "/customer")
        await _sign_in(b, url, "acme", "acme-contact-1")
        assert await b.js("document.getElementById('who').textContent") == "Acme NOC"
        # Only its own contract's ticket, with its clocks; the other customer's is not there.
        shown = await b.js("[...document.querySelectorAll('.ticket')].map(t => Number(t.dataset.ticketId))")
        assert shown == [ids["gas-7"]]
        clocks = await b.js(f"[...document.querySelectorAll('[data-ticket-id=\"{ids['gas-7']}\"] .clock')]"
                            ".map(c => c.dataset.clock + ':' + c.dataset.state)")
        assert "response:met" in clocks, clocks
        # Read-only: no action buttons at all (only the language and sign-out controls).
        buttons = await b.js("[...document.querySelectorAll('button')].filter(x => !x.closest('#login')).map(x => x.id)")
        assert sorted(buttons) == ["lang", "sign-out"], buttons
        assert await b.js("document.querySelectorAll('[data-action], .actions').length") == 0
        # Its incident report and its contract's service reports, and nobody else's.
        link = await b.js("document.querySelector('[data-link=incident-html]').href")
        got = await _fetch(b, link)
        assert got["status"] == 200 and "text/html" in got["type"] and f"#{ids['gas-7']}" in got["head"], got
        contracts = await b.js("[...document.querySelectorAll('#service-reports .contract')].map(c => c.dataset.contract)")
        assert contracts == ["acme-net"]
        month = previous_period(period_containing(time.time(), TZ, "monthly"))
        link = await b.js(f"document.querySelector('.report[data-period=\"{month}\"] [data-link=service-pdf]').href")
        got = await _fetch(b, link)
        assert got["status"] == 200 and got["type"] == "application/pdf" and got["head"].startswith("%PDF"), got
        # The API refuses it an operator's action and another customer's ticket and contract.
        assert (await _fetch(b, f"/api/v1/tickets/{ids['gas-7']}/acknowledge", "POST"))["status"] == 403
        assert (await _fetch(b, f"/api/v1/tickets/{ids['gas-1']}"))["status"] == 404
        assert (await _fetch(b, f"/api/v1/reports/service?contract=mine-monitoring&period={month}"))["status"] == 404
        assert not [c for c in b.console if c.startswith("EXCEPTION")], b.console
    finally:
        await b.close()


async def test_the_board_opens_a_contracts_service_report(gw: Gateway) -> None:
    assert gw.api is not None
    url = gw.api.url
    b = await Browser.launch()
    try:
        await b.goto(url + "/")
        await b.wait_js("!document.getElementById('token-dialog').hidden")
        await b.type_text("#login-name", "li.wei")
        await b.type_text("#login-password", "night-shift-42")
        await b.click("#login-save")
        # Every contract is there for an operator (the example's five and acme-net).
        await b.wait_js("document.querySelectorAll('#svc-contract option').length === 6")
        quarter = previous_period(period_containing(time.time(), TZ, "quarterly"))
        await b.js("(() => { const c = document.getElementById('svc-contract'); c.value = 'acme-net';"
                   " c.dispatchEvent(new Event('change'));"
                   f" const p = document.getElementById('svc-period'); p.value = {json.dumps(quarter)};"
                   " p.dispatchEvent(new Event('change')); })()")
        html = await b.js("document.getElementById('svc-html').href")
        pdf = await b.js("document.getElementById('svc-pdf').href")
        assert f"contract=acme-net&period={quarter}" in html and html.endswith("format=html")
        assert await b.js("document.getElementById('svc-pdf').getAttribute('download')") == f"service-acme-net-{quarter}.pdf"
        got = await _fetch(b, pdf)
        assert got["status"] == 200 and got["type"] == "application/pdf" and got["head"].startswith("%PDF"), got
        page = await _fetch(b, html)
        assert page["status"] == 200 and page["csp"].startswith("default-src 'none'"), page  # no scripts in a report
        # The page itself, opened from the board's link (the session cookie goes along).
        await b.goto(html)
        title = await b.js("document.title")
        assert title == f"Service report {quarter}: acme-net — Acme Mining", title
        assert await b.js("document.querySelectorAll('svg').length") >= 1  # the charts
    finally:
        await b.close()
