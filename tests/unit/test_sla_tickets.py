"""SLA due times from the shipped policies, pause/resume, re-targeting, warnings and breaches,
and ticket transitions — all on a manual clock."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.clock import ManualClock
from gateway.config import build_policies, load_config
from gateway.core.alarms import AlarmBook
from gateway.core.calendars import (
    BusinessHours,
    ChinaWorkdays,
    TwentyFourSeven,
    WeekdayRule,
    default_calendars,
)
from gateway.core.sla import ClockTarget, Policy, SlaClock
from gateway.core.tickets import Ticket, TicketDesk, TicketError, canonical_action
from gateway.model import Device, Event, FaultLevel
from rules.engine import Classification
from tests.helpers import EXAMPLE

H = 3600.0
MIN = 60.0
CST = ZoneInfo("Asia/Shanghai")
POLICIES = build_policies(load_config(EXAMPLE))
CALS = default_calendars()
# The mechanics tests (pause, breach, timers) use a plain 1 h response / 4 h restore contract.
_PLAIN = {lv: {"response": ClockTarget(1 * 3600.0, "24x7"), "restore": ClockTarget(4 * 3600.0, "24x7")} for lv in (1, 2, 3, 4)}
TEST_POLICIES = {**POLICIES, "remote-1h": Policy(name="remote-1h", levels=_PLAIN)}


def local(text: str) -> float:
    """``"2026-02-13 17:30"`` in Asia/Shanghai → epoch seconds."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CST).timestamp()


def show(ts: float) -> str:
    return datetime.fromtimestamp(ts, CST).strftime("%Y-%m-%d %H:%M")


def _open(
    policy: str,
    level: int,
    region: str,
    now: float,
    desk: TicketDesk | None = None,
    policies: dict[str, Policy] | None = None,
) -> tuple[TicketDesk, int]:
    pols = policies or TEST_POLICIES
    desk = desk or TicketDesk(pols, CALS)
    book = AlarmBook()
    ch = book.apply(Classification("r", "raise", "k", FaultLevel(level), "t"), Event(now, "t", "d", "x"), "d", now)
    assert ch is not None
    t = desk.open_for(ch.alarm, Device("d", region=region, policy=policy), pols[policy], now)
    return desk, t.id


# --------------------------------------------------------------------------- due times

# (policy, level, region) → {clock: hours}, computed by hand from DESIGN §3.
EXPECTED = {
    ("mine-monitoring", 1, ""): {"response": 1, "solution": 2, "on_site": 8},
    ("mine-monitoring", 2, ""): {"response": 1, "solution": 4, "on_site": 12},
    ("mine-monitoring", 3, ""): {"response": 2, "solution": 6, "on_site": 12},
    ("mine-monitoring", 4, ""): {"response": 2, "solution": 8, "on_site": 24},
    ("medical-devices", 1, ""): {"response": 1, "solution": 4, "restore": 8},
    ("medical-devices", 2, ""): {"response": 1, "solution": 24, "on_site": 24},
    ("medical-devices", 3, ""): {"response": 2, "solution": 24},
    ("medical-devices", 4, ""): {"response": 2, "solution": 48},
    ("network-equipment", 1, "beijing"): {"response": 1 / 6, "on_site": 2},
    ("network-equipment", 2, "beijing"): {"response": 1 / 6, "on_site": 2},
    ("network-equipment", 3, "beijing"): {"response": 24, "on_site": 4},
    ("network-equipment", 4, "beijing"): {"response": 24, "on_site": 4},
    ("network-equipment", 1, "shanxi"): {"response": 1 / 6, "on_site": 24},
    ("network-equipment", 2, "shanxi"): {"response": 1 / 6, "on_site": 24},
    ("network-equipment", 3, "shanxi"): {"response": 24, "on_site": 48},
    ("network-equipment", 4, "shanxi"): {"response": 24, "on_site": 48},
    ("software-7x24", 1, ""): {"response": 4, "dispatch": 1, "restore": 4},
    ("software-7x24", 2, ""): {"response": 4, "dispatch": 1, "restore": 4},
    ("software-7x24", 3, ""): {"response": 4, "dispatch": 1, "restore": 4},
    ("software-7x24", 4, ""): {"response": 4, "dispatch": 1, "restore": 4},
    ("beidou-integrator", 1, ""): {"response": 0.5, "on_site": 2, "restore": 24},
    ("beidou-integrator", 4, ""): {"response": 0.5, "on_site": 2, "restore": 24},
}


@pytest.mark.parametrize("policy, level, region", list(EXPECTED), ids=[f"{p}-L{lv}-{r or 'any'}" for p, lv, r in EXPECTED])
def test_due_times_24x7(policy: str, level: int, region: str) -> None:
    now = ManualClock().now()
    desk, tid = _open(policy, level, region, now)
    t = desk.open[tid]
    got = {c.kind: (c.due_at - now) / H for c in t.clocks if not c.deferred}
    assert got == pytest.approx(EXPECTED[(policy, level, region)])


