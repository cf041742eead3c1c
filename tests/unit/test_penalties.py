"""Penalty arithmetic: per ticket from its clocks (started days, pauses, unnoticed overruns),
summed per contract and month with the cap."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.core.alarms import AlarmBook
from gateway.core.calendars import default_calendars
from gateway.core.penalties import started_days, sum_penalties, ticket_penalty
from gateway.core.sla import ClockTarget, PenaltyTerms, Policy
from gateway.core.tickets import TicketDesk
from gateway.model import Device, Event, FaultLevel
from rules.engine import Classification
from tests.helpers import ROOT

H = 3600.0
D = 86400.0
CALS = default_calendars()
TERMS = PenaltyTerms(contract_value=200_000, currency="CNY", response_missed_pct=1, restore_per_started_day_pct=1)
SOFT = Policy(
    name="soft",
    levels={1: {"response": ClockTarget(H, "24x7"), "restore": ClockTarget(4 * H, "24x7")}},
    penalties=TERMS,
)
WORKDAYS = Policy(
    name="wd",
    levels={1: {"response": ClockTarget(H, "24x7"), "restore": ClockTarget(D, "workdays-cn")}},
    penalties=TERMS,
)


def _desk(policy: Policy, now: float) -> tuple[TicketDesk, int]:
    desk = TicketDesk({policy.name: policy}, CALS)
    book = AlarmBook()
    ch = book.apply(Classification("r", "raise", "k", FaultLevel(1), "t"), Event(now, "t", "d", "x"), "d", now)
    assert ch is not None
    return desk, desk.open_for(ch.alarm, Device("d", policy=policy.name), policy, now).id


@pytest.mark.parametrize(
    "overrun, days",
    [(0, 0), (0.0005, 0), (1, 1), (D - 1, 1), (D, 1), (D + 1, 2), (2 * D, 2), (2 * D + 0.5, 3)],
    ids=["none", "rounding", "1s", "almost-1d", "exactly-1d", "1d+1s", "exactly-2d", "2d+0.5s"],
)
def test_started_days(overrun: float, days: int) -> None:
    assert started_days(overrun) == days


def test_restore_overrun_excludes_paused_time() -> None:
    clock = ManualClock()
    desk, tid = _desk(SOFT, clock.now())
    clock.advance(0.5 * H)
    desk.act(tid, "ack", clock.now(), "alice")
    desk.act(tid, "pause", clock.now(), "alice", "waiting for parts")
    clock.advance(3 * D)
    desk.act(tid, "resume", clock.now(), "alice")
    clock.advance(4 * H)  # 4.5 h running: 30 min late → 1 started day, not 4
    t = desk.act(tid, "restore", clock.now(), "alice")
    p = ticket_penalty(t, TERMS, CALS, clock.now())
    assert (p.response_missed, p.restore_overrun, p.restore_days, p.pct, p.amount, p.final) == (
        False, pytest.approx(0.5 * H), 1, 1.0, 2000.0, True
    )


def test_unnoticed_overrun_counts_and_is_not_final() -> None:
    clock = ManualClock()
    desk, tid = _desk(SOFT, clock.now())
    clock.advance(4 * H + D + 1)  # nobody ticked; response and restore are late
    t = desk.open[tid]
    p = ticket_penalty(t, TERMS, CALS, clock.now())
    assert (p.response_missed, p.restore_days, p.pct, p.final) == (True, 2, 3.0, False)
    assert t.clock("response") is not None and t.clock("response").state == "running"  # read, not changed


def test_a_day_is_a_working_day_on_the_workdays_calendar() -> None:
    # Restore target "1 working day" from Friday 2026-02-13 10:00: due Saturday 02-14 10:00
    # (a 调休 working day). Restored Tuesday 02-24 09:00 after the festival: 23 h of working
    # time late (Sat 10:00-24:00 + Tue 00:00-09:00) → 1 started (working) day.
    from datetime import datetime
    from zoneinfo import ZoneInfo

    cst = ZoneInfo("Asia/Shanghai")
    opened = datetime(2026, 2, 13, 10, 0, tzinfo=cst).timestamp()
    desk, tid = _desk(WORKDAYS, opened)
    desk.act(tid, "ack", opened + 600, "alice")
    t = desk.act(tid, "restore", datetime(2026, 2, 24, 9, 0, tzinfo=cst).timestamp(), "alice")
    p = ticket_penalty(t, TERMS, CALS, t.updated_at)
    assert p.restore_overrun == pytest.approx(23 * H) and p.restore_days == 1


def test_sum_applies_the_monthly_cap() -> None:
    clock = ManualClock()
    pens = []
    for _ in range(4):
        desk, tid = _desk(SOFT, clock.now())
        clock.advance(4 * H + 2 * D + 1)  # response missed + 3 started days = 4 % each
        pens.append(ticket_penalty(desk.act(tid, "restore", clock.now(), "x"), TERMS, CALS, clock.now()))
    capped = PenaltyTerms(contract_value=200_000, response_missed_pct=1, restore_per_started_day_pct=1, cap_pct=10)
    s = sum_penalties(pens, capped)
    assert (s.uncapped_pct, s.pct, s.amount, s.capped, s.final) == (16.0, 10.0, 20_000.0, True, True)
    s = sum_penalties(pens, TERMS)
    assert (s.pct, s.amount, s.capped) == (16.0, 32_000.0, False)
    assert s.to_dict()["tickets"][0]["restore_days"] == 3


def test_nothing_owed_is_an_empty_final_summary() -> None:
    s = sum_penalties([], TERMS)
    assert (s.pct, s.amount, s.tickets, s.final) == (0.0, 0.0, (), True)


PURE = ["gateway/core/penalties.py", "gateway/core/report.py"]
IO = {"asyncio", "socket", "sqlite3", "httpx", "threading", "subprocess", "urllib", "http"}


@pytest.mark.parametrize("path", PURE)
def test_penalties_and_report_stay_pure(path: str) -> None:
    text = (ROOT / path).read_text("utf-8")
    names: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & IO, f"{path} imports {names & IO}"
    assert "time.time(" not in text and "datetime.now(" not in text
    assert Path(ROOT / path).exists()


# Penalty thresholds are their own figures: the team answers within 1 h (the clock), the
# contract charges only after 4 h without a response; the restore overrun after 6 h.
LATE_TERMS = PenaltyTerms(
    contract_value=200_000, response_missed_pct=1, restore_per_started_day_pct=1,
    response_missed_after=4 * H, restore_late_after=6 * H,
)
THRESHOLDS = Policy(
    name="thresholds",
    levels={1: {"response": ClockTarget(H, "24x7"), "restore": ClockTarget(4 * H, "24x7")}},
    penalties=LATE_TERMS,
)


@pytest.mark.parametrize(
    "ack_after, missed",
    [(0.5 * H, False), (2.5 * H, False), (4 * H, False), (4 * H + 60, True)],
    ids=["in-time", "clock-breached-no-penalty", "exactly-4h", "4h-and-a-minute"],
)
def test_response_penalty_counts_from_its_own_threshold(ack_after: float, missed: bool) -> None:
    clock = ManualClock()
    desk, tid = _desk(THRESHOLDS, clock.now())
    clock.advance(ack_after)
    desk.act(tid, "ack", clock.now(), "user:alice")
    t = desk.open[tid]
    resp = t.clock("response")
    assert resp is not None and resp.breached == (ack_after > H)  # the clock keeps its own target
    p = ticket_penalty(t, LATE_TERMS, CALS, clock.now())
    assert p.response_missed is missed and p.pct == (1.0 if missed else 0.0)


def test_response_penalty_threshold_while_no_one_answers() -> None:
    clock = ManualClock()
    desk, tid = _desk(THRESHOLDS, clock.now())
    clock.advance(3 * H)
    assert not ticket_penalty(desk.open[tid], LATE_TERMS, CALS, clock.now()).response_missed
    clock.advance(1 * H + 1)
    assert ticket_penalty(desk.open[tid], LATE_TERMS, CALS, clock.now()).response_missed


def test_restore_overrun_counts_from_its_own_threshold() -> None:
    clock = ManualClock()
    desk, tid = _desk(THRESHOLDS, clock.now())
    clock.advance(0.5 * H)
    desk.act(tid, "ack", clock.now(), "user:alice")
    clock.advance(5.5 * H + 1)  # restored at 6 h 1 s: the clock is 2 h late, the penalty 1 s
    desk.act(tid, "restore", clock.now(), "user:alice")
    p = ticket_penalty(desk.open[tid], LATE_TERMS, CALS, clock.now())
    assert p.restore_overrun == pytest.approx(1.0) and p.restore_days == 1
