"""The NOC board in a real headless Chromium: a trap sent to a running gateway appears on the
page without a reload, and the operator's acknowledge button stops the response clock.

Chromium is driven over the DevTools protocol through ``--remote-debugging-pipe`` (file
descriptors 3 and 4, NUL-separated JSON), so no driver or extra Python package is needed.
Set ``BOARD_SCREENSHOT=<file.png>`` to keep a screenshot of the board.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.model import Event
from tests.fixtures.netsnmp import LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import base_config, eventually

OP_TOKEN = "board-operator-token-3c1d"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Puts the DevTools pipe on fds 3 and 4, then becomes the browser.
_EXEC_WITH_PIPE = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or next((p for p in map(shutil.which, BROWSERS) if p), None)
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            "Chromium is missing: install the Debian package 'chromium' (scripts/test does), "
            "or point CHROMIUM at a Chromium/Chrome binary"
        )
    return path


def _high_fd(fd: int) -> int:
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Browser:
    """A headless Chromium and one page, spoken to over the DevTools pipe."""

    def __init__(
        self, proc: subprocess.Popen[bytes], write_fd: int, reader: asyncio.StreamReader, user_dir: str
    ) -> None:
        self.proc = proc
        self._w = write_fd
        self._reader = reader
        self._user_dir = user_dir
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self.console: list[str] = []
        self.session: str | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def launch(cls, width: int = 1440, height: int = 900, tz: str | None = None) -> Browser:
        """Start Chromium; ``tz`` sets its time zone (the ``TZ`` environment variable)."""
        exe = _chromium()
        user_dir = tempfile.mkdtemp(prefix="board-chromium-")
        cmd_r, cmd_w = os.pipe()  # we write commands; Chromium reads them on fd 3
        ev_r, ev_w = os.pipe()  # Chromium writes answers on fd 4; we read them
        # The child's ends move to fds 3 and 4; they must not already be 3 or 4 themselves,
        # or moving one would clobber the other.
        cmd_r, ev_w = (_high_fd(fd) for fd in (cmd_r, ev_w))
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--remote-debugging-pipe",
            f"--user-data-dir={user_dir}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        proc = subprocess.Popen(
            [sys.executable, "-c", _EXEC_WITH_PIPE, str(cmd_r), str(ev_w), exe, *flags],
            pass_fds=(cmd_r, ev_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TZ": tz} if tz else None,
        )
        os.close(cmd_r)
        os.close(ev_w)
        reader = asyncio.StreamReader(limit=256 * 1024 * 1024)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(ev_r, "rb", 0)
        )
        b = cls(proc, cmd_w, reader, user_dir)
        b._transport = transport
        try:
            target = (await b.send("Target.createTarget", {"url": "about:blank"}, browser=True))["targetId"]
            b.session = (
                await b.send("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)
            )["sessionId"]
            await b.send("Page.enable")
            await b.send("Runtime.enable")
            await b.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
        except BaseException:
            await b.close()
            raise
        return b

    async def _read(self) -> None:
        try:
            while True:
                raw = await self._reader.readuntil(b"\0")
                msg = json.loads(raw[:-1])
                fut = self._waiting.pop(msg.get("id", -1), None)
                if fut is not None and not fut.done():
                    if "error" in msg:
                        fut.set_exception(RuntimeError(f"CDP error: {msg['error']}"))
                    else:
                        fut.set_result(msg.get("result", {}))
                elif msg.get("method") == "Runtime.consoleAPICalled":
                    args = msg["params"].get("args", [])
                    self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
                elif msg.get("method") == "Runtime.exceptionThrown":
                    self.console.append("EXCEPTION " + json.dumps(msg["params"]["exceptionDetails"])[:500])
        except asyncio.IncompleteReadError:
            for fut in self._waiting.values():  # the browser went away: fail fast, not after 20 s
                if not fut.done():
                    fut.set_exception(RuntimeError(f"Chromium exited (status {self.proc.poll()})"))
        except asyncio.CancelledError:
            pass

    async def send(self, method: str, params: dict[str, Any] | None = None, browser: bool = False) -> Any:
        i = next(self._ids)
        msg: dict[str, Any] = {"id": i, "method": method, "params": params or {}}
        if not browser:
            msg["sessionId"] = self.session
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[i] = fut
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        return await asyncio.wait_for(fut, 20)

    async def js(self, expression: str) -> Any:
        r = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in r:
            raise AssertionError(f"JS failed: {expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait_js(self, expression: str, timeout: float = 5.0) -> Any:
        return await eventually(lambda: self.js(expression), timeout, interval=0.05,
                                what=lambda: f"{expression}\nconsole: {self.console[-10:]}")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.wait_js("document.readyState === 'complete'")

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element."""
        box = await self.wait_js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e || e.disabled) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1},
            )

    async def type_text(self, selector: str, text: str) -> None:
        await self.click(selector)
        await self.send("Input.insertText", {"text": text})

    async def screenshot(self, path: Path) -> None:
        data = await self.send("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(data["data"]))

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.send("Browser.close", browser=True), 5)
        except (TimeoutError, RuntimeError, OSError):
            pass
        try:
            await asyncio.to_thread(self.proc.wait, 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._task.cancel()
        if self._transport is not None:
            self._transport.close()
        os.close(self._w)
        shutil.rmtree(self._user_dir, ignore_errors=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    b = await Browser.launch()
    try:
        yield b
    finally:
        await b.close()


async def test_trap_appears_live_and_ack_stops_the_response_clock(
    tmp_path: Path, netsnmp: NetSnmp, browser: Browser
) -> None:
    snmp_port = free_udp_port()
    d = base_config(tmp_path / "var", snmp_port)
    d["api"] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 0,
        "tokens": [{"token": OP_TOKEN, "role": "operator", "name": "noc-desk"}],
    }
    d["devices"][0]["name"] = "Core switch"
    cfg = config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))
    async with Gateway(cfg) as gw:
        b = browser
        await b.goto(gw.api.url + "/")
        # The token is asked for once ...
        await b.wait_js("!document.getElementById('token-dialog').hidden")
        await b.type_text("#token-input", OP_TOKEN)
        await b.click("#token-save")
        await b.wait_js("document.body.dataset.live === '1'")
        assert await b.js("localStorage.getItem('gateway.token')") == OP_TOKEN
        # ... and kept: a reload goes straight to the live board.
        await b.goto(gw.api.url + "/")
        await b.wait_js("document.body.dataset.live === '1'")
        assert await b.js("document.getElementById('token-dialog').hidden") is True
        await b.wait_js("document.querySelector('.device[data-device=\"sw-1\"]') !== null")
        await b.js("window.__noReload = 'still here'")

        r = await asyncio.to_thread(netsnmp.trap, snmp_port, LINK_DOWN, link_varbinds(7, "eth7"))
        assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        await b.wait_js("document.querySelector('.alarm[data-key=\"sw-1/if/7\"]') !== null", timeout=2.0)
        await b.wait_js(
            "document.querySelector('.ticket[data-ticket-id]') !== null",
            timeout=2.0 - (time.monotonic() - t0),
        )
        assert time.monotonic() - t0 < 2.0
        assert await b.js("window.__noReload") == "still here"  # arrived live, no reload

        alarm = await b.js("""(() => { const a = document.querySelector('.alarm[data-key="sw-1/if/7"]');
            return {cls: a.className, group: a.closest('.level-group').dataset.level,
                    text: a.innerText}; })()""")
        assert alarm["group"] == "3" and "unacked" in alarm["cls"] and "Core switch" in alarm["text"]
        tid = int(await b.js("document.querySelector('.ticket').dataset.ticketId"))
        clock = f".ticket[data-ticket-id='{tid}'] .clock[data-clock='response']"
        first = await b.wait_js(
            f'(() => {{ const t = document.querySelector("{clock} .countdown").textContent;'
            " return /^1:59:\\d\\d$/.test(t) ? t : null; })()"
        )
        await b.wait_js(
            f'document.querySelector("{clock} .countdown").textContent !== {json.dumps(first)}', timeout=3
        )

        shot = Path(os.environ.get("BOARD_SCREENSHOT") or tmp_path / "board.png")
        await b.screenshot(shot)
        assert shot.stat().st_size > 10_000

        await b.click(f".ticket[data-ticket-id='{tid}'] button[data-action='acknowledge']")
        await b.wait_js(f"document.querySelector(\"{clock}\").dataset.state === 'met'", timeout=3)
        assert await b.js(f'document.querySelector("{clock} .countdown").textContent') == "met"
        assert (
            await b.js(f"document.querySelector(\".ticket[data-ticket-id='{tid}']\").dataset.status")
            == "acknowledged"
        )
        await b.wait_js(
            "document.querySelector('.alarm[data-key=\"sw-1/if/7\"]').classList.contains('acked')"
        )
        t = gw.store.get_ticket(tid)
        assert t["status"] == "acknowledged"
        assert next(e for e in gw.store.timeline(tid) if e["kind"] == "acknowledge")["actor"] == "noc-desk"

        # Chinese and back.
        await b.click("#lang")
        await b.wait_js("document.documentElement.lang === 'zh-CN'")
        heading = await b.js("document.querySelector('.level-group[data-level=\"3\"] .level-head').innerText")
        assert "三级故障" in heading
        assert await b.js(f'document.querySelector("{clock} .countdown").textContent') == "达标"
        if os.environ.get("BOARD_SCREENSHOT"):
            await b.screenshot(shot.with_name(shot.stem + "-zh.png"))
        await b.click("#lang")
        await b.wait_js("document.documentElement.lang === 'en'")
        assert not [c for c in b.console if c.startswith("EXCEPTION")], b.console


