"""Reports: a ticket's post-incident report and a contract's monthly SLA summary, as Markdown (pure).

The post-incident report has the six parts of DESIGN §3: when the fault started and
ended; symptoms; cause; final solution; the actions taken, in time order; follow-up
measures. Part 1 and part 5 come from the ticket, its alarm and its timeline; the
others from the ticket's report fields (:data:`gateway.core.tickets.REPORT_FIELDS`), with a
placeholder line when one is missing.

The SLA summary counts one contract's tickets of one month (by opening time in the
report's time zone): tickets per level, met/breached per clock (and per level), the
business time the clocks used, and the penalties (:mod:`gateway.core.penalties`).

Times are shown in the given IANA time zone. Nothing here reads the clock: ``now`` is
passed in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.penalties import sum_penalties, ticket_penalty
from gateway.core.sla import BREACHED, MET, NOT_NEEDED, Policy, SlaClock, kind_order
from gateway.core.tickets import Ticket, TimelineEntry
from gateway.model import FaultLevel

__all__ = [
    "ACTION_LABELS",
    "fmt_duration",
    "fmt_time",
    "incident_report",
    "month_bounds",
    "render_sla_summary",
    "sla_summary",
]

#: Timeline kinds as people read them.
ACTION_LABELS: Mapping[str, str] = {
    "opened": "Ticket opened",
    "acknowledge": "Acknowledged (response)",
    "propose_solution": "Solution proposed",
    "arrive": "Engineer on site",
    "restore": "Service restored",
    "close": "Closed",
    "reopened": "Reopened",
    "paused": "Clocks paused",
    "resumed": "Clocks resumed",
    "comment": "Comment",
    "level": "Fault level changed",
    "report": "Report updated",
    "sla_warning": "SLA warning",
    "sla_breach": "SLA breach",
    "provisional": "Provisional deadline",
}

_CLOCK_LABELS = {
    "response": "Response",
    "dispatch": "Engineer dispatched (remote-fix window)",
    "solution": "Solution plan",
    "on_site": "Engineer on site",
    "restore": "Service restored",
    "report": "Incident report",
}

_BUCKETS = ("met", "breached", "open", "not_needed")

_PLACEHOLDER = "_Not recorded yet. Set it with `gateway ticket report-set {id} --{flag} TEXT`._"


def fmt_time(ts: float | None, tz: ZoneInfo) -> str:
    """Return ``2026-02-13 17:30:00 +08:00`` for an epoch time, ``-`` for ``None``."""
    if ts is None:
        return "-"
    d = datetime.fromtimestamp(ts, tz)
    off = d.strftime("%z")
    return d.strftime("%Y-%m-%d %H:%M:%S ") + f"{off[:3]}:{off[3:]}"


def fmt_duration(seconds: float | None) -> str:
    """Return a short human duration: ``45 s``, ``10 min``, ``2 h 05 min``, ``3 d 4 h``."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    s = round(abs(seconds))
    if s < 60:
        return f"{sign}{s} s"
    m, _ = divmod(s, 60)
    if m < 60:
        return f"{sign}{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{sign}{h} h" + (f" {m:02d} min" if m else "")
    d, h = divmod(h, 24)
    return f"{sign}{d} d" + (f" {h} h" if h else "")


def month_bounds(month: str, tz: str) -> tuple[float, float]:
    """Return the epoch bounds ``[start, end)`` of a ``YYYY-MM`` month in ``tz``.

    Raises:
        ValueError: ``month`` is not ``YYYY-MM``.
    """
    try:
        first = datetime.strptime(month, "%Y-%m")
    except ValueError:
        raise ValueError(f"not a month: {month!r} (use YYYY-MM)") from None
    zone = ZoneInfo(tz)
    if first.month == 12:
        nxt = first.replace(year=first.year + 1, month=1)
    else:
        nxt = first.replace(month=first.month + 1)
    return first.replace(tzinfo=zone).timestamp(), nxt.replace(tzinfo=zone).timestamp()


