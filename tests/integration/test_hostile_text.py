"""Hostile text in what the gateway writes for people (issue 21 item 5): HTML that a device
puts in ``ifDescr`` (sent by net-snmp's snmptrap) and that operators type into notes and
report fields comes out inert in ``gateway report`` — escaped in the Markdown, and still
text, not markup, once a CommonMark renderer has turned that Markdown into HTML."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from gateway.app import Gateway
from gateway.cli.main import main
from gateway.config import load_config
from tests.fixtures.netsnmp import LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import base_config, eventually, write_config

IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert('note')</script>"
IFRAME = '<iframe src="https://evil.example/"></iframe>'
LINK = "[click me](javascript:alert(1))"
TICKS = "``</code><img src=y onerror=alert(2)>"


def _ingest(cfg_path: Path, netsnmp: NetSnmp, port: int) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with Gateway(load_config(cfg_path)) as gw:
            r = await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(7, IMG))
            assert r.returncode == 0, r.stderr
            return await eventually(lambda: next(iter(gw.store.list_tickets()), None))  # type: ignore[no-any-return]

    return asyncio.run(run())


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    rc = main(list(argv))
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def test_device_and_operator_html_is_inert_in_the_incident_report(
    tmp_path: Path, netsnmp: NetSnmp, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_udp_port()
    cfg = write_config(tmp_path / "config.toml", base_config(tmp_path / "var", port))
    t = _ingest(cfg, netsnmp, port)
    tid = str(t["id"])
    _cli(capsys, "ticket", "comment", tid, "-c", str(cfg), "--note", f"{SCRIPT} and {LINK}",
         "--by", "alice", "--on-behalf-of", "carol")
    _cli(capsys, "ticket", "report-set", tid, "-c", str(cfg), "--cause", f"{IFRAME}\n{TICKS}",
         "--symptoms", f"{IMG} | {LINK}", "--by", f"x{IMG}")
    md = _cli(capsys, "report", tid, "-c", str(cfg))

    assert "&lt;img src=x onerror=alert(1)&gt;" in md  # the device's text is shown, escaped
    # Item 12 through the CLI: the caller is the actor, the name it gave is kept beside it.
    assert "| user:alice (on behalf of carol) | Comment |" in md
    for raw in (IMG, SCRIPT, IFRAME, "<img src=y", LINK):
        assert raw not in md, raw
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    for tag in ("<img", "<script", "<iframe", "<a "):
        assert tag not in html, (tag, html)
    assert "&lt;script&gt;" in html and "&lt;iframe" in html and "javascript:alert(1)" in html
