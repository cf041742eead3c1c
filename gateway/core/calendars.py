"""Business calendars for SLA clocks: 24x7, working hours, and Chinese working days (pure).

A :class:`Calendar` answers three questions about contractual time, all in epoch
seconds (UTC) and all with the time passed in:

* ``add(start, seconds)``: when has ``seconds`` of business time elapsed?
* ``elapsed(start, end)``: how much business time lies between two instants?
* ``add_days(start, days)``: what is "N working days" after ``start``?

Calendars:

* :class:`TwentyFourSeven` (``"24x7"``): every second counts.
* :class:`BusinessHours`: daily working windows (``09:00-18:00``, or with a lunch break
  ``09:00-12:00,13:30-18:00``) on the days a :class:`WorkdayRule` says are working,
  computed in local time of any IANA time zone (default ``Asia/Shanghai``).

Workday rules:

* :class:`WeekdayRule`: Monday to Friday.
* :class:`ChinaWorkdays`: the State Council schedule: statutory holidays *and* the
  weekend days made working days (调休). A plain "Mon-Fri minus holidays" rule is wrong
  in China, so both lists are needed.

Holiday data for :class:`ChinaWorkdays`, lowest precedence first; a source that covers
a year replaces the lower ones *for that whole year* (no merging, so a wrong date can be
corrected by shipping a full file for the year):

1. the optional ``chinesecalendar`` package (if importable), every year it covers;
2. the files shipped in ``gateway/data/holidays/cn/<year>.toml``;
3. each directory in ``extra_dirs``, in order (a later directory wins).

Data file format (one file per year, named ``<year>.toml``; see also
``gateway/data/holidays/README.md``)::

    year = 2026                                   # required; must equal the file name
    source = "State Council notice ..."           # optional; where the dates come from
    holidays = ["2026-02-15", "2026-02-16", ...]  # days off (weekend days inside a holiday
                                                  # period may be listed too)
    workdays = ["2026-02-14", "2026-02-28"]       # weekend days made working days (调休)

Dates are ISO strings (or bare TOML dates), local to China, and must fall inside
``year`` (a notice that spans New Year is split across the two years' files). Any
other key is an error. Within a covered year a day is working iff it is listed in
``workdays``, or it is Monday-Friday and not listed in ``holidays``.

A year that no source covers falls back to Monday-Friday minus the fixed-date holidays
(1 January, 1 May, 1-3 October); such days are *provisional*: every result that
consulted one says so, and one ``logging`` warning is emitted per uncovered year and
:class:`ChinaWorkdays` instance.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

__all__ = [
    "FALLBACK_FIXED_HOLIDAYS",
    "BusinessHours",
    "Calendar",
    "CalendarError",
    "CalendarSpec",
    "ChinaWorkdays",
    "HolidayDataError",
    "TwentyFourSeven",
    "WeekdayRule",
    "WorkdayRule",
    "build_calendar",
    "default_calendars",
]

log = logging.getLogger("gateway.calendars")

_ONE_DAY = timedelta(days=1)

#: (month, day) of the holidays that fall on the same date every year; used for
#: years without holiday data.
FALLBACK_FIXED_HOLIDAYS: frozenset[tuple[int, int]] = frozenset({(1, 1), (5, 1), (10, 1), (10, 2), (10, 3)})

# A calendar that finds no working time for this many consecutive days is broken
# (e.g. a rule that never says "working"); failing beats looping forever.
_MAX_IDLE_DAYS = 732

_HHMM = re.compile(r"^(\d{2}):(\d{2})$")
_YEAR_STEM = re.compile(r"^\d{4}$")


class CalendarError(ValueError):
    """A calendar was configured wrongly or asked an impossible question."""


class HolidayDataError(CalendarError):
    """A holiday data file is unreadable or malformed. ``str()`` reads ``file: key: problem``."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


# --------------------------------------------------------------------------- protocols


