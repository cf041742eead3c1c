"""Unit tests for gateway.core.calendars: 24x7, business hours, Chinese working days and holiday data.

Expected instants are hand-computed from the published 2026 schedule (国务院办公厅关于2026年
部分节假日安排的通知) and written as wall times at a fixed UTC+8 offset (or in UTC for the
DST cases), so the expectations do not go through the zoneinfo code under test.

2026 facts used below (days off / make-up working days):
  New Year      Jan 1-3 off (Thu-Sat), Sun Jan 4 works
  Spring Fest.  Feb 15-23 off (Sun-Mon), Sat Feb 14 and Sat Feb 28 work
  Qingming      Apr 4-6 off (Sat-Mon)
  Labour Day    May 1-5 off (Fri-Tue), Sat May 9 works
  Mid-autumn    Sep 25-27 off (Fri-Sun)
  National Day  Oct 1-7 off (Thu-Wed), Sun Sep 20 and Sat Oct 10 work
"""

from __future__ import annotations

import logging
import re
import sys
import tomllib
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.core.calendars
from gateway.core.calendars import (
    BusinessHours,
    Calendar,
    CalendarError,
    CalendarSpec,
    ChinaWorkdays,
    HolidayDataError,
    TwentyFourSeven,
    WeekdayRule,
    build_calendar,
    default_calendars,
)

CST = timezone(timedelta(hours=8))
SHIPPED = Path(gateway.core.calendars.__file__).parents[1] / "data" / "holidays" / "cn"
H = 3600.0
LUNCH = (("09:00", "12:00"), ("13:30", "18:00"))


def sh(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    """Epoch seconds of a China Standard Time wall time."""
    return datetime(y, mo, d, h, mi, s, tzinfo=CST).timestamp()


def at(text: str) -> float:
    """Epoch seconds of ``"Fri 2026-02-13 17:30[:ss]"`` in UTC+8; the weekday is checked."""
    weekday, rest = text.split(" ", 1)
    fmt = "%Y-%m-%d %H:%M:%S" if rest.count(":") == 2 else "%Y-%m-%d %H:%M"
    wall = datetime.strptime(rest, fmt)
    assert wall.strftime("%a") == weekday, f"{text}: that date is a {wall.strftime('%a')}"
    return wall.replace(tzinfo=CST).timestamp()


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp()


def show(t: float) -> str:
    return datetime.fromtimestamp(t, CST).strftime("%a %Y-%m-%d %H:%M:%S")


def table(text: str) -> list:
    """Rows of a whitespace-aligned table (columns split on two or more spaces); last column is the id."""
    rows = []
    for line in text.strip().splitlines():
        if line.startswith("#"):
            continue
        *cells, case_id = re.split(r"\s{2,}", line.strip())
        rows.append(pytest.param(*cells, id=case_id))
    return rows


class EveryDay:
    """A workday rule where every date works (to isolate DST handling from weekends)."""

    def is_workday(self, d: date) -> tuple[bool, bool]:
        return True, False


class CountingRule:
    """Wraps a rule and counts the questions asked, per date."""

    def __init__(self, inner: ChinaWorkdays) -> None:
        self.inner = inner
        self.calls: list[date] = []

    def is_workday(self, d: date) -> tuple[bool, bool]:
        self.calls.append(d)
        return self.inner.is_workday(d)


CHINA = ChinaWorkdays()
CALS = default_calendars()
LUNCH_CN = BusinessHours("business-cn-lunch", hours=LUNCH, workdays=CHINA)
NEW_YORK = BusinessHours("business-ny", tz="America/New_York", workdays=WeekdayRule())
NEW_YORK_ALL_DAYS = BusinessHours("ny-every-day", tz="America/New_York", workdays=EveryDay())
NEW_YORK_FULL_DAYS = BusinessHours(
    "ny-full-days", tz="America/New_York", hours=(("00:00", "24:00"),), workdays=EveryDay()
)
# short names used in the tables
TABLE_CALS = {
    "cn": CALS["business-cn"],  # 09:00-18:00 on Chinese working days
    "days": CALS["workdays-cn"],  # 00:00-24:00 on Chinese working days
    "wd": CALS["business-weekdays"],  # 09:00-18:00 Mon-Fri
    "lunch": LUNCH_CN,  # 09:00-12:00, 13:30-18:00 on Chinese working days
}


def test_helper_epoch_is_anchored() -> None:
    # 2026-01-01T00:00Z is 1_767_225_600; + 43 days + 09:30 UTC (= 17:30 UTC+8).
    assert sh(2026, 2, 13, 17, 30) == 1_767_225_600 + 43 * 86400 + 9.5 * 3600
    assert at("Fri 2026-02-13 17:30") == sh(2026, 2, 13, 17, 30)
    with pytest.raises(AssertionError):
        at("Sat 2026-02-13 17:30")


def test_default_calendars_are_the_four_presets() -> None:
    assert sorted(CALS) == ["24x7", "business-cn", "business-weekdays", "workdays-cn"]
    for name, cal in CALS.items():
        assert cal.name == name
        assert isinstance(cal, Calendar)
    assert isinstance(CALS["24x7"], TwentyFourSeven)


# --------------------------------------------------------------------------- 24x7

T0 = sh(2026, 2, 13, 17, 30)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        pytest.param(lambda c: c.add(T0, 4 * H), (T0 + 4 * H, False), id="add-4h"),
        pytest.param(lambda c: c.add(T0, 0), (T0, False), id="add-zero"),
        pytest.param(lambda c: c.elapsed(T0, T0 + 90), 90.0, id="elapsed"),
        pytest.param(lambda c: c.elapsed(T0 + 90, T0), 0.0, id="elapsed-reversed"),
        pytest.param(lambda c: c.add_days(T0, 2), (T0 + 2 * 86400, False), id="add-days-is-48h"),
    ],
)
def test_24x7(call, expected) -> None:
    assert call(CALS["24x7"]) == expected


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_negative_or_non_finite_targets_are_refused(bad: float) -> None:
    for cal in (CALS["24x7"], CALS["business-cn"]):
        with pytest.raises(CalendarError):
            cal.add(T0, bad)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_day_counts_are_refused(bad) -> None:
    for cal in (CALS["24x7"], CALS["business-cn"]):
        with pytest.raises(CalendarError):
            cal.add_days(T0, bad)


