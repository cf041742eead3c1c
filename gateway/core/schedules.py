"""Planned work: inspections (巡检), return visits (回访) and preventive maintenance (pure).

A contract's schedule is a rule in words, read by :func:`parse_rule`::

    months 1-12 monthly, 13-24 every 2 months, then every 3 months
    every 2 weeks for 3 months, then monthly
    4 per year within the service period

Phases run one after the other from the anchor date (the device's acceptance, installation
or final acceptance). A phase is a frequency (``monthly``, ``weekly``, ``fortnightly``,
``quarterly``, ``yearly``, ``every N days|weeks|months|years``, ``N per year``) with an
optional extent: ``months A-B`` before it (months A to B after the anchor, 1-based), or
``for N months|weeks|days`` after it (from the end of the previous phase), or ``within the
service period`` / ``within the warranty``. Only the last phase may be open-ended. The
occurrences of a phase are its start plus 1, 2, 3 … steps, up to and including its end;
every date is computed from the anchor (see :mod:`gateway.core.periods`), so month ends
do not drift.

Each occurrence becomes one planned work item (:func:`plan`): its nominal date moved to
the next working day of the schedule's calendar, a window of ``early`` working days
before and ``late`` working days after it, a checklist, and a stable id
``<contract>/<schedule>:<device>:<nominal date>`` — so generating again never duplicates,
and :func:`reconcile` turns a changed rule into new items for new dates and cancels the
items not done yet whose date is no longer wanted (work done stays as it was).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.periods import PeriodError, Span, parse_span

__all__ = [
    "KINDS",
    "Phase",
    "Schedule",
    "ScheduleError",
    "ScheduleRule",
    "item_state",
    "occurrences",
    "parse_rule",
    "plan",
    "reconcile",
]

#: Kinds of planned work.
KINDS = ("inspection", "visit", "maintenance")
#: Stored statuses of an item (the shown state adds upcoming / due / overdue).
STATUSES = ("planned", "done", "cancelled")
#: Bounds a phase can name instead of a length.
UNTIL = ("service_period", "warranty")

# A reference anchor in the shortest month: a phase that fires nowhere here may never fire.
_REFERENCE = date(2001, 2, 1)
_MAX_ITEMS = 10_000  # per schedule and device: far more than any contract's lifetime

_FREQ_WORDS: dict[str, Span] = {
    "daily": Span(days=1),
    "weekly": Span(days=7),
    "fortnightly": Span(days=14),
    "biweekly": Span(days=14),
    "every other week": Span(days=14),
    "monthly": Span(months=1),
    "every other month": Span(months=2),
    "bimonthly": Span(months=2),
    "quarterly": Span(months=3),
    "half-yearly": Span(months=6),
    "semi-annually": Span(months=6),
    "yearly": Span(months=12),
    "annually": Span(months=12),
}
_RANGE = re.compile(r"^(?:months?\s+)?(\d+)\s*(?:-|to)\s*(\d+)\s+(.+)$")
_EVERY = re.compile(r"^every\s+(\d+\s*)?([a-z]+)$")
_PER_YEAR = re.compile(r"^(\d+)\s*(?:per|times a|times per|x per|/)\s*year$")
_FOR = re.compile(r"^(.+?)\s+for\s+(?:the\s+first\s+)?(\d+\s*[a-z]+)$")
_WITHIN = re.compile(r"^(.+?)\s+(?:within|during|in)\s+the\s+(service period|warranty)(?:\s+period)?$")


class ScheduleError(ValueError):
    """A rule that cannot be read or never fires (the message quotes the phase)."""


@dataclass(frozen=True, slots=True)
class Phase:
    """One frequency between two offsets from the anchor (``end`` None: open-ended)."""

    step: Span
    start: Span
    end: Span | None = None
    until: str | None = None  # "service_period" / "warranty": ends with that period
    text: str = ""


@dataclass(frozen=True, slots=True)
class ScheduleRule:
    text: str
    phases: tuple[Phase, ...]

    @property
    def until(self) -> str | None:
        """The period the rule is bounded by, if a phase names one."""
        for p in self.phases:
            if p.until:
                return p.until
        return None


def _freq(text: str, whole: str) -> Span:
    t = text.strip()
    if t in _FREQ_WORDS:
        return _FREQ_WORDS[t]
    m = _EVERY.match(t)
    if m:
        n = int(m.group(1) or 1)
        unit = m.group(2)
        try:
            span = parse_span(f"{n} {unit}")
        except PeriodError as e:
            if "200 years" in str(e):
                raise ScheduleError(f"{whole!r}: a step longer than 200 years") from None
            raise ScheduleError(f"{whole!r}: unknown unit {unit!r} (days, weeks, months, years)") from None
        if span.zero:
            raise ScheduleError(f"{whole!r}: 'every 0 {unit}' never advances")
        return span
    m = _PER_YEAR.match(t)
    if m:
        n = int(m.group(1))
        if n <= 0 or 12 % n:
            raise ScheduleError(f"{whole!r}: '{n} per year' must divide the year into whole months (1, 2, 3, 4, 6 or 12)")
        return Span(months=12 // n)
    raise ScheduleError(
        f"{whole!r}: no frequency; use monthly, weekly, fortnightly, quarterly, yearly, "
        "'every N days|weeks|months' or 'N per year'"
    )


def parse_rule(text: str) -> ScheduleRule:
    """Read a schedule rule (grammar in the module docstring).

    Raises:
        ScheduleError: a phase cannot be read, a phase after an open-ended one, or a
            phase too short for one step (it would never fire).
    """
    raw = " ".join(str(text).lower().replace("–", "-").replace("—", "-").split())
    if not raw:
        raise ScheduleError("empty rule")
    parts = [p.strip() for p in re.split(r"[,;]|\bthen\b", raw) if p.strip()]
    phases: list[Phase] = []
    cursor = Span()
    open_ended = False
    for part in parts:
        if open_ended:
            raise ScheduleError(f"{text!r}: the phase before {part!r} never ends, so {part!r} would never fire")
        body, start, end, until = part, cursor, None, None
        m = _RANGE.match(body)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if a < 1 or b < a:
                raise ScheduleError(f"{text!r}: months {a}-{b}: give months A-B with 1 <= A <= B")
            start, end, body = Span(months=a - 1), Span(months=b), m.group(3)
        m = _WITHIN.match(body)
        if m:
            body, until = m.group(1), m.group(2).replace(" ", "_")
        m = _FOR.match(body)
        if m and end is None:
            body = m.group(1)
            try:
                end = start + parse_span(m.group(2))
            except PeriodError as e:
                raise ScheduleError(f"{text!r}: {e}") from None
        step = _freq(body, part)
        phase = Phase(step, start, end, until, part)
        try:
            never = end is not None and step.after(start.after(_REFERENCE)) > end.after(_REFERENCE)
        except (ValueError, OverflowError):
            raise ScheduleError(f"{text!r}: {part!r} reaches beyond the year 9999") from None
        if never:
            raise ScheduleError(f"{text!r}: {part!r} never fires (one step is longer than the phase)")
        if end is None and until is None:
            open_ended = True
        phases.append(phase)
        cursor = end if end is not None else cursor
    return ScheduleRule(text, tuple(phases))


def occurrences(rule: ScheduleRule, anchor: date, until: date | None, limit: date) -> list[tuple[int, date]]:
    """``(n, nominal date)`` of every occurrence up to ``limit`` (inclusive), numbered from 1.

    Args:
        rule: the schedule rule.
        anchor: the date the rule counts from.
        until: the end of the period a ``within the …`` phase is bounded by (exclusive of
            nothing: an occurrence on that date still counts); ``None``: no such bound.
        limit: generate no further (the planning horizon).
    """
    out: list[tuple[int, date]] = []
    n = 0
    for ph in rule.phases:
        try:
            start = ph.start.after(anchor)
            end = ph.end.after(anchor) if ph.end is not None else None
        except (ValueError, OverflowError):
            return out
        if ph.until is not None:
            if until is None:
                break
            end = until if end is None else min(end, until)
        k = 1
        while True:
            try:
                d = (ph.start + Span(ph.step.months * k, ph.step.days * k)).after(anchor)
            except (ValueError, OverflowError):  # past the year 9999: nothing more to plan
                return out
            if (end is not None and d > end) or d > limit or len(out) >= _MAX_ITEMS:
                break
            if d > start:
                n += 1
                out.append((n, d))
            k += 1
        if end is None or end > limit:
            break
    return out


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule of a contract (built from ``[[service.<contract>.schedules]]``)."""

    id: str
    contract: str
    kind: str
    rule: ScheduleRule
    basis: str = "acceptance"
    calendar: str = "24x7"
    early: int = 0
    late: int = 0
    checklist: tuple[str, ...] = ()
    title: str = ""
    devices: tuple[str, ...] = ()
    since: date | None = None

    @property
    def key(self) -> str:
        return f"{self.contract}/{self.id}"