# Opened Friday 2026-02-13 17:30, the eve of a 调休 working Saturday (02-14) followed by the
# Spring Festival holiday (02-15 … 02-23). Every contract × level × clock, due times worked
# out by hand; "report" is None: it waits for the restore.
FRIDAY = "2026-02-13 17:30"
BY_HAND = {
    ("mine-monitoring", 1, ""): {"response": "2026-02-13 18:30", "solution": "2026-02-13 19:30", "on_site": "2026-02-14 01:30"},
    ("mine-monitoring", 2, ""): {"response": "2026-02-13 18:30", "solution": "2026-02-13 21:30", "on_site": "2026-02-14 05:30"},
    ("mine-monitoring", 3, ""): {"response": "2026-02-13 19:30", "solution": "2026-02-13 23:30", "on_site": "2026-02-14 05:30"},
    ("mine-monitoring", 4, ""): {"response": "2026-02-13 19:30", "solution": "2026-02-14 01:30", "on_site": "2026-02-14 17:30"},
    ("medical-devices", 1, ""): {"response": "2026-02-13 18:30", "solution": "2026-02-13 21:30", "restore": "2026-02-14 01:30"},
    ("medical-devices", 2, ""): {"response": "2026-02-13 18:30", "solution": "2026-02-14 17:30", "on_site": "2026-02-14 17:30"},
    ("medical-devices", 3, ""): {"response": "2026-02-13 19:30", "solution": "2026-02-14 17:30"},
    ("medical-devices", 4, ""): {"response": "2026-02-13 19:30", "solution": "2026-02-15 17:30"},
    ("network-equipment", 1, "beijing"): {"response": "2026-02-13 17:40", "on_site": "2026-02-13 19:30", "report": None},
    ("network-equipment", 2, "beijing"): {"response": "2026-02-13 17:40", "on_site": "2026-02-13 19:30", "report": None},
    ("network-equipment", 3, "beijing"): {"response": "2026-02-14 17:30", "on_site": "2026-02-13 21:30", "report": None},
    ("network-equipment", 4, "beijing"): {"response": "2026-02-14 17:30", "on_site": "2026-02-13 21:30", "report": None},
    ("network-equipment", 1, "shanxi"): {"response": "2026-02-13 17:40", "on_site": "2026-02-14 17:30", "report": None},
    ("network-equipment", 2, "shanxi"): {"response": "2026-02-13 17:40", "on_site": "2026-02-14 17:30", "report": None},
    # 48 calendar hours, holiday or not: Fri 17:30 + 2 days = Sun 02-15 17:30 (the old reading,
    # 2 working days, gave Tue 02-24: Sat 02-14 (调休) and the first day after the holiday).
    ("network-equipment", 3, "shanxi"): {"response": "2026-02-14 17:30", "on_site": "2026-02-15 17:30", "report": None},
    ("network-equipment", 4, "shanxi"): {"response": "2026-02-14 17:30", "on_site": "2026-02-15 17:30", "report": None},
    # Response within 4 h; the remote-fix window (dispatch) 1 h; restore 4 h.
    ("software-7x24", 1, ""): {"response": "2026-02-13 21:30", "dispatch": "2026-02-13 18:30", "restore": "2026-02-13 21:30"},
    ("software-7x24", 2, ""): {"response": "2026-02-13 21:30", "dispatch": "2026-02-13 18:30", "restore": "2026-02-13 21:30"},
    ("software-7x24", 3, ""): {"response": "2026-02-13 21:30", "dispatch": "2026-02-13 18:30", "restore": "2026-02-13 21:30"},
    ("software-7x24", 4, ""): {"response": "2026-02-13 21:30", "dispatch": "2026-02-13 18:30", "restore": "2026-02-13 21:30"},
    # Beidou: 30 min response, 2 h on site, 24 h emergency repair (restore), every level.
    ("beidou-integrator", 1, ""): {"response": "2026-02-13 18:00", "on_site": "2026-02-13 19:30", "restore": "2026-02-14 17:30"},
    ("beidou-integrator", 2, ""): {"response": "2026-02-13 18:00", "on_site": "2026-02-13 19:30", "restore": "2026-02-14 17:30"},
    ("beidou-integrator", 3, ""): {"response": "2026-02-13 18:00", "on_site": "2026-02-13 19:30", "restore": "2026-02-14 17:30"},
    ("beidou-integrator", 4, ""): {"response": "2026-02-13 18:00", "on_site": "2026-02-13 19:30", "restore": "2026-02-14 17:30"},
}


@pytest.mark.parametrize("policy, level, region", list(BY_HAND), ids=[f"{p}-L{lv}-{r or 'any'}" for p, lv, r in BY_HAND])
def test_due_times_friday_before_spring_festival(policy: str, level: int, region: str) -> None:
    desk, tid = _open(policy, level, region, local(FRIDAY))
    t = desk.open[tid]
    got = {c.kind: (None if c.deferred else show(c.due_at)) for c in t.clocks}
    assert got == BY_HAND[(policy, level, region)]
    assert not t.provisional


def test_every_shipped_contract_and_level_is_covered() -> None:
    cases = {(p, lv) for p, lv, _ in BY_HAND}
    assert cases == {(p, lv) for p in POLICIES for lv in (1, 2, 3, 4)}


def test_network_on_site_48_calendar_hours_outside_beijing() -> None:
    # Friday 2026-11-20 10:00 + 48 h = Sunday 11-22 10:00; two working days would be Tue 11-24.
    desk, tid = _open("network-equipment", 3, "shanxi", local("2026-11-20 10:00"))
    on_site = desk.open[tid].clock("on_site")
    assert on_site is not None
    assert (on_site.target, on_site.calendar) == (48 * H, "24x7")
    assert show(on_site.due_at) == "2026-11-22 10:00"


def _open_device(policy: str, level: int, dev: Device, now: float) -> tuple[TicketDesk, int]:
    desk = TicketDesk(POLICIES, CALS)
    book = AlarmBook()
    ch = book.apply(Classification("r", "raise", "k", FaultLevel(level), "t"), Event(now, "t", dev.id, "x"), dev.id, now)
    assert ch is not None
    return desk, desk.open_for(ch.alarm, dev, POLICIES[policy], now).id