# --------------------------------------------------------------------------- add

ADD = """
# cal   start                    hours   due                      id
cn      Fri 2026-02-13 17:30     4       Sat 2026-02-14 12:30     spring-festival-friday-to-makeup-saturday
cn      Sat 2026-02-14 17:00     4       Tue 2026-02-24 12:00     makeup-saturday-over-9-days-off
cn      Fri 2026-02-13 17:30     48      Sat 2026-02-28 11:30     48h-uses-both-makeup-saturdays
cn      Tue 2026-03-10 16:00     4       Wed 2026-03-11 11:00     overnight
cn      Fri 2026-03-13 17:00     4       Mon 2026-03-16 12:00     over-weekend
cn      Sat 2026-03-14 10:00     1       Mon 2026-03-16 10:00     start-on-saturday
cn      Mon 2026-03-16 09:00     9       Mon 2026-03-16 18:00     at-opening-full-day-ends-at-closing
cn      Mon 2026-03-16 18:00     1       Tue 2026-03-17 10:00     at-closing
cn      Mon 2026-03-16 07:00     1       Mon 2026-03-16 10:00     before-opening
cn      Sat 2026-03-14 10:00     0       Sat 2026-03-14 10:00     zero-target-is-start
cn      Wed 2025-12-31 17:00     4       Sun 2026-01-04 12:00     new-year-to-makeup-sunday
cn      Fri 2026-04-03 17:00     4       Tue 2026-04-07 12:00     qingming-monday-off
cn      Thu 2026-04-30 17:30     4       Wed 2026-05-06 12:30     labour-day-5-days-off
cn      Fri 2026-05-08 17:00     4       Sat 2026-05-09 12:00     labour-day-makeup-saturday
cn      Fri 2026-09-18 17:00     4       Sun 2026-09-20 12:00     national-day-makeup-sunday
cn      Thu 2026-09-24 17:00     4       Mon 2026-09-28 12:00     mid-autumn-friday-off
cn      Wed 2026-09-30 17:00     4       Thu 2026-10-08 12:00     national-day-week
wd      Fri 2026-02-13 17:30     4       Mon 2026-02-16 12:30     weekdays-ignore-holidays
days    Fri 2026-02-13 17:30     24      Sat 2026-02-14 17:30     full-days-makeup-saturday
days    Fri 2026-02-13 17:30     48      Tue 2026-02-24 17:30     full-days-over-spring-festival
lunch   Tue 2026-03-10 12:15     1       Tue 2026-03-10 14:30     lunch-start-inside-break
lunch   Tue 2026-03-10 11:30     1       Tue 2026-03-10 14:00     lunch-crosses-break
lunch   Tue 2026-03-10 11:00     1       Tue 2026-03-10 12:00     lunch-ends-at-break
lunch   Tue 2026-03-10 09:00     7.5     Tue 2026-03-10 18:00     lunch-full-day
lunch   Tue 2026-03-10 17:00     2       Wed 2026-03-11 10:00     lunch-overnight
lunch   Fri 2026-02-13 17:30     4       Sat 2026-02-14 14:00     lunch-makeup-saturday
"""


