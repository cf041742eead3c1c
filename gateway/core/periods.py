"""Contract periods: terms such as ``12 months from acceptance`` and month arithmetic (pure).

Month arithmetic anchors on the start date and clamps to the month's end: one month after
31 January is 28 February (29 in a leap year), two months after it 31 March — every date
is computed from the anchor, never from the previous result, so nothing drifts to the 28th.

A *term* is an amount, a unit and what it counts from::

    12 months from acceptance      3 years        1 year from final acceptance
    12 months from installation    90 days        12个月 / 3年 (from acceptance)

Bases: ``acceptance`` (验收), ``installation`` (安装), ``final_acceptance`` (终验). A term
without ``from`` counts from acceptance.
"""

from __future__ import annotations

import calendar as _calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

__all__ = [
    "BASES",
    "PeriodError",
    "Span",
    "Term",
    "add_months",
    "parse_span",
    "parse_term",
]

#: What a term can count from.
BASES = ("acceptance", "installation", "final_acceptance")

_BASIS_WORDS = {
    "acceptance": "acceptance",
    "accepted": "acceptance",
    "installation": "installation",
    "installed": "installation",
    "install": "installation",
    "final acceptance": "final_acceptance",
    "final_acceptance": "final_acceptance",
    "final-acceptance": "final_acceptance",
    "验收": "acceptance",
    "安装": "installation",
    "终验": "final_acceptance",
}

# unit word → (months per unit, days per unit)
_UNITS: dict[str, tuple[int, int]] = {
    "day": (0, 1), "days": (0, 1), "d": (0, 1), "天": (0, 1), "日": (0, 1),
    "week": (0, 7), "weeks": (0, 7), "w": (0, 7), "周": (0, 7),
    "fortnight": (0, 14), "fortnights": (0, 14),
    "month": (1, 0), "months": (1, 0), "个月": (1, 0), "月": (1, 0),
    "quarter": (3, 0), "quarters": (3, 0),
    "year": (12, 0), "years": (12, 0), "y": (12, 0), "年": (12, 0),
}

_SPAN = re.compile(r"^\s*(\d+)\s*([a-z]+|个月|月|年|周|天|日)\s*$")
_TERM = re.compile(r"^\s*(\d+\s*(?:[a-z]+|个月|月|年|周|天|日))\s*(?:(?:from|after|起|自)\s*(.+?))?\s*(?:起)?\s*$")


# Longer than any contract; also keeps date arithmetic inside the calendar's years.
_MAX_MONTHS = 2400
_MAX_DAYS = 73050


class PeriodError(ValueError):
    """A term or span that cannot be read (the message says what was expected)."""


def add_months(anchor: date, months: int) -> date:
    """``anchor`` plus ``months`` calendar months, clamped to the last day of the month."""
    y, m = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + y, m + 1
    return date(year, month, min(anchor.day, _calendar.monthrange(year, month)[1]))


@dataclass(frozen=True, slots=True)
class Span:
    """A length in whole months and/or days (months first, then days)."""

    months: int = 0
    days: int = 0

    def after(self, anchor: date, times: int = 1) -> date:
        """The date ``times`` spans after ``anchor``, computed from the anchor (no drift)."""
        return add_months(anchor, self.months * times) + timedelta(days=self.days * times)

    def __add__(self, other: Span) -> Span:
        return Span(self.months + other.months, self.days + other.days)

    @property
    def zero(self) -> bool:
        return self.months == 0 and self.days == 0

    def text(self) -> str:
        parts = []
        if self.months:
            parts.append(f"{self.months} month{'s' if self.months != 1 else ''}")
        if self.days:
            parts.append(f"{self.days} day{'s' if self.days != 1 else ''}")
        return " ".join(parts) or "0 days"


def parse_span(text: str) -> Span:
    """``"12 months"``, ``"3 years"``, ``"2 weeks"``, ``"90 days"``, ``"12个月"`` → a :class:`Span`."""
    m = _SPAN.match(str(text).lower())
    if not m or m.group(2) not in _UNITS:
        raise PeriodError(f"{text!r} is not a length like '12 months', '3 years', '2 weeks' or '90 days'")
    n = int(m.group(1))
    per_month, per_day = _UNITS[m.group(2)]
    span = Span(n * per_month, n * per_day)
    if span.months > _MAX_MONTHS or span.days > _MAX_DAYS:
        raise PeriodError(f"{text!r} is longer than 200 years")
    return span


@dataclass(frozen=True, slots=True)
class Term:
    """A warranty or service term: a length counted from a basis date."""

    span: Span
    basis: str = "acceptance"

    def end(self, start: date) -> date:
        """The first day no longer covered: ``start`` plus the span (12 months from
        2026-01-31 covers up to 2027-01-30 and ends on 2027-01-31)."""
        return self.span.after(start)

    def text(self) -> str:
        return f"{self.span.text()} from {self.basis.replace('_', ' ')}"


def parse_term(text: str, default_basis: str = "acceptance") -> Term:
    """Read a term such as ``12 months from acceptance`` (see the module docstring).

    Raises:
        PeriodError: not a term, an unknown basis, or a zero length.
    """
    raw = str(text).strip().lower()
    m = _TERM.match(raw)
    if not m:
        raise PeriodError(f"{text!r} is not a term like '12 months from acceptance' or '3 years'")
    span = parse_span(m.group(1))
    if span.zero:
        raise PeriodError(f"{text!r}: a term must be longer than 0")
    basis = default_basis
    if m.group(2):
        word = " ".join(m.group(2).replace("之日", "").split())
        if word not in _BASIS_WORDS:
            raise PeriodError(f"{text!r}: unknown basis {m.group(2)!r}; known: acceptance, installation, final acceptance")
        basis = _BASIS_WORDS[word]
    return Term(span, basis)