#: Text from devices, rules and people is inert in the Markdown and in any HTML made of it:
#: HTML's specials become entities (no tag, no attribute can start), link and code syntax
#: is backslash-escaped (no link, image or broken-out code span).
_INERT = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\", "[": "\\[", "]": "\\]", "`": "\\`", "|": "\\|",
})


def md_text(text: Any) -> str:
    """``text`` for a Markdown paragraph: inert (see ``_INERT``), its line breaks kept."""
    if text in (None, ""):
        return ""
    return str(text).replace("\r", "").translate(_INERT)


def _cell(text: Any) -> str:
    """``text`` for a Markdown table cell: inert, on one line."""
    return md_text(text).replace("\n", "<br>")


def _code(text: Any) -> str:
    """``text`` as a Markdown code span (shown literally), fenced by more backticks than it holds."""
    body = str(text).replace("\r", "").replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall("`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _entry(e: TimelineEntry | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(e, TimelineEntry):
        return e.to_dict()
    return dict(e)


def _level_text(level: int, urgent: bool = False) -> str:
    lv = FaultLevel(level)
    return f"{int(lv)}, {lv.label} ({lv.label_zh})" + (", urgent" if urgent else "")


def _result(c: SlaClock, cal: Any, now: float) -> str:
    state = c.outcome(now, cal) if cal is not None else c.state
    text = state.replace("_", " ")
    if c.paused:
        text += " (paused)"
    if c.provisional:
        text += " (provisional)"
    return text


def _used(c: SlaClock, cal: Any, now: float) -> float | None:
    if c.deferred:
        return None
    if c.business_elapsed is not None:
        return c.business_elapsed
    return c.used(now, cal) if cal is not None else None


# --------------------------------------------------------------------------- incident report


def incident_report(
    ticket: Ticket,
    timeline: Iterable[TimelineEntry | Mapping[str, Any]],
    *,
    tz: str,
    now: float,
    alarm: Mapping[str, Any] | None = None,
    calendars: Mapping[str, Any] | None = None,
) -> str:
    """Return the post-incident report of a ticket as Markdown.

    Args:
        ticket: The ticket.
        timeline: Its timeline entries (objects or ``{ts, actor, kind, note}`` dicts).
        tz: IANA time zone the times are shown in.
        now: The time of writing (for clocks still running).
        alarm: The ticket's alarm as a dict (``event``, ``count``, ``first_seen``,
            ``last_seen``), when known.
        calendars: Calendars by name, for the business time of running clocks.

    Returns:
        The report.
    """
    zone = ZoneInfo(tz)
    cals = calendars or {}
    entries = sorted((_entry(e) for e in timeline), key=lambda e: e["ts"])
    t = ticket
    ms = t.milestones
    start = alarm.get("first_seen", t.opened_at) if alarm else t.opened_at
    end = ms.get("restore")

    def at(ts: float | None) -> str:
        if ts is None:
            return "-"
        return f"{fmt_time(ts, zone)} ({fmt_duration(ts - start)} after the first event)"

    key_cell = _code(t.alarm_key).replace("|", "\\|") if t.alarm_key else "-"  # a pipe ends a cell even in code
    out: list[str] = [f"# Post-incident report: ticket {t.id}", ""]
    out += [f"**{_cell(t.title) or _cell(t.alarm_key)}**", ""]
    out += ["| | |", "|---|---|"]
    out += [
        f"| Device | {_cell(t.device)} |",
        f"| Site / region | {_cell(t.site) or '-'} / {_cell(t.region) or '-'} |",
        f"| Contract | {_cell(t.policy)} |",
        f"| Fault level | {_level_text(int(t.level), t.urgent)} |",
        f"| Alarm key | {key_cell} |",
        f"| Status | {t.status.replace('_', ' ')} |",
        f"| Written | {fmt_time(now, zone)} |",
    ]
    out += ["", f"Times are local to {tz}.", ""]

    out += ["## 1. When the fault started and ended", ""]
    first_event = f" — {_code(alarm['event'])}" if alarm and alarm.get("event") else ""
    out.append(f"- First event: {fmt_time(start, zone)}{first_event}")
    if alarm and alarm.get("count") is not None:
        last = f", the last at {fmt_time(alarm['last_seen'], zone)}" if alarm.get("last_seen") else ""
        out.append(f"- Occurrences: {int(alarm['count'])}{last}")
    if t.origin != "alarm":
        out.append(f"- Reported by {_cell(t.reported_by)} via {t.origin}: {fmt_time(t.opened_at, zone)}")
        if t.entered_at is not None:
            out.append(f"- Entered: {fmt_time(t.entered_at, zone)} (back-dated to the report: {_cell(t.backdate_reason)})")
    out.append(f"- Ticket opened: {fmt_time(t.opened_at, zone)}")
    out.append(f"- Responded (acknowledged): {at(ms.get('acknowledge'))}")
    if "propose_solution" in ms or t.clock("solution") is not None:
        out.append(f"- Solution proposed: {at(ms.get('propose_solution'))}")
    if "arrive" in ms or t.clock("on_site") is not None:
        out.append(f"- Engineer on site: {at(ms.get('arrive'))}")
    if end is not None:
        lasted = fmt_duration(end - start)
        out.append(f"- Service restored: {fmt_time(end, zone)} (the fault lasted {lasted})")
    else:
        out.append("- Service restored: not yet")
    if t.closed_at is not None:
        out.append(f"- Ticket closed: {fmt_time(t.closed_at, zone)}")
    out.append("")
    if t.clocks:
        out += ["### SLA clocks", ""]
        out += [
            "| Clock | Target | Due | Reached | Business time used | Result |",
            "|---|---|---|---|---|---|",
        ]
        for c in t.clocks:
            cal = cals.get(c.calendar)
            due = "-" if c.deferred else fmt_time(c.due_at, zone)
            reached = fmt_time(c.stopped_at, zone) if c.done and c.state != NOT_NEEDED else "-"
            out.append(
                f"| {_CLOCK_LABELS.get(c.kind, c.kind)} | {fmt_duration(c.target)} ({c.calendar}) | {due} | "
                f"{reached} | {fmt_duration(_used(c, cal, now))} | {_result(c, cal, now)} |"
            )
        out.append("")
        if t.provisional:
            out += [
                "> **Provisional deadlines.** Some due times fall on dates without published "
                "holiday data; they were computed on Monday-Friday minus the fixed-date holidays. "
                "Install the year's holiday file and verify them.",
                "",
            ]
    if t.pauses:
        spans = [
            f"{fmt_time(a, zone)} – {fmt_time(b, zone) if b is not None else 'still paused'}"
            for a, b in t.pauses
        ]
        out += ["Clocks were paused (this time does not count): " + "; ".join(spans) + ".", ""]

    def part(n: int, title: str, key: str) -> None:
        out.extend([f"## {n}. {title}", ""])
        text = t.report.get(key, "").strip()
        out.append(md_text(text) if text else _PLACEHOLDER.format(id=t.id, flag=key.replace("_", "-")))
        out.append("")

    part(2, "Symptoms", "symptoms")
    part(3, "Cause", "cause")
    part(4, "Final solution", "solution")

    out += ["## 5. Actions taken, in time order", ""]
    # Actions, not bookkeeping: warnings and report edits stay out; breaches stay in.
    shown = [e for e in entries if e["kind"] not in ("report", "sla_warning", "provisional")]
    if shown:
        out += ["| Time | Who | What | Note |", "|---|---|---|---|"]
        for e in shown:
            what = _cell(ACTION_LABELS.get(e["kind"], e["kind"]))
            note = _cell(e.get("note", ""))
            who = _cell(e["actor"])
            if e.get("on_behalf_of"):
                who += f" (on behalf of {_cell(e['on_behalf_of'])})"
            out.append(f"| {fmt_time(e['ts'], zone)} | {who} | {what} | {note} |")
    else:
        out.append("_No actions recorded._")
    out.append("")
    part(6, "Follow-up measures", "follow_up")
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- SLA summary


def sla_summary(
    tickets: Iterable[Ticket],
    policy: Policy,
    calendars: Mapping[str, Any],
    *,
    month: str,
    tz: str,
    now: float,
) -> dict[str, Any]:
    """Summarise one contract's tickets of one month.

    Clocks still running past their target count as breached (``outcome``); clocks
    still open (running, paused, waiting) count as ``open``.

    Args:
        tickets: The contract's tickets opened in ``month`` (the caller selects them,
            e.g. with :func:`month_bounds`).
        policy: The contract.
        calendars: Calendars by name.
        month: ``YYYY-MM`` (a label here).
        tz: IANA time zone of the month and of the times shown.
        now: The time of the assessment.

    Returns:
        A JSON-ready dict: ``contract``, ``month``, ``timezone``, ``generated_at``,
        ``tickets``, ``levels`` (tickets per level), ``clocks`` (per clock: ``met``,
        ``breached``, ``open``, ``not_needed``, business seconds ``used_total`` /
        ``used_mean`` over met and breached clocks), ``by_level`` (per level and clock:
        ``met``, ``breached``, ``open``), ``rows`` (one per ticket), ``provisional``,
        ``penalties`` (see :meth:`gateway.core.penalties.PenaltySummary.to_dict`, or None).
    """
    zone = ZoneInfo(tz)
    ts = sorted(tickets, key=lambda t: (t.opened_at, t.id))
    levels = {lv: 0 for lv in (1, 2, 3, 4)}
    clocks: dict[str, dict[str, Any]] = {}
    by_level: dict[tuple[int, str], dict[str, int]] = {}
    rows: list[dict[str, Any]] = []
    pens = []
    defined = {k for m in policy.levels.values() for k in m} | {
        k for reg in policy.regions.values() for m in reg.values() for k in m
    }
    for kind in defined:
        clocks[kind] = {**dict.fromkeys(_BUCKETS, 0), "used": []}
    for t in ts:
        levels[int(t.level)] = levels.get(int(t.level), 0) + 1
        row: dict[str, Any] = {
            "id": t.id,
            "level": int(t.level),
            "status": t.status,
            "device": t.device,
            "opened_at": fmt_time(t.opened_at, zone),
            "clocks": {},
            "provisional": t.provisional,
        }
        for c in t.clocks:
            cal = calendars[c.calendar]
            outcome = c.outcome(now, cal)
            row["clocks"][c.kind] = outcome
            bucket = outcome if outcome in (MET, BREACHED, NOT_NEEDED) else "open"
            agg = clocks.setdefault(c.kind, {**dict.fromkeys(_BUCKETS, 0), "used": []})
            agg[bucket] += 1
            if bucket in (MET, BREACHED):
                agg["used"].append(c.used(now, cal))
            lv = by_level.setdefault((int(t.level), c.kind), dict.fromkeys(_BUCKETS, 0))
            lv[bucket] += 1
        if policy.penalties is not None:
            p = ticket_penalty(t, policy.penalties, calendars, now)
            pens.append(p)
            row["penalty_pct"] = p.pct
            row["penalty_amount"] = p.amount
        rows.append(row)
    clock_rows = []
    for kind in sorted(clocks, key=kind_order):
        agg = clocks[kind]
        used = agg.pop("used")
        clock_rows.append(
            {
                "clock": kind,
                **agg,
                "used_total": sum(used),
                "used_mean": (sum(used) / len(used)) if used else None,
            }
        )
    level_rows = [
        {"level": lv, "clock": kind, **counts}
        for (lv, kind), counts in sorted(by_level.items(), key=lambda kv: (kv[0][0], kind_order(kv[0][1])))
    ]
    penalties = sum_penalties(pens, policy.penalties).to_dict() if policy.penalties is not None else None
    return {
        "contract": policy.name,
        "description": policy.description,
        "month": month,
        "timezone": tz,
        "generated_at": fmt_time(now, zone),
        "tickets": len(ts),
        "levels": [
            {"level": lv, "name": FaultLevel(lv).label, "tickets": n} for lv, n in sorted(levels.items())
        ],
        "clocks": clock_rows,
        "by_level": level_rows,
        "rows": rows,
        "provisional": any(t.provisional for t in ts),
        "penalties": penalties,
    }


def _hours(seconds: float) -> str:
    """``14400`` → ``4 h``; ``5400`` → ``90 min``."""
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min"


def _money(amount: float, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(_cell(v) if v not in (None, "") else "-" for v in r) + " |" for r in rows]
    return out


def render_sla_summary(s: Mapping[str, Any]) -> str:
    """Return an :func:`sla_summary` as Markdown."""
    out = [f"# SLA report: {s['contract']}, {s['month']}", ""]
    if s.get("description"):
        out += [str(s["description"]), ""]
    out += [f"Times are local to {s['timezone']}; written {s['generated_at']}.", ""]
    per_level = ", ".join(f"level {lv['level']}: {lv['tickets']}" for lv in s["levels"])
    out += [f"**Tickets: {s['tickets']}** ({per_level})", ""]
    if s["provisional"]:
        out += ["> **Provisional:** some deadlines were computed without holiday data; verify them.", ""]
    out += ["## Clocks", ""]
    out += _table(
        ["Clock", "Met", "Breached", "Open", "Not needed", "Business time used", "Mean"],
        [
            (
                c["clock"], c["met"], c["breached"], c["open"], c["not_needed"],
                fmt_duration(c["used_total"]) if c["used_mean"] is not None else "-",
                fmt_duration(c["used_mean"]),
            )
            for c in s["clocks"]
        ],
    )
    out.append("")
    if s["by_level"]:
        out += ["## Per level", ""]
        out += _table(
            ["Level", "Clock", "Met", "Breached", "Open", "Not needed"],
            [
                (r["level"], r["clock"], r["met"], r["breached"], r["open"], r["not_needed"])
                for r in s["by_level"]
            ],
        )
        out.append("")
    kinds = [c["clock"] for c in s["clocks"]]
    pen = s.get("penalties")
    if s["rows"]:
        out += ["## Tickets", ""]
        head = ["Ticket", "Level", "Status", "Device", "Opened", *kinds]
        if pen is not None:
            head.append("Penalty")
        rows = []
        for r in s["rows"]:
            cells = [r["id"], r["level"], r["status"], r["device"], r["opened_at"]]
            cells += [str(r["clocks"].get(k, "")).replace("_", " ") for k in kinds]
            if pen is not None:
                cells.append(f"{r['penalty_pct']:g} %" if r.get("penalty_pct") else "")
            rows.append(cells)
        out += _table(head, rows)
        out.append("")
    out += ["## Penalties", ""]
    if pen is None:
        out.append("The contract defines no penalties.")
    else:
        cur = pen["currency"]
        out.append(
            f"{pen['pct']:g} % of the contract value {_money(pen['contract_value'], cur)}: "
            f"**{_money(pen['amount'], cur)}**"
        )
        after, late = pen.get("response_missed_after"), pen.get("restore_late_after")
        terms = [
            f"{pen['response_missed_pct']:g} % per incident not responded to "
            + (f"within {_hours(after)}" if after is not None else "in time"),
            f"{pen['restore_per_started_day_pct']:g} % per started day beyond "
            + (f"{_hours(late)} to restore" if late is not None else "the restore deadline"),
        ]
        if pen["cap_pct"] is not None:
            terms.append(f"capped at {pen['cap_pct']:g} % a month")
        out.append("")
        out.append("Terms: " + "; ".join(terms) + ".")
        if pen["capped"]:
            out.append(f"The cap applied (uncapped: {pen['uncapped_pct']:g} %).")
        if not pen["final"]:
            out.append("Not final: some tickets' clocks are still running.")
        if pen["tickets"]:
            out.append("")
            out += _table(
                ["Ticket", "Response missed", "Days beyond restore deadline", "Percent", "Amount"],
                [
                    (p["ticket_id"], "yes" if p["response_missed"] else "no", p["restore_days"],
                     f"{p['pct']:g} %", _money(p["amount"], cur))
                    for p in pen["tickets"]
                ],
            )
    return "\n".join(out).rstrip() + "\n"