@pytest.mark.parametrize("device_class", ["beidou.front-end.receiver", "beidou.control-panel"])
def test_beidou_front_end_and_control_devices_respond_in_one_hour(device_class: str) -> None:
    opened = local(FRIDAY)
    dev = Device("bd1", device_class=device_class, policy="beidou-integrator")
    desk, tid = _open_device("beidou-integrator", 2, dev, opened)
    t = desk.open[tid]
    got = {c.kind: show(c.due_at) for c in t.clocks}
    assert got == {"response": "2026-02-13 18:30", "on_site": "2026-02-13 19:30", "restore": "2026-02-14 17:30"}
    # A level change keeps the class variant (the ticket remembers the device's class).
    desk.act(tid, "level", opened + MIN, "user:alice", level=4)
    resp = desk.open[tid].clock("response")
    assert resp is not None and resp.target == 1 * H


def test_beidou_other_devices_respond_in_half_an_hour() -> None:
    dev = Device("bd2", device_class="beidou.server", policy="beidou-integrator")
    desk, tid = _open_device("beidou-integrator", 2, dev, local(FRIDAY))
    resp = desk.open[tid].clock("response")
    assert resp is not None and show(resp.due_at) == "2026-02-13 18:00"


def test_region_match_is_case_insensitive() -> None:
    desk, tid = _open("network-equipment", 1, "Beijing", local("2026-11-17 10:00"))
    on_site = desk.open[tid].clock("on_site")
    assert on_site is not None and show(on_site.due_at) == "2026-11-17 12:00"


BUSINESS = Policy(
    name="business",
    calendar="business-cn",
    levels={
        1: {"response": ClockTarget(4 * H, "business-cn"), "on_site": ClockTarget(2 * 86400, "workdays-cn")},
        2: {"response": ClockTarget(4 * H, "business-weekdays")},
    },
)


@pytest.mark.parametrize(
    "opened, level, expected",
    [
        # 4 business hours from Friday 17:30: 30 min on Friday, 3 h 30 on the 调休 Saturday.
        ("2026-02-13 17:30", 1, {"response": "2026-02-14 12:30", "on_site": "2026-02-24 17:30"}),
        # Mon-Fri business hours know no 调休 and no holidays: Friday, then Monday.
        ("2026-02-13 17:30", 2, {"response": "2026-02-16 12:30"}),
        # Opened during the holiday: the clock starts on the first working morning.
        ("2026-02-18 11:00", 1, {"response": "2026-02-24 13:00", "on_site": "2026-02-26 00:00"}),
        # Across a night: Tuesday 16:00 + 4 business hours = Wednesday 11:00.
        ("2026-11-17 16:00", 1, {"response": "2026-11-18 11:00", "on_site": "2026-11-19 16:00"}),
        # New Year: Wed 2025-12-31 17:00; 1-3 Jan off, Sunday 4 Jan is a 调休 working day.
        ("2025-12-31 17:00", 1, {"response": "2026-01-04 12:00", "on_site": "2026-01-05 17:00"}),
    ],
    ids=["fri-before-festival", "weekdays-rule", "inside-holiday", "overnight", "new-year"],
)
def test_business_hours_and_working_days(opened: str, level: int, expected: dict[str, str]) -> None:
    desk, tid = _open("business", level, "", local(opened), policies={"business": BUSINESS})
    assert {c.kind: show(c.due_at) for c in desk.open[tid].clocks} == expected


# --------------------------------------------------------------------------- urgent response


def test_urgent_levels_get_the_urgent_response_target() -> None:
    pol = POLICIES["network-equipment"]
    assert pol.urgent_response == ClockTarget(600.0, "24x7")
    assert [pol.is_urgent(lv) for lv in (1, 2, 3, 4)] == [True, True, False, False]
    assert pol.levels[1]["response"].seconds == 24 * H  # the ordinary target, kept
    desk, tid = _open("network-equipment", 2, "shanxi", local("2026-11-17 10:00"))
    assert desk.open[tid].urgent
    assert "urgent" in desk.take_timeline()[0].note


def test_level_change_switches_between_urgent_and_ordinary_response() -> None:
    opened = local("2026-11-17 10:00")
    desk, tid = _open("network-equipment", 3, "shanxi", opened)
    desk.act(tid, "level", opened + 5 * MIN, "user:alice", level=1)
    t = desk.open[tid]
    resp, on_site = t.clock("response"), t.clock("on_site")
    assert resp is not None and on_site is not None
    assert t.urgent and resp.due_at == pytest.approx(opened + 10 * MIN)
    # On site moves from 2 working days to 24 h of the 24x7 calendar, from the ticket's start.
    assert on_site.calendar == "24x7" and show(on_site.due_at) == "2026-11-18 10:00"


# --------------------------------------------------------------------------- clocks


def test_report_clock_starts_at_restore() -> None:
    clock = ManualClock()
    desk, tid = _open("network-equipment", 1, "beijing", clock.now())
    rep = desk.open[tid].clock("report")
    assert rep is not None and rep.deferred and rep.state == "waiting"
    clock.advance(3 * H)
    desk.act(tid, "restore", clock.now(), "noc")
    assert not rep.deferred and rep.due_at == pytest.approx(clock.now() + 48 * H)
    clock.advance(47 * H)
    desk.act(tid, "close", clock.now(), "noc")
    assert rep.state == "met" and rep.business_elapsed == pytest.approx(47 * H)