@runtime_checkable
class Calendar(Protocol):
    """Contractual time: which seconds count towards an SLA target.

    All instants are epoch seconds (UTC, ``float``); calendars never read the clock.
    Results are deterministic for a given calendar and its holiday data.

    Attributes:
        name: The name policies refer to, e.g. ``"24x7"`` or ``"business-cn"``.
    """

    name: str

    def add(self, start: float, seconds: float) -> tuple[float, bool]:
        """Return when ``seconds`` of business time have elapsed counting from ``start``.

        The due instant is the earliest one with ``elapsed(start, due) == seconds``: it
        lies inside or at the end of a working window, never at the start of the next
        one. ``seconds == 0`` returns ``start`` itself.

        Args:
            start: Epoch seconds the clock starts at (may be outside working time).
            seconds: Business seconds to count, ``>= 0``.

        Returns:
            ``(due, provisional)``; ``provisional`` is True when any day between
            ``start`` and ``due`` was outside the holiday data and a fallback rule was used.

        Raises:
            CalendarError: ``seconds`` is negative or not finite, or the calendar has no
                working time.
        """
        ...

    def elapsed(self, start: float, end: float) -> float:
        """Return the business seconds between two instants; 0 if ``end <= start``."""
        ...

    def add_days(self, start: float, days: int) -> tuple[float, bool]:
        """Return the instant "``days`` working days" after ``start``.

        Semantics: the anchor is ``start`` if it lies inside a working window, otherwise
        the start of the next working window. The result is the same local wall time as
        the anchor on the ``days``-th working day after the anchor's date (the anchor's
        own day is not counted; ``days == 0`` returns the anchor).

        Returns:
            ``(due, provisional)`` as for :meth:`add`.
        """
        ...


@runtime_checkable
class WorkdayRule(Protocol):
    """Which local dates are working days."""

    def is_workday(self, d: date) -> tuple[bool, bool]:
        """Return ``(working, provisional)`` for a local date.

        ``provisional`` is True when the answer comes from a fallback guess rather
        than published data.
        """
        ...


# --------------------------------------------------------------------------- workday rules


class WeekdayRule:
    """Monday to Friday are working days; never provisional."""

    def is_workday(self, d: date) -> tuple[bool, bool]:
        return d.weekday() < 5, False

    def __repr__(self) -> str:
        return "WeekdayRule()"


@dataclass(frozen=True, slots=True)
class _YearData:
    holidays: frozenset[date]
    workdays: frozenset[date]
    source: str


class ChinaWorkdays:
    """Chinese working days per the State Council schedule, including make-up days (调休).

    Sources and their precedence are described in the module docstring. Files are read
    once, here; :meth:`is_workday` does no I/O.

    Args:
        extra_dirs: Operator directories holding ``<year>.toml`` files; each overrides
            the shipped data and the earlier directories for the years it covers.
        use_package: Consult the ``chinesecalendar`` package when it is importable.
        use_shipped: Load the files shipped with the gateway.

    Raises:
        HolidayDataError: A directory is missing or a file is malformed.
    """

    def __init__(
        self,
        extra_dirs: Iterable[str | os.PathLike[str]] = (),
        *,
        use_package: bool = True,
        use_shipped: bool = True,
    ) -> None:
        years: dict[int, _YearData] = {}
        if use_package:
            years.update(_package_years())
        if use_shipped:
            shipped = resources.files("gateway").joinpath("data", "holidays", "cn")
            years.update(_load_dir(shipped, label="gateway/data/holidays/cn"))
        for directory in extra_dirs:
            path = Path(directory)
            if not path.is_dir():
                raise HolidayDataError(str(path), "", "holiday data directory does not exist")
            years.update(_load_dir(path, label=str(path)))
        self._years = years
        self._warned: set[int] = set()

    def is_workday(self, d: date) -> tuple[bool, bool]:
        if isinstance(d, datetime):
            d = d.date()
        data = self._years.get(d.year)
        if data is not None:
            if d in data.workdays:
                return True, False
            return d.weekday() < 5 and d not in data.holidays, False
        if d.year not in self._warned:
            self._warned.add(d.year)
            log.warning(
                "no Chinese holiday data for %d: assuming Mon-Fri minus 1 Jan, 1 May and 1-3 Oct; "
                "deadlines in %d are provisional until a %d.toml holiday data file is installed",
                d.year,
                d.year,
                d.year,
            )
        return d.weekday() < 5 and (d.month, d.day) not in FALLBACK_FIXED_HOLIDAYS, True

    def coverage(self) -> dict[int, str]:
        """Return the covered years and, for each, the source that won."""
        return {year: self._years[year].source for year in sorted(self._years)}

    def __repr__(self) -> str:
        years = sorted(self._years)
        span = f"{years[0]}-{years[-1]}" if years else "none"
        return f"ChinaWorkdays(years={span})"