@pytest.mark.parametrize(("cal", "start", "hours", "due"), table(ADD))
def test_add(cal: str, start: str, hours: str, due: str) -> None:
    got, provisional = TABLE_CALS[cal].add(at(start), float(hours) * H)
    assert show(got) == show(at(due))
    assert got == at(due)
    assert provisional is False


@pytest.mark.parametrize(
    ("cal", "start", "seconds", "due"),
    [
        pytest.param(
            "cn", "Mon 2026-03-16 17:59:59", 2, "Tue 2026-03-17 09:00:01", id="second-before-closing"
        ),
        pytest.param(
            "lunch", "Tue 2026-03-10 12:00", 1, "Tue 2026-03-10 13:30:01", id="lunch-start-at-break"
        ),
    ],
)
def test_add_seconds_at_window_edges(cal: str, start: str, seconds: int, due: str) -> None:
    assert TABLE_CALS[cal].add(at(start), seconds) == (at(due), False)


# --------------------------------------------------------------------------- elapsed

ELAPSED = """
# cal   start                    end                      hours   id
cn      Fri 2026-02-13 17:30     Tue 2026-02-24 12:00     12.5    spring-festival
cn      Sat 2026-02-21 10:00     Sun 2026-02-22 10:00     0       inside-holiday
cn      Mon 2026-03-16 08:00     Mon 2026-03-16 20:00     9       whole-day
cn      Mon 2026-03-16 12:00     Mon 2026-03-16 12:00     0       empty
cn      Tue 2026-03-17 12:00     Mon 2026-03-16 12:00     0       reversed
cn      Wed 2026-09-30 17:00     Sat 2026-10-10 10:00     20      national-day
lunch   Tue 2026-03-10 11:00     Tue 2026-03-10 14:00     1.5     lunch-break
days    Fri 2026-02-13 12:00     Tue 2026-02-24 12:00     48      full-days
"""


@pytest.mark.parametrize(("cal", "start", "end", "hours"), table(ELAPSED))
def test_elapsed(cal: str, start: str, end: str, hours: str) -> None:
    assert TABLE_CALS[cal].elapsed(at(start), at(end)) == float(hours) * H


# --------------------------------------------------------------------------- add_days