def test_report_clock_not_needed_when_closed_without_restore() -> None:
    clock = ManualClock()
    desk, tid = _open("network-equipment", 3, "beijing", clock.now())
    clock.advance(H)
    t = desk.act(tid, "close", clock.now(), "noc", "false alarm")
    assert {c.kind: c.state for c in t.clocks} == {"response": "met", "on_site": "not_needed", "report": "not_needed"}


def test_ack_meets_response_only() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 1, "", clock.now())
    clock.advance(0.5 * H)
    t = desk.act(tid, "ack", clock.now(), "alice", "on it")
    assert t.status == "acknowledged"
    resp, sol = t.clock("response"), t.clock("solution")
    assert resp is not None and sol is not None
    assert resp.state == "met" and resp.business_elapsed == pytest.approx(0.5 * H)
    assert sol.state == "running" and not sol.done
    with pytest.raises(TicketError, match="already"):
        desk.act(tid, "acknowledge", clock.now(), "bob")


def test_met_clock_records_business_time_not_wall_time() -> None:
    # business-cn: opened Friday 17:00, acknowledged Saturday 10:00 (a 调休 working day):
    # 1 h on Friday + 1 h on Saturday = 2 business hours of the 4 allowed.
    desk, tid = _open("business", 1, "", local("2026-02-13 17:00"), policies={"business": BUSINESS})
    t = desk.act(tid, "acknowledge", local("2026-02-14 10:00"), "alice")
    resp = t.clock("response")
    assert resp is not None and resp.state == "met" and resp.business_elapsed == pytest.approx(2 * H)


def test_pause_excludes_paused_time() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 1, "", clock.now())
    start = clock.now()
    clock.advance(0.25 * H)
    desk.act(tid, "pause", clock.now(), "alice", "waiting on customer")
    t = desk.open[tid]
    resp = t.clock("response")
    assert resp is not None and resp.paused and resp.state == "paused" and t.paused
    clock.advance(5 * H)
    assert desk.tick(clock.now()) == []  # nothing counts while paused
    desk.act(tid, "resume", clock.now(), "alice")
    assert resp.due_at == pytest.approx(start + 5.25 * H + 1 * H)
    assert resp.state == "running"
    assert t.pauses == [[start + 0.25 * H, start + 5.25 * H]]
    clock.advance(0.5 * H)
    desk.act(tid, "ack", clock.now(), "alice")
    assert resp.state == "met" and resp.business_elapsed == pytest.approx(0.75 * H)


def test_pause_errors_and_action_while_paused_resumes() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 2, "", clock.now())
    with pytest.raises(TicketError, match="not paused"):
        desk.act(tid, "resume", clock.now(), "alice")
    desk.act(tid, "pause", clock.now(), "alice", "waiting for access")
    with pytest.raises(TicketError, match="already paused"):
        desk.act(tid, "pause", clock.now(), "alice")
    clock.advance(3 * H)
    t = desk.act(tid, "arrive", clock.now(), "eng", "got in")
    assert not t.paused
    assert [e.kind for e in desk.take_timeline()][-3:] == ["paused", "resumed", "arrive"]
    on_site = t.clock("on_site")
    assert on_site is not None and on_site.business_elapsed == pytest.approx(0.0)


def test_breach_stays_visible_while_paused_and_after_stop() -> None:
    clock = ManualClock()
    desk, tid = _open("remote-1h", 1, "", clock.now())
    clock.advance(1.5 * H)
    desk.tick(clock.now())
    resp = desk.open[tid].clock("response")
    assert resp is not None and resp.state == "breached" and resp.breached_at == pytest.approx(clock.now() - 0.5 * H)
    desk.act(tid, "pause", clock.now(), "alice")
    assert resp.state == "breached" and resp.paused
    desk.act(tid, "resume", clock.now() + H, "alice")
    assert resp.state == "breached" and resp.due_at == resp.breached_at  # the missed deadline stays put
    desk.act(tid, "ack", clock.now() + 2 * H, "alice")
    assert resp.state == "breached" and resp.done


def test_warnings_once_then_breach_once() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 1, "", clock.now())
    start = clock.now()
    fired: list[tuple[str, float, float]] = []
    for _ in range(3 * 60):  # three hours, minute by minute
        clock.advance(60)
        fired += [(n.kind, n.fraction, (clock.now() - start) / 60) for _, n in desk.tick(clock.now())]
    # response 1 h: 30, 48, 60 min; solution 2 h: 60, 96, 120 min.
    assert fired == [
        ("response", 0.5, 30), ("response", 0.8, 48), ("response", 1.0, 60),
        ("solution", 0.5, 60), ("solution", 0.8, 96), ("solution", 1.0, 120),
    ]
    resp = desk.open[tid].clock("response")
    assert resp is not None and resp.state == "breached"
    desk.act(tid, "acknowledge", clock.now(), "late")
    assert resp.state == "breached" and resp.done


def test_notices_carry_the_exact_instant_even_when_checked_late() -> None:
    clock = ManualClock()
    desk, tid = _open("remote-1h", 1, "", clock.now())
    start = clock.now()
    clock.advance(20 * MIN)
    assert desk.tick(clock.now()) == []
    assert desk.next_check() == pytest.approx(start + 30 * MIN)
    clock.advance(70 * MIN)  # 90 min: response 50 % and 80 % passed and breached; restore 4 h at 37.5 %
    fired = [(n.kind, n.fraction, n.at - start) for _, n in desk.tick(clock.now())]
    # Only the highest threshold crossed is announced; the breach carries its due instant.
    assert fired == [("response", 1.0, pytest.approx(H))]
    resp = desk.open[tid].clock("response")
    assert resp is not None and sorted(resp.warned) == [0.5, 0.8]
    clock.advance(1 * H)  # restore at 150 min = 62.5 %
    assert [(n.kind, n.fraction, n.at - start) for _, n in desk.tick(clock.now())] == [
        ("restore", 0.5, pytest.approx(2 * H))
    ]


