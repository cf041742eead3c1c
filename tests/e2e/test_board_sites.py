"""The board's Sites panel (static/sites.js) in a real headless Chromium: with ``/api/v1/sites``
served (a partitioned central's supervisor; here its rows are given by the test on a running
gateway's API context) each site shows its link state and buffered backlog, follows the
board's customer filter, and a gateway without ``/sites`` shows no panel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.e2e.test_board_browser import OP_TOKEN, Browser
from tests.helpers import base_config


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    b = await Browser.launch()
    try:
        yield b
    finally:
        await b.close()


def _row(site: str, link: str, backlog: int | None, customer: str) -> dict[str, Any]:
    return {"site": site, "partition": 1, "edges": [], "contracts": ["gold"], "devices": 2, "open_alarms": 1,
            "link": link, "backlog": backlog, "customers": [customer]}


async def test_the_sites_panel_shows_link_and_backlog(tmp_path: Path, browser: Browser) -> None:
    d = base_config(tmp_path / "var")
    d["api"] = {"enabled": True, "host": "127.0.0.1", "port": 0,
                "tokens": [{"token": OP_TOKEN, "role": "operator", "name": "noc-desk"}]}
    cfg = config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))
    b = browser
    async with Gateway(cfg) as gw:
        await b.goto(gw.api.url + "/")
        await b.wait_js("!document.getElementById('token-dialog').hidden")
        await b.type_text("#token-input", OP_TOKEN)
        await b.click("#token-save")
        await b.wait_js("document.body.dataset.live === '1'")
        # No /sites here (404): no panel.
        await b.wait_js("document.getElementById('sites-panel') !== null")
        assert await b.js("document.getElementById('sites-panel').hidden") is True

        gw.api.ctx.sites = lambda now: [_row("mine-a", "down", 1234, "Acme"), _row("mine-b", "up", 0, "Other")]
        await b.goto(gw.api.url + "/")
        down = "document.querySelector('#sites-panel .site.link-down[data-site=\"mine-a\"]')"
        await b.wait_js(f"{down} !== null && !document.getElementById('sites-panel').hidden", timeout=10)
        assert "1234" in await b.js(f"{down}.textContent")
        assert await b.js("document.querySelectorAll('#sites-panel .site').length") == 2
        # The board's customer filter applies to the panel too.
        await b.js("(() => { const s = document.getElementById('f-customer'); "
                   "if (![...s.options].some(o => o.value === 'Acme')) s.add(new Option('Acme', 'Acme')); "
                   "s.value = 'Acme'; s.dispatchEvent(new Event('change')); })()")
        await b.wait_js("document.querySelectorAll('#sites-panel .site').length === 1")
        assert not [c for c in b.console if c.startswith("EXCEPTION")], b.console