ADD_DAYS = """
# cal   start                    days  due                      id
cn      Fri 2026-02-13 17:30     2     Tue 2026-02-24 17:30     inside-hours-over-spring-festival
cn      Fri 2026-02-13 18:30     2     Wed 2026-02-25 09:00     after-hours-anchors-next-opening
cn      Fri 2026-02-13 18:00     2     Wed 2026-02-25 09:00     at-closing-is-after-hours
cn      Mon 2026-03-16 09:00     1     Tue 2026-03-17 09:00     at-opening
cn      Tue 2026-03-10 07:00     2     Thu 2026-03-12 09:00     before-opening
cn      Sun 2026-02-15 10:00     1     Wed 2026-02-25 09:00     start-on-holiday
cn      Wed 2026-09-30 10:00     2     Fri 2026-10-09 10:00     national-day
cn      Wed 2026-09-30 10:00     3     Sat 2026-10-10 10:00     lands-on-makeup-saturday
cn      Mon 2026-03-16 10:00     0     Mon 2026-03-16 10:00     zero-inside-hours
cn      Sat 2026-03-14 10:00     0     Mon 2026-03-16 09:00     zero-on-weekend
lunch   Tue 2026-03-10 12:15     1     Wed 2026-03-11 13:30     lunch-anchors-afternoon
days    Fri 2026-02-13 17:30     2     Tue 2026-02-24 17:30     full-days-inside
days    Sun 2026-02-15 10:00     1     Wed 2026-02-25 00:00     full-days-from-holiday
wd      Fri 2026-02-13 17:30     2     Tue 2026-02-17 17:30     weekdays
"""


@pytest.mark.parametrize(("cal", "start", "days", "due"), table(ADD_DAYS))
def test_add_days(cal: str, start: str, days: str, due: str) -> None:
    got, provisional = TABLE_CALS[cal].add_days(at(start), int(days))
    assert show(got) == show(at(due))
    assert got == at(due)
    assert provisional is False


# --------------------------------------------------------------------------- DST


@pytest.mark.parametrize(
    ("cal", "call", "expected"),
    [
        # Fri 17:00 EST = 22:00Z; Mon 09:00 EDT = 13:00Z (+1 h) = 14:00Z
        pytest.param(
            NEW_YORK,
            lambda c: c.add(utc(2026, 3, 6, 22), 2 * H)[0],
            utc(2026, 3, 9, 14),
            id="add-over-spring-forward",
        ),
        pytest.param(
            NEW_YORK,
            lambda c: c.elapsed(utc(2026, 3, 6, 22), utc(2026, 3, 9, 14)),
            2 * H,
            id="elapsed-over-spring-forward",
        ),
        # Fri 10:00 EST = 15:00Z -> Mon 10:00 EDT = 14:00Z
        pytest.param(
            NEW_YORK,
            lambda c: c.add_days(utc(2026, 3, 6, 15), 1)[0],
            utc(2026, 3, 9, 14),
            id="add-days-keeps-wall-time",
        ),
        # Sat 18:00 EST = 23:00Z -> Sun 09:00 EDT = 13:00Z (+1 h)
        pytest.param(
            NEW_YORK_ALL_DAYS,
            lambda c: c.add(utc(2026, 3, 7, 23), H)[0],
            utc(2026, 3, 8, 14),
            id="on-spring-forward-day",
        ),
        # Sat 18:00 EDT = 22:00Z -> Sun 09:00 EST = 14:00Z (+1 h)
        pytest.param(
            NEW_YORK_ALL_DAYS,
            lambda c: c.add(utc(2026, 10, 31, 22), H)[0],
            utc(2026, 11, 1, 15),
            id="on-fall-back-day",
        ),
        pytest.param(
            NEW_YORK_FULL_DAYS,
            lambda c: c.windows(date(2026, 3, 8)),
            ((utc(2026, 3, 8, 5), utc(2026, 3, 9, 4)),),
            id="23h-day",
        ),
        pytest.param(
            NEW_YORK_FULL_DAYS,
            lambda c: c.elapsed(utc(2026, 11, 1, 4), utc(2026, 11, 2, 5)),
            25 * H,
            id="25h-day",
        ),
    ],
)
def test_dst(cal: BusinessHours, call, expected) -> None:
    assert call(cal) == expected


# --------------------------------------------------------------------------- years without data


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "gateway.calendars" and r.levelno == logging.WARNING
    ]


