"""Notification texts (zh-CN, English), what is worth a notice, and the storm limit (pure, with
a fake clock: the notifier's URL is never called in these tests)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from gateway.delivery.helpdesk.base import OutboxMessage
from gateway.delivery.helpdesk.notify.bots import dingtalk_sign, feishu_sign, parse_bot
from gateway.delivery.helpdesk.notify.config import NotifyConfig
from gateway.delivery.helpdesk.notify.connector import Notifier
from gateway.delivery.helpdesk.notify.templates import DIGEST_LINES, digest, event_of, render

TZ = ZoneInfo("Asia/Shanghai")


def _m(i: int, kind: str = "open", **p: Any) -> OutboxMessage:
    payload = {"id": i, "level": 2, "title": "光纤线路故障", "device": "or-3", "policy": "medical-24x7",
               "ticket_key": f"gw-a-t{i}", **p}
    return OutboxMessage(id=i, ticket_id=i, key=f"k{i}", kind=kind, payload=payload, remote_id=None, attempts=0)


def test_messages_in_both_languages_in_the_gateway_zone() -> None:
    sla = {"clock": "response", "fraction": 0.8, "due_at": 1767225600.0, "at": 1767224880.0}  # 2026-01-01 08:00 +08
    zh = render("update", {"level": 1, "ticket_key": "gw-a-t7", "event": "sla_warning", "sla": sla}, "zh-CN", TZ)
    en = render("update", {"level": 1, "ticket_key": "gw-a-t7", "event": "sla_warning", "sla": sla}, "en", TZ)
    assert zh.title == "[1级] gw-a-t7 响应时限已过 80%,截止 2026-01-01 08:00"
    assert en.title == "[L1] gw-a-t7 response at 80 % of its target, due 2026-01-01 08:00"
    esc = {"action": "dispatch_on_site", "recipients": ["alice", "bob"], "note": "measures within 4 h"}
    t = render("escalation", {"level": 2, "ticket_key": "gw-a-t8", "escalation": esc}, "zh-CN", TZ)
    assert t.title == "[2级] gw-a-t8 升级: 派工程师到现场 → alice, bob" and "measures within 4 h" in t.body


def test_events_of_outbox_rows() -> None:
    assert event_of("open", {}) == "open"
    assert event_of("update", {"event": "sla_breach"}) == "sla_breach"
    assert event_of("resolve", {"event": "restore"}) == "restore"
    assert event_of("escalation", {"event": "escalation"}) == "escalation"
    assert event_of("comment", {"event": "comment"}) == "comment"


def test_digest_counts_everything_lists_the_worst_first_and_cuts() -> None:
    items = [("open", {"level": 3, "ticket_key": f"t{i}", "title": "x"}, 100.0 + i) for i in range(DIGEST_LINES + 5)]
    items.append(("update", {"level": 1, "ticket_key": "worst", "event": "sla_breach", "sla": {"clock": "restore"}}, 50.0))
    d = digest(items, "en", TZ)
    assert d.title.startswith(f"{DIGEST_LINES + 6} notifications (digest 1970-01-01 08:00")
    lines = d.body.splitlines()
    assert lines[0] == "new 25 · warnings 0 · breaches 1 · escalations 0 · restored 0"
    assert "worst" in lines[1] and lines[-1] == "… and 6 more"


def test_what_is_worth_a_notice() -> None:
    n = Notifier(NotifyConfig(urls=["json://127.0.0.1:9/x"], levels=[1, 2], policies=["medical-*"]))  # type: ignore[list-item]
    assert n.wants(_m(1))
    assert not n.wants(_m(2, level=3))
    assert not n.wants(_m(3, policy="network"))
    assert not n.wants(_m(4, "comment", event="comment"))
    assert n.wants(_m(5, "update", event="sla_breach"))
    assert not n.wants(_m(6, "resolve", event="restore"))  # not among the default events


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t


async def test_past_the_burst_a_storm_is_held_for_the_window() -> None:
    clock = _Clock()
    n = Notifier(NotifyConfig(urls=["json://127.0.0.1:9/x"], burst=2, window=60), clock)  # type: ignore[list-item]
    sent: list[str] = []

    async def send(notice: Any, msgs: Any, now: float) -> None:
        n._sent.append(now)
        sent.append(notice.title)

    n._send = send  # type: ignore[method-assign]  # no network here: what would be sent
    assert await n.deliver_batch([_m(1)]) == {1: None}
    assert await n.deliver_batch([_m(2), _m(3)]) == {2: None, 3: None}  # over the budget: one digest
    assert sent[-1].startswith("2 条通知")
    clock.t += 10
    held = await n.deliver_batch([_m(i) for i in range(4, 104)])
    assert set(held.values()) == {1060.0}  # the first send of the window + 60 s
    clock.t = 1060.0
    assert set((await n.deliver_batch([_m(i) for i in range(4, 104)])).values()) == {None}
    assert len(sent) == 3 and sent[-1].startswith("100 条通知")


def test_bot_urls_and_signatures() -> None:
    assert parse_bot("dingtalk://s3cret@tok/").secret == "s3cret"  # type: ignore[union-attr]
    assert parse_bot("feishu://tok/?secret=x").token == "tok"  # type: ignore[union-attr]
    assert parse_bot("mailto://host") is None
    # Known answers, worked out once from the vendors' documented recipes.
    assert dingtalk_sign(1700000000000, "SEC") == "r+2we0q01lkZqz38LA5IPNbHN81U1leRf3Au4PSQb6Q="
    assert feishu_sign(1700000000, "abc") == "VIS10b0EBvzzSdFnuk4tznEmK5wHaruvf/WnViv2yR4="



async def test_the_notifier_is_an_outbox_connector() -> None:
    from gateway.delivery.helpdesk.base import HelpDesk

    n = Notifier(NotifyConfig(urls=["json://127.0.0.1:9/x"]))  # type: ignore[list-item]
    try:
        assert isinstance(n, HelpDesk)
        assert await n.find_remote("k") is None and await n.poll_changes([], 0) == []
    finally:
        await n.aclose()