def test_late_action_fires_the_breach_first() -> None:
    clock = ManualClock()
    desk, tid = _open("remote-1h", 1, "", clock.now())
    clock.advance(2 * H)
    desk.act(tid, "ack", clock.now(), "alice")  # no tick ran in between
    kinds = [(e.kind, e.note) for e in desk.take_timeline()]
    assert ("sla_breach", "response deadline breached") in kinds
    assert kinds.index(("sla_breach", "response deadline breached")) < [k for k, _ in kinds].index("acknowledge")
    assert [n.fraction for _, n in desk.tick(clock.now())] == [1.0, 0.5]  # response breach, restore 50 %


def test_warnings_and_breaches_reach_the_outbox() -> None:
    clock = ManualClock()
    desk, _tid = _open("remote-1h", 1, "", clock.now())
    desk.take_outbox()
    clock.advance(30 * MIN)
    desk.tick(clock.now())
    clock.advance(30 * MIN)
    desk.tick(clock.now())
    out = desk.take_outbox()
    assert [(k, p["event"], p["sla"]["clock"], p["sla"]["fraction"]) for _, k, p in out] == [
        ("update", "sla_warning", "response", 0.5),
        ("update", "sla_breach", "response", 1.0),
    ]
    assert out[1][2]["actor"] == "sla" and out[1][2]["note"] == "response deadline breached"
    assert out[1][2]["sla"]["due_at"] == pytest.approx(clock.now())


def test_level_change_retargets_from_ticket_start() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 3, "", clock.now())
    start = clock.now()
    clock.advance(0.5 * H)
    desk.act(tid, "set_level", clock.now(), "alice", level=1)
    t = desk.open[tid]
    assert t.level == FaultLevel.CRITICAL
    assert {c.kind: c.due_at - start for c in t.clocks} == pytest.approx({"response": 1 * H, "solution": 2 * H, "on_site": 8 * H})


def test_level_change_keeps_paused_time_out() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 3, "", clock.now())
    start = clock.now()
    clock.advance(0.5 * H)
    desk.act(tid, "pause", clock.now(), "alice")
    clock.advance(2 * H)
    desk.act(tid, "resume", clock.now(), "alice")
    desk.act(tid, "level", clock.now(), "alice", level=2)
    resp = desk.open[tid].clock("response")
    assert resp is not None and resp.due_at == pytest.approx(start + 2 * H + 1 * H)


def test_escalation_past_the_new_target_breaches_at_the_due_instant() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 4, "", clock.now())  # response 2 h
    start = clock.now()
    clock.advance(70 * MIN)
    desk.tick(clock.now())  # response 50 % at 60 min
    desk.on_alarm_escalated(tid, FaultLevel.CRITICAL, clock.now(), "rule:r")  # response 1 h: already late
    fired = [(n.kind, n.fraction, n.at - start) for _, n in desk.tick(clock.now())]
    assert ("response", 1.0, pytest.approx(H)) in fired
    assert ("response", 0.5, pytest.approx(H)) not in fired  # superseded by the breach
    sol = desk.open[tid].clock("solution")
    assert sol is not None and ("solution", 0.5, pytest.approx(H)) in fired and sol.due_at == pytest.approx(start + 2 * H)


def test_lower_level_withdraws_a_breach_the_new_target_does_not_see() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 1, "", clock.now())
    clock.advance(70 * MIN)
    desk.tick(clock.now())
    resp = desk.open[tid].clock("response")
    assert resp is not None and resp.state == "breached"
    desk.act(tid, "level", clock.now(), "alice", "misclassified", level=4)  # response 2 h
    assert resp.state == "running" and resp.breached_at is None
    note = desk.take_timeline()[-1].note
    assert note.startswith("level 1 → 4; breach withdrawn (response)") and note.endswith("misclassified")


def test_level_change_adds_and_drops_clocks_as_the_contract_says() -> None:
    # medical L2 has on_site (24 h); L1 has restore (8 h) and no on_site.
    clock = ManualClock()
    desk, tid = _open("medical-devices", 2, "", clock.now())
    start = clock.now()
    clock.advance(H)
    desk.act(tid, "pause", clock.now(), "alice")
    clock.advance(H)
    desk.act(tid, "resume", clock.now(), "alice")
    clock.advance(H)
    desk.act(tid, "level", clock.now(), "rule:r", level=1)
    t = desk.open[tid]
    assert [c.kind for c in t.clocks] == ["response", "solution", "on_site", "restore"]
    on_site, restore = t.clock("on_site"), t.clock("restore")
    assert on_site is not None and on_site.state == "not_needed"
    # The restore clock ran since the start, minus the paused hour: due start + 8 h + 1 h.
    assert restore is not None and restore.running and restore.due_at == pytest.approx(start + 9 * H)
    assert restore.used(clock.now(), CALS["24x7"]) == pytest.approx(2 * H)


