"""The board shows an alarm and a ticket whose event arrived late from a site's edge (after a
WAN cut), and by how much, in a real headless Chromium; the API carries ``late_s``.

The late event is offered as the central decides it (``late_s`` in its attributes, its own
original time): the central's side of that is tested with a real JetStream in
tests/integration/test_forward.py (test b)."""

from __future__ import annotations

import time

import httpx

from gateway.app import Gateway
from gateway.model import Event
from tests.e2e.test_board_3am import ADMIN_TOKEN, _no_exceptions, _sign_in, gw
from tests.e2e.test_board_browser import Browser
from tests.helpers import eventually

__all__ = ["gw"]


async def test_the_board_shows_a_late_arrival_on_the_alarm_and_the_ticket(gw: Gateway) -> None:
    assert gw.api is not None
    now = time.time()
    assert gw.pipeline.offer(Event(now - 95.0, "forward", "sw-1", "IF-MIB::linkDown",
                                   {"ifIndex": 3, "ifDescr": "eth3", "late_s": 95.25}))
    assert gw.pipeline.offer(Event(now, "snmp", "gas-1", "status", {"ch4": 2.2}))  # in time
    await eventually(lambda: len(gw.store.list_tickets()) == 2)
    async with httpx.AsyncClient(base_url=gw.api.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as h:
        alarms = {a["device"]: a for a in (await h.get("/api/v1/alarms")).json()}
        tickets = {t["device"]: t for t in (await h.get("/api/v1/tickets")).json()}
    assert alarms["sw-1"]["late_s"] == 95.25 and alarms["gas-1"]["late_s"] is None
    assert tickets["sw-1"]["late_s"] == 95.25 and tickets["gas-1"]["late_s"] is None
    b = await Browser.launch()
    try:
        await _sign_in(b, gw.api.url)
        await b.wait_js("document.querySelectorAll('.ticket').length === 2")
        aid, tid = alarms["sw-1"]["id"], tickets["sw-1"]["id"]
        shown = await b.js(f"""(() => {{
            const tag = (sel) => {{ const n = document.querySelector(sel + ' .tag.late');
                return n ? {{text: n.textContent, title: n.title, border: getComputedStyle(n).borderTopStyle}} : null; }};
            return {{
                alarm: tag(".alarm[data-alarm-id='{aid}']"), ticket: tag(".ticket[data-ticket-id='{tid}']"),
                inTime: document.querySelectorAll(".tag.late").length,
            }}; }})()""")
        assert shown["alarm"] is not None and shown["alarm"]["text"] == "arrived late +0:01:35", shown
        assert shown["ticket"] is not None and shown["ticket"]["text"] == "arrived late +0:01:35", shown
        assert shown["alarm"]["border"] == "dashed"  # styled by board.css (no inline styles under the CSP)
        assert "WAN cut" in shown["alarm"]["title"]
        assert shown["inTime"] == 2  # the in-time alarm and ticket carry no tag
        await b.click("#lang")
        await b.wait_js("document.documentElement.lang === 'zh-CN'")
        zh = await b.js("document.querySelector('.ticket .tag.late').textContent")
        assert zh == "延迟到达 +0:01:35"
        _no_exceptions(b)
    finally:
        await b.close()
