"""Which scheduled service reports are due at an instant (pure, clock passed in): month,
quarter and year boundaries, the delay after the period, the gateway's time zone, and
``since`` for the periods before the schedule existed."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.core.report_schedule import due_periods, period_containing, previous_period

SH = "Asia/Shanghai"
DAY = 86400.0


def at(tz: str, *parts: int) -> float:
    return datetime(*parts, tzinfo=ZoneInfo(tz)).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(("period", "before"), [
    ("2026-03", "2026-02"), ("2026-01", "2025-12"), ("2026-Q2", "2026-Q1"), ("2026-Q1", "2025-Q4"), ("2026", "2025"),
])
def test_the_period_before(period: str, before: str) -> None:
    assert previous_period(period) == before


def test_a_month_is_due_when_it_has_ended_in_the_gateways_zone() -> None:
    assert due_periods(at(SH, 2026, 3, 31, 23, 59, 59), SH, "monthly") == ["2026-02"]
    assert due_periods(at(SH, 2026, 4, 1, 0, 0, 0), SH, "monthly") == ["2026-03"]
    # Year boundary: January 1st reports December of the year before.
    assert due_periods(at(SH, 2027, 1, 1, 0, 0, 1), SH, "monthly") == ["2026-12"]


def test_the_zone_decides_which_month_has_ended() -> None:
    # 2026-03-31 16:30 UTC is already April 1st in Shanghai, still March 31st in UTC.
    t = at("UTC", 2026, 3, 31, 16, 30)
    assert due_periods(t, SH, "monthly") == ["2026-03"]
    assert due_periods(t, "UTC", "monthly") == ["2026-02"]
    assert period_containing(t, SH, "quarterly") == "2026-Q2" and period_containing(t, "UTC", "quarterly") == "2026-Q1"


def test_a_quarter_waits_for_its_delay() -> None:
    # "2 days after the quarter ends": Q1 from April 3rd, 00:00 in Shanghai.
    assert due_periods(at(SH, 2026, 4, 2, 23, 59, 59), SH, "quarterly", 2 * DAY) == ["2025-Q4"]
    assert due_periods(at(SH, 2026, 4, 3, 0, 0, 0), SH, "quarterly", 2 * DAY) == ["2026-Q1"]
    assert due_periods(at(SH, 2026, 1, 3, 0, 0, 0), SH, "quarterly", 2 * DAY) == ["2025-Q4"]
    assert due_periods(at(SH, 2026, 12, 31, 12, 0), SH, "quarterly", 2 * DAY) == ["2026-Q3"]


def test_a_year_is_due_on_new_years_day_after_its_delay() -> None:
    assert due_periods(at(SH, 2026, 12, 31, 23, 59), SH, "yearly") == ["2025"]
    assert due_periods(at(SH, 2027, 1, 1, 0, 0), SH, "yearly") == ["2026"]
    assert due_periods(at(SH, 2027, 1, 5, 0, 0), SH, "yearly", 7 * DAY) == ["2025"]


def test_since_adds_the_periods_that_ended_before_the_schedule_oldest_first() -> None:
    now = at(SH, 2026, 4, 5)
    assert due_periods(now, SH, "monthly", since=at(SH, 2026, 1, 1)) == ["2026-01", "2026-02", "2026-03"]
    assert due_periods(now, SH, "monthly", since=at(SH, 2026, 1, 2)) == ["2026-02", "2026-03"]  # Jan started before
    assert due_periods(now, SH, "quarterly", since=at(SH, 2025, 7, 1)) == ["2025-Q3", "2025-Q4", "2026-Q1"]
    assert due_periods(now, SH, "monthly", since=at(SH, 2027, 1, 1)) == []  # nothing ended since then
    assert due_periods(now, SH, "monthly", since=at(SH, 2000, 1, 1), limit=3) == ["2026-01", "2026-02", "2026-03"]


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="every 'weekly'"):
        due_periods(0.0, SH, "weekly")
