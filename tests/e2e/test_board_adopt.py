"""The board's "adopt" panel in a real headless Chromium: a sender not in the inventory shows
up as unknown; the operator adopts it with a class, site and policy; it becomes an inventory
device (its traffic now resolves to it) and the change is recorded with who and when."""

from __future__ import annotations

from pathlib import Path

from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.model import Event
from tests.e2e.test_board_browser import OP_TOKEN, Browser, browser  # noqa: F401 - the fixture
from tests.helpers import base_config, eventually


async def test_an_unknown_sender_is_adopted_from_the_board(tmp_path: Path, browser: Browser) -> None:  # noqa: F811
    d = base_config(tmp_path / "var", None)
    d["api"] = {"enabled": True, "host": "127.0.0.1", "port": 0,
                "tokens": [{"token": OP_TOKEN, "role": "operator", "name": "noc-desk"}]}
    cfg = config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))
    async with Gateway(cfg) as gw:
        gw.pipeline.offer(Event(gw.clock.now(), "snmp", "10.7.7.7", "SNMPv2-MIB::coldStart", peer="10.7.7.7"))
        await eventually(lambda: "10.7.7.7" in gw.pipeline.inventory.unknown, what="the unknown sender")
        b = browser
        await b.goto(gw.api.url + "/")
        await b.wait_js("!document.getElementById('token-dialog').hidden")
        await b.type_text("#token-input", OP_TOKEN)
        await b.click("#token-save")
        await b.wait_js("document.body.dataset.live === '1'")
        await b.js("window.gatewayAdopt.refresh()")
        await b.wait_js("document.querySelector('.unknown-device[data-device=\"10.7.7.7\"]') !== null")
        await b.click(".unknown-device[data-device='10.7.7.7'] button[data-action='adopt']")
        await b.wait_js("document.querySelector('form.adopt-form') !== null")
        await b.js("""(() => { const f = document.querySelector('form.adopt-form');
            f.elements.id.value = 'ups-7'; f.elements.class.value = 'network.ups';
            f.elements.site.value = 'pit-2'; f.elements.policy.value = 'network-equipment'; })()""")
        await b.click("form.adopt-form button[data-action='adopt-save']")
        await b.wait_js("document.getElementById('adopt-status').textContent.includes('ups-7')")
        await b.wait_js("document.querySelector('.unknown-device[data-device=\"10.7.7.7\"]') === null")
        dev = gw.pipeline.inventory.get("ups-7")
        assert dev is not None and (dev.device_class, dev.site, dev.policy) == ("network.ups", "pit-2", "network-equipment")
        assert gw.pipeline.inventory.lookup("10.7.7.7") == "ups-7"
        change = gw.store.device_changes("ups-7")[0]
        assert (change["action"], change["actor"]) == ("adopt", "noc-desk")
        assert not [c for c in b.console if c.startswith("EXCEPTION")], b.console
