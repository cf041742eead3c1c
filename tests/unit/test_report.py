"""The post-incident report (six parts, filled from the timeline, local times, placeholders)
and the monthly SLA summary's Markdown."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.config import build_policies, load_config
from gateway.core.alarms import AlarmBook
from gateway.core.calendars import default_calendars
from gateway.core.report import fmt_duration, incident_report, month_bounds, render_sla_summary, sla_summary
from gateway.core.tickets import TicketDesk, TimelineEntry
from gateway.model import Device, Event, FaultLevel
from rules.engine import Classification
from tests.helpers import EXAMPLE

CST = ZoneInfo("Asia/Shanghai")
POLICIES = build_policies(load_config(EXAMPLE))
CALS = default_calendars()


def local(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CST).timestamp()


def _incident() -> tuple[TicketDesk, int, list[TimelineEntry], dict[str, object]]:
    desk = TicketDesk(POLICIES, CALS)
    book = AlarmBook()
    t0 = local("2026-02-09 09:00")
    ch = book.apply(
        Classification("net.link-down", "raise", "core-1/if3", FaultLevel(1), "Uplink down"),
        Event(t0, "snmp", "core-1", "IF-MIB::linkDown"),
        "core-1",
        t0,
    )
    assert ch is not None
    for _ in range(4):
        book.apply(Classification("net.link-down", "raise", "core-1/if3", FaultLevel(1), "Uplink down"),
                   Event(t0 + 60, "snmp", "core-1", "IF-MIB::linkDown"), "core-1", t0 + 60)
    pol = POLICIES["network-equipment"]
    tid = desk.open_for(ch.alarm, Device("core-1", site="hq", region="beijing", policy=pol.name), pol, t0).id
    desk.act(tid, "ack", local("2026-02-09 09:05"), "user:alice", "looking")
    desk.act(tid, "pause", local("2026-02-09 09:10"), "user:alice", "waiting for access | badge")
    desk.act(tid, "resume", local("2026-02-09 09:40"), "user:alice")
    desk.act(tid, "arrive", local("2026-02-09 10:30"), "user:bob", "in the server room")
    desk.act(tid, "comment", local("2026-02-09 10:45"), "helpdesk:hd", "customer asks for ETA\nby phone")
    desk.act(tid, "restore", local("2026-02-09 12:00"), "device")
    desk.act(tid, "report", local("2026-02-09 13:00"), "user:alice",
             fields={"cause": "Optic failed in port 3.", "solution": "Optic replaced."})
    a = ch.alarm.to_dict()
    return desk, tid, desk.take_timeline(), a


def test_incident_report_has_the_six_parts_filled_from_the_timeline() -> None:
    desk, tid, timeline, alarm = _incident()
    t = desk.open[tid]
    md = incident_report(t, timeline, tz="Asia/Shanghai", now=local("2026-02-09 14:00"), alarm=alarm, calendars=CALS)
    heads = [line for line in md.splitlines() if line.startswith("## ")]
    assert heads == [
        "## 1. When the fault started and ended",
        "## 2. Symptoms",
        "## 3. Cause",
        "## 4. Final solution",
        "## 5. Actions taken, in time order",
        "## 6. Follow-up measures",
    ]
    assert "- First event: 2026-02-09 09:00:00 +08:00 — `IF-MIB::linkDown`" in md
    assert "- Occurrences: 5, the last at 2026-02-09 09:01:00 +08:00" in md
    assert "- Responded (acknowledged): 2026-02-09 09:05:00 +08:00 (5 min after the first event)" in md
    assert "- Engineer on site: 2026-02-09 10:30:00 +08:00 (1 h 30 min after the first event)" in md
    assert "- Service restored: 2026-02-09 12:00:00 +08:00 (the fault lasted 3 h)" in md
    assert "| Fault level | 1, critical (一级故障), urgent |" in md
    assert "Optic failed in port 3." in md and "Optic replaced." in md
    # Missing parts get a placeholder that says how to fill them.
    assert "`gateway ticket report-set 1 --symptoms TEXT`" in md
    assert "`gateway ticket report-set 1 --follow-up TEXT`" in md
    # Actions in time order, table-safe.
    part5 = md.split("## 5.")[1].split("## 6.")[0]
    rows = [r for r in part5.splitlines() if r.startswith("| 2026")]
    assert [r.split(" | ")[2] for r in rows] == [
        "Ticket opened", "Acknowledged (response)", "Clocks paused", "Clocks resumed",
        "Engineer on site", "Comment", "Service restored",
    ]
    assert "waiting for access \\| badge" in part5 and "customer asks for ETA<br>by phone" in part5
    # SLA table: urgent response 10 min met; on site 2 h (+30 min paused) met; report running.
    assert "| Response | 10 min (24x7) | 2026-02-09 09:10:00 +08:00 | 2026-02-09 09:05:00 +08:00 | 5 min | met |" in md
    assert "| Engineer on site | 2 h (24x7) | 2026-02-09 11:30:00 +08:00 | 2026-02-09 10:30:00 +08:00 | 1 h | met |" in md
    assert "| Incident report | 2 d (24x7) | 2026-02-11 12:00:00 +08:00 | - | 2 h | running |" in md
    assert "Clocks were paused (this time does not count): 2026-02-09 09:10:00 +08:00 – 2026-02-09 09:40:00 +08:00." in md
    assert "Provisional" not in md


def test_incident_report_in_another_time_zone_and_without_alarm() -> None:
    desk, tid, timeline, _ = _incident()
    md = incident_report(desk.open[tid], timeline, tz="UTC", now=local("2026-02-09 14:00"))
    assert "- First event: 2026-02-09 01:00:00 +00:00" in md and "Occurrences" not in md
    assert "Times are local to UTC." in md


def test_provisional_deadlines_are_called_out() -> None:
    desk, tid, timeline, alarm = _incident()
    t = desk.open[tid]
    t.clocks[1].provisional = True
    md = incident_report(t, timeline, tz="Asia/Shanghai", now=local("2026-02-09 14:00"), alarm=alarm, calendars=CALS)
    assert "**Provisional deadlines.**" in md and "met (provisional)" in md


@pytest.mark.parametrize(
    "seconds, text",
    [(None, "-"), (45, "45 s"), (600, "10 min"), (3600, "1 h"), (5400, "1 h 30 min"), (172800, "2 d"),
     (183600, "2 d 3 h"), (-600, "-10 min")],
)
def test_fmt_duration(seconds: float | None, text: str) -> None:
    assert fmt_duration(seconds) == text


def test_month_bounds_are_local() -> None:
    start, end = month_bounds("2026-12", "Asia/Shanghai")
    assert start == local("2026-12-01 00:00") and end == local("2027-01-01 00:00")
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds("2026-13", "Asia/Shanghai")


def test_sla_summary_markdown() -> None:
    desk, tid, _, _ = _incident()
    t = desk.open[tid]
    s = sla_summary([t], POLICIES["network-equipment"], CALS, month="2026-02", tz="Asia/Shanghai",
                    now=local("2026-02-12 00:00"))
    md = render_sla_summary(s)
    assert md.startswith("# SLA report: network-equipment, 2026-02\n")
    assert "**Tickets: 1** (level 1: 1, level 2: 0, level 3: 0, level 4: 0)" in md
    assert "| response | 1 | 0 | 0 | 0 | 5 min | 5 min |" in md
    # Restored Monday 12:00, report due Wednesday 12:00, not closed by Thursday 00:00: 60 h.
    assert "| report | 0 | 1 | 0 | 0 | 2 d 12 h | 2 d 12 h |" in md
    assert "The contract defines no penalties." in md
    empty = render_sla_summary(sla_summary([], POLICIES["software-7x24"], CALS, month="2026-02", tz="Asia/Shanghai",
                                           now=local("2026-02-12 00:00")))
    assert "| response | 0 | 0 | 0 | 0 | - | - |" in empty and "**0.00 CNY**" in empty