def test_done_clocks_keep_their_result_on_level_change() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 4, "", clock.now())
    clock.advance(1.5 * H)
    desk.act(tid, "ack", clock.now(), "alice")  # met against 2 h
    desk.act(tid, "level", clock.now(), "alice", level=1)  # 1 h now, but it is done
    resp = desk.open[tid].clock("response")
    assert resp is not None and resp.state == "met" and resp.target == 2 * H
    with pytest.raises(TicketError, match="already level 1"):
        desk.act(tid, "level", clock.now(), "alice", level="critical")
    with pytest.raises(TicketError, match="unknown fault level"):
        desk.act(tid, "level", clock.now(), "alice", level=9)


def test_restore_and_close_flow_and_errors() -> None:
    clock = ManualClock()
    desk, tid = _open("medical-devices", 1, "", clock.now())
    clock.advance(2 * H)
    t = desk.act(tid, "restore", clock.now(), "device")
    assert t.status == "restored"
    assert {c.kind: c.state for c in t.clocks} == {"response": "breached", "solution": "met", "restore": "met"}
    desk.act(tid, "close", clock.now(), "alice")
    with pytest.raises(TicketError):
        desk.act(tid, "acknowledge", clock.now(), "alice")
    timeline = [(e.actor, e.kind) for e in desk.take_timeline()]
    assert timeline[0] == ("rule:r", "opened") and ("device", "restore") in timeline and timeline[-1] == ("alice", "close")


def test_full_lifecycle_statuses_milestones_and_outbox_kinds() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 2, "", clock.now())
    steps = [
        ("ack", "acknowledged", "update"),
        ("propose", "solution_proposed", "update"),
        ("arrive", "on_site", "update"),
        ("comment", "on_site", "comment"),
        ("restore", "restored", "resolve"),
        ("close", "closed", "close"),
    ]
    for verb, status, _ in steps:
        clock.advance(10 * MIN)
        t = desk.act(tid, verb, clock.now(), "user:alice", note=f"{verb} note")
        assert t.status == status
    assert set(t.milestones) == {"acknowledge", "propose_solution", "arrive", "restore", "close"}
    assert tid not in desk.open and t.closed_at == clock.now()
    kinds = [k for _, k, _ in desk.take_outbox()]
    assert kinds == ["open"] + [k for _, _, k in steps]
    assert {c.kind: c.state for c in t.clocks} == {"response": "met", "solution": "met", "on_site": "met"}


def test_reopen_runs_the_clocks_restore_stopped_and_rewinds_the_report() -> None:
    clock = ManualClock()
    store: dict[int, Ticket] = {}
    desk, tid = _open("network-equipment", 1, "beijing", clock.now())
    desk.loader = store.get
    clock.advance(5 * MIN)
    desk.act(tid, "ack", clock.now(), "alice")
    clock.advance(55 * MIN)
    t = desk.act(tid, "restore", clock.now(), "device")  # on site not needed; report starts
    assert {c.kind: c.state for c in t.clocks} == {"response": "met", "on_site": "not_needed", "report": "running"}
    clock.advance(H)
    desk.act(tid, "close", clock.now(), "alice")
    store[tid] = t
    with pytest.raises(TicketError, match="closed; reopen it first"):
        desk.act(tid, "ack", clock.now(), "alice")
    clock.advance(3 * H)
    t = desk.act(tid, "reopen", clock.now(), "helpdesk:hd", "still down")
    assert tid in desk.open and t.status == "open" and t.closed_at is None
    on_site, rep = t.clock("on_site"), t.clock("report")
    assert on_site is not None and on_site.running
    # 1 h of the 2 h had run when service came back; the restored span does not count.
    assert on_site.due_at == pytest.approx(clock.now() + H)
    assert rep is not None and rep.state == "waiting"
    assert "restore" not in t.milestones and "acknowledge" in t.milestones
    with pytest.raises(TicketError, match="only a restored or closed ticket"):
        desk.act(tid, "reopen", clock.now(), "alice")


def test_closed_ticket_without_loader_cannot_be_reopened() -> None:
    clock = ManualClock()
    desk, tid = _open("remote-1h", 1, "", clock.now())
    desk.act(tid, "close", clock.now(), "alice")
    with pytest.raises(TicketError, match="not open"):
        desk.act(tid, "reopen", clock.now(), "alice")


def test_report_fields_comments_and_unknown_actions() -> None:
    clock = ManualClock()
    desk, tid = _open("remote-1h", 1, "", clock.now())
    t = desk.act(tid, "report", clock.now(), "alice", fields={"cause": "bad optics", "follow_up": "spares"})
    assert t.report == {"cause": "bad optics", "follow_up": "spares"}
    desk.act(tid, "set_report", clock.now(), "alice", fields={"cause": ""})
    assert t.report == {"follow_up": "spares"}
    with pytest.raises(TicketError, match="unknown report field"):
        desk.act(tid, "set_report", clock.now(), "alice", fields={"blame": "x"})
    with pytest.raises(TicketError, match="needs a note"):
        desk.act(tid, "comment", clock.now(), "alice", "  ")
    with pytest.raises(TicketError, match="unknown action"):
        desk.act(tid, "explode", clock.now(), "alice")
    assert canonical_action("resolved") == "restore" and canonical_action("ack") == "acknowledge"
    assert all(k != "report" for _, k, _ in desk.take_outbox())  # report parts stay internal


def test_ticket_round_trips_through_its_dict() -> None:
    clock = ManualClock()
    desk, tid = _open("network-equipment", 2, "beijing", clock.now())
    clock.advance(H)
    desk.tick(clock.now())
    desk.act(tid, "pause", clock.now(), "alice")
    desk.act(tid, "report", clock.now(), "alice", fields={"symptoms": "ports flapping"})
    t = desk.open[tid]
    again = Ticket.from_dict(t.to_dict())
    assert again.to_dict() == t.to_dict()
    assert again.urgent and again.paused and again.pauses == [[clock.now(), None]]
    # Rows written before these fields existed still load.
    old = {k: v for k, v in t.to_dict().items() if k not in ("milestones", "pauses", "urgent", "provisional")}
    for c in old["clocks"]:
        c.pop("stopped_by")
    assert Ticket.from_dict(old).milestones == {}


