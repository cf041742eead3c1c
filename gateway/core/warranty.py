"""Warranty and service periods of devices and contracts (pure).

A device's dates (acceptance 验收, installation 安装, final acceptance 终验) come from its
inventory entry or, where it names none, from its contract. The contract's terms say how
long the warranty and the service period last and from which date (``12 months from
acceptance``, ``3 years``, ``1 year from final acceptance``); a device may carry its own
term or an explicit end date. Where the contract says so (``part_warranty_restarts``), a
replaced part gets a warranty of its own from the day it was replaced.

The status of a device on a day, as a ticket shows it as of its start:

* ``in_warranty``: between the start and the warranty's end;
* ``out_of_warranty``: after the warranty, the service period (if any) still running;
* ``service_ended``: after the service period;
* ``not_started``: before the basis date; ``unknown``: no dates known.

A contract with a service period and no separate warranty counts the service period as its
warranty. What changes out of warranty is the contract's :class:`OutOfWarranty`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from gateway.core.periods import BASES, Term

__all__ = [
    "STATUSES",
    "Coverage",
    "DeviceDates",
    "OutOfWarranty",
    "WarrantyError",
    "WarrantyTerms",
    "coverage",
    "expiring",
    "part_warranties",
    "status_on",
]

STATUSES = ("in_warranty", "out_of_warranty", "service_ended", "not_started", "unknown")

#: zh-CN labels of the statuses (the board and the CLI show both).
LABELS_ZH = {
    "in_warranty": "保修期内",
    "out_of_warranty": "已过保修期",
    "service_ended": "服务期已结束",
    "not_started": "尚未验收",
    "unknown": "日期未知",
}


class WarrantyError(ValueError):
    """Dates that contradict each other (a warranty ending before it starts)."""


@dataclass(frozen=True, slots=True)
class DeviceDates:
    """The dates a device (or, as defaults, a contract) carries."""

    acceptance: date | None = None
    installation: date | None = None
    final_acceptance: date | None = None
    #: The device's own warranty term (replaces the contract's).
    warranty: Term | None = None
    #: An explicit warranty end (the first day no longer covered).
    warranty_until: date | None = None

    def get(self, basis: str) -> date | None:
        return getattr(self, basis) if basis in BASES else None

    def over(self, defaults: DeviceDates) -> DeviceDates:
        """These dates, each missing one taken from ``defaults``."""
        return DeviceDates(
            self.acceptance or defaults.acceptance,
            self.installation or defaults.installation,
            self.final_acceptance or defaults.final_acceptance,
            self.warranty or defaults.warranty,
            self.warranty_until or defaults.warranty_until,
        )


@dataclass(frozen=True, slots=True)
class OutOfWarranty:
    """What changes for tickets of a device out of warranty.

    Attributes:
        policy: another policy whose clocks apply (``None``: the same).
        penalties: whether the penalty terms still apply.
        paid_service: on-site visits and parts are charged (有偿服务).
        note: free text shown with the status (e.g. "hardware at cost").
    """

    policy: str | None = None
    penalties: bool = True
    paid_service: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "penalties": self.penalties, "paid_service": self.paid_service,
                "note": self.note}


@dataclass(frozen=True, slots=True)
class WarrantyTerms:
    """A contract's warranty clauses."""

    warranty: Term | None = None
    service_period: Term | None = None
    part_warranty_restarts: bool = False
    out_of_warranty: OutOfWarranty | None = None
    #: Days before the end at which an expiring warranty raises a notice (0: none).
    notice_days: int = 0
    defaults: DeviceDates = field(default_factory=DeviceDates)


@dataclass(frozen=True, slots=True)
class Coverage:
    """A device's periods: ``start`` (the warranty's basis date), ``warranty_end`` and
    ``service_end`` (first days no longer covered); ``None`` where unknown."""

    start: date | None
    warranty_end: date | None
    service_end: date | None
    basis: str = ""
    term: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"start": _iso(self.start), "warranty_end": _iso(self.warranty_end),
                "service_end": _iso(self.service_end), "basis": self.basis, "term": self.term}


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


def coverage(dates: DeviceDates, terms: WarrantyTerms) -> Coverage:
    """The periods of a device under a contract.

    Raises:
        WarrantyError: the warranty would end on or before its start.
    """
    d = dates.over(terms.defaults)
    term = d.warranty or terms.warranty or terms.service_period
    start = d.get(term.basis) if term is not None else (d.acceptance or d.installation or d.final_acceptance)
    service_end = None
    try:
        if terms.service_period is not None:
            sb = d.get(terms.service_period.basis)
            service_end = terms.service_period.end(sb) if sb is not None else None
        if d.warranty_until is not None:
            end: date | None = d.warranty_until
        elif term is not None and start is not None:
            end = term.end(start)
        else:
            end = None
    except (ValueError, OverflowError):
        raise WarrantyError("the warranty or service period would end after the year 9999") from None
    if end is not None and start is not None and end <= start:
        raise WarrantyError(f"warranty ends {end.isoformat()}, not after its start {start.isoformat()}")
    return Coverage(start, end, service_end, term.basis if term else "", term.text() if term else "")


def status_on(cov: Coverage, day: date) -> str:
    """The status (see :data:`STATUSES`) of a device on a local date."""
    if cov.service_end is not None and day >= cov.service_end:
        return "service_ended"
    if cov.start is not None and day < cov.start:
        return "not_started"
    if cov.warranty_end is not None:
        return "in_warranty" if day < cov.warranty_end else "out_of_warranty"
    return "unknown"


def part_warranties(
    replacements: Iterable[Mapping[str, Any]], terms: WarrantyTerms, day: date
) -> list[dict[str, Any]]:
    """The own warranties of replaced parts (only where the contract restarts them).

    Args:
        replacements: ``{"part": name, "date": date}`` per replacement, oldest first.
        terms: the contract's terms.
        day: the day to judge on.

    Returns:
        Per part (the latest replacement wins): ``part``, ``replaced``, ``warranty_end``,
        ``status``.
    """
    term = terms.warranty or terms.service_period
    if not terms.part_warranty_restarts or term is None:
        return []
    latest: dict[str, date] = {}
    for r in replacements:
        latest[str(r["part"])] = r["date"]
    out = []
    for part, replaced in sorted(latest.items()):
        end = term.end(replaced)
        out.append({"part": part, "replaced": replaced.isoformat(), "warranty_end": end.isoformat(),
                    "status": "in_warranty" if day < end else "out_of_warranty"})
    return out


def expiring(covs: Mapping[str, Coverage], today: date, within_days: int) -> list[dict[str, Any]]:
    """Devices whose warranty ends within ``within_days`` days from ``today`` (not ended yet),
    soonest first: ``device``, ``warranty_end``, ``days_left``."""
    out = []
    for dev, cov in covs.items():
        end = cov.warranty_end
        if end is None or end <= today:
            continue
        left = (end - today).days
        if left <= within_days:
            out.append({"device": dev, "warranty_end": end.isoformat(), "days_left": left})
    out.sort(key=lambda r: (r["days_left"], r["device"]))
    return out
