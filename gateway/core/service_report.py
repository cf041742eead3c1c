"""Periodic service reports (monthly, quarterly, yearly) for a contract and its customer: SLA
attainment per clock and level, MTTA / MTTR, tickets by level and by cause, breaches and
penalties, devices with repeated faults — as data and as one self-contained HTML page with
inline SVG charts (pure: tickets, calendars and ``now`` in; nothing read from the clock).

Built on :func:`gateway.core.report.sla_summary` (the same counting as the monthly SLA report).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.report import fmt_duration, sla_summary
from gateway.core.sla import Policy
from gateway.core.tickets import Ticket

__all__ = ["period_bounds", "render_html", "service_report"]

_PERIOD = re.compile(r"^(\d{4})(?:-(?:(0[1-9]|1[0-2])|Q([1-4])))?$")

#: A device with at least this many tickets in the period has "repeated faults".
REPEATED = 2

_BAR = ("#2e7d32", "#c62828", "#9e9e9e")  # met, breached, open


def period_bounds(period: str, tz: str) -> tuple[float, float, str]:
    """(start, end, kind) of ``YYYY-MM`` (month), ``YYYY-Qn`` (quarter) or ``YYYY`` (year) in
    the zone; ``kind`` is ``monthly`` / ``quarterly`` / ``yearly``.

    Raises:
        ValueError: not one of those forms.
    """
    m = _PERIOD.match(period.strip())
    if not m:
        raise ValueError(f"period {period!r}: use YYYY-MM, YYYY-Qn or YYYY (e.g. 2026-03, 2026-Q1, 2026)")
    year, month, quarter = int(m[1]), m[2], m[3]
    if month:
        first, months, kind = int(month), 1, "monthly"
    elif quarter:
        first, months, kind = 3 * (int(quarter) - 1) + 1, 3, "quarterly"
    else:
        first, months, kind = 1, 12, "yearly"
    zone = ZoneInfo(tz)
    start = datetime(year, first, 1, tzinfo=zone)
    last = first + months
    end = datetime(year + (last - 1) // 12, (last - 1) % 12 + 1, 1, tzinfo=zone)
    return start.timestamp(), end.timestamp(), kind


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def service_report(
    tickets: Iterable[Ticket],
    policy: Policy,
    calendars: Mapping[str, Any],
    *,
    period: str,
    tz: str,
    now: float,
    customer: str = "",
) -> dict[str, Any]:
    """One contract's service report over ``period`` (its tickets opened in it; the caller
    selects them, e.g. with :func:`period_bounds`).

    Returns the :func:`sla_summary` dict plus ``period``, ``kind``, ``customer``,
    ``mtta`` / ``mttr`` (mean seconds from opening to the first acknowledgement / to the
    restore, wall time; ``None`` without any), ``causes`` (``[{cause, tickets}]`` from the
    reports' cause part, ``(not stated)`` when empty), ``breaches`` (``[{id, device, level,
    clocks}]``), ``repeated`` (``[{device, tickets}]``: devices with ``REPEATED`` or more).
    """
    ts = list(tickets)
    _, _, kind = period_bounds(period, tz)
    s = sla_summary(ts, policy, calendars, month=period, tz=tz, now=now)
    acks = [t.milestones["acknowledge"] - t.opened_at for t in ts if "acknowledge" in t.milestones]
    restores = [t.milestones["restore"] - t.opened_at for t in ts if "restore" in t.milestones]
    causes = Counter((t.report.get("cause") or "").strip() or "(not stated)" for t in ts)
    devices = Counter(t.device for t in ts)
    breaches = [
        {"id": r["id"], "device": r["device"], "level": r["level"],
         "clocks": sorted(k for k, v in r["clocks"].items() if v == "breached")}
        for r in s["rows"] if "breached" in r["clocks"].values()
    ]
    return {
        **s,
        "period": period,
        "kind": kind,
        "customer": customer,
        "mtta": _mean(acks),
        "mttr": _mean(restores),
        "causes": [{"cause": c, "tickets": n} for c, n in causes.most_common()],
        "breaches": breaches,
        "repeated": [{"device": d, "tickets": n} for d, n in devices.most_common() if n >= REPEATED],
    }


# ------------------------------------------------------------------------------------- HTML


def _svg_attainment(clocks: Sequence[Mapping[str, Any]]) -> str:
    """Stacked horizontal bars per clock: met / breached / open, with the attainment %."""
    rows = [c for c in clocks if c["met"] + c["breached"] + c["open"] > 0]
    h = 28 * len(rows) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="560" height="{h}" role="img" '
           'aria-label="SLA attainment per clock" font-size="12">']
    for i, c in enumerate(rows):
        y = 8 + 28 * i
        total = c["met"] + c["breached"] + c["open"]
        x = 110.0
        out.append(f'<text x="104" y="{y + 14}" text-anchor="end">{escape(c["clock"])}</text>')
        for n, color in zip((c["met"], c["breached"], c["open"]), _BAR, strict=True):
            w = 360.0 * n / total
            if w > 0:
                out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="18" fill="{color}"/>')
            x += w
        done = c["met"] + c["breached"]
        pct = f"{100 * c['met'] / done:.1f} %" if done else "-"
        out.append(f'<text x="478" y="{y + 14}">{pct}</text>')
    ly = 28 * len(rows) + 20
    for j, (label, color) in enumerate(zip(("met", "breached", "open"), _BAR, strict=True)):
        out.append(f'<rect x="{110 + 90 * j}" y="{ly - 10}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{124 + 90 * j}" y="{ly}">{label}</text>')
    out.append("</svg>")
    return "".join(out)


def _short(name: str) -> str:
    return name if len(name) <= 14 else name[:13] + "…"


def _svg_bars(items: Sequence[tuple[str, int]], label: str, color: str = "#1f5fa8") -> str:
    """Vertical bars with counts (tickets per level, per cause)."""
    items = list(items)[:8]
    top = max((n for _, n in items), default=0) or 1
    w = 90 * max(len(items), 1) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="190" role="img" '
           f'aria-label="{escape(label)}" font-size="11">']
    for i, (name, n) in enumerate(items):
        bh = 120.0 * n / top
        x = 20 + 90 * i
        out.append(f'<rect x="{x}" y="{140 - bh:.1f}" width="44" height="{bh:.1f}" fill="{color}"/>'
                   f'<text x="{x + 22}" y="{134 - bh:.1f}" text-anchor="middle">{n}</text>'
                   f'<text x="{x + 22}" y="158" text-anchor="middle">{escape(_short(name))}</text>')
    out.append('<line x1="10" y1="140" x2="' + str(w - 5) + '" y2="140" stroke="#444"/></svg>')
    return "".join(out)


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    h = "".join(f"<th>{escape(str(x))}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v if v not in (None, '') else '-'))}</td>" for v in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body { font-family: "WenQuanYi Micro Hei", "Noto Sans CJK SC", sans-serif; color: #222; max-width: 860px;
       margin: 24px auto; font-size: 13px; }
h1 { font-size: 20px; border-bottom: 3px solid #1f5fa8; padding-bottom: 6px; }
h2 { font-size: 15px; color: #1f5fa8; margin-top: 22px; }
.kpis { display: flex; gap: 12px; } .kpi { border: 1px solid #ccd; border-radius: 6px; padding: 8px 14px; }
.kpi b { display: block; font-size: 18px; }
table { border-collapse: collapse; width: 100%; margin-top: 6px; } th, td { border: 1px solid #ccc; padding: 3px 7px;
       text-align: left; } th { background: #eef3fa; }
.charts { display: flex; flex-wrap: wrap; gap: 18px; }
@page { size: A4; margin: 14mm; }
"""