def test_uncovered_year_falls_back_and_warns_once_per_year(caplog: pytest.LogCaptureFixture) -> None:
    cals = default_calendars()  # a fresh ChinaWorkdays: nothing warned yet
    cn = cals["business-cn"]
    start = sh(2026, 12, 31, 17, 30)  # Thu; 1 Jan 2027 is a Friday
    with caplog.at_level(logging.WARNING, logger="gateway.calendars"):
        # Mon-Fri minus 1 Jan: 0.5 h on Dec 31, then Mon Jan 4 09:00 + 3.5 h
        assert cn.add(start, 4 * H) == (sh(2027, 1, 4, 12, 30), True)
        assert cn.add_days(start, 1) == (sh(2027, 1, 4, 17, 30), True)
        assert cn.elapsed(start, sh(2027, 1, 4, 12, 30)) == 4 * H
        assert cals["workdays-cn"].add_days(start, 2) == (sh(2027, 1, 5, 17, 30), True)
        # 1-3 October are fixed-date holidays: Thu 30 Sep 17:00 -> Mon 4 Oct
        assert cn.add(sh(2027, 9, 30, 17, 0), 4 * H) == (sh(2027, 10, 4, 12, 0), True)
        # a span that stays inside covered days is not provisional
        assert cn.add(sh(2026, 12, 31, 9, 0), 1 * H) == (sh(2026, 12, 31, 10, 0), False)
        assert len(_warnings(caplog)) == 1
        assert "2027" in _warnings(caplog)[0]
        cn.add(sh(2028, 3, 1, 9, 0), 1 * H)
    assert len(_warnings(caplog)) == 2
    assert "2028" in _warnings(caplog)[1]


