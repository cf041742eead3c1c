"""Properties of SLA clocks on every shipped calendar: due times are monotonic in the target,
pausing never moves a due time earlier, business time never exceeds wall time."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.calendars import default_calendars
from gateway.core.sla import ClockTarget, SlaClock

CALS = default_calendars()
NAMES = sorted(CALS)
CST = ZoneInfo("Asia/Shanghai")
# 2025-01-01 … 2026-12-01: the years the shipped holiday data covers.
LO = datetime(2025, 1, 1, tzinfo=CST).timestamp()
HI = datetime(2026, 12, 1, tzinfo=CST).timestamp()

instants = st.floats(min_value=LO, max_value=HI, allow_nan=False, allow_infinity=False)
targets = st.floats(min_value=0, max_value=10 * 86400, allow_nan=False, allow_infinity=False)
gaps = st.floats(min_value=0, max_value=5 * 86400, allow_nan=False, allow_infinity=False)
calendar_names = st.sampled_from(NAMES)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(calendar_names, instants, targets, targets)
def test_due_time_is_monotonic_in_the_target(name: str, start: float, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    cal = CALS[name]
    c1 = SlaClock.start("response", ClockTarget(lo, name), start, cal)
    c2 = SlaClock.start("response", ClockTarget(hi, name), start, cal)
    assert c1.due_at <= c2.due_at
    assert c1.due_at >= start


@SETTINGS
@given(calendar_names, instants, targets, st.lists(st.tuples(gaps, gaps), min_size=1, max_size=4))
def test_pausing_never_moves_a_due_time_earlier(
    name: str, start: float, target: float, spans: list[tuple[float, float]]
) -> None:
    cal = CALS[name]
    c = SlaClock.start("restore", ClockTarget(target, name), start, cal)
    now = start
    due = c.due_at
    for run, pause in spans:
        now += run
        c.pause(now, cal)
        now += pause
        c.resume(now, cal)
        assert c.due_at >= due - 1e-3
        due = c.due_at


@SETTINGS
@given(calendar_names, instants, targets, st.lists(st.tuples(gaps, gaps), min_size=0, max_size=4), gaps)
def test_business_time_never_exceeds_wall_time(
    name: str, start: float, target: float, spans: list[tuple[float, float]], tail: float
) -> None:
    cal = CALS[name]
    c = SlaClock.start("restore", ClockTarget(target, name), start, cal)
    now = start
    paused = 0.0
    for run, pause in spans:
        now += run
        c.pause(now, cal)
        now += pause
        paused += cal.elapsed(now - pause, now)
        c.resume(now, cal)
    now += tail
    used = c.used(now, cal)
    assert 0.0 <= used <= (now - start) + 1e-3
    # ... and it is exactly the calendar's time minus the paused calendar time.
    assert used == pytest.approx(cal.elapsed(start, now) - paused, abs=1e-3)
    c.stop(now, cal)
    assert c.business_elapsed is not None and c.business_elapsed <= (now - start) + 1e-3
    assert c.state == ("breached" if used > target + 1e-3 else "met")


@SETTINGS
@given(calendar_names, instants, st.floats(min_value=60, max_value=5 * 86400), st.floats(min_value=0, max_value=1))
def test_stopping_before_the_due_time_meets_the_clock(name: str, start: float, target: float, frac: float) -> None:
    cal = CALS[name]
    c = SlaClock.start("response", ClockTarget(target, name), start, cal)
    stop_at = start + frac * (c.due_at - start)
    c.stop(stop_at, cal)
    assert c.state == "met"


@SETTINGS
@given(calendar_names, instants, st.floats(min_value=60, max_value=5 * 86400))
def test_breach_fires_once_at_the_due_time(name: str, start: float, target: float) -> None:
    cal = CALS[name]
    c = SlaClock.start("response", ClockTarget(target, name), start, cal)
    nxt = c.next_check(cal, ())
    assert nxt == c.due_at
    assert c.notices(c.due_at - 1.0, cal, ()) == [] or cal.elapsed(start, c.due_at - 1.0) >= target - 1e-3
    fired = c.notices(c.due_at, cal, ())
    assert [n.fraction for n in fired] == [1.0] and fired[0].at == c.due_at
    assert c.notices(c.due_at + 86400, cal, ()) == []