def render_html(r: Mapping[str, Any]) -> str:
    """A :func:`service_report` as one HTML page (charts inline, no external resources)."""
    title = f"Service report {r['period']}: {r['contract']}" + (f" — {r['customer']}" if r.get("customer") else "")
    done = [c for c in r["clocks"] if c["met"] + c["breached"]]
    overall = (100 * sum(c["met"] for c in done) / sum(c["met"] + c["breached"] for c in done)) if done else None
    pen = r.get("penalties")
    kpis = [
        ("tickets", str(r["tickets"])),
        ("SLA attainment", f"{overall:.1f} %" if overall is not None else "-"),
        ("MTTA", fmt_duration(r["mtta"]) if r["mtta"] is not None else "-"),
        ("MTTR", fmt_duration(r["mttr"]) if r["mttr"] is not None else "-"),
        ("breaches", str(len(r["breaches"]))),
        ("penalties", f"{pen['amount']:,.2f} {pen['currency']}" if pen else "-"),
    ]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{escape(r.get('description') or '')}<br>{escape(r['kind'])} report · time zone {escape(r['timezone'])}"
        f" · generated {escape(r['generated_at'])}" + (" · <b>some deadlines are provisional</b>" if r["provisional"] else "")
        + "</p>",
        '<div class="kpis">' + "".join(f'<div class="kpi">{escape(k)}<b>{escape(v)}</b></div>' for k, v in kpis) + "</div>",
        "<h2>SLA attainment per clock</h2>",
        _svg_attainment(r["clocks"]),
        _table(["clock", "met", "breached", "open", "not needed", "mean time used"],
               [(c["clock"], c["met"], c["breached"], c["open"], c["not_needed"],
                 fmt_duration(c["used_mean"]) if c["used_mean"] is not None else "-") for c in r["clocks"]]),
        "<h2>Per level</h2>",
        _table(["level", "clock", "met", "breached", "open"],
               [(b["level"], b["clock"], b["met"], b["breached"], b["open"]) for b in r["by_level"]]),
        '<h2>Tickets by level and cause</h2><div class="charts">',
        _svg_bars([(f"L{lv['level']}", lv["tickets"]) for lv in r["levels"]], "tickets per level"),
        _svg_bars([(c["cause"], c["tickets"]) for c in r["causes"]], "tickets per cause", "#6a4fa8"),
        "</div>",
        "<h2>Breaches</h2>",
        _table(["ticket", "device", "level", "clocks breached"],
               [(f"#{b['id']}", b["device"], b["level"], ", ".join(b["clocks"])) for b in r["breaches"]])
        if r["breaches"] else "<p>None.</p>",
        "<h2>Penalties</h2>",
        (f"<p>{pen['pct']:.2f} % of the contract value ({pen['amount']:,.2f} {pen['currency']})"
         + (" — capped" if pen.get("capped") else "") + "</p>") if pen else "<p>The contract sets no penalties.</p>",
        "<h2>Devices with repeated faults</h2>",
        _table(["device", "tickets"], [(d["device"], d["tickets"]) for d in r["repeated"]])
        if r["repeated"] else "<p>None.</p>",
        "</body></html>",
    ]
    return "".join(parts)
