"""The board's "New ticket" form in a real headless Chromium: an operator enters a customer's
phone report, back-dated with a reason; the ticket appears on the board live, its card says
who reported it and why its clocks start before the entry, and "No visit needed" makes the
on-site clock not applicable. A time in the future is refused with the gateway's message in
the form. Form and cards follow the board's language switch (zh-CN and English)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.e2e.test_board_browser import OP_TOKEN, Browser, browser  # noqa: F401 - the fixture
from tests.fixtures.netsnmp import free_udp_port
from tests.helpers import base_config, eventually

CST = ZoneInfo("Asia/Shanghai")


async def test_new_ticket_form_opens_a_back_dated_report(tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    d = base_config(tmp_path / "var", free_udp_port())
    d["api"] = {"enabled": True, "host": "127.0.0.1", "port": 0,
                "tokens": [{"token": OP_TOKEN, "role": "operator", "name": "noc-desk"}]}
    d["devices"][0]["name"] = "Core switch"
    cfg = config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))
    async with Gateway(cfg) as gw:
        b = browser
        await b.goto(gw.api.url + "/")
        await b.wait_js("!document.getElementById('token-dialog').hidden")
        await b.type_text("#token-input", OP_TOKEN)
        await b.click("#token-save")
        await b.wait_js("document.body.dataset.live === '1'")

        await b.click("#new-ticket")
        await b.wait_js("!document.getElementById('nt-dialog').hidden")
        await b.wait_js("document.getElementById('nt-device').options.length > 0")
        assert await b.js("document.getElementById('nt-device').value") == "sw-1"
        await b.type_text("#nt-title", "customer: no network on floor 2")
        await b.type_text("#nt-reported-by", "Zhou (front desk), 010-5555")
        # A time in the future: the gateway refuses it and the form says why.
        future = datetime.fromtimestamp(time.time() + 3 * 3600, CST).strftime("%Y-%m-%dT%H:%M")
        await b.js(f"document.getElementById('nt-reported-at').value = '{future}'")
        await b.click("#nt-submit")
        msg = await b.wait_js("document.getElementById('nt-error').textContent || null")
        assert "is in the future" in msg
        assert gw.store.list_tickets() == []

        # Back-dated by 90 minutes with a reason.
        reported = int(time.time() // 60 * 60 - 90 * 60)
        at = datetime.fromtimestamp(reported, CST).strftime("%Y-%m-%dT%H:%M")
        await b.js(f"document.getElementById('nt-reported-at').value = '{at}'")
        await b.type_text("#nt-reason", "call taken during the outage, entered afterwards")
        await b.click("#nt-submit")
        await b.wait_js("document.getElementById('nt-dialog').hidden")
        tid = await b.wait_js("(() => { const t = document.querySelector('.ticket[data-ticket-id]');"
                              " return t ? Number(t.dataset.ticketId) : null; })()")
        t = await eventually(lambda: gw.store.get_ticket(tid))
        assert (t["origin"], t["reported_by"]) == ("phone", "Zhou (front desk), 010-5555")
        assert t["opened_at"] == reported and t["backdate_reason"].startswith("call taken")
        assert next(e for e in gw.store.timeline(tid) if e["kind"] == "opened")["actor"] == "noc-desk"

        # The card says who reported it, how, and that its clocks start before the entry.
        card = f".ticket[data-ticket-id='{tid}']"
        line = await b.wait_js(f"(() => {{ const n = document.querySelector(\"{card} .nt-reported\"); return n && n.textContent; }})()")
        assert line == "reported by Zhou (front desk), 010-5555 via phone"
        back = await b.js(f"document.querySelector(\"{card} .nt-backdated\").textContent")
        assert back.startswith("clocks from the report; entered ") and back.endswith("call taken during the outage, entered afterwards")
        # No on-site visit needed: the on-site clock becomes not applicable.
        await b.click(f"{card} button[data-action='no_on_site']")
        await b.wait_js(f"document.querySelector(\"{card} .clock[data-clock='on_site']\").dataset.state === 'not_needed'", timeout=5)
        await eventually(lambda: any(e["kind"] == "no_on_site" for e in gw.store.timeline(tid)))

        # The form and the cards speak the board's language.
        await b.click("#lang")
        await b.wait_js("document.documentElement.lang === 'zh-CN'")
        await b.wait_js("document.getElementById('new-ticket').textContent === '新建工单'")
        await b.wait_js(f"document.querySelector(\"{card} .nt-reported\").textContent === 'Zhou (front desk), 010-5555 通过电话报修'")
        await b.click("#lang")
        await b.wait_js("document.getElementById('new-ticket').textContent === 'New ticket'")
        assert not [c for c in b.console if c.startswith("EXCEPTION")], b.console
