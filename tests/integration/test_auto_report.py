"""Automatic incident reports (``auto_report = true`` on the customer's notifier): once a
ticket is restored and its four report parts are written, the report is queued by itself
and e-mailed (real SMTP server, aiosmtpd), and the ticket closes at the delivery. Once, across
a restart: a report queued while the mail server was down is delivered after the restart and
not queued a second time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import config_from_dict, load_config
from gateway.errors import ConfigError
from tests.fixtures.netsnmp import LINK_DOWN, LINK_UP, NetSnmp, free_udp_port, link_varbinds
from tests.fixtures.notify_peers import SmtpSink
from tests.helpers import base_config, eventually, write_config

FIELDS = {"symptoms": "端口 eth5 链路中断", "cause": "光模块老化", "solution": "更换光模块",
          "follow_up": "季度巡检时检查光模块"}


def _config(tmp_path: Path, port: int, url: str) -> Path:
    d = base_config(tmp_path / "var", port)
    d["devices"][0]["policy"] = "network-equipment"
    d["outbox"] = {"retry_base": 0.2, "retry_max": 0.5}
    d["helpdesk"] = [{"type": "notify", "name": "customer", "urls": [url], "reports": True, "auto_report": True,
                      "policies": ["network-*"], "events": [], "levels": [1, 2, 3, 4]}]
    return write_config(tmp_path / "config.toml", d)


def _reports(sink: SmtpSink) -> list[Any]:
    return [m for m in sink.messages if "故障报告" in str(m["Subject"])]


async def test_a_complete_report_is_mailed_by_itself_once_across_a_restart(
    tmp_path: Path, netsnmp: NetSnmp, smtp_sink: SmtpSink
) -> None:
    port = free_udp_port()
    cfg = load_config(_config(tmp_path, port, smtp_sink.url("it@customer.example.com")))
    smtp_sink.stop()  # first run: the customer's mail server is down
    async with Gateway(cfg) as gw:
        await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(5, "eth5"))
        [t] = await eventually(lambda: gw.store.list_tickets())
        tid = t["id"]
        await asyncio.to_thread(netsnmp.trap, port, LINK_UP, link_varbinds(5))
        await eventually(lambda: gw.store.get_ticket(tid)["status"] == "restored", timeout=10)
        # Three parts of four: not yet.
        partial = {k: v for k, v in FIELDS.items() if k != "follow_up"}
        await gw.pipeline.execute(lambda now: gw.desk.act(tid, "set_report", now, "alice", fields=partial))
        await gw.pipeline.execute(lambda now: None)  # the commit's kick went out (the rule itself: unit test)
        assert not [e for e in gw.store.timeline(tid) if e["kind"] == "report_queued"]
        await gw.pipeline.execute(lambda now: gw.desk.act(tid, "set_report", now, "alice",
                                                          fields={"follow_up": FIELDS["follow_up"]}))
        [q] = await eventually(lambda: [e for e in gw.store.timeline(tid) if e["kind"] == "report_queued"])
        assert q["actor"] == "auto-report"
        await eventually(lambda: any(r["kind"] == "report" and r["attempts"] >= 1
                                     for r in gw.store.outbox_list(state="pending")), timeout=10)
        assert gw.store.get_ticket(tid)["status"] == "restored"  # written and queued is not delivered
    # Second run: the mail server is back. Delivered once, not queued again.
    smtp_sink.start()
    async with Gateway(cfg) as gw:
        await eventually(lambda: gw.store.get_ticket(tid)["status"] == "closed", timeout=20)
        assert [e["actor"] for e in gw.store.timeline(tid) if e["kind"] == "report_queued"] == ["auto-report"]
        close = next(e for e in gw.store.timeline(tid) if e["kind"] == "close")
        assert close["actor"] == "delivery:customer"
        report = next(c for c in gw.store.get_ticket(tid)["clocks"] if c["kind"] == "report")
        assert report["state"] == "met"
    [m] = _reports(smtp_sink)
    text = m.get_body(preferencelist=("plain", "html")).get_content()
    assert all(part in text for part in FIELDS.values())


def test_auto_report_without_reports_is_refused_with_the_key() -> None:
    d = base_config("/tmp/unused-data-dir")
    d["helpdesk"] = [{"type": "notify", "name": "customer", "urls": ["json://127.0.0.1:9/x"], "auto_report": True}]
    with pytest.raises(ConfigError) as e:
        config_from_dict(d, "gw.toml")
    assert "gw.toml" in str(e.value) and "auto_report" in str(e.value) and "reports = true" in str(e.value)
