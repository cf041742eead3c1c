"""Notifications through the outbox: real traps → tickets → the notifier → a real SMTP server
(aiosmtpd) and the chat bots' request formats and signatures.

DingTalk, WeCom and Feishu run in vendor clouds this machine cannot reach; ``chat_standin``
(tests/fixtures/notify_peers.py) stands in for them and checks each request as their
documentation says the cloud does (token/key, DingTalk's timestamp + HMAC-SHA256 ``sign``,
Feishu's signature) and answers as they do (HTTP 200 with an error code on refusal).
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.delivery.helpdesk.base import OutboxMessage
from gateway.delivery.helpdesk.notify.config import NotifyConfig
from gateway.delivery.helpdesk.notify.connector import Notifier
from gateway.delivery.helpdesk.notify.templates import DIGEST_LINES
from gateway.errors import DeliveryError
from tests.fixtures.netsnmp import LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.fixtures.notify_peers import (
    DING_SECRET,
    DING_TOKEN,
    FEISHU_SECRET,
    FEISHU_TOKEN,
    WECOM_KEY,
    ChatStandIn,
    SmtpSink,
)
from tests.helpers import base_config, eventually


def _cfg(tmp_path: Path, port: int, urls: list[str], **notify: Any):  # type: ignore[no-untyped-def]
    d = base_config(tmp_path / "var", port)
    d["helpdesk"] = [{"type": "notify", "name": "noc", "urls": urls, "levels": [1, 2, 3], **notify}]
    d["outbox"] = {"retry_base": 0.05, "retry_max": 0.3, "poll_interval": 0.3}
    return config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))


def _msg(i: int, kind: str = "open", **payload: Any) -> OutboxMessage:
    p = {"id": i, "level": 1, "title": f"link down eth{i}", "device": f"sw-{i}", "site": "hq",
         "policy": "network", "ticket_key": f"gw-t-t{i}", **payload}
    return OutboxMessage(id=i, ticket_id=i, key=f"gw-t-t{i}", kind=kind, payload=p, remote_id=None, attempts=0)


async def test_a_new_ticket_is_mailed_in_chinese_once(tmp_path: Path, netsnmp: NetSnmp, smtp_sink: SmtpSink) -> None:
    port = free_udp_port()
    async with Gateway(_cfg(tmp_path, port, [smtp_sink.url()])) as gw:
        await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(4, "eth4"))
        [ticket] = await eventually(lambda: gw.store.list_tickets())
        await eventually(lambda: smtp_sink.messages, timeout=10)
        [m] = smtp_sink.messages
        assert f"gw-test-t{ticket['id']}" in str(m["Subject"]) and "新工单" in str(m["Subject"])
        assert "noc@example.com" in str(m["To"])
        assert "设备 sw-1" in m.get_body().get_content()  # type: ignore[union-attr]
        await eventually(lambda: gw.store.outbox_counts().get("pending", 0) == 0)
        assert len(smtp_sink.messages) == 1


async def test_a_storm_is_one_digest_not_a_thousand_mails(tmp_path: Path, netsnmp: NetSnmp, smtp_sink: SmtpSink) -> None:
    """The limit is the guarantee: at most ``burst`` messages per ``window`` however many
    tickets open, and every notice is in one of them (a single or a digest's count)."""
    port = free_udp_port()
    window = 2.0
    cfg = _cfg(tmp_path, port, [smtp_sink.url()], burst=1, window=window, language="en")
    async with Gateway(cfg) as gw:
        t0 = time.monotonic()
        for i in range(1, 41):
            await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(200 + i))
        await eventually(lambda: len(gw.store.list_tickets()) == 40, timeout=20)
        await eventually(lambda: gw.store.outbox_counts() == {"delivered": 40}, timeout=30)
        elapsed = time.monotonic() - t0
        subjects = smtp_sink.subjects()
        assert len(subjects) <= math.ceil(elapsed / window) + 1, (elapsed, subjects)
        digests = [s for s in subjects if "notifications (digest" in s]
        assert digests and sum(int(s.split()[0]) for s in digests) + (len(subjects) - len(digests)) == 40, subjects
        biggest = max(smtp_sink.messages[1:], key=lambda m: int(str(m["Subject"]).split()[0]))
        body = biggest.get_body().get_content()  # type: ignore[union-attr]
        assert "new ticket" in body
        if int(str(biggest["Subject"]).split()[0]) > DIGEST_LINES:
            assert "… and" in body  # cut, with the count of the rest