def _write(directory: Path, year: int, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{year}.toml"
    path.write_text(body, encoding="utf-8")
    return path


OPERATOR_2027 = """
year = 2027
source = "test fixture: invented dates"
holidays = ["2027-01-01", "2027-01-04"]
workdays = ["2027-01-02"]
"""


def test_operator_file_covers_2027(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write(tmp_path, 2027, OPERATOR_2027)
    cals = default_calendars(extra_dirs=[tmp_path])
    cn = cals["business-cn"]
    start = sh(2026, 12, 31, 17, 30)
    with caplog.at_level(logging.WARNING, logger="gateway.calendars"):
        # 0.5 h on Dec 31; Fri Jan 1 off; Sat Jan 2 is a make-up day: 09:00 + 3.5 h
        assert cn.add(start, 4 * H) == (sh(2027, 1, 2, 12, 30), False)
        assert cn.add_days(start, 1) == (sh(2027, 1, 2, 17, 30), False)
        # Sun Jan 3 off, Mon Jan 4 is a holiday in the file: Tue Jan 5
        assert cn.add_days(start, 2) == (sh(2027, 1, 5, 17, 30), False)
    assert _warnings(caplog) == []
    assert "2027.toml" in china_coverage(cals)[2027]


def china_coverage(cals: dict[str, Calendar]) -> dict[int, str]:
    cal = cals["business-cn"]
    assert isinstance(cal, BusinessHours)
    rule = cal.workdays
    assert isinstance(rule, ChinaWorkdays)
    return rule.coverage()


def test_operator_file_replaces_a_shipped_year(tmp_path: Path) -> None:
    # A full replacement for 2026 with only Fri 13 Feb off: the shipped make-up Saturday
    # (14 Feb) and the Spring Festival days (16-23 Feb) no longer apply.
    _write(tmp_path, 2026, 'year = 2026\nholidays = ["2026-02-13"]\n')
    cn = default_calendars(extra_dirs=[tmp_path])["business-cn"]
    assert cn.add(sh(2026, 2, 12, 17, 30), 4 * H) == (sh(2026, 2, 16, 12, 30), False)


def test_later_operator_directory_wins(tmp_path: Path) -> None:
    _write(tmp_path / "a", 2027, 'year = 2027\nworkdays = ["2027-01-02"]\n')
    _write(tmp_path / "b", 2027, "year = 2027\nholidays = [2027-01-01]\nworkdays = [2027-01-03]\n")
    cn = default_calendars(extra_dirs=[tmp_path / "a", tmp_path / "b"])["business-cn"]
    assert cn.add(sh(2026, 12, 31, 17, 30), 4 * H) == (sh(2027, 1, 3, 12, 30), False)


@pytest.mark.parametrize(
    ("name", "body", "problem"),
    [
        pytest.param("2027.toml", "year = 2026\n", "does not match the file name", id="year-mismatch"),
        pytest.param("2027.toml", "holidays = []\n", "year: required integer", id="no-year"),
        pytest.param(
            "2027.toml", 'year = 2027\nholiday = ["2027-01-01"]\n', "holiday: unknown key", id="typo-key"
        ),
        pytest.param(
            "2027.toml",
            'year = 2027\nholidays = ["2026-12-31"]\n',
            "holidays[0]: 2026-12-31 is outside year 2027",
            id="other-year",
        ),
        pytest.param(
            "2027.toml",
            'year = 2027\nholidays = ["2027-13-01"]\n',
            "holidays[0]: '2027-13-01' is not a YYYY-MM-DD date",
            id="bad-date",
        ),
        pytest.param(
            "2027.toml", 'year = 2027\nholidays = "2027-01-01"\n', "holidays: must be a list", id="not-a-list"
        ),
        pytest.param(
            "2027.toml",
            'year = 2027\nholidays = ["2027-01-02"]\nworkdays = ["2027-01-02"]\n',
            "also listed in holidays",
            id="both-lists",
        ),
        pytest.param("2027.toml", "year = \n", "not valid TOML", id="bad-toml"),
        pytest.param("cn-2027.toml", "year = 2027\n", "must be named <year>.toml", id="bad-name"),
    ],
)
def test_bad_data_files_are_refused_with_file_and_key(
    tmp_path: Path, name: str, body: str, problem: str
) -> None:
    (tmp_path / name).write_text(body, encoding="utf-8")
    with pytest.raises(HolidayDataError) as info:
        ChinaWorkdays([tmp_path])
    assert name in str(info.value)
    assert problem in str(info.value)


def test_missing_operator_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HolidayDataError, match="does not exist"):
        ChinaWorkdays([tmp_path / "nope"])


def test_other_files_in_a_data_directory_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("notes\n", encoding="utf-8")
    assert 2027 not in ChinaWorkdays([tmp_path]).coverage()


# --------------------------------------------------------------------------- shipped data


def test_shipped_files_work_without_chinesecalendar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "chinese_calendar", None)  # makes the import fail
    rule = ChinaWorkdays()
    assert sorted(rule.coverage()) == [2025, 2026]
    assert rule.is_workday(date(2026, 2, 14)) == (True, False)  # make-up Saturday
    assert rule.is_workday(date(2026, 2, 16)) == (False, False)  # Spring Festival Monday
    assert rule.is_workday(date(2025, 10, 11)) == (True, False)  # make-up Saturday
    # 2024 came only from the package: now a Mon-Fri fallback that misses its make-up Sunday
    assert rule.is_workday(date(2024, 9, 29)) == (False, True)


def test_package_covers_earlier_years() -> None:
    pytest.importorskip("chinese_calendar")
    assert CHINA.is_workday(date(2024, 9, 29)) == (True, False)  # 2024 National Day make-up Sunday
    assert CHINA.is_workday(date(2024, 10, 7)) == (False, False)


def test_use_package_false_ignores_the_package() -> None:
    assert sorted(ChinaWorkdays(use_package=False).coverage()) == [2025, 2026]


@pytest.mark.parametrize("year", [2025, 2026])
def test_shipped_files_agree_with_chinesecalendar(year: int) -> None:
    cc = pytest.importorskip("chinese_calendar")
    files_only = ChinaWorkdays(use_package=False)
    assert "gateway/data/holidays/cn" in files_only.coverage()[year]
    d = date(year, 1, 1)
    mismatches = []
    while d.year == year:
        if files_only.is_workday(d) != (cc.is_workday(d), False):
            mismatches.append(d)
        d += timedelta(days=1)
    assert mismatches == []
    shipped = tomllib.loads((SHIPPED / f"{year}.toml").read_text(encoding="utf-8"))
    assert {date.fromisoformat(x) for x in shipped["holidays"]} == {x for x in cc.holidays if x.year == year}
    assert {date.fromisoformat(x) for x in shipped["workdays"]} == {x for x in cc.workdays if x.year == year}


