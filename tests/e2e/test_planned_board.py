"""The board's after-sales panel (planned.js) in a real headless Chromium: planned work that is
overdue or due and warranties ending within 30/60/90 days appear, an operator completes an item
with its report from the board, a device's repair history is shown, and the panel speaks
Chinese when the board does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.clock import ManualClock
from tests.e2e.test_board_browser import Browser
from tests.fixtures.api import OP_TOKEN
from tests.helpers import eventually
from tests.integration.test_aftersales_api import config, local


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    b = await Browser.launch()
    try:
        yield b
    finally:
        await b.close()


async def test_planned_panel_lists_completes_and_translates(tmp_path: Path, browser: Browser) -> None:
    cfg = config(tmp_path)
    clock = ManualClock(local("2026-04-01 10:00"))
    async with Gateway(cfg, clock=clock) as gw:
        assert gw.api is not None
        await eventually(lambda: gw.service.last_tick, what="the first after-sales tick")
        b = browser
        await b.goto(gw.api.url + "/")
        await b.wait_js("!document.getElementById('token-dialog').hidden")
        await b.type_text("#token-input", OP_TOKEN)
        await b.click("#token-save")
        await b.wait_js("document.body.dataset.live === '1'")
        # Overdue: inspection 1 and visit 1 (28 Feb); due: inspection 2 (31 Mar, window open).
        await b.wait_js("document.querySelectorAll('#planned-items [data-item]').length === 3", timeout=10)
        first = "medical-devices/inspection:pump-1:2026-02-28"
        assert await b.js(f"document.querySelector('[data-item=\"{first}\"]').className.includes('unacked')")
        text = await b.js("document.getElementById('planned-expiring').innerText")
        assert "gas-1" in text and "2026-04-20" in text and "19" in text

        await b.js("window.prompt = () => '巡检完成 from the board'")
        await b.click(f"[data-item=\"{first}\"] button")
        await b.wait_js(f"document.querySelector('[data-item=\"{first}\"]') === null")
        item = gw.store.get_planned(first)
        assert item is not None and item["status"] == "done" and item["done_by"] == "alice"
        assert item["report"]["text"] == "巡检完成 from the board"

        await b.type_text("#planned-device", "pump-1")
        await b.click("#planned-history ~ * button, #planned-panel .level-head button")
        await b.wait_js("document.getElementById('planned-history').innerText.includes('保修期内')")

        # A ticket's warranty as of its start and its spare clocks; recording a spare request.
        tid = gw.store.find_tickets(devices=["pump-1"])[0]["id"]
        await b.type_text("#planned-ticket", str(tid))
        await b.click("#planned-ticket-show")
        await b.wait_js("document.getElementById('planned-ticket-out').innerText.includes('in warranty')")
        await b.js("document.getElementById('planned-action').value = 'spare_requested'")
        await b.type_text("#planned-part", "pump-motor")
        await b.click("#planned-record")
        await b.wait_js("document.querySelector('#planned-ticket-out .clock[data-clock=\"ship\"]') !== null")
        ship = await b.js("document.querySelector('#planned-ticket-out .clock[data-clock=\"ship\"]').innerText")
        assert "2026-04-03 10:00" in ship
        recs = gw.store.list_service_records(ticket_id=tid)
        assert [(r["kind"], r["data"].get("part"), r["actor"]) for r in recs] == [("spare_requested", "pump-motor", "alice")]

        await b.click("#lang")
        await b.wait_js("document.getElementById('planned-panel').innerText.includes('计划工作与保修')")
        await b.click("#lang")
        await b.wait_js("document.getElementById('planned-panel').innerText.includes('Planned work & warranty')")
        assert not [c for c in b.console if c.startswith("EXCEPTION")], b.console
