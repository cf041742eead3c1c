"""Notification texts in zh-CN and English: one message per event, and the digest that a storm
becomes. Pure: the payload (a ticket snapshot from the outbox) and the zone in, text out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["DIGEST_LINES", "Notice", "digest", "event_of", "render"]

#: Lines a digest lists before "and N more".
DIGEST_LINES = 20

_CLOCK = {
    "zh-CN": {"response": "响应", "solution": "解决方案", "on_site": "到场", "restore": "恢复", "report": "报告"},
    "en": {"response": "response", "solution": "solution", "on_site": "on site", "restore": "restore", "report": "report"},
}
_ACTION = {
    "zh-CN": {"notify": "通知", "dispatch_on_site": "派工程师到现场", "expert_consultation": "专家会诊", "escalate": "升级"},
    "en": {"notify": "notify", "dispatch_on_site": "dispatch an on-site engineer",
           "expert_consultation": "expert consultation", "escalate": "escalate"},
}
_T = {
    "zh-CN": {
        "open": "[{lvl}级] 新工单 {ref}: {title}",
        "sla_warning": "[{lvl}级] {ref} {clock}时限已过 {pct}%,截止 {due}",
        "sla_breach": "[{lvl}级] {ref} {clock}时限已超时(截止 {due})",
        "escalation": "[{lvl}级] {ref} 升级: {action} → {who}",
        "restore": "[{lvl}级] {ref} 已恢复: {title}",
        "close": "[{lvl}级] {ref} 已关闭: {title}",
        "other": "[{lvl}级] {ref}: {title}",
        "body": "设备 {device} · 站点 {site} · 合同 {policy} · 负责人 {owner}\n时间 {at}",
        "nobody": "无人",
        "digest_title": "{n} 条通知(汇总 {start} – {end})",
        "digest_counts": "新工单 {open} · 预警 {sla_warning} · 超时 {sla_breach} · 升级 {escalation} · 恢复 {restore}",
        "more": "…另有 {n} 条",
    },
    "en": {
        "open": "[L{lvl}] new ticket {ref}: {title}",
        "sla_warning": "[L{lvl}] {ref} {clock} at {pct} % of its target, due {due}",
        "sla_breach": "[L{lvl}] {ref} {clock} deadline breached (due {due})",
        "escalation": "[L{lvl}] {ref} escalated: {action} → {who}",
        "restore": "[L{lvl}] {ref} restored: {title}",
        "close": "[L{lvl}] {ref} closed: {title}",
        "other": "[L{lvl}] {ref}: {title}",
        "body": "device {device} · site {site} · contract {policy} · owner {owner}\nat {at}",
        "nobody": "nobody",
        "digest_title": "{n} notifications (digest {start} – {end})",
        "digest_counts": "new {open} · warnings {sla_warning} · breaches {sla_breach} · escalations {escalation} · restored {restore}",
        "more": "… and {n} more",
    },
}


class Notice:
    """One rendered message: a title line and a body."""

    __slots__ = ("body", "title")

    def __init__(self, title: str, body: str) -> None:
        self.title = title
        self.body = body

    def __repr__(self) -> str:
        return f"Notice({self.title!r})"


def event_of(kind: str, payload: Mapping[str, Any]) -> str:
    """The event an outbox message stands for: ``open``, ``sla_warning``, ``sla_breach``,
    ``escalation``, ``restore``, ``close`` or another ticket action's name."""
    if kind in ("open", "escalation"):
        return kind
    ev = str(payload.get("event") or kind)
    return {"resolve": "restore", "restored": "restore", "closed": "close"}.get(ev, ev)


def _when(ts: Any, tz: ZoneInfo) -> str:
    if isinstance(ts, (int, float)):
        return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M")
    if isinstance(ts, str) and ts:
        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(tz).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return ts
    return "-"


def _line(event: str, p: Mapping[str, Any], lang: str, tz: ZoneInfo) -> str:
    t = _T[lang]
    sla = p.get("sla") or {}
    esc = p.get("escalation") or {}
    who = ", ".join(esc.get("recipients") or []) or t["nobody"]
    fields = {
        "lvl": p.get("level", "?"),
        "ref": p.get("ticket_key") or f"#{p.get('id', '?')}",
        "title": p.get("title") or p.get("alarm_key") or "",
        "clock": _CLOCK[lang].get(str(sla.get("clock", "")), str(sla.get("clock", ""))),
        "pct": round(float(sla.get("fraction", 0)) * 100),
        "due": _when(sla.get("due_at"), tz),
        "action": _ACTION[lang].get(str(esc.get("action", "")), str(esc.get("action", ""))),
        "who": who,
    }
    return t.get(event, t["other"]).format(**fields)


def render(kind: str, payload: Mapping[str, Any], lang: str, tz: ZoneInfo) -> Notice:
    """The message for one outbox row."""
    t = _T[lang]
    event = event_of(kind, payload)
    sla = payload.get("sla") or {}
    esc = payload.get("escalation") or {}
    at = sla.get("at") or esc.get("at") or payload.get("updated_at") or payload.get("opened_at")
    body = t["body"].format(
        device=payload.get("device", "-"), site=payload.get("site") or "-", policy=payload.get("policy") or "-",
        owner=payload.get("owner") or t["nobody"], at=_when(at, tz),
    )
    if esc.get("note"):
        body += f"\n{esc['note']}"
    return Notice(_line(event, payload, lang, tz), body)


def digest(items: Sequence[tuple[str, Mapping[str, Any], float]], lang: str, tz: ZoneInfo) -> Notice:
    """One message for many: ``items`` are (kind, payload, created_at) in outbox order."""
    t = _T[lang]
    events = [event_of(k, p) for k, p, _ in items]
    counts = Counter(events)
    start = min(c for _, _, c in items)
    end = max(c for _, _, c in items)
    title = t["digest_title"].format(n=len(items), start=_when(start, tz), end=_when(end, tz))
    lines = [t["digest_counts"].format(**{k: counts.get(k, 0) for k in ("open", "sla_warning", "sla_breach",
                                                                           "escalation", "restore")})]
    # Most urgent first: level, then outbox order.
    order = sorted(range(len(items)), key=lambda i: (int(items[i][1].get("level") or 9), i))
    for i in order[:DIGEST_LINES]:
        lines.append("- " + _line(events[i], items[i][1], lang, tz))
    if len(items) > DIGEST_LINES:
        lines.append(t["more"].format(n=len(items) - DIGEST_LINES))
    return Notice(title, "\n".join(lines))