# --------------------------------------------------------------------------- building


@pytest.mark.parametrize(
    ("spec", "kind", "hours", "rule"),
    [
        pytest.param("24x7", TwentyFourSeven, None, None, id="preset-name"),
        pytest.param({"name": "24x7"}, TwentyFourSeven, None, None, id="preset-mapping"),
        pytest.param({"name": "oncall", "kind": "24x7"}, TwentyFourSeven, None, None, id="custom-24x7"),
        pytest.param(
            {"name": "business-cn"}, BusinessHours, (("09:00", "18:00"),), ChinaWorkdays, id="business-cn"
        ),
        pytest.param(
            {"name": "workdays-cn"}, BusinessHours, (("00:00", "24:00"),), ChinaWorkdays, id="workdays-cn"
        ),
        pytest.param(
            {"name": "business-weekdays"}, BusinessHours, (("09:00", "18:00"),), WeekdayRule, id="weekdays"
        ),
        pytest.param(
            {"name": "office", "hours": [["09:00", "12:00"], ["13:30", "18:00"]]},
            BusinessHours,
            LUNCH,
            ChinaWorkdays,
            id="custom-lunch",
        ),
        pytest.param(
            CalendarSpec("business-cn", workdays="weekdays"),
            BusinessHours,
            (("09:00", "18:00"),),
            WeekdayRule,
            id="preset-override",
        ),
    ],
)
def test_build_calendar(spec, kind, hours, rule) -> None:
    cal = build_calendar(spec)
    assert isinstance(cal, kind)
    if isinstance(cal, BusinessHours):
        assert cal.hours == hours
        assert isinstance(cal.workdays, rule)
        assert str(cal.tz) == "Asia/Shanghai"