def _package_years() -> dict[int, _YearData]:
    """Per-year data from ``chinesecalendar``, or nothing when it is not importable."""
    try:
        import chinese_calendar
    except ImportError:
        return {}
    holidays: Mapping[date, Any] = chinese_calendar.holidays
    workdays: Mapping[date, Any] = chinese_calendar.workdays
    if not holidays:
        return {}
    label = f"chinesecalendar {getattr(chinese_calendar, '__version__', '?')}"
    first = min(holidays).year
    last = max(holidays).year
    return {
        year: _YearData(
            holidays=frozenset(d for d in holidays if d.year == year),
            workdays=frozenset(d for d in workdays if d.year == year),
            source=label,
        )
        for year in range(first, last + 1)
    }


def _load_dir(directory: Any, label: str) -> dict[int, _YearData]:
    """Load every ``*.toml`` file of a directory (a Path or an importlib Traversable).

    ``label`` names the directory in errors and in :meth:`ChinaWorkdays.coverage`.
    """
    if not directory.is_dir():
        return {}
    years: dict[int, _YearData] = {}
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml") and entry.is_file():
            file = f"{label}/{entry.name}"
            year, data = _parse_year_file(file, entry.name[: -len(".toml")], entry.read_bytes())
            years[year] = data
    return years


def _parse_year_file(file: str, stem: str, raw: bytes) -> tuple[int, _YearData]:
    if not _YEAR_STEM.match(stem):
        raise HolidayDataError(file, "", "holiday data files must be named <year>.toml")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise HolidayDataError(file, "", f"not valid TOML: {exc}") from exc
    unknown = sorted(set(doc) - {"year", "source", "holidays", "workdays"})
    if unknown:
        raise HolidayDataError(file, unknown[0], "unknown key (expected year, source, holidays, workdays)")
    year = doc.get("year")
    if not isinstance(year, int) or isinstance(year, bool):
        raise HolidayDataError(file, "year", "required integer")
    if str(year) != stem:
        raise HolidayDataError(file, "year", f"{year} does not match the file name")
    source = doc.get("source", "")
    if not isinstance(source, str):
        raise HolidayDataError(file, "source", "must be a string")
    lists: dict[str, frozenset[date]] = {}
    for key in ("holidays", "workdays"):
        values = doc.get(key, [])
        if not isinstance(values, list):
            raise HolidayDataError(file, key, "must be a list of dates")
        days: set[date] = set()
        for i, value in enumerate(values):
            days.add(_parse_date(file, f"{key}[{i}]", value, year))
        lists[key] = frozenset(days)
    both = sorted(lists["holidays"] & lists["workdays"])
    if both:
        raise HolidayDataError(file, "workdays", f"{both[0].isoformat()} is also listed in holidays")
    label = f"{file} ({source})" if source else file
    return year, _YearData(holidays=lists["holidays"], workdays=lists["workdays"], source=label)


def _parse_date(file: str, key: str, value: object, year: int) -> date:
    if isinstance(value, datetime):
        raise HolidayDataError(file, key, "a date, not a date-time")
    if isinstance(value, date):
        d = value
    elif isinstance(value, str):
        try:
            d = date.fromisoformat(value)
        except ValueError as exc:
            raise HolidayDataError(file, key, f"{value!r} is not a YYYY-MM-DD date") from exc
    else:
        raise HolidayDataError(file, key, f"{value!r} is not a date")
    if d.year != year:
        raise HolidayDataError(file, key, f"{d.isoformat()} is outside year {year}")
    return d


# --------------------------------------------------------------------------- calendars


class TwentyFourSeven:
    """Every second counts. ``add_days(start, n)`` is ``start + n * 24 h``.

    Args:
        name: Calendar name.
    """

    def __init__(self, name: str = "24x7") -> None:
        self.name = name

    def add(self, start: float, seconds: float) -> tuple[float, bool]:
        _check_instant(start)
        _check_seconds(seconds)
        return float(start) + seconds, False

    def elapsed(self, start: float, end: float) -> float:
        _check_instant(start)
        _check_instant(end)
        return float(end - start) if end > start else 0.0

    def add_days(self, start: float, days: int) -> tuple[float, bool]:
        _check_instant(start)
        _check_days(days)
        return float(start) + days * 86400.0, False

    def __repr__(self) -> str:
        return f"TwentyFourSeven({self.name!r})"