@pytest.fixture
async def browser_in_new_york() -> AsyncIterator[Browser]:
    b = await Browser.launch(tz="America/New_York")
    try:
        yield b
    finally:
        await b.close()


def _shown(ts: float, zone: str) -> str:
    """How the board (en-GB) writes a time: day/month, 24-hour clock."""
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).strftime("%d/%m, %H:%M:%S")


async def test_board_shows_times_in_the_gateways_zone_not_the_browsers(
    tmp_path: Path, browser_in_new_york: Browser
) -> None:
    """A NOC screen in New York reading a gateway in Shanghai sees Shanghai times (the zone of
    the CLI, the reports and the SLA calendars), never its own."""
    d = base_config(tmp_path / "var")
    d["gateway"]["timezone"] = "Asia/Shanghai"
    d["api"] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 0,
        "tokens": [{"token": OP_TOKEN, "role": "operator", "name": "noc-desk"}],
    }
    cfg = config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))
    b = browser_in_new_york
    async with Gateway(cfg) as gw:
        await b.goto(gw.api.url + "/")
        assert await b.js("Intl.DateTimeFormat().resolvedOptions().timeZone") == "America/New_York"
        await b.wait_js("!document.getElementById('token-dialog').hidden")
        await b.type_text("#token-input", OP_TOKEN)
        await b.click("#token-save")
        await b.wait_js("document.body.dataset.live === '1'")

        link_down = Event(time.time(), "test", "sw-1", "IF-MIB::linkDown", {"ifIndex": 7, "ifDescr": "eth7"})
        assert gw.pipeline.offer(link_down)
        alarm_meta = "document.querySelector('.alarm[data-key=\"sw-1/if/7\"] .meta')"
        await b.wait_js(f"{alarm_meta} !== null")
        await b.wait_js("document.querySelector('.ticket .clock[data-clock=\"response\"]') !== null")
        [alarm] = gw.store.list_alarms()
        [ticket] = gw.store.list_tickets()
        due = next(c["due_at"] for c in ticket["clocks"] if c["kind"] == "response")

        text = await b.js(f"{alarm_meta}.textContent")
        assert _shown(alarm["last_seen"], "Asia/Shanghai") in text, text
        assert _shown(alarm["last_seen"], "America/New_York") not in text, text
        tk = f".ticket[data-ticket-id='{ticket['id']}']"
        since = await b.js(f'document.querySelector("{tk} > .meta").textContent')
        assert _shown(ticket["opened_at"], "Asia/Shanghai") in since, since
        name = f"{tk} .clock[data-clock='response'] .name"
        clock = await b.js(f"document.querySelector({json.dumps(name)}).textContent")
        assert _shown(due, "Asia/Shanghai") in clock, clock
        now = await b.wait_js("document.getElementById('now').textContent")
        assert "GMT+8" in now, now
        assert not [c for c in b.console if c.startswith("EXCEPTION")], b.console
