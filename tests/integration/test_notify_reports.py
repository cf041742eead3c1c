"""The post-incident report reaches the customer: queued through the API after the restore,
e-mailed by the contract's report notifier to a real SMTP server (aiosmtpd) as text with the
PDF attached, and the ticket's ``report`` clock stops at the delivery, not at the writing; the
customer's notifier also sends the progress notice (restored) the contract promises."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx

from gateway.app import Gateway
from gateway.config import load_config
from tests.fixtures.api import OP, OP_TOKEN
from tests.fixtures.netsnmp import LINK_DOWN, LINK_UP, NetSnmp, free_udp_port, link_varbinds
from tests.fixtures.notify_peers import SmtpSink
from tests.helpers import base_config, eventually, write_config

FIELDS = {"symptoms": "端口 eth5 链路中断", "cause": "光模块老化", "solution": "更换光模块",
          "follow_up": "季度巡检时检查光模块"}


async def test_report_is_mailed_as_pdf_and_its_clock_stops_at_delivery(
    tmp_path: Path, netsnmp: NetSnmp, smtp_sink: SmtpSink
) -> None:
    port = free_udp_port()
    d = base_config(tmp_path / "var", port)
    d["devices"][0]["policy"] = "network-equipment"
    d["api"] = {"enabled": True, "host": "127.0.0.1", "port": 0,
                "tokens": [{"token": OP_TOKEN, "role": "operator", "name": "alice"}]}
    d["helpdesk"] = [
        # The NOC's own notices and the customer's reports: two notifiers.
        {"type": "notify", "name": "customer", "urls": [smtp_sink.url("it@customer.example.com")],
         "reports": True, "policies": ["network-*"], "events": ["restore"], "levels": [1, 2, 3, 4]},
    ]
    path = write_config(tmp_path / "config.toml", d)
    cfg = load_config(path)
    async with Gateway(cfg) as gw:
        assert gw.api is not None
        async with httpx.AsyncClient(base_url=gw.api.url + "/api/v1", headers=OP, timeout=20) as http:
            await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(5, "eth5"))
            [t] = await eventually(lambda: gw.store.list_tickets())
            tid = t["id"]
            # Not before the service is restored.
            r = await http.post(f"/tickets/{tid}/report/send")
            assert r.status_code == 409 and "restored" in r.text, r.text
            await asyncio.to_thread(netsnmp.trap, port, LINK_UP, link_varbinds(5))
            await eventually(lambda: gw.store.get_ticket(tid)["status"] == "restored", timeout=10)
            r = await http.post(f"/tickets/{tid}/report", json={"fields": FIELDS})
            assert r.status_code == 200, r.text
            written = gw.clock.now()
            # Written is not delivered: the report clock still runs.
            assert next(c for c in gw.store.get_ticket(tid)["clocks"] if c["kind"] == "report")["state"] == "running"
            # Through the CLI (the running daemon's socket), as an operator would.
            cli = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "gateway", "report-send", str(tid), "-c", str(path), "--by", "alice"],
                capture_output=True, text=True, timeout=60)
            assert cli.returncode == 0, cli.stderr
            await eventually(lambda: gw.store.get_ticket(tid)["status"] == "closed", timeout=20)
        ticket = gw.store.get_ticket(tid)
        report = next(c for c in ticket["clocks"] if c["kind"] == "report")
        assert report["state"] == "met"
        timeline = gw.store.timeline(tid)
        close = next(e for e in timeline if e["kind"] == "close")
        assert close["actor"] == "delivery:customer" and close["ts"] > written
        # The contract promises progress notices: the customer heard of the restore, once.
        restored = [m for m in smtp_sink.messages if "已恢复" in str(m["Subject"])]
        assert len(restored) == 1 and f"gw-test-t{tid}" in str(restored[0]["Subject"])
        mails = [m for m in smtp_sink.messages if "故障报告" in str(m["Subject"])]
        assert len(mails) == 1
        m = mails[0]
        assert "it@customer.example.com" in str(m["To"])
        text = m.get_body(preferencelist=("plain", "html")).get_content()  # type: ignore[union-attr]
        for part in FIELDS.values():
            assert part in text
        [pdf] = [p for p in m.iter_attachments() if p.get_content_type() == "application/pdf"]
        assert pdf.get_content().startswith(b"%PDF")