_Window = tuple[float, float]


@dataclass(frozen=True, slots=True)
class _Day:
    working: bool
    provisional: bool
    windows: tuple[_Window, ...] = field(default=())


class BusinessHours:
    """Working windows on working days, in a local time zone.

    Windows are wall-clock ranges in ``tz``, converted to epoch seconds per date through
    ``zoneinfo``, so a window on a DST-change day is as long as the clock says (a
    00:00-24:00 window lasts 23 h or 25 h). Local times that do not exist (skipped by
    a DST jump) resolve as ``zoneinfo`` does with ``fold=0`` (the pre-transition offset,
    i.e. later than the gap). Per-date windows are cached, so ``add`` costs one small
    step per day of the span, never per minute.

    ``add_days`` semantics: see :meth:`Calendar.add_days`. A "working day" is a day the
    workday rule marks working. The anchor's wall time is carried over as a naive local
    time, so if it is ambiguous or skipped on the due date, ``fold=0`` resolution applies.

    Args:
        name: Calendar name.
        tz: IANA zone name or a ``tzinfo``.
        hours: Daily windows as ``("HH:MM", "HH:MM")`` pairs, ascending and not
            overlapping; an end may be ``"24:00"``. Windows do not cross midnight.
        workdays: Which local dates are working days.

    Raises:
        CalendarError: The hours are malformed.
    """

    def __init__(
        self,
        name: str,
        tz: str | tzinfo = "Asia/Shanghai",
        hours: Sequence[Sequence[str]] = (("09:00", "18:00"),),
        *,
        workdays: WorkdayRule,
    ) -> None:
        self.name = name
        self.tz: tzinfo = ZoneInfo(tz) if isinstance(tz, str) else tz
        try:
            self.hours: tuple[tuple[str, str], ...] = tuple((str(a), str(b)) for a, b in hours)
        except (TypeError, ValueError) as exc:
            raise CalendarError(f"calendar {name!r}: hours: expected a list of [start, end] pairs") from exc
        self.workdays = workdays
        self._minutes = _parse_hours(name, self.hours)
        self._day = functools.lru_cache(maxsize=8192)(self._compute_day)

    # -- public API

    def add(self, start: float, seconds: float) -> tuple[float, bool]:
        _check_instant(start)
        _check_seconds(seconds)
        start = float(start)
        if seconds == 0:
            return start, False
        remaining = float(seconds)
        provisional = False
        idle = 0
        d = self._local_date(start)
        while True:
            day = self._day(d)
            provisional |= day.provisional
            counted = False
            for ws, we in day.windows:
                if we <= start:
                    continue
                lo = ws if ws > start else start
                avail = we - lo
                counted = True
                if remaining <= avail:
                    return lo + remaining, provisional
                remaining -= avail
            idle = 0 if counted else idle + 1
            if idle > _MAX_IDLE_DAYS:
                raise CalendarError(f"calendar {self.name!r}: no working time after {d.isoformat()}")
            d += _ONE_DAY

    def elapsed(self, start: float, end: float) -> float:
        _check_instant(start)
        _check_instant(end)
        if end <= start:
            return 0.0
        total = 0.0
        d = self._local_date(start)
        last = self._local_date(end)
        while d <= last:
            for ws, we in self._day(d).windows:
                lo = ws if ws > start else start
                hi = we if we < end else end
                if hi > lo:
                    total += hi - lo
            d += _ONE_DAY
        return total

    def add_days(self, start: float, days: int) -> tuple[float, bool]:
        _check_instant(start)
        _check_days(days)
        anchor, provisional = self._anchor(float(start))
        if days == 0:
            return anchor, provisional
        local = datetime.fromtimestamp(anchor, self.tz)
        wall = local.time()
        d = local.date()
        counted = 0
        idle = 0
        while counted < days:
            d += _ONE_DAY
            day = self._day(d)
            provisional |= day.provisional
            if day.working:
                counted += 1
                idle = 0
            else:
                idle += 1
                if idle > _MAX_IDLE_DAYS:
                    raise CalendarError(f"calendar {self.name!r}: no working day after {d.isoformat()}")
        return datetime.combine(d, wall, tzinfo=self.tz).timestamp(), provisional

    def windows(self, d: date) -> tuple[tuple[float, float], ...]:
        """Return the working windows of a local date as epoch ``(start, end)`` pairs."""
        return self._day(d).windows

    def __repr__(self) -> str:
        return (
            f"BusinessHours({self.name!r}, tz={self.tz!s}, hours={self.hours!r}, workdays={self.workdays!r})"
        )

    # -- internals

    def _local_date(self, instant: float) -> date:
        return datetime.fromtimestamp(instant, self.tz).date()

    def _anchor(self, start: float) -> tuple[float, bool]:
        """``start`` if inside a working window, else the next window start."""
        provisional = False
        idle = 0
        d = self._local_date(start)
        while True:
            day = self._day(d)
            provisional |= day.provisional
            for ws, we in day.windows:
                if ws <= start < we:
                    return start, provisional
                if ws > start:
                    return ws, provisional
            idle += 1
            if idle > _MAX_IDLE_DAYS:
                raise CalendarError(f"calendar {self.name!r}: no working time after {d.isoformat()}")
            d += _ONE_DAY

    def _compute_day(self, d: date) -> _Day:
        working, provisional = self.workdays.is_workday(d)
        if not working:
            return _Day(False, provisional)
        windows = []
        for (h1, m1), (h2, m2) in self._minutes:
            ws = self._epoch(d, h1, m1)
            we = self._epoch(d, h2, m2)
            if we > ws:
                windows.append((ws, we))
        return _Day(True, provisional, tuple(windows))

    def _epoch(self, d: date, hour: int, minute: int) -> float:
        if hour == 24:
            return datetime.combine(d + _ONE_DAY, time(0, 0), tzinfo=self.tz).timestamp()
        return datetime.combine(d, time(hour, minute), tzinfo=self.tz).timestamp()