def _midnight(d: date, tz: ZoneInfo) -> float:
    return datetime.combine(d, time(0), tzinfo=tz).timestamp()


Working = Callable[[date], tuple[bool, bool]]


class _Days:
    """Steps over the working days of a calendar, remembering whether any day it looked at
    was judged without holiday data (provisional)."""

    def __init__(self, working: Working) -> None:
        self.working = working
        self.provisional = False

    def is_working(self, d: date) -> bool:
        ok, prov = self.working(d)
        self.provisional |= prov
        return ok

    def shift(self, d: date, days: int, direction: int) -> date:
        """``days`` working days from ``d`` (``d`` itself not counted), forwards or backwards."""
        counted = guard = 0
        while counted < days:
            d += timedelta(days=direction)
            guard += 1
            if self.is_working(d):
                counted += 1
            if guard > 800:
                raise ScheduleError(f"no working day near {d.isoformat()}")
        return d

    def next_working(self, d: date) -> date:
        guard = 0
        while not self.is_working(d):
            d += timedelta(days=1)
            guard += 1
            if guard > 800:
                raise ScheduleError(f"no working day after {d.isoformat()}")
        return d


def plan(
    schedule: Schedule,
    device: str,
    anchor: date,
    until: date | None,
    limit: date,
    tz: ZoneInfo,
    working: Working,
) -> list[dict[str, Any]]:
    """The planned work items of one schedule for one device, up to ``limit``.

    Args:
        schedule: the schedule.
        device: the device id.
        anchor: the device's date the schedule counts from.
        until: the end of the service period / warranty (for ``within the …`` phases).
        limit: the planning horizon (last nominal date generated).
        tz: local time zone of dates.
        working: ``(working, provisional)`` of a local date on the schedule's calendar
            (a :class:`~gateway.core.calendars.WorkdayRule`'s ``is_workday``).

    Returns:
        Item dicts (``status`` ``planned``), in order; ``provisional`` when a day was
        judged without holiday data (the 2027 fallback rule).
    """
    items = []
    for n, nominal in occurrences(schedule.rule, anchor, until, limit):
        if schedule.since is not None and nominal < schedule.since:
            continue
        days = _Days(working)
        due = days.next_working(nominal)
        opens = days.shift(due, schedule.early, -1)
        last = days.shift(due, schedule.late, +1)
        items.append({
            "id": f"{schedule.key}:{device}:{nominal.isoformat()}",
            "schedule": schedule.key,
            "contract": schedule.contract,
            "device": device,
            "kind": schedule.kind,
            "seq": n,
            "title": schedule.title or f"{schedule.kind} {n}",
            "nominal": nominal.isoformat(),
            "due_date": due.isoformat(),
            "due": _midnight(due, tz),
            "window_start": _midnight(opens, tz),
            "deadline": _midnight(last + timedelta(days=1), tz),
            "checklist": list(schedule.checklist),
            "provisional": days.provisional,
            "status": "planned",
        })
    return items


