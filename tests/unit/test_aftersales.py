"""Warranty periods, planned-work schedules and spare-part clocks with hand-computed dates:
month ends (31 January → 28/29 February → 31 March), leap years, Chinese working days with
调休 and holidays from the shipped calendars, and the provisional 2027 rule."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.core.aftersales import working_days
from gateway.core.calendars import default_calendars
from gateway.core.periods import PeriodError, Span, add_months, parse_term
from gateway.core.schedules import (
    Schedule,
    ScheduleError,
    item_state,
    occurrences,
    parse_rule,
    plan,
    reconcile,
)
from gateway.core.spares import ReplacementRule, SpareClock, clock_runs, notices_due, replacement_reasons
from gateway.core.warranty import DeviceDates, WarrantyError, WarrantyTerms, coverage, status_on

CST = ZoneInfo("Asia/Shanghai")
CALS = default_calendars()
DAY = 86400.0


def local(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CST).timestamp()


def shown(ts: float) -> str:
    return datetime.fromtimestamp(ts, CST).strftime("%Y-%m-%d %H:%M")


def dates(rule: str, anchor: date, limit: date, until: date | None = None) -> list[str]:
    return [d.isoformat() for _, d in occurrences(parse_rule(rule), anchor, until, limit)]


# -- month arithmetic ----------------------------------------------------------------------
def test_month_end_clamps_and_never_drifts() -> None:
    a = date(2027, 1, 31)
    assert [add_months(a, n).isoformat() for n in range(1, 5)] == ["2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31"]
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)  # leap year
    assert add_months(date(2028, 2, 29), 12) == date(2029, 2, 28)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)


def test_terms() -> None:
    assert parse_term("12 months from acceptance").end(date(2026, 1, 31)) == date(2027, 1, 31)
    assert parse_term("3 years").basis == "acceptance"
    assert parse_term("1 year from final acceptance").basis == "final_acceptance"
    assert parse_term("12 months from installation").span == Span(months=12)
    assert parse_term("12个月").span == Span(months=12)
    for bad in ("forever", "0 months", "12 months from delivery", "12 parsecs", "99999999999 days", "300 years"):
        with pytest.raises(PeriodError):
            parse_term(bad)


# -- warranty ------------------------------------------------------------------------------
def test_warranty_status_on_both_sides_of_the_end() -> None:
    terms = WarrantyTerms(warranty=parse_term("12 months from acceptance"))
    cov = coverage(DeviceDates(acceptance=date(2026, 1, 31)), terms)
    assert cov.warranty_end == date(2027, 1, 31)
    assert status_on(cov, date(2026, 1, 30)) == "not_started"
    assert status_on(cov, date(2027, 1, 30)) == "in_warranty"
    assert status_on(cov, date(2027, 1, 31)) == "out_of_warranty"
    # Software: the service period is the warranty; after it the service has ended.
    sw = WarrantyTerms(service_period=parse_term("1 year from final acceptance"))
    cov = coverage(DeviceDates(final_acceptance=date(2028, 2, 29)), sw)
    assert (cov.warranty_end, cov.service_end) == (date(2029, 2, 28), date(2029, 2, 28))
    assert status_on(cov, date(2029, 2, 27)) == "in_warranty"
    assert status_on(cov, date(2029, 2, 28)) == "service_ended"
    assert status_on(coverage(DeviceDates(), terms), date(2027, 1, 1)) == "unknown"


def test_a_warranty_ending_before_its_start_is_refused() -> None:
    terms = WarrantyTerms(warranty=parse_term("3 years"))
    with pytest.raises(WarrantyError, match="not after its start"):
        coverage(DeviceDates(acceptance=date(2026, 5, 1), warranty_until=date(2026, 4, 30)), terms)


# -- schedule rules ------------------------------------------------------------------------
def test_medical_inspections_monthly_then_every_two_then_every_three_months() -> None:
    rule = "months 1-12 monthly, 13-24 every 2 months, then every 3 months"
    got = dates(rule, date(2027, 1, 31), date(2029, 8, 1))
    assert got[:13] == [
        "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31", "2027-06-30", "2027-07-31", "2027-08-31",
        "2027-09-30", "2027-10-31", "2027-11-30", "2027-12-31", "2028-01-31",
        "2028-03-31",  # month 14; months 13-24 every 2 months
    ]
    assert got[13:] == ["2028-05-31", "2028-07-31", "2028-09-30", "2028-11-30", "2029-01-31", "2029-04-30", "2029-07-31"]


def test_nothing_is_planned_past_the_year_9999() -> None:
    assert dates("monthly", date(9999, 10, 31), date(9999, 12, 31)) == ["9999-11-30", "9999-12-31"]


def test_leap_february_gets_the_29th() -> None:
    assert dates("monthly", date(2028, 1, 31), date(2028, 4, 30)) == ["2028-02-29", "2028-03-31", "2028-04-30"]


def test_beidou_every_two_weeks_for_three_months_then_monthly() -> None:
    got = dates("every 2 weeks for 3 months, then monthly", date(2026, 1, 5), date(2026, 6, 30))
    assert got == ["2026-01-19", "2026-02-02", "2026-02-16", "2026-03-02", "2026-03-16", "2026-03-30",
                   "2026-05-05", "2026-06-05"]


def test_four_per_year_within_the_service_period() -> None:
    got = dates("4 per year within the service period", date(2026, 3, 31), date(2030, 1, 1), until=date(2027, 3, 31))
    assert got == ["2026-06-30", "2026-09-30", "2026-12-31", "2027-03-31"]
    # No service period known: nothing is generated.
    assert dates("4 per year within the service period", date(2026, 3, 31), date(2030, 1, 1)) == []


@pytest.mark.parametrize(("rule", "problem"), [
    ("every 2 months for 1 month", "never fires"),
    ("monthly, then quarterly", "never ends"),
    ("every 0 days", "never advances"),
    ("5 per year", "whole months"),
    ("months 5-2 monthly", "1 <= A <= B"),
    ("sometimes", "no frequency"),
    ("", "empty"),
    ("every 99999999999 days", "200 years"),
    ("months 1-99999 monthly", "9999"),
])
def test_rules_that_never_fire_are_refused(rule: str, problem: str) -> None:
    with pytest.raises(ScheduleError, match=problem):
        parse_rule(rule)


# -- planned work on the contract's calendar ----------------------------------------------
def _schedule(rule: str, calendar: str, early: int = 0, late: int = 0) -> Schedule:
    return Schedule("inspection", "beidou", "inspection", parse_rule(rule), calendar=calendar, early=early,
                    late=late, checklist=("power", "links"))


def test_due_dates_move_to_the_next_working_day_and_windows_count_working_days() -> None:
    s = _schedule("every 2 weeks for 3 months, then monthly", "workdays-cn", early=1, late=2)
    items = plan(s, "bd-1", date(2026, 1, 5), None, date(2026, 6, 30), CST, working_days(CALS["workdays-cn"]))
    by_nominal = {i["nominal"]: i for i in items}
    # 16 Feb 2026 is in the Spring Festival holiday (15-23 Feb): due on Tue 24 Feb.
    feb = by_nominal["2026-02-16"]
    assert feb["due_date"] == "2026-02-24"
    # one working day early: Mon 23 Feb is a holiday, Sat 14 Feb ... no: the working day
    # before 24 Feb is Sat 14 Feb (调休 make-up day).
    assert shown(feb["window_start"]) == "2026-02-14 00:00"
    # two working days late: 25, 26 Feb → overdue from 27 Feb 00:00.
    assert shown(feb["deadline"]) == "2026-02-27 00:00"
    # 5 May 2026 is Labour Day (1-5 May): due Wed 6 May.
    assert by_nominal["2026-05-05"]["due_date"] == "2026-05-06"
    assert feb["id"] == "beidou/inspection:bd-1:2026-02-16" and feb["seq"] == 3
    assert feb["checklist"] == ["power", "links"] and feb["provisional"] is False


def test_planned_dates_in_2027_are_provisional() -> None:
    s = _schedule("monthly", "workdays-cn", late=1)
    items = plan(s, "d", date(2026, 11, 30), None, date(2027, 1, 31), CST, working_days(CALS["workdays-cn"]))
    by = {i["nominal"]: i for i in items}
    assert by["2026-12-30"]["provisional"] is False
    # 30 Jan 2027 is a Saturday: Monday 1 Feb by the fallback rule (no 2027 holiday data yet).
    assert by["2027-01-30"]["due_date"] == "2027-02-01" and by["2027-01-30"]["provisional"] is True


def test_make_up_saturday_is_a_working_day() -> None:
    s = _schedule("monthly", "workdays-cn", late=1)
    items = plan(s, "d", date(2026, 1, 28), None, date(2026, 3, 1), CST, working_days(CALS["workdays-cn"]))
    assert items[0]["due_date"] == "2026-02-28"  # Saturday, a 调休 working day
    # ...but not for a Monday-Friday calendar.
    s2 = _schedule("monthly", "business-weekdays")
    items = plan(s2, "d", date(2026, 1, 28), None, date(2026, 3, 1), CST, working_days(CALS["business-weekdays"]))
    assert items[0]["due_date"] == "2026-03-02"


def test_item_state_moves_through_its_window() -> None:
    s = _schedule("monthly", "24x7", early=2, late=3)
    (item,) = plan(s, "d", date(2026, 3, 31), None, date(2026, 4, 30), CST, working_days(CALS["24x7"]))
    assert item["due_date"] == "2026-04-30"
    assert item_state(item, local("2026-04-27 23:59")) == "upcoming"
    assert item_state(item, local("2026-04-28 00:00")) == "due"
    assert item_state(item, local("2026-05-03 23:59")) == "due"
    assert item_state(item, local("2026-05-04 00:00")) == "overdue"
    assert item_state({**item, "status": "done"}, local("2026-06-01 00:00")) == "done"


def test_reconcile_is_idempotent_and_keeps_done_work() -> None:
    work = working_days(CALS["24x7"])
    limit = date(2026, 12, 31)
    s = _schedule("monthly", "24x7")
    first = plan(s, "d", date(2026, 1, 31), None, limit, CST, work)
    r = reconcile([], first, limit, 0.0)
    assert len(r.insert) == 11 and not r.update
    stored = [dict(i) for i in r.insert]
    stored[0]["status"] = "done"
    assert not reconcile(stored, first, limit, 0.0)  # again: nothing to do
    # The rule changes to every 2 months: the done item stays, the dates still wanted stay
    # (renumbered), the others are cancelled, nothing is duplicated.
    edited = plan(_schedule("every 2 months", "24x7"), "d", date(2026, 1, 31), None, limit, CST, work)
    r = reconcile(stored, edited, limit, 0.0)
    assert not r.insert
    by_id = {u["id"]: u for u in r.update}
    assert "beidou/inspection:d:2026-02-28" not in by_id  # done: untouched
    assert by_id["beidou/inspection:d:2026-03-31"]["seq"] == 1
    assert by_id["beidou/inspection:d:2026-04-30"]["status"] == "cancelled"
    assert {u["status"] for u in r.update} == {"planned", "cancelled"}
    after = {**{i["id"]: i for i in stored}, **by_id}
    assert not reconcile(after.values(), edited, limit, 0.0)
    # Monthly again: the cancelled dates come back, still one item per date.
    r = reconcile(after.values(), first, limit, 0.0)
    assert not r.insert and {u["id"] for u in r.update if u["status"] == "planned"} >= {
        "beidou/inspection:d:2026-04-30"}


# -- spare parts -----------------------------------------------------------------------------
MEDICAL = (
    SpareClock("provide", "spare_requested", ("spare_shipped", "repaired"), 24 * 3600.0),
    SpareClock("ship", "spare_requested", ("spare_shipped",), 2 * DAY, "workdays-cn"),
    SpareClock("return_broken", "replacement_received", ("part_returned",), 15 * DAY, "workdays-cn",
               party="customer", remind_before=3 * DAY),
)


def test_medical_spare_clocks_over_the_spring_festival() -> None:
    recs = [{"id": 1, "ts": local("2026-02-13 15:00"), "kind": "spare_requested"}]
    runs = {r["clock"]: r for r in clock_runs(recs, MEDICAL, CALS)}
    assert shown(runs["provide"]["due_at"]) == "2026-02-14 15:00"
    # Fri 15:00 → 9 h that day, Sat 14 Feb (调休) 24 h, holiday until 23 Feb, 15 h on Tue 24 Feb.
    assert shown(runs["ship"]["due_at"]) == "2026-02-24 15:00"
    recs.append({"id": 2, "ts": local("2026-02-24 09:00"), "kind": "spare_shipped"})
    runs = {r["clock"]: r for r in clock_runs(recs, MEDICAL, CALS)}
    assert runs["ship"]["met"] is True and runs["provide"]["met"] is False


def test_return_of_the_broken_part_fifteen_working_days_with_reminder() -> None:
    recs = [{"id": 1, "ts": local("2026-04-30 10:00"), "kind": "replacement_received"}]
    (run,) = clock_runs(recs, MEDICAL, CALS)
    # 14 h on Thu 30 Apr; 1-5 May off; 6, 7, 8, 9 (Sat, 调休), 11-15, 18-22 May: 14 days; 10 h on Mon 25 May.
    assert shown(run["due_at"]) == "2026-05-25 10:00"
    assert shown(run["remind_at"]) == "2026-05-20 10:00"
    assert run["party"] == "customer"
    assert notices_due([run], [], local("2026-05-20 09:59")) == []
    (n,) = notices_due([run], [], local("2026-05-20 10:00"))
    assert n["what"] == "reminder"
    given = [{"clock": n["clock"], "started_at": n["started_at"], "what": "reminder"}]
    assert notices_due([run], given, local("2026-05-21 10:00")) == []  # once only
    (o,) = notices_due([run], given, local("2026-05-25 10:00"))
    assert o["what"] == "overdue"


def test_a_deadline_in_2027_is_provisional() -> None:
    recs = [{"id": 1, "ts": local("2026-12-31 12:00"), "kind": "spare_requested"}]
    ship = next(r for r in clock_runs(recs, MEDICAL, CALS) if r["clock"] == "ship")
    # 12 h on Thu 31 Dec; 1 Jan 2027 off (fixed-date fallback), weekend; Mon 4 Jan 24 h; 12 h on Tue 5 Jan.
    assert shown(ship["due_at"]) == "2027-01-05 12:00"
    assert ship["provisional"] is True


def test_replacement_rule() -> None:
    rule = ReplacementRule(unrepaired_after=30 * DAY, same_part_failures=2)
    t0 = local("2026-03-01 08:00")
    tickets = [{"id": 7, "status": "open", "opened_at": t0}, {"id": 8, "status": "closed", "opened_at": t0}]
    assert replacement_reasons(rule, tickets, [], t0 + 30 * DAY - 1) == []
    (r,) = replacement_reasons(rule, tickets, [], t0 + 30 * DAY)
    assert r["key"] == "unrepaired:t7"
    recs = [{"ticket_id": 3, "kind": "part_failed", "data": {"part": "psu"}},
            {"ticket_id": 3, "kind": "part_replaced", "data": {"part": "psu"}},
            {"ticket_id": 5, "kind": "spare_requested", "data": {"part": "psu"}},
            {"ticket_id": 5, "kind": "spare_requested", "data": {"part": "fan"}}]
    (same,) = replacement_reasons(rule, [], recs, t0)
    assert same["key"] == "same_part:psu" and same["tickets"] == [3, 5]