def _parse_hours(
    name: str, hours: Sequence[tuple[str, str]]
) -> tuple[tuple[tuple[int, int], tuple[int, int]], ...]:
    if not hours:
        raise CalendarError(f"calendar {name!r}: hours: at least one window is required")
    parsed = []
    previous_end = -1
    for i, (a, b) in enumerate(hours):
        start = _parse_hhmm(name, i, a, allow_24=False)
        end = _parse_hhmm(name, i, b, allow_24=True)
        if end <= start:
            raise CalendarError(f"calendar {name!r}: hours[{i}]: {a}-{b} is empty or crosses midnight")
        if start < previous_end:
            raise CalendarError(
                f"calendar {name!r}: hours[{i}]: {a}-{b} overlaps or precedes the previous window"
            )
        previous_end = end
        parsed.append(((start // 60, start % 60), (end // 60, end % 60)))
    return tuple(parsed)


def _parse_hhmm(name: str, i: int, text: str, *, allow_24: bool) -> int:
    m = _HHMM.match(text)
    if m:
        hour, minute = int(m.group(1)), int(m.group(2))
        if (hour < 24 and minute < 60) or (allow_24 and hour == 24 and minute == 0):
            return hour * 60 + minute
    raise CalendarError(f"calendar {name!r}: hours[{i}]: {text!r} is not a time HH:MM")


def _check_instant(start: float) -> None:
    if not math.isfinite(start):
        raise CalendarError(f"start must be a finite epoch time, not {start!r}")


def _check_seconds(seconds: float) -> None:
    if not math.isfinite(seconds) or seconds < 0:
        raise CalendarError(f"seconds must be finite and >= 0, not {seconds!r}")


def _check_days(days: int) -> None:
    if not isinstance(days, int) or isinstance(days, bool) or days < 0:
        raise CalendarError(f"days must be an integer >= 0, not {days!r}")


# --------------------------------------------------------------------------- construction


@dataclass(frozen=True, slots=True)
class CalendarSpec:
    """How to build a calendar from configuration.

    Fields left ``None`` come from the preset of the same name (see
    :func:`default_calendars`) when there is one, else from the business defaults:
    kind ``"business"``, tz ``Asia/Shanghai``, hours ``09:00-18:00``, workdays ``"cn"``.

    Attributes:
        name: Calendar name.
        kind: ``"24x7"`` or ``"business"``.
        tz: IANA time zone of the windows.
        hours: Daily windows as ``("HH:MM", "HH:MM")`` pairs.
        workdays: ``"cn"`` (State Council schedule) or ``"weekdays"`` (Mon-Fri).
    """

    name: str
    kind: str | None = None
    tz: str | None = None
    hours: tuple[tuple[str, str], ...] | None = None
    workdays: str | None = None


_PRESETS: dict[str, CalendarSpec] = {
    "24x7": CalendarSpec("24x7", kind="24x7"),
    "workdays-cn": CalendarSpec("workdays-cn", kind="business", hours=(("00:00", "24:00"),), workdays="cn"),
    "business-cn": CalendarSpec("business-cn", kind="business", hours=(("09:00", "18:00"),), workdays="cn"),
    "business-weekdays": CalendarSpec(
        "business-weekdays", kind="business", hours=(("09:00", "18:00"),), workdays="weekdays"
    ),
}

_SPEC_FIELDS = ("name", "kind", "tz", "hours", "workdays")


def build_calendar(
    spec: CalendarSpec | Mapping[str, Any] | Any,
    data_dirs: Iterable[str | os.PathLike[str]] = (),
    *,
    china: ChinaWorkdays | None = None,
) -> Calendar:
    """Build one calendar from a spec.

    Args:
        spec: A :class:`CalendarSpec`, a mapping with its field names, any object with
            those attributes (e.g. a config model), or a bare preset name.
        data_dirs: Operator holiday directories for a ``"cn"`` workday rule.
        china: An existing :class:`ChinaWorkdays` to share (then ``data_dirs`` is
            ignored); sharing keeps one warning per uncovered year across calendars.

    Returns:
        The calendar.

    Raises:
        CalendarError: The spec is invalid (the message names the calendar and key).
    """
    fields = _spec_fields(spec)
    name = fields.get("name")
    if not isinstance(name, str) or not name:
        raise CalendarError("calendar: name: required non-empty string")
    base = _PRESETS.get(name, CalendarSpec(name))

    def pick(key: str, default: Any) -> Any:
        value = fields.get(key)
        if value is None:
            value = getattr(base, key)
        return default if value is None else value

    kind = pick("kind", "business")
    if kind == "24x7":
        return TwentyFourSeven(name)
    if kind != "business":
        raise CalendarError(f"calendar {name!r}: kind: {kind!r} is not one of '24x7', 'business'")
    tz = pick("tz", "Asia/Shanghai")
    try:
        zone = ZoneInfo(tz)
    except (KeyError, ValueError, OSError, TypeError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise CalendarError(f"calendar {name!r}: tz: unknown time zone {tz!r}") from exc
    hours = pick("hours", (("09:00", "18:00"),))
    if isinstance(hours, str):
        raise CalendarError(f"calendar {name!r}: hours: expected a list of [start, end] pairs")
    rule_name = pick("workdays", "cn")
    rule: WorkdayRule
    if rule_name == "cn":
        rule = china if china is not None else ChinaWorkdays(data_dirs)
    elif rule_name == "weekdays":
        rule = WeekdayRule()
    else:
        raise CalendarError(f"calendar {name!r}: workdays: {rule_name!r} is not one of 'cn', 'weekdays'")
    return BusinessHours(name, zone, hours, workdays=rule)


def _spec_fields(spec: Any) -> dict[str, Any]:
    if isinstance(spec, str):
        return {"name": spec}
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(_SPEC_FIELDS))
        if unknown:
            raise CalendarError(f"calendar {spec.get('name')!r}: {unknown[0]}: unknown key")
        return dict(spec)
    return {key: getattr(spec, key, None) for key in _SPEC_FIELDS}


def default_calendars(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> dict[str, Calendar]:
    """Build the shipped calendars, sharing one :class:`ChinaWorkdays`.

    * ``"24x7"``: every second counts.
    * ``"workdays-cn"``: whole days (00:00-24:00) on Chinese working days, for
      "N working days" targets.
    * ``"business-cn"``: 09:00-18:00 on Chinese working days, Asia/Shanghai.
    * ``"business-weekdays"``: 09:00-18:00 Monday-Friday, Asia/Shanghai.

    Args:
        extra_dirs: Operator holiday directories (see :class:`ChinaWorkdays`).

    Returns:
        Calendars by name.
    """
    china = ChinaWorkdays(extra_dirs)
    return {name: build_calendar(spec, china=china) for name, spec in _PRESETS.items()}
