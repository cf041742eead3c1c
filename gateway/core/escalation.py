"""Escalation tiers (pure): which step of a contract's escalation is due on a ticket, and whom
it reaches.

A step fires once per ticket, at one of two kinds of moment:

* **a fraction of an SLA clock** (``clock = "response"``, ``at = 0.5``): when that much of
  the clock's business time is used (``at = 1.0`` is the breach). A clock stopped before
  the fraction is reached never fires the step.
* **a time since the ticket opened** (``after = 3600``): wall-clock seconds, unless one
  of the ``unless`` actions (default: ``restore``, ``close``) happened first — "not solved
  remotely within 1 h → dispatch an on-site engineer".

A step may be limited to some fault levels. What it does (``action``): ``notify``,
``dispatch_on_site``, ``expert_consultation`` or ``escalate``; whom it reaches
(``notify``): ``owner`` (the ticket's owner, or the on-call of its team when nobody owns
it), ``on_call``, ``team_lead``, ``team`` (every member), ``service_manager``,
``experts``, or a user name.

The :class:`Staffing` holds the teams, the named roles and the steps per policy; the
ticket desk asks it for the next moment a step is due (``next_at``, so the desk's timer
heap wakes for it) and for the steps due now (``due``). The fired steps live on the ticket
(``Ticket.escalations``), committed with the ticket, so a restart never fires one again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.oncall import Team, team_for

__all__ = [
    "ACTIONS",
    "ROLES",
    "EscalationStep",
    "Fired",
    "Staffing",
]

#: What a step does.
ACTIONS = ("notify", "dispatch_on_site", "expert_consultation", "escalate")
#: Whom a step reaches, besides a user name.
ROLES = ("owner", "on_call", "team_lead", "team", "service_manager", "experts")

_EPS = 1e-3


class _Clock(Protocol):
    kind: str
    target: float
    run_since: float | None
    consumed: float
    stopped_at: float | None
    deferred: bool

    def used(self, now: float, cal: Any) -> float: ...


class _Ticket(Protocol):
    id: int
    level: Any
    policy: str
    opened_at: float
    owner: str
    team: str
    milestones: dict[str, float]
    escalations: dict[str, float]
    status: str

    def clock(self, kind: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """One tier of a contract's escalation (see the module text)."""

    id: str
    notify: str = "owner"
    action: str = "notify"
    clock: str = ""
    at: float = 0.0
    after: float | None = None
    levels: frozenset[int] = frozenset({1, 2, 3, 4})
    unless: tuple[str, ...] = ("restore", "close")
    note: str = ""

    def describe(self) -> str:
        """``"response at 50 %"`` / ``"1 h after opening"``: when the step fires."""
        if self.clock:
            return f"{self.clock} at {round(self.at * 100)} %"
        after = self.after or 0.0
        if after <= 0:
            return "at opening"
        h, m = divmod(int(after) // 60, 60)
        span = f"{h} h" + (f" {m} min" if m else "") if h else f"{m} min"
        return f"{span} after opening"


@dataclass(frozen=True, slots=True)
class Fired:
    """A step that fired on a ticket: when, and the people it reaches."""

    step: EscalationStep
    at: float
    recipients: tuple[str, ...]
    note: str

    def payload(self) -> dict[str, Any]:
        """The notifier's view: JSON-ready."""
        return {
            "step": self.step.id,
            "action": self.step.action,
            "notify": self.step.notify,
            "recipients": list(self.recipients),
            "when": self.step.describe(),
            "at": self.at,
            "note": self.note,
        }


@dataclass(slots=True)
class Staffing:
    """Teams, named roles and escalation steps per policy.

    Args:
        teams: in match order (the first team covering a ticket's site and policy gets it).
        steps: policy name → its steps; ``"*"`` → steps every policy has.
        service_manager: the user the ``service_manager`` role names.
        experts: the users of the ``experts`` role.
    """

    teams: Sequence[Team] = ()
    steps: Mapping[str, Sequence[EscalationStep]] = field(default_factory=dict)
    service_manager: str = ""
    experts: tuple[str, ...] = ()

    # -- teams ----------------------------------------------------------------------------
    def team_for(self, site: str, policy: str) -> str:
        t = team_for(self.teams, site, policy)
        return t.name if t is not None else ""

    def team(self, name: str) -> Team | None:
        for t in self.teams:
            if t.name == name:
                return t
        return None

    def on_call(self, team: str, now: float) -> str:
        t = self.team(team)
        return t.on_call(now) if t is not None else ""

    def recipients(self, who: str, ticket: _Ticket, now: float) -> tuple[str, ...]:
        """The users ``who`` (a role of :data:`ROLES` or a user name) names for ``ticket``."""
        team = self.team(ticket.team)
        if who == "owner":
            if ticket.owner:
                return (ticket.owner,)
            who = "on_call"
        if who == "on_call":
            person = team.on_call(now) if team is not None else ""
            return (person,) if person else self._fallback()
        if who == "team_lead":
            return (team.lead,) if team is not None and team.lead else self._fallback()
        if who == "team":
            return tuple(team.members) if team is not None and team.members else self._fallback()
        if who == "service_manager":
            return (self.service_manager,) if self.service_manager else ()
        if who == "experts":
            return tuple(self.experts)
        return (who,)

    def _fallback(self) -> tuple[str, ...]:
        return (self.service_manager,) if self.service_manager else ()

    # -- steps ----------------------------------------------------------------------------
    def steps_for(self, ticket: _Ticket) -> list[EscalationStep]:
        level = int(ticket.level)
        out = [s for s in (*self.steps.get("*", ()), *self.steps.get(ticket.policy, ())) if level in s.levels]
        return out

    def _when(self, step: EscalationStep, ticket: _Ticket, cal: Callable[[str], Any]) -> float | None:
        """When ``step`` is due on ``ticket`` (``None``: not now, maybe never; a clock
        fraction is only known while the clock runs)."""
        if step.clock:
            c = ticket.clock(step.clock)
            if c is None or c.deferred or c.stopped_at is not None or c.run_since is None:
                return None
            seconds = step.at * c.target
            if seconds <= c.consumed:
                return float(c.run_since)
            return float(cal(c.calendar).add(c.run_since, seconds - c.consumed)[0])
        if any(a in ticket.milestones for a in step.unless) or ticket.status in ("restored", "closed"):
            return None
        return ticket.opened_at + (step.after or 0.0)

    def next_at(self, ticket: _Ticket, cal: Callable[[str], Any]) -> float | None:
        """The earliest moment a step not fired yet becomes due (``None``: none pending)."""
        best: float | None = None
        for s in self.steps_for(ticket):
            if s.id in ticket.escalations:
                continue
            at = self._when(s, ticket, cal)
            if at is not None and (best is None or at < best):
                best = at
        return best

    def due(self, ticket: _Ticket, now: float, cal: Callable[[str], Any]) -> list[Fired]:
        """The steps due by ``now`` that have not fired, marked fired on the ticket, in
        time order. A clock step is checked against the business time actually used (so a
        pause since the estimate delays it)."""
        out: list[Fired] = []
        for s in self.steps_for(ticket):
            if s.id in ticket.escalations:
                continue
            at = self._when(s, ticket, cal)
            if at is None or at > now + _EPS:
                continue
            if s.clock:
                c = ticket.clock(s.clock)
                if c.used(now, cal(c.calendar)) < s.at * c.target - _EPS:
                    continue
            at = min(at, now)
            ticket.escalations[s.id] = at
            who = self.recipients(s.notify, ticket, at)
            out.append(Fired(s, at, who, self._note(s, ticket, who)))
        out.sort(key=lambda f: f.at)
        return out

    @staticmethod
    def _note(s: EscalationStep, ticket: _Ticket, who: tuple[str, ...]) -> str:
        verb = {
            "notify": "notify",
            "dispatch_on_site": "dispatch an on-site engineer; notify",
            "expert_consultation": "expert consultation; notify",
            "escalate": "escalate to",
        }.get(s.action, s.action)
        role = s.notify.replace("_", " ")
        names = ", ".join(who) if who else "nobody (no one is configured for this role)"
        unowned = " (nobody owns the ticket: on call)" if s.notify == "owner" and not ticket.owner else ""
        text = f"{s.id}: {s.describe()}: {verb} {role}{unowned}: {names}"
        return text + (f". {s.note}" if s.note else "")
