"""The NOC board under its Content-Security-Policy, in a real headless Chromium (issue 21
item 13): the policy the gateway sends is enforced by the browser (an injected inline
script does not run), and the board still logs in, goes live, shows a trap and acts on a
ticket without a single policy violation."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.e2e.test_board_browser import OP_TOKEN, Browser, browser  # noqa: F401 -- the fixture
from tests.fixtures.netsnmp import LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import base_config

#: Records every CSP violation on the page, from before the page's own scripts run.
_WATCH_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
    e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


async def test_the_board_works_under_its_csp(tmp_path: Path, netsnmp: NetSnmp, browser: Browser) -> None:  # noqa: F811
    snmp_port = free_udp_port()
    d = base_config(tmp_path / "var", snmp_port)
    d["api"] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 0,
        "tokens": [{"token": OP_TOKEN, "role": "operator", "name": "noc-desk"}],
    }
    cfg = config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))
    b = browser
    await b.send("Page.addScriptToEvaluateOnNewDocument", {"source": _WATCH_VIOLATIONS})
    async with Gateway(cfg) as gw:
        await b.goto(gw.api.url + "/")
        await b.wait_js("!document.getElementById('token-dialog').hidden")
        await b.type_text("#token-input", OP_TOKEN)
        await b.click("#token-save")
        await b.wait_js("document.body.dataset.live === '1'")
        await b.wait_js("document.querySelector('.device[data-device=\"sw-1\"]') !== null")

        r = await asyncio.to_thread(netsnmp.trap, snmp_port, LINK_DOWN, link_varbinds(7, "eth7"))
        assert r.returncode == 0, r.stderr
        await b.wait_js("document.querySelector('.alarm[data-key=\"sw-1/if/7\"]') !== null")
        tid = int(await b.wait_js("document.querySelector('.ticket[data-ticket-id]')?.dataset.ticketId"))
        await b.click(f".ticket[data-ticket-id='{tid}'] button[data-action='acknowledge']")
        await b.wait_js(
            f"document.querySelector(\".ticket[data-ticket-id='{tid}']\").dataset.status === 'acknowledged'"
        )
        assert await b.js("window.__csp") == [], "the board broke its own policy"

        # The policy is really in force: an inline script injected into the page is refused.
        await b.js(
            "(() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
            " document.body.appendChild(s); })()"
        )
        await b.wait_js("window.__csp.length > 0")
        assert await b.js("window.__ran === undefined") is True
        assert any(v.startswith("script-src") for v in await b.js("window.__csp"))
        assert not [c for c in b.console if c.startswith("EXCEPTION")], b.console
