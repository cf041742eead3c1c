"""SLA clocks and contract policies: due times, pause/resume, re-targeting, warnings and breaches (pure).

A :class:`Policy` is one service contract: per fault level, a :class:`ClockTarget` for
each clock the contract defines (``response``, ``dispatch``, ``solution``, ``on_site``,
``restore``, ``report``), device-class and region variants laid over them, an optional
*urgent* response target for the levels the contract calls urgent, the warning fractions,
the clocks only a person's action can stop, and the penalty terms. Penalty thresholds are
their own figures (:class:`PenaltyTerms`), not the clock targets: a contract may promise a
response in 1 h and charge only after 4 h without one.

An :class:`SlaClock` is one running deadline of one ticket. It counts business time on
its calendar (see :mod:`gateway.core.calendars`) and never counts paused spans. Its life::

    waiting ──begin──> running ──pause──> paused ──resume──> running
                          │                                      │
                          ├──stop (in time)──> met               │
                          ├──stop (late)─────> breached <────────┘ (notices at 100 %)
                          └──skip────────────> not_needed

``breached`` is sticky: a breached clock that is paused, resumed or stopped stays
``breached`` (the ``running``/``paused`` properties say whether it still counts). Only a
level change whose new target has not been exceeded withdraws a breach.

Everything here takes ``now`` (epoch seconds); nothing reads a clock.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "BREACHED",
    "CLOCK_KINDS",
    "CLOCK_STATES",
    "GOAL_ACTIONS",
    "MET",
    "NOT_NEEDED",
    "PAUSED",
    "RUNNING",
    "WAITING",
    "CalendarLike",
    "ClockNotice",
    "ClockTarget",
    "PenaltyTerms",
    "Policy",
    "SlaClock",
    "kind_order",
]

#: The clocks a contract can define, in the order a ticket usually stops them.
#: ``dispatch`` is the remote-fix window: not solved remotely in time → an engineer must be
#: dispatched (the action ``dispatch`` stops it; a restore before it makes it not needed).
CLOCK_KINDS = ("response", "dispatch", "solution", "on_site", "restore", "report")

WAITING, RUNNING, PAUSED = "waiting", "running", "paused"
MET, BREACHED, NOT_NEEDED = "met", "breached", "not_needed"

#: Every value of :attr:`SlaClock.state`.
CLOCK_STATES = (WAITING, RUNNING, PAUSED, MET, BREACHED, NOT_NEEDED)

#: The ticket action that reaches each clock's goal (and so stops it).
GOAL_ACTIONS: Mapping[str, str] = {
    "response": "acknowledge",
    "dispatch": "dispatch",
    "solution": "propose_solution",
    "on_site": "arrive",
    "restore": "restore",
    "report": "close",
}

# Tolerance for comparing business seconds computed along different float paths.
_EPS = 1e-3


class CalendarLike(Protocol):
    """What a clock needs of a calendar (see :class:`gateway.core.calendars.Calendar`)."""

    name: str

    def add(self, start: float, seconds: float) -> tuple[float, bool]: ...

    def elapsed(self, start: float, end: float) -> float: ...


@dataclass(frozen=True, slots=True)
class ClockTarget:
    """A contractual target: ``seconds`` of business time on the calendar named ``calendar``."""

    seconds: float
    calendar: str


@dataclass(frozen=True, slots=True)
class PenaltyTerms:
    """A contract's penalty clause (see :mod:`gateway.core.penalties` for the arithmetic).

    Attributes:
        contract_value: The amount the percentages apply to.
        currency: Currency of ``contract_value``, e.g. ``"CNY"``.
        response_missed_pct: Percent of the contract value per ticket whose response
            clock was breached.
        restore_per_started_day_pct: Percent of the contract value per started day
            (86 400 s of the restore clock's business time) beyond the restore target.
        cap_pct: Upper bound of the penalties of one contract and month, in percent of
            the contract value; ``None`` for no cap.
        response_missed_after: The penalty threshold of ``response_missed_pct``: business
            seconds (on the response clock's calendar, paused spans excluded) without a
            response after which the ticket owes it; ``None``: the response clock's target.
        restore_late_after: The threshold the restore overrun is counted from; ``None``:
            the restore clock's target.
    """

    contract_value: float
    currency: str = "CNY"
    response_missed_pct: float = 0.0
    restore_per_started_day_pct: float = 0.0
    cap_pct: float | None = None
    response_missed_after: float | None = None
    restore_late_after: float | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """A service contract: per level, a target for each clock; region variants override.

    Attributes:
        name: Policy (contract) name, as devices refer to it.
        calendar: Default calendar of the targets (each target carries its own).
        ticket_levels: Levels whose alarms open tickets.
        levels: Level → clock kind → target.
        regions: Region (lower case) → level → clock kind → target, laid over ``levels``
            (and over ``classes``).
        classes: Device-class glob → level → clock kind → target, laid over ``levels``
            (e.g. the Beidou contract's front-end and control devices); the first glob
            that matches the device's class applies.
        human_only: Clock kinds only a person's action stops (an operator or the help
            desk): a device clearing by itself leaves them running (the mine contract's
            response is a first assessment given to the customer).
        warn_at: Fractions of a target at which warnings fire, ascending, each < 1.
        description: Free text.
        urgent_levels: Levels whose tickets are urgent: their response target is
            ``urgent_response`` instead of the level's ``response``.
        urgent_response: The urgent response target, or ``None``.
        penalties: The contract's penalty terms, or ``None``.
        reraise: A fault that comes back after its ticket was restored: ``"new"`` opens
            a new ticket, ``"reopen"`` reopens the previous one if it was restored less
            than ``reopen_within`` seconds ago.
        reopen_within: The reopen window of ``reraise = "reopen"``.
    """

    name: str
    calendar: str = "24x7"
    ticket_levels: frozenset[int] = frozenset({1, 2, 3, 4})
    levels: Mapping[int, Mapping[str, ClockTarget]] = field(default_factory=dict)
    regions: Mapping[str, Mapping[int, Mapping[str, ClockTarget]]] = field(default_factory=dict)
    warn_at: tuple[float, ...] = (0.5, 0.8)
    description: str = ""
    urgent_levels: frozenset[int] = frozenset()
    urgent_response: ClockTarget | None = None
    penalties: PenaltyTerms | None = None
    reraise: str = "new"
    reopen_within: float = 3600.0
    classes: Mapping[str, Mapping[int, Mapping[str, ClockTarget]]] = field(default_factory=dict)
    human_only: frozenset[str] = frozenset()

    def opens_ticket(self, level: int) -> bool:
        """Whether an alarm of ``level`` opens a ticket under this contract."""
        return int(level) in self.ticket_levels

    def is_urgent(self, level: int) -> bool:
        """Whether tickets of ``level`` get the urgent response target."""
        return self.urgent_response is not None and int(level) in self.urgent_levels

    def class_variant(self, device_class: str) -> str | None:
        """Return the ``classes`` glob that applies to ``device_class``, if any."""
        for glob in self.classes:
            if fnmatch.fnmatchcase(device_class, glob):
                return glob
        return None

    def targets(self, level: int, region: str = "", device_class: str = "") -> dict[str, ClockTarget]:
        """Return the targets of a level, in :data:`CLOCK_KINDS` order.

        Device-class variants, then region variants are laid over the level's defaults;
        for an urgent level the urgent response target then replaces ``response``.

        Args:
            level: Fault level 1-4.
            region: The device's region ("" for none); matched case-insensitively.
            device_class: The device's class ("" for none).

        Returns:
            Clock kind → target, for the clocks the contract defines at this level.
        """
        out = dict(self.levels.get(int(level), {}))
        glob = self.class_variant(device_class) if device_class and self.classes else None
        if glob is not None:
            out.update(self.classes[glob].get(int(level), {}))
        if region:
            reg = self.regions.get(region) or self.regions.get(region.lower())
            if reg:
                out.update(reg.get(int(level), {}))
        if self.is_urgent(level) and self.urgent_response is not None:
            out["response"] = self.urgent_response
        return {k: out[k] for k in sorted(out, key=kind_order)}


def kind_order(kind: str) -> int:
    """Sort key: the position of a clock kind in :data:`CLOCK_KINDS` (unknown kinds last)."""
    return CLOCK_KINDS.index(kind) if kind in CLOCK_KINDS else len(CLOCK_KINDS)


@dataclass(frozen=True, slots=True)
class ClockNotice:
    """A warning (``fraction`` < 1) or a breach (``fraction`` == 1) that just became due.

    Attributes:
        kind: The clock kind.
        fraction: The fraction of the target that was reached.
        at: When it was reached (epoch seconds; not later than the check that found it).
    """

    kind: str
    fraction: float
    at: float


@dataclass(slots=True)
class SlaClock:
    """One deadline of one ticket.

    Business time is counted on the clock's calendar; paused spans never count.
    ``consumed`` holds the business seconds of finished running spans; the current span
    runs since ``run_since`` (``None`` while paused, waiting or stopped).

    Attributes:
        kind: One of :data:`CLOCK_KINDS`.
        target: Business seconds allowed.
        calendar: Name of the calendar counted on.
        started_at: When the clock started (the ticket's start; restore for ``report``).
        due_at: When the target is reached if the clock keeps running (for a paused
            clock: if it resumed at the moment it was last recomputed).
        state: One of :data:`CLOCK_STATES`.
        provisional: The due time was computed with fallback holiday data.
        run_since: Start of the current running span.
        consumed: Business seconds of finished running spans.
        stopped_at: When the clock stopped (met, breached or not needed).
        breached_at: When the target was exceeded (the due instant), once known.
        warned: Warning fractions already passed (each fires at most once).
        business_elapsed: Business seconds it took, once stopped.
        deferred: The clock has not started yet (``report`` starts at restore).
        stopped_by: The action that stopped it ("" while not stopped).
    """

    kind: str
    target: float
    calendar: str
    started_at: float
    due_at: float
    state: str = RUNNING
    provisional: bool = False
    run_since: float | None = None
    consumed: float = 0.0
    stopped_at: float | None = None
    breached_at: float | None = None
    warned: list[float] = field(default_factory=list)
    business_elapsed: float | None = None
    deferred: bool = False
    stopped_by: str = ""
    # When ``notices`` next has something to say; derived, never persisted.
    _check_at: float | None = field(default=None, repr=False, compare=False)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def start(cls, kind: str, target: ClockTarget, now: float, cal: CalendarLike) -> SlaClock:
        """Return a clock of ``target`` that starts running at ``now``."""
        due, prov = cal.add(now, target.seconds)
        return cls(kind, target.seconds, target.calendar, now, due, RUNNING, prov, run_since=now)

    @classmethod
    def deferred_clock(cls, kind: str, target: ClockTarget, opened: float) -> SlaClock:
        """Return a clock the contract defines that starts on a later transition."""
        return cls(kind, target.seconds, target.calendar, opened, 0.0, WAITING, deferred=True)

    def begin(self, now: float, cal: CalendarLike) -> bool:
        """Start a deferred clock now. Returns False if it was not waiting."""
        if not self.deferred:
            return False
        self.deferred = False
        self.started_at = now
        self.run_since = now
        self.consumed = 0.0
        self.state = RUNNING
        self.due_at, self.provisional = cal.add(now, self.target)
        self._check_at = None
        return True

    # -- state -----------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """Stopped: met, breached-and-stopped or not needed."""
        return self.stopped_at is not None

    @property
    def running(self) -> bool:
        """Counting business time now."""
        return self.run_since is not None and self.stopped_at is None

    @property
    def paused(self) -> bool:
        """Started, not stopped, not counting."""
        return not self.deferred and self.stopped_at is None and self.run_since is None

    @property
    def breached(self) -> bool:
        """The target was exceeded (and the breach was noticed)."""
        return self.breached_at is not None

    def used(self, now: float, cal: CalendarLike) -> float:
        """Return the business seconds counted up to ``now`` (the final figure once stopped)."""
        if self.business_elapsed is not None:
            return self.business_elapsed
        extra = cal.elapsed(self.run_since, now) if self.run_since is not None else 0.0
        return self.consumed + extra

    def remaining(self, now: float, cal: CalendarLike) -> float:
        """Return the business seconds left before the target (negative when late)."""
        return self.target - self.used(now, cal)

    def outcome(self, now: float, cal: CalendarLike) -> str:
        """Return the state as of ``now``, counting an unnoticed overrun as ``breached``."""
        if self.state in (RUNNING, PAUSED) and self.used(now, cal) >= self.target - _EPS:
            return BREACHED
        return self.state

    def _recompute_due(self, now: float, cal: CalendarLike) -> None:
        self._check_at = None
        if self.breached_at is not None and self.consumed >= self.target - _EPS:
            self.due_at = self.breached_at  # a missed deadline stays where it was
            return
        left = max(0.0, self.target - self.consumed)
        self.due_at, self.provisional = cal.add(self.run_since if self.run_since is not None else now, left)
        self._check_at = None

    # -- transitions -----------------------------------------------------------------------
    def pause(self, now: float, cal: CalendarLike) -> bool:
        """Stop counting. Returns False if the clock was not running."""
        if not self.running:
            return False
        assert self.run_since is not None
        self.consumed += cal.elapsed(self.run_since, now)
        self.run_since = None
        if self.state == RUNNING:
            self.state = PAUSED
        self._check_at = None
        return True

    def resume(self, now: float, cal: CalendarLike) -> bool:
        """Count again from ``now``; the due time moves by the paused span.

        Returns False if the clock was not paused.
        """
        if not self.paused:
            return False
        self.run_since = now
        if self.state == PAUSED:
            self.state = RUNNING
        self._recompute_due(now, cal)
        return True

    def stop(self, now: float, cal: CalendarLike, by: str = "") -> bool:
        """Stop the clock (its goal was reached): ``met`` if in time, ``breached`` otherwise.

        Args:
            now: When the goal was reached.
            cal: The clock's calendar.
            by: The action that stopped it.

        Returns:
            False if the clock was already stopped or had not started.
        """
        if self.done or self.deferred:
            return False
        took = self.used(now, cal)
        self.business_elapsed = took
        self.consumed = took
        self.run_since = None
        self.stopped_at = now
        self.stopped_by = by
        if took > self.target + _EPS and self.breached_at is None:
            self.breached_at = min(self.due_at, now)
        self.state = BREACHED if self.breached_at is not None else MET
        self._check_at = None
        return True

    def skip(self, now: float, cal: CalendarLike, by: str = "") -> bool:
        """Stop the clock because its goal no longer matters (``not_needed``).

        A clock already past its target is ``breached`` instead: the deadline was missed
        before it stopped mattering.

        Returns:
            False if the clock was already stopped.
        """
        if self.done:
            return False
        if self.deferred:
            self.deferred = False
            self.stopped_at = now
            self.stopped_by = by
            self.state = NOT_NEEDED
            return True
        self.stop(now, cal, by)
        if self.state == MET:
            self.state = NOT_NEEDED
        return True

    def reopen(self, now: float, cal: CalendarLike) -> bool:
        """Run a stopped clock again from ``now``, keeping the business time it had used.

        The span between its stop and ``now`` does not count. A breach stays.

        Returns:
            False if the clock was not stopped.
        """
        if not self.done:
            return False
        self.stopped_at = None
        self.stopped_by = ""
        self.business_elapsed = None
        self.run_since = now
        self.state = BREACHED if self.breached_at is not None else RUNNING
        self._recompute_due(now, cal)
        return True

    def rewind(self) -> None:
        """Make a started or skipped clock wait again (``report`` after a reopen)."""
        self.deferred = True
        self.state = WAITING
        self.run_since = None
        self.consumed = 0.0
        self.stopped_at = None
        self.stopped_by = ""
        self.breached_at = None
        self.business_elapsed = None
        self.warned = []
        self.due_at = 0.0
        self.provisional = False
        self._check_at = None

    def retarget(
        self,
        target: ClockTarget,
        now: float,
        cal: CalendarLike,
        consumed: float | None = None,
    ) -> bool:
        """Apply a level change: same start, new target (and possibly a new calendar).

        Stopped clocks keep the target they were measured against. A running or paused
        clock gets a due time counted from its start; warnings not yet passed under the new
        target re-arm; a breach is withdrawn when the new target has not been exceeded.

        Args:
            target: The new target.
            now: When the level changed.
            cal: The calendar of ``target``.
            consumed: Business seconds used so far on the new calendar, required when
                ``target.calendar`` differs from the clock's (the caller recounts them
                from the ticket's start); ignored otherwise.

        Returns:
            True if a breach was withdrawn.
        """
        if self.done:
            return False
        if self.deferred:
            self.target, self.calendar = target.seconds, target.calendar
            return False
        if target.seconds == self.target and target.calendar == self.calendar:
            return False
        if target.calendar != self.calendar:
            if consumed is None:
                raise ValueError(f"{self.kind}: a calendar change needs the business time recounted")
            self.calendar = target.calendar
            self.consumed = consumed
            if self.run_since is not None:
                self.run_since = now
        self.target = target.seconds
        # A threshold already announced and still passed under the new target stays quiet;
        # the others re-arm.
        used = self.used(now, cal)
        self.warned = [f for f in self.warned if used >= f * self.target - _EPS]
        withdrawn = False
        if self.breached_at is not None and used < self.target - _EPS:
            self.breached_at = None
            withdrawn = True
        self._recompute_due(now, cal)
        if self.breached_at is None:
            self.state = RUNNING if self.running else PAUSED
        return withdrawn

    # -- warnings and breaches ---------------------------------------------------------------
    def _instant(self, seconds: float, cal: CalendarLike, now: float) -> float:
        """When ``seconds`` of business time will have been used (``now`` if unknowable)."""
        if self.run_since is None:
            return now
        if seconds <= self.consumed:
            return self.run_since
        return cal.add(self.run_since, seconds - self.consumed)[0]

    def next_check(self, cal: CalendarLike, warn_at: tuple[float, ...]) -> float | None:
        """Return when :meth:`notices` will next have something to say.

        ``None`` while paused, waiting or stopped, or when everything has fired.
        """
        if self.done or self.deferred or self.run_since is None:
            return None
        if self._check_at is None:
            times = [
                self._instant(f * self.target, cal, self.run_since)
                for f in warn_at
                if f < 1.0 and f not in self.warned
            ]
            if self.breached_at is None:
                times.append(self.due_at)
            self._check_at = min(times) if times else math.inf
        return None if math.isinf(self._check_at) else self._check_at

    def notices(self, now: float, cal: CalendarLike, warn_at: tuple[float, ...]) -> list[ClockNotice]:
        """Return the warnings and the breach that have become due by ``now``; each fires once.

        When several thresholds were crossed since the last check (after downtime or a
        level change), only the highest is announced; the lower ones are marked passed
        and never fire later.
        """
        if self.done or self.deferred:
            return []
        check = self.next_check(cal, warn_at)
        if self.running and (check is None or now < check - _EPS):
            return []
        used = self.used(now, cal)
        crossed = sorted(
            f for f in warn_at if f < 1.0 and f not in self.warned and used >= f * self.target - _EPS
        )
        self.warned.extend(crossed)
        self._check_at = None
        if self.breached_at is None and used >= self.target - _EPS:
            self.breached_at = min(self.due_at, now) if self.due_at > 0 else now
            self.state = BREACHED
            return [ClockNotice(self.kind, 1.0, self.breached_at)]
        if crossed:
            top = crossed[-1]
            return [ClockNotice(self.kind, top, min(now, self._instant(top * self.target, cal, now)))]
        return []

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``due_at`` is ``None`` while waiting)."""
        return {
            "kind": self.kind,
            "target": self.target,
            "calendar": self.calendar,
            "started_at": self.started_at,
            "due_at": self.due_at if not self.deferred else None,
            "state": self.state,
            "provisional": self.provisional,
            "run_since": self.run_since,
            "consumed": self.consumed,
            "stopped_at": self.stopped_at,
            "stopped_by": self.stopped_by,
            "breached_at": self.breached_at,
            "warned": list(self.warned),
            "business_elapsed": self.business_elapsed,
            "deferred": self.deferred,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SlaClock:
        """Rebuild a clock from :meth:`to_dict` output (older rows lack some keys)."""
        state = d["state"]
        if d.get("breached_at") is not None and state in (RUNNING, PAUSED):
            state = BREACHED
        return cls(
            kind=d["kind"],
            target=d["target"],
            calendar=d["calendar"],
            started_at=d["started_at"],
            due_at=d["due_at"] or 0.0,
            state=state,
            provisional=d.get("provisional", False),
            run_since=d.get("run_since"),
            consumed=d.get("consumed", 0.0),
            stopped_at=d.get("stopped_at"),
            breached_at=d.get("breached_at"),
            warned=list(d.get("warned", [])),
            business_elapsed=d.get("business_elapsed"),
            deferred=d.get("deferred", False),
            stopped_by=d.get("stopped_by", ""),
        )