def test_clock_from_old_row_with_paused_breach_reads_breached() -> None:
    row = SlaClock.start("response", ClockTarget(H, "24x7"), 0.0, TwentyFourSeven()).to_dict()
    row.update(state="paused", run_since=None, breached_at=H, consumed=2 * H)
    c = SlaClock.from_dict(row)
    assert c.state == "breached" and c.paused


# --------------------------------------------------------------------------- provisional


def _fallback_calendars() -> dict[str, object]:
    """Calendars with no holiday data at all: every working-day answer is a fallback."""
    china = ChinaWorkdays(use_package=False, use_shipped=False)
    return {
        "24x7": TwentyFourSeven(),
        "workdays-cn": BusinessHours("workdays-cn", "Asia/Shanghai", (("00:00", "24:00"),), workdays=china),
        "business-cn": BusinessHours("business-cn", "Asia/Shanghai", (("09:00", "18:00"),), workdays=china),
        "business-weekdays": BusinessHours("business-weekdays", "Asia/Shanghai", workdays=WeekdayRule()),
    }


def test_provisional_deadline_is_given_marked_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    # A contract that counts on site in working days (the mechanism the shipped network
    # policy no longer uses since its table says 48 calendar hours).
    workdays = {"workdays": Policy(name="workdays", levels={3: {
        "response": ClockTarget(24 * H, "24x7"), "on_site": ClockTarget(2 * 86400.0, "workdays-cn")}})}
    desk = TicketDesk(workdays, _fallback_calendars())
    with caplog.at_level(logging.WARNING):
        # Thursday 30 Sep 2027 + 2 working days on the fallback (Mon-Fri minus 1-3 Oct):
        # 14 h on Thursday, Friday 1 Oct off, Monday 4 Oct in full, 10 h on Tuesday 5 Oct.
        _, tid = _open("workdays", 3, "shanxi", local("2027-09-30 10:00"), desk=desk, policies=workdays)
    t = desk.open[tid]
    on_site = t.clock("on_site")
    assert on_site is not None and on_site.provisional and t.provisional
    assert show(on_site.due_at) == "2027-10-05 10:00"
    resp = t.clock("response")
    assert resp is not None and not resp.provisional  # 24x7 needs no holiday data
    assert any("provisional" in r.getMessage() and f"ticket {tid}" in r.getMessage() for r in caplog.records)
    assert [e.kind for e in desk.take_timeline()] == ["opened", "provisional"]
    assert t.to_dict()["provisional"] is True


def test_urgent_response_needs_urgent_levels_in_config() -> None:
    from gateway.config import config_from_dict
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="urgent_levels: urgent levels need an urgent_response"):
        config_from_dict({"inventory": {"default_policy": "p"}, "policies": {"p": {"urgent_levels": [1]}}})


# --------------------------------------------------------------------------- timer heap


def at_min(ts: float | None, start: float) -> float:
    """Minutes from ``start`` (exact comparisons: approx on epoch seconds is too loose)."""
    assert ts is not None
    return (ts - start) / MIN