def test_build_calendar_uses_data_dirs(tmp_path: Path) -> None:
    _write(tmp_path, 2027, OPERATOR_2027)
    cal = build_calendar({"name": "business-cn"}, [tmp_path])
    assert cal.add(sh(2026, 12, 31, 17, 30), 4 * H) == (sh(2027, 1, 2, 12, 30), False)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        pytest.param({"name": ""}, "name", id="no-name"),
        pytest.param({"name": "x", "kind": "8x5"}, "kind", id="bad-kind"),
        pytest.param({"name": "x", "workdays": "us"}, "workdays", id="bad-workdays"),
        pytest.param({"name": "x", "tz": "Mars/Olympus"}, "tz", id="bad-tz"),
        pytest.param({"name": "x", "hours": [["18:00", "09:00"]]}, "hours[0]", id="crosses-midnight"),
        pytest.param(
            {"name": "x", "hours": [["09:00", "13:00"], ["12:00", "18:00"]]}, "hours[1]", id="overlap"
        ),
        pytest.param({"name": "x", "hours": [["9:00", "18:00"]]}, "hours[0]", id="bad-time"),
        pytest.param({"name": "x", "hours": [["24:00", "24:00"]]}, "hours[0]", id="start-24"),
        pytest.param({"name": "x", "hours": "09:00-18:00"}, "hours", id="hours-string"),
        pytest.param({"name": "x", "timezone": "UTC"}, "timezone", id="unknown-key"),
        pytest.param({"name": "x", "hours": []}, "hours", id="no-hours"),
        pytest.param({"name": "x", "hours": [["09:00", "12:00", "18:00"]]}, "hours", id="triple"),
    ],
)
def test_build_calendar_rejects_bad_specs(spec, problem: str) -> None:
    with pytest.raises(CalendarError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        build_calendar(spec)


def test_a_calendar_without_working_time_fails_instead_of_looping() -> None:
    class Never:
        def is_workday(self, d: date) -> tuple[bool, bool]:
            return False, False

    cal = BusinessHours("never", workdays=Never())
    with pytest.raises(CalendarError, match="no working"):
        cal.add(T0, 1)
    with pytest.raises(CalendarError, match="no working"):
        cal.add_days(T0, 1)
    assert cal.elapsed(T0, T0 + 86400) == 0.0


# --------------------------------------------------------------------------- cost


def test_add_steps_per_day_and_asks_each_date_once() -> None:
    rule = CountingRule(CHINA)
    cal = BusinessHours("counted", workdays=rule)
    start = sh(2026, 2, 13, 17, 30)
    assert cal.add(start, 48 * H) == (sh(2026, 2, 28, 11, 30), False)
    assert rule.calls == [date(2026, 2, 13) + timedelta(days=i) for i in range(16)]
    cal.add(start, 48 * H)
    cal.elapsed(start, sh(2026, 2, 28, 11, 30))
    assert len(rule.calls) == 16  # cached per date


# --------------------------------------------------------------------------- properties

BUSINESS = [CALS["business-cn"], CALS["workdays-cn"], CALS["business-weekdays"], LUNCH_CN, NEW_YORK]
calendars = st.sampled_from(BUSINESS)
# 2025-01-01 .. 2026-11-30 (UTC+8): spans stay inside published data
starts = st.integers(min_value=int(sh(2025, 1, 1)), max_value=int(sh(2026, 11, 30)))
targets = st.integers(min_value=0, max_value=int(100 * H))
FAST = settings(max_examples=100, deadline=None)


@FAST
@given(calendars, starts, targets)
def test_elapsed_inverts_add(cal: BusinessHours, start: int, seconds: int) -> None:
    due, _ = cal.add(start, seconds)
    assert cal.elapsed(start, due) == seconds
    assert due - start >= seconds


@FAST
@given(calendars, starts, st.integers(min_value=1, max_value=int(100 * H)))
def test_add_returns_the_earliest_instant(cal: BusinessHours, start: int, seconds: int) -> None:
    due, _ = cal.add(start, seconds)
    assert cal.elapsed(start, due - 1) == seconds - 1


@FAST
@given(
    calendars,
    st.floats(min_value=sh(2025, 1, 1), max_value=sh(2026, 11, 30)),
    st.floats(min_value=0, max_value=100 * H),
)
def test_elapsed_inverts_add_for_fractional_times(cal: BusinessHours, start: float, seconds: float) -> None:
    due, _ = cal.add(start, seconds)
    assert cal.elapsed(start, due) == pytest.approx(seconds, abs=1e-5)


@FAST
@given(calendars, starts, targets, targets)
def test_due_is_monotonic_in_the_target(cal: BusinessHours, start: int, a: int, b: int) -> None:
    small, large = sorted((a, b))
    assert cal.add(start, small)[0] <= cal.add(start, large)[0]


@FAST
@given(
    calendars, starts, st.integers(min_value=-30 * 86400, max_value=30 * 86400), st.integers(0, 30 * 86400)
)
def test_elapsed_is_bounded_by_wall_time_and_additive(
    cal: BusinessHours, a: int, delta: int, more: int
) -> None:
    b = a + delta
    assert 0 <= cal.elapsed(a, b) <= max(0, b - a)
    if b >= a:
        assert cal.elapsed(a, b + more) == cal.elapsed(a, b) + cal.elapsed(b, b + more)


@FAST
@given(calendars, starts, st.integers(min_value=0, max_value=10))
def test_add_days_keeps_the_anchor_wall_time_on_a_working_day(
    cal: BusinessHours, start: int, days: int
) -> None:
    anchor, _ = cal.add_days(start, 0)
    due, _ = cal.add_days(start, days)
    later, _ = cal.add_days(start, days + 1)
    assert start <= anchor <= due < later
    a_local = datetime.fromtimestamp(anchor, cal.tz)
    d_local = datetime.fromtimestamp(due, cal.tz)
    assert d_local.time() == a_local.time()
    assert cal.workdays.is_workday(d_local.date())[0]
    assert any(ws <= anchor < we for ws, we in cal.windows(a_local.date()))
