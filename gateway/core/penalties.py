"""Contract penalties: per ticket from its SLA clocks, summed per contract and month (pure).

The terms (:class:`gateway.core.sla.PenaltyTerms`, ``[policies.NAME.penalties]`` in the
config) are percentages of the contract value, as in the software-7x24 contract:

* ``response_missed_pct`` once per ticket not responded to within
  ``response_missed_after`` (business time of its ``response`` clock, so paused spans never
  count); without that threshold, once per ticket whose ``response`` clock was breached
  (stopped late, or still running past its target). The software-7x24 contract charges
  only after 4 h without a response, whatever the team's own response target;
* ``restore_per_started_day_pct`` per *started* day beyond ``restore_late_after`` (default:
  the ``restore`` target). The
  overrun is counted in the restore clock's business time, so paused spans never count;
  a day is 86 400 s of it: on ``24x7`` that is a calendar day, on ``workdays-cn`` a
  working day. One second late is one started day; exactly 24 h late is one day.

A ticket whose clocks are still running is charged what it owes as of ``now``
(``final`` is False). ``cap_pct`` bounds one contract's total per month.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.core.sla import BREACHED, PenaltyTerms
from gateway.core.tickets import Ticket

__all__ = ["PenaltySummary", "TicketPenalty", "started_days", "sum_penalties", "ticket_penalty"]

_DAY = 86400.0
_EPS = 1e-3


def started_days(overrun_seconds: float) -> int:
    """Return the started days in an overrun: 0 for none, 1 for (0, 24 h], 2 for (24 h, 48 h], ...."""
    if overrun_seconds <= _EPS:
        return 0
    return max(1, math.ceil((overrun_seconds - _EPS) / _DAY))


@dataclass(frozen=True, slots=True)
class TicketPenalty:
    """What one ticket owes under its contract's terms.

    Attributes:
        ticket_id: The ticket.
        response_missed: Its response clock was breached.
        restore_overrun: Business seconds beyond the restore target (0 if in time).
        restore_days: Started days of ``restore_overrun``.
        pct: Percent of the contract value owed.
        amount: ``pct`` of the contract value.
        final: Every clock that can add to it has stopped.
    """

    ticket_id: int
    response_missed: bool
    restore_overrun: float
    restore_days: int
    pct: float
    amount: float
    final: bool

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "ticket_id": self.ticket_id,
            "response_missed": self.response_missed,
            "restore_overrun_seconds": self.restore_overrun,
            "restore_days": self.restore_days,
            "pct": self.pct,
            "amount": self.amount,
            "final": self.final,
        }


@dataclass(frozen=True, slots=True)
class PenaltySummary:
    """One contract's penalties over a set of tickets (normally one month's).

    Attributes:
        terms: The contract's terms.
        tickets: Per-ticket penalties, only tickets that owe something.
        pct: Total percent owed, after the cap.
        amount: Total amount owed, after the cap.
        uncapped_pct: Total percent before the cap.
        capped: The cap applied.
        final: Every ticket's penalty is final.
    """

    terms: PenaltyTerms
    tickets: tuple[TicketPenalty, ...] = field(default_factory=tuple)
    pct: float = 0.0
    amount: float = 0.0
    uncapped_pct: float = 0.0
    capped: bool = False
    final: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "contract_value": self.terms.contract_value,
            "currency": self.terms.currency,
            "response_missed_pct": self.terms.response_missed_pct,
            "restore_per_started_day_pct": self.terms.restore_per_started_day_pct,
            "cap_pct": self.terms.cap_pct,
            "response_missed_after": self.terms.response_missed_after,
            "restore_late_after": self.terms.restore_late_after,
            "pct": self.pct,
            "amount": self.amount,
            "uncapped_pct": self.uncapped_pct,
            "capped": self.capped,
            "final": self.final,
            "tickets": [p.to_dict() for p in self.tickets],
        }


def ticket_penalty(
    ticket: Ticket, terms: PenaltyTerms, calendars: Mapping[str, Any], now: float
) -> TicketPenalty:
    """Return what ``ticket`` owes under ``terms`` as of ``now``.

    Args:
        ticket: The ticket (its clocks are read, not changed).
        terms: The contract's penalty terms.
        calendars: Calendars by name, for clocks still running.
        now: The time of the assessment.

    Returns:
        The ticket's penalty.
    """
    final = True
    missed = False
    resp = ticket.clock("response")
    if resp is not None and not resp.deferred:
        if terms.response_missed_after is None:
            missed = resp.outcome(now, calendars[resp.calendar]) == BREACHED
        else:
            took = resp.used(now, calendars[resp.calendar])
            missed = took > terms.response_missed_after + _EPS
        final = final and (resp.done or missed)
    overrun = 0.0
    rest = ticket.clock("restore")
    if rest is not None and not rest.deferred:
        allowed = rest.target if terms.restore_late_after is None else terms.restore_late_after
        overrun = max(0.0, rest.used(now, calendars[rest.calendar]) - allowed)
        final = final and rest.done
    days = started_days(overrun)
    pct = float((terms.response_missed_pct if missed else 0.0) + days * terms.restore_per_started_day_pct)
    return TicketPenalty(
        ticket_id=ticket.id,
        response_missed=missed,
        restore_overrun=overrun,
        restore_days=days,
        pct=pct,
        amount=_money(terms.contract_value * pct / 100.0),
        final=final,
    )


def sum_penalties(penalties: Iterable[TicketPenalty], terms: PenaltyTerms) -> PenaltySummary:
    """Sum per-ticket penalties of one contract (and month), applying ``cap_pct``.

    Args:
        penalties: The tickets' penalties (tickets that owe nothing may be included).
        terms: The contract's terms.

    Returns:
        The summary; its ``tickets`` keep only those that owe something.
    """
    items = list(penalties)
    owing = tuple(p for p in items if p.pct > 0)
    uncapped = float(sum(p.pct for p in owing))
    pct = uncapped
    capped = terms.cap_pct is not None and uncapped > terms.cap_pct
    if capped and terms.cap_pct is not None:
        pct = float(terms.cap_pct)
    return PenaltySummary(
        terms=terms,
        tickets=owing,
        pct=pct,
        amount=_money(terms.contract_value * pct / 100.0),
        uncapped_pct=uncapped,
        capped=capped,
        final=all(p.final for p in items),
    )


def _money(x: float) -> float:
    return round(x, 2)