def test_tick_looks_only_at_tickets_whose_check_has_come(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mass outage leaves thousands of tickets open: a tick must not walk them all."""
    clock = ManualClock()
    start = clock.now()
    desk = TicketDesk(POLICIES, CALS)
    tids = []
    for i in range(200):  # one ticket a minute; each warns 30 min after it opened
        tids.append(_open("remote-1h", 1, "", start + i * MIN, desk)[1])
    fired: list[int] = []
    real_fire = desk._fire
    monkeypatch.setattr(desk, "_fire", lambda t, now: (fired.append(t.id), real_fire(t, now)))
    assert [(t.id, n.fraction) for t, n in desk.tick(start + 30 * MIN)] == [(tids[0], 0.5)]
    assert fired == [tids[0]]
    fired.clear()
    notices = desk.tick(start + 32 * MIN)
    assert fired == tids[1:3]
    assert [(t.id, n.kind, n.fraction) for t, n in notices] == [(tids[1], "response", 0.5), (tids[2], "response", 0.5)]
    assert at_min(desk.next_check(), start) == pytest.approx(33)


def test_timers_follow_pause_resume_and_close() -> None:
    clock = ManualClock()
    start = clock.now()
    desk, tid = _open("remote-1h", 1, "", start)
    assert at_min(desk.next_check(), start) == pytest.approx(30)  # response 1 h, warned at 50 %
    desk.act(tid, "pause", start + 10 * MIN, "alice")
    assert desk.next_check() is None  # nothing counts while paused
    assert desk.tick(start + 35 * MIN) == []
    desk.act(tid, "resume", start + 40 * MIN, "alice")  # 10 min used; 20 more to 50 %
    assert at_min(desk.next_check(), start) == pytest.approx(60)
    assert desk.tick(start + 59 * MIN) == []
    assert [(n.kind, n.fraction) for _, n in desk.tick(start + 60 * MIN)] == [("response", 0.5)]
    desk.act(tid, "close", start + 61 * MIN, "alice")
    assert desk.next_check() is None
    assert desk.tick(start + 10 * H) == []


def test_tickets_loaded_from_the_store_are_checked_at_the_first_tick() -> None:
    clock = ManualClock()
    start = clock.now()
    old, tid = _open("remote-1h", 1, "", start)
    saved = Ticket.from_dict(old.open[tid].to_dict())
    desk = TicketDesk(POLICIES, CALS)
    desk.load([saved], tid + 1)
    assert at_min(desk.next_check(), start) <= 0  # at once, whatever the clocks say
    fired = [(n.kind, n.fraction) for _, n in desk.tick(start + 90 * MIN)]  # down for 90 min
    assert fired == [("response", 1.0)]
    assert at_min(desk.next_check(), start) == pytest.approx(120)  # restore 4 h at 50 %


# --------------------------------------------------------------------------- clocks that apply only when needed


def test_no_on_site_visit_needed_makes_the_clock_not_applicable_not_met() -> None:
    opened = local("2026-03-02 08:00")
    desk, tid = _open("mine-monitoring", 1, "", opened)  # on site within 8 h
    desk.take_timeline()
    t = desk.act(tid, "no-visit", opened + 3 * H, "user:alice", "fixed by phone guidance")
    on_site = t.clock("on_site")
    assert on_site is not None and on_site.state == "not_needed" and on_site.stopped_by == "no_on_site"
    assert [(e.kind, e.note) for e in desk.take_timeline() if not e.kind.startswith("sla_")] == [
        ("no_on_site", "no on-site visit needed: on-site clock not applicable. fixed by phone guidance")
    ]
    # No on-site breach later (its 8 h pass at 16:00); the other clocks ran on.
    assert "on_site" not in [n.kind for _, n in desk.tick(opened + 9 * H)]
    assert on_site.state == "not_needed"
    solution = t.clock("solution")
    assert solution is not None and solution.state == "breached"
    with pytest.raises(TicketError, match="on-site clock already stopped"):
        desk.act(tid, "no_on_site", opened + 10 * H, "user:alice")


def test_no_on_site_after_the_deadline_stays_breached() -> None:
    opened = local("2026-03-02 08:00")
    desk, tid = _open("mine-monitoring", 1, "", opened)
    t = desk.act(tid, "no_on_site", opened + 9 * H, "user:alice")
    on_site = t.clock("on_site")
    assert on_site is not None and on_site.state == "breached"


def test_no_on_site_needs_an_on_site_clock() -> None:
    desk, tid = _open("software-7x24", 1, "", local("2026-03-02 08:00"))
    with pytest.raises(TicketError, match="sets no on-site clock"):
        desk.act(tid, "no_on_site", local("2026-03-02 08:10"), "user:alice")


def test_dispatch_clock_is_the_remote_fix_window() -> None:
    opened = local("2026-03-02 08:00")
    # Solved remotely in 40 min: no engineer needed, the dispatch clock is not applicable.
    desk, tid = _open("software-7x24", 1, "", opened)
    t = desk.act(tid, "restore", opened + 40 * MIN, "user:alice")
    d = t.clock("dispatch")
    assert d is not None and d.state == "not_needed"
    # Not solved in 1 h: the dispatch deadline is breached at 09:00; dispatching stops it.
    desk, tid = _open("software-7x24", 1, "", opened)
    fired = desk.tick(opened + 61 * MIN)
    assert [(n.kind, show(n.at)) for _, n in fired if n.fraction == 1.0] == [("dispatch", "2026-03-02 09:00")]
    t = desk.act(tid, "dispatch", opened + 70 * MIN, "user:alice", "engineer Wang on the way")
    d = t.clock("dispatch")
    assert d is not None and d.state == "breached" and d.stopped_by == "dispatch"
    with pytest.raises(TicketError, match="dispatch was already recorded"):
        desk.act(tid, "dispatched", opened + 80 * MIN, "user:alice")
    # An engineer who arrives was dispatched: arriving stops the window too.
    desk, tid = _open("software-7x24", 1, "", opened)
    t = desk.act(tid, "arrive", opened + 50 * MIN, "user:alice")
    d = t.clock("dispatch")
    assert d is not None and d.state == "met" and d.stopped_by == "arrive"


def test_human_only_response_is_not_answered_by_the_device() -> None:
    opened = local("2026-03-02 08:00")
    desk, tid = _open("mine-monitoring", 2, "", opened)  # response 1 h, human_only
    assert POLICIES["mine-monitoring"].human_only == frozenset({"response"})
    t = desk.on_alarm_cleared(tid, opened + 10 * MIN, "device")
    assert t is not None and t.status == "restored"
    resp = t.clock("response")
    assert resp is not None and resp.running
    solution = t.clock("solution")
    assert solution is not None and solution.state == "met"  # only the listed clocks wait
    t = desk.act(tid, "ack", opened + 50 * MIN, "user:alice", "first assessment sent to the mine")
    resp = t.clock("response")
    assert resp is not None and resp.state == "met"
    # The same clear under a contract without human_only stops the response at once.
    desk, tid = _open("medical-devices", 2, "", opened)
    t = desk.on_alarm_cleared(tid, opened + 10 * MIN, "device")
    assert t is not None and (c := t.clock("response")) is not None and c.state == "met"


def test_a_person_closing_answers_a_human_only_response() -> None:
    opened = local("2026-03-02 08:00")
    desk, tid = _open("mine-monitoring", 2, "", opened)
    desk.on_alarm_cleared(tid, opened + 10 * MIN, "device")
    t = desk.act(tid, "close", opened + 20 * MIN, "user:alice")
    resp = t.clock("response")
    assert resp is not None and resp.state == "met" and resp.stopped_by == "close"
