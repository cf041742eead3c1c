"""The board for 3 a.m. in a real headless Chromium, against a running gateway: a person signs
in with a name and password; a new level 1 and a breach ring and raise a desktop notice (the
toggle is remembered); tickets sit in lanes (about to breach / live / restored awaiting
report) nearest deadline first; search and the site, customer, contract, level and owner
filters narrow them; resolve and arrive ask for a note, and resolving while the alarm is
still active warns; long device names end in an ellipsis with the whole name in the tooltip;
light and dark themes; rule titles and dates in Chinese; a usable phone layout.

Set ``BOARD_DOCS=<dir>`` to write the README's screenshots (board-en.png, board-zh.png).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.model import Event
from tests.e2e.test_board_browser import Browser
from tests.helpers import base_config, eventually

ADMIN_TOKEN = "board-admin-token-77c1"
LONG_NAME = "Methane sensor, longwall face 12-305 return airway, north panel, pit 2 (spare)"


def _config(tmp_path: Path) -> Any:
    d = base_config(tmp_path / "var")
    d["gateway"]["timezone"] = "Asia/Shanghai"
    d["api"] = {"enabled": True, "host": "127.0.0.1", "port": 0,
                "tokens": [{"token": ADMIN_TOKEN, "role": "admin", "name": "root"}]}
    # A contract with a short response target: its tickets start "about to breach" and breach.
    d["policies"]["fast"] = {"calendar": "24x7", "customer": "Acme Mining", "levels": {"1": {"response": "6s"}}}
    d["policies"]["mine-monitoring"]["customer"] = "Shanxi Coal"
    d["devices"] += [
        {"id": "gas-7", "name": LONG_NAME, "class": "mine.gas-sensor", "site": "pit-2", "policy": "fast"},
        {"id": "gas-1", "name": "Gas 1", "class": "mine.gas-sensor", "site": "hq", "policy": "mine-monitoring"},
    ]
    d["devices"][0]["name"] = "Core switch"
    d["teams"] = [{"name": "noc", "lead": "li.wei", "members": ["li.wei", "zhao"],
                   "rota": [{"days": "daily", "start": "00:00", "end": "24:00", "user": "zhao"}]}]
    d["escalation"] = [{"id": "page-on-call", "after": "0s", "notify": "on_call"}]
    return config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with Gateway(_config(tmp_path)) as g:
        assert g.api is not None
        async with httpx.AsyncClient(base_url=g.api.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as h:
            r = await h.post("/api/v1/users", json={"name": "li.wei", "role": "operator", "display_name": "Li Wei",
                                                   "password": "night-shift-42"})
            assert r.status_code == 201, r.text
            r = await h.post("/api/v1/users", json={"name": "zhao", "role": "operator", "password": "day-shift-42"})
            assert r.status_code == 201, r.text
        yield g


async def _sign_in(b: Browser, url: str) -> None:
    await b.goto(url + "/")
    await b.wait_js("!document.getElementById('token-dialog').hidden")
    await b.type_text("#login-name", "li.wei")
    await b.type_text("#login-password", "night-shift-42")
    await b.click("#login-save")
    await b.wait_js("document.body.dataset.live === '1'")


def _offer(gw: Gateway, device: str, name: str, **attrs: Any) -> None:
    assert gw.pipeline.offer(Event(time.time(), "test", device, name, attrs))


async def _ids(b: Browser, lane: str) -> list[int]:
    got = await b.js(f"[...document.querySelectorAll('#lane-{lane} .ticket')].map(t => Number(t.dataset.ticketId))")
    return list(got)


def _no_exceptions(b: Browser) -> None:
    assert not [c for c in b.console if c.startswith("EXCEPTION")], b.console


async def test_the_board_at_3am(gw: Gateway, tmp_path: Path) -> None:
    assert gw.api is not None
    url = gw.api.url
    b = await Browser.launch()
    try:
        await b.send("Browser.grantPermissions", {"origin": url, "permissions": ["notifications"]}, browser=True)
        await _sign_in(b, url)
        assert await b.js("document.getElementById('who').textContent") == "Li Wei (operator)"
        assert await b.js("localStorage.getItem('gateway.token')") is None  # a session cookie, no token kept

        # Sound and desktop notices: off until switched on, then remembered.
        assert await b.js("document.getElementById('alerts').getAttribute('aria-pressed')") == "false"
        await b.click("#alerts")
        assert await b.js("localStorage.getItem('gateway.alerts')") == "1"
        await b.goto(url + "/")
        await b.wait_js("document.body.dataset.live === '1'")
        assert await b.js("document.getElementById('alerts').getAttribute('aria-pressed')") == "true"

        # A level 3 (2 h response) on the core switch, a level 1 on gas-1 (1 h), a level 1 on
        # gas-7 under the 6 s contract.
        _offer(gw, "sw-1", "IF-MIB::linkDown", ifIndex=7, ifDescr="eth7")
        _offer(gw, "gas-1", "status", ch4=2.1)
        await b.wait_js("document.querySelectorAll('.ticket').length === 2")
        _offer(gw, "gas-7", "status", ch4=1.9)
        await b.wait_js("document.querySelectorAll('.ticket').length === 3")
        tickets = {t["device"]: t["id"] for t in gw.store.list_tickets()}
        sw, g1, g7 = tickets["sw-1"], tickets["gas-1"], tickets["gas-7"]
        alerts = await b.wait_js("window.__boardAlerts.length >= 2 && window.__boardAlerts")
        l1 = {a["ticket"]: a for a in alerts if a["kind"] == "l1"}
        assert set(l1) == {g1, g7}  # the level 3 rings nothing
        assert all(a["sound"] and a["desktop"] for a in l1.values()), l1

        # Lanes: gas-7 is due within 15 minutes; the others are live, nearest deadline first.
        assert await _ids(b, "soon") == [g7]
        assert await _ids(b, "live") == [g1, sw]  # gas-1's response is due in 1 h, the switch's in 2 h
        assert await _ids(b, "restored") == []
        docs = os.environ.get("BOARD_DOCS")
        if docs:  # the README's pictures: the lanes as a night shift sees them
            await b.js("document.getElementById('toast').replaceChildren()")
            await b.screenshot(Path(docs) / "board-en.png")
            await b.click("#lang")
            await b.wait_js("document.documentElement.lang === 'zh-CN'")
            await b.screenshot(Path(docs) / "board-zh.png")
            await b.click("#lang")
            await b.wait_js("document.documentElement.lang === 'en'")
        # ... until gas-7 breaches: a breach notice, and it leads the live lane (overdue first).
        await b.wait_js(f"window.__boardAlerts.some(a => a.kind === 'breach' && a.ticket === {g7})", timeout=15)
        await b.wait_js(f"JSON.stringify([...document.querySelectorAll('#lane-live .ticket')].map(t => Number(t.dataset.ticketId))) === '{json.dumps([g7, g1, sw]).replace(' ', '')}'", timeout=5)

        # Long names: an ellipsis, and the whole name in the tooltip.
        dev = await b.js(f"""(() => {{ const n = document.querySelector(".ticket[data-ticket-id='{g7}'] .devname");
            const s = getComputedStyle(n);
            return {{title: n.title, cut: n.scrollWidth > n.clientWidth, ellipsis: s.textOverflow}}; }})()""")
        assert dev == {"title": f"{LONG_NAME} (gas-7)", "cut": True, "ellipsis": "ellipsis"}

        # Take, then the owner is shown and filterable.
        await b.click(f".ticket[data-ticket-id='{g1}'] button[data-action='take']")
        await b.wait_js(f"document.querySelector(\".ticket[data-ticket-id='{g1}'] .owner\").dataset.owner === 'li.wei'")
        await b.js("(() => { const s = document.getElementById('f-owner'); s.value = '=li.wei'; s.dispatchEvent(new Event('change')); })()")
        await b.wait_js(f"document.querySelectorAll('.ticket').length === 1 && document.querySelector('.ticket').dataset.ticketId === '{g1}'")
        await b.js("(() => { const s = document.getElementById('f-owner'); s.value = '='; s.dispatchEvent(new Event('change')); })()")
        await b.wait_js("document.querySelectorAll('.ticket').length === 2")  # nobody owns them
        await b.js("(() => { const s = document.getElementById('f-owner'); s.value = ''; s.dispatchEvent(new Event('change')); })()")
        # Hand over, with a note for whoever takes it.
        await b.click(f".ticket[data-ticket-id='{g1}'] button[data-action='hand_over']")
        await b.wait_js("!document.getElementById('act-dialog').hidden && !document.getElementById('act-to-label').hidden")
        await b.type_text("#act-to", "zhao")
        await b.type_text("#act-note", "ventilation crew is on the way")
        await b.click("#act-confirm")
        await b.wait_js(f"document.querySelector(\".ticket[data-ticket-id='{g1}'] .owner\").dataset.owner === 'zhao'")
        line = next(e for e in gw.store.timeline(g1) if e["kind"] == "hand_over")
        assert (line["actor"], line["note"]) == ("user:li.wei", "handed over from li.wei to zhao. ventilation crew is on the way")
        # Site, customer, contract, level filters and the search box.
        for sel, value, want in (("f-site", "pit-2", [g7]), ("f-customer", "Shanxi Coal", [g1, sw]),
                                 ("f-contract", "fast", [g7]), ("f-level", "3", [sw])):
            await b.js(f"(() => {{ const s = document.getElementById('{sel}'); s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()")
            await b.wait_js(f"JSON.stringify([...document.querySelectorAll('.ticket')].map(t => Number(t.dataset.ticketId)).sort((a, b) => a - b)) === '{json.dumps(sorted(want)).replace(' ', '')}'")
            await b.js(f"(() => {{ const s = document.getElementById('{sel}'); s.value = ''; s.dispatchEvent(new Event('change')); }})()")
        await b.type_text("#search", "longwall")
        await b.wait_js(f"document.querySelectorAll('.ticket').length === 1 && document.querySelector('.ticket').dataset.ticketId === '{g7}'")
        await b.js("(() => { const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')); })()")
        await b.wait_js("document.querySelectorAll('.ticket').length === 3")

        # Arrive asks for a note (no warning); resolving while the alarm is active warns.
        await b.click(f".ticket[data-ticket-id='{g1}'] button[data-action='arrive']")
        await b.wait_js("!document.getElementById('act-dialog').hidden")
        assert await b.js("document.getElementById('act-warning').hidden") is True
        await b.type_text("#act-note", "on site at the gas monitor")
        await b.click("#act-confirm")
        await b.wait_js(f"document.querySelector(\".ticket[data-ticket-id='{g1}'] .clock[data-clock='on_site']\").dataset.state === 'met'")
        await b.click(f".ticket[data-ticket-id='{sw}'] button[data-action='resolve']")
        await b.wait_js("!document.getElementById('act-dialog').hidden")
        assert await b.js("document.getElementById('act-warning').hidden") is False
        assert "still ACTIVE" in await b.js("document.getElementById('act-warning').textContent")
        await b.click("#act-cancel")  # cancelled: nothing happens
        await b.wait_js("document.getElementById('act-dialog').hidden")
        assert gw.store.get_ticket(sw)["status"] == "open"
        _offer(gw, "sw-1", "IF-MIB::linkUp", ifIndex=7, ifDescr="eth7")  # the device recovers: restored by itself
        await b.wait_js(f"JSON.stringify([...document.querySelectorAll('#lane-restored .ticket')].map(t => Number(t.dataset.ticketId))) === '[{sw}]'")
        await b.click(f".ticket[data-ticket-id='{g7}'] button[data-action='resolve']")
        await b.wait_js("!document.getElementById('act-dialog').hidden")
        await b.type_text("#act-note", "sensor replaced")
        await b.click("#act-confirm")
        await b.wait_js(f"document.querySelector(\"#lane-restored .ticket[data-ticket-id='{g7}']\") !== null")
        line = next(e for e in gw.store.timeline(g7) if e["kind"] == "restore")
        assert (line["actor"], line["note"]) == ("user:li.wei", "sensor replaced")
        arrive = next(e for e in gw.store.timeline(g1) if e["kind"] == "arrive")
        assert (arrive["actor"], arrive["note"]) == ("user:li.wei", "on site at the gas monitor")

        # The timeline on the board names the person, and shows the escalation steps.
        await b.click(f".ticket[data-ticket-id='{g1}'] button[data-action='details']")
        await b.wait_js(f"[...document.querySelectorAll(\".ticket[data-ticket-id='{g1}'] .timeline li\")].some(l => l.textContent.includes('user:li.wei'))")
        step = await b.wait_js(f"document.querySelector(\".ticket[data-ticket-id='{g1}'] .timeline li.escalation\")?.textContent")
        assert "page-on-call" in step and "zhao" in step, step
        assert await b.js("document.getElementById('oncall').textContent") == "on call noc: zhao"

        # Dates: en-GB day/month in the gateway's zone.
        since = await b.js(f"document.querySelector(\".ticket[data-ticket-id='{g1}'] > .meta\").textContent")
        assert re.search(r"\d\d/\d\d, \d\d:\d\d:\d\d", since), since

        # Light and dark, remembered.
        before = await b.js("getComputedStyle(document.body).backgroundColor")
        theme = await b.js("document.documentElement.dataset.theme")
        await b.click("#theme")
        after = await b.js("document.documentElement.dataset.theme")
        assert {theme, after} == {"light", "dark"}
        assert await b.js("localStorage.getItem('gateway.theme')") == after
        assert await b.js("getComputedStyle(document.body).backgroundColor") != before
        await b.click("#theme")

        # Chinese: rule titles translated (English when a rule has none), zh-CN dates.
        await b.click("#lang")
        await b.wait_js("document.documentElement.lang === 'zh-CN'")
        title = await b.wait_js(f"document.querySelector(\".ticket[data-ticket-id='{sw}'] .title\").textContent")
        assert title == "sw-1 接口 7（eth7）断开", title
        assert await b.js(f"document.querySelector(\".ticket[data-ticket-id='{g1}'] .title\").textContent") == "gas-1 甲烷浓度 2.1 %（达到断电值）"
        since = await b.js(f"document.querySelector(\".ticket[data-ticket-id='{g1}'] > .meta\").textContent")
        assert re.search(r"\d\d/\d\d \d\d:\d\d:\d\d", since) and "开始" in since, since
        assert "即将超时" in await b.js("document.getElementById('lane-soon').textContent")
        await b.click("#lang")
        _no_exceptions(b)
    finally:
        await b.close()


async def test_the_board_on_a_phone(gw: Gateway) -> None:
    """390 px wide: one column, tickets first, nothing wider than the screen."""
    assert gw.api is not None
    _offer(gw, "gas-7", "status", ch4=1.9)
    await eventually(lambda: gw.store.list_tickets())
    b = await Browser.launch(width=390, height=844)
    try:
        await _sign_in(b, gw.api.url)
        await b.wait_js("document.querySelectorAll('.ticket').length === 1")
        layout = await b.js("""(() => ({
            overflow: document.documentElement.scrollWidth - window.innerWidth,
            ticketsFirst: document.getElementById('tickets-panel').getBoundingClientRect().top
                        < document.getElementById('alarms-panel').getBoundingClientRect().top,
            ticketRight: document.querySelector('.ticket').getBoundingClientRect().right,
            button: document.querySelector(".ticket button[data-action='resolve']").getBoundingClientRect().height,
        }))()""")
        assert layout["overflow"] <= 0, layout
        assert layout["ticketsFirst"], layout
        assert layout["ticketRight"] <= 390, layout
        assert layout["button"] >= 30, layout  # a thumb can hit it
        _no_exceptions(b)
    finally:
        await b.close()