def item_state(item: Mapping[str, Any], now: float) -> str:
    """``done``, ``cancelled``, ``upcoming`` (window not open), ``due`` (window open) or ``overdue``."""
    status = item.get("status", "planned")
    if status != "planned":
        return str(status)
    if now < float(item["window_start"]):
        return "upcoming"
    if now < float(item["deadline"]):
        return "due"
    return "overdue"


#: What a regeneration may change in an item that is not done.
_PLAN_FIELDS = (
    "kind", "title", "nominal", "due_date", "due", "window_start", "deadline", "checklist", "seq", "provisional",
)


@dataclass(slots=True)
class Reconciled:
    """What :func:`reconcile` found: items to insert and to update (both full dicts)."""

    insert: list[dict[str, Any]] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.insert or self.update)


def reconcile(
    existing: Iterable[Mapping[str, Any]], desired: Sequence[Mapping[str, Any]], limit: date, now: float
) -> Reconciled:
    """Bring stored items in line with a fresh :func:`plan` (idempotent).

    * a desired item not stored is inserted;
    * a stored item not done whose dates, title or checklist changed is updated (so is a
      cancelled one that is wanted again);
    * a stored item still ``planned`` that is no longer wanted (its nominal date up to
      ``limit``: the rule or the device's dates changed, or the schedule went away) is
      ``cancelled`` — never deleted, and never one that is done.

    Regenerating with nothing changed returns nothing to do.
    """
    out = Reconciled()
    want = {d["id"]: d for d in desired}
    seen: set[str] = set()
    for e in existing:
        seen.add(e["id"])
        d = want.get(e["id"])
        status = e.get("status", "planned")
        if status == "done":
            continue
        if d is None:
            if status == "planned" and date.fromisoformat(str(e["nominal"])) <= limit:
                out.update.append({**e, "status": "cancelled", "cancelled_at": now})
            continue
        changed = {k: d[k] for k in _PLAN_FIELDS if e.get(k) != d.get(k)}
        if changed or status == "cancelled":
            new = {**e, **changed, "status": "planned"}
            new.pop("cancelled_at", None)
            out.update.append(new)
    out.insert = [dict(d) for i, d in want.items() if i not in seen]
    return out