async def test_smtp_outage_retries_visibly_then_delivers_once(tmp_path: Path, netsnmp: NetSnmp, smtp_sink: SmtpSink) -> None:
    port = free_udp_port()
    async with Gateway(_cfg(tmp_path, port, [smtp_sink.url()])) as gw:
        smtp_sink.stop()
        try:
            await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(9))
            await eventually(lambda: gw.outbox is not None and gw.outbox.stats.retried >= 2, timeout=10)
            [row] = gw.store.outbox_list()
            assert row["state"] in ("pending", "sending") and "127.0.0.1" in str(row["last_error"])  # visible
        finally:
            smtp_sink.start()
        await eventually(lambda: gw.store.outbox_counts() == {"delivered": 1}, timeout=10)
        assert len(smtp_sink.messages) == 1


async def test_dingtalk_wecom_feishu_signed_requests_are_accepted(chat_standin: ChatStandIn) -> None:
    urls = [f"dingtalk://{DING_SECRET}@{DING_TOKEN}/", f"wecombot://{WECOM_KEY}",
            f"feishu://{FEISHU_TOKEN}/?secret={FEISHU_SECRET}"]
    n = Notifier(NotifyConfig(urls=urls, endpoints=chat_standin.endpoints))  # type: ignore[arg-type]
    try:
        out = await n.deliver_batch([_msg(1)])
        assert out == {1: None}, (out, chat_standin.refused)
        for vendor in ("dingtalk", "wecombot", "feishu"):
            [text] = chat_standin.texts(vendor)
            assert "[1级] 新工单 gw-t-t1: link down eth1" in text
        # Not worth a notice (a comment; a level-4 ticket): delivered as skipped, nothing sent.
        out = await n.deliver_batch([_msg(2, "comment"), _msg(3, level=4)])
        assert out == {2: None, 3: None} and len(chat_standin.accepted) == 3
    finally:
        await n.aclose()


async def test_a_wrong_signature_is_a_visible_failure_not_a_delivery(chat_standin: ChatStandIn) -> None:
    for url in (f"dingtalk://wrong-secret@{DING_TOKEN}/", f"feishu://{FEISHU_TOKEN}/?secret=wrong",
                "wecombot://not-the-key"):
        n = Notifier(NotifyConfig(urls=[url], endpoints=chat_standin.endpoints))  # type: ignore[list-item, arg-type]
        try:
            res = (await n.deliver_batch([_msg(1)]))[1]
        finally:
            await n.aclose()
        assert isinstance(res, DeliveryError) and not res.retryable, (url, res)
    assert not chat_standin.accepted and len(chat_standin.refused) == 3
    assert any("sign not match" in r for _, r in chat_standin.refused)


async def test_sla_breach_and_escalation_reach_the_generic_webhook(chat_standin: ChatStandIn) -> None:
    url = f"json://127.0.0.1:{chat_standin.port}/hook"
    n = Notifier(NotifyConfig(urls=[url], language="en"))  # type: ignore[list-item]
    try:
        breach = _msg(5, "update", event="sla_breach", sla={"clock": "response", "fraction": 1.0, "due_at": 0, "at": 0})
        esc = _msg(6, "escalation", escalation={"step": "lead-80", "action": "escalate", "recipients": ["lead.li"], "at": 0})
        assert await n.deliver_batch([breach, esc]) == {5: None, 6: None}
        bodies = [b for v, b in chat_standin.accepted if v == "webhook"]
        assert [b["title"] for b in bodies] == ["[L1] gw-t-t5 response deadline breached (due 1970-01-01 08:00)",
                                               "[L1] gw-t-t6 escalated: escalate → lead.li"]
    finally:
        await n.aclose()
