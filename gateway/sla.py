"""SLA clocks and policies: due times, pause/resume, re-targeting, warnings and breaches (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "CLOCK_KINDS",
    "ClockTarget",
    "Policy",
    "SlaClock",
    "ClockNotice",
    "CalendarLike",
]

#: The clocks a contract can define, in the order a ticket usually stops them.
CLOCK_KINDS = ("response", "solution", "on_site", "restore", "report")

RUNNING, PAUSED, MET, BREACHED = "running", "paused", "met", "breached"


class CalendarLike(Protocol):
    """What a clock needs of a calendar (see gateway.calendars.Calendar)."""

    name: str

    def add(self, start: float, seconds: float) -> tuple[float, bool]: ...

    def elapsed(self, start: float, end: float) -> float: ...


@dataclass(frozen=True, slots=True)
class ClockTarget:
    """A contractual target: ``seconds`` of time on ``calendar``."""

    seconds: float
    calendar: str


@dataclass(frozen=True, slots=True)
class Policy:
    """A service contract: per level, a target for each clock; region variants override."""

    name: str
    calendar: str = "24x7"
    ticket_levels: frozenset[int] = frozenset({1, 2, 3, 4})
    levels: Mapping[int, Mapping[str, ClockTarget]] = field(default_factory=dict)
    regions: Mapping[str, Mapping[int, Mapping[str, ClockTarget]]] = field(default_factory=dict)
    warn_at: tuple[float, ...] = (0.5, 0.8)
    description: str = ""

    def opens_ticket(self, level: int) -> bool:
        return int(level) in self.ticket_levels

    def targets(self, level: int, region: str = "") -> dict[str, ClockTarget]:
        """Targets for a level, with the region's variants laid over the defaults."""
        out = dict(self.levels.get(int(level), {}))
        if region:
            reg = self.regions.get(region) or self.regions.get(region.lower())
            if reg:
                out.update(reg.get(int(level), {}))
        return {k: out[k] for k in sorted(out, key=_kind_order)}


def _kind_order(kind: str) -> int:
    return CLOCK_KINDS.index(kind) if kind in CLOCK_KINDS else len(CLOCK_KINDS)


@dataclass(frozen=True, slots=True)
class ClockNotice:
    """A warning (``fraction`` < 1) or a breach (``fraction`` == 1) that just became due."""

    kind: str
    fraction: float
    at: float


@dataclass(slots=True)
class SlaClock:
    """One running deadline. Business time is counted on the clock's calendar; paused
    spans never count. ``consumed`` holds business seconds of finished running spans."""

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
    deferred: bool = False  # starts later (e.g. the report clock starts at restore)

    @classmethod
    def start(cls, kind: str, target: ClockTarget, now: float, cal: CalendarLike) -> SlaClock:
        due, prov = cal.add(now, target.seconds)
        return cls(kind, target.seconds, target.calendar, now, due, RUNNING, prov, run_since=now)

    @classmethod
    def deferred_clock(cls, kind: str, target: ClockTarget, opened: float) -> SlaClock:
        """A clock defined by the contract that starts on a later transition."""
        return cls(kind, target.seconds, target.calendar, opened, 0.0, "waiting", deferred=True)

    def begin(self, now: float, cal: CalendarLike) -> None:
        """Start a deferred clock now."""
        self.deferred = False
        self.started_at = now
        self.run_since = now
        self.state = RUNNING
        self.due_at, self.provisional = cal.add(now, self.target)

    @property
    def done(self) -> bool:
        return self.stopped_at is not None

    @property
    def running(self) -> bool:
        return self.run_since is not None and self.stopped_at is None

    def used(self, now: float, cal: CalendarLike) -> float:
        """Business seconds counted so far."""
        if self.business_elapsed is not None:
            return self.business_elapsed
        extra = cal.elapsed(self.run_since, now) if self.run_since is not None else 0.0
        return self.consumed + extra

    def remaining(self, now: float, cal: CalendarLike) -> float:
        return self.target - self.used(now, cal)

    def _recompute_due(self, cal: CalendarLike) -> None:
        if self.run_since is None:
            return
        self.due_at, prov = cal.add(self.run_since, max(0.0, self.target - self.consumed))
        self.provisional = self.provisional or prov

    def pause(self, now: float, cal: CalendarLike) -> bool:
        if not self.running:
            return False
        assert self.run_since is not None
        self.consumed += cal.elapsed(self.run_since, now)
        self.run_since = None
        self.state = PAUSED
        return True

    def resume(self, now: float, cal: CalendarLike) -> bool:
        if self.state != PAUSED or self.done:
            return False
        self.run_since = now
        self.state = BREACHED if self.breached_at is not None else RUNNING
        self._recompute_due(cal)
        return True

    def stop(self, now: float, cal: CalendarLike) -> bool:
        """Stop the clock (its goal was reached): met if on time, breached otherwise."""
        if self.done or self.deferred:
            return False
        self.business_elapsed = self.used(now, cal)
        self.consumed = self.business_elapsed
        self.run_since = None
        self.stopped_at = now
        late = self.business_elapsed > self.target + 1e-6
        if late and self.breached_at is None:
            self.breached_at = self.due_at
        self.state = BREACHED if (late or self.breached_at is not None) else MET
        return True

    def retarget(self, target: float, cal: CalendarLike) -> None:
        """A level change: same start, new target; warnings re-arm above the new fraction."""
        self.target = target
        if self.done:
            late = (self.business_elapsed or 0.0) > target + 1e-6
            self.state = BREACHED if late else MET
            self.breached_at = self.breached_at if late else None
            return
        if self.deferred:
            return
        if self.run_since is not None:
            self._recompute_due(cal)
        self.breached_at = None
        if self.state == BREACHED:
            self.state = RUNNING
        self.warned = []

    def notices(self, now: float, cal: CalendarLike, warn_at: tuple[float, ...]) -> list[ClockNotice]:
        """Warnings and the breach that have become due by ``now``; each fires once."""
        if self.done or self.deferred or self.target <= 0:
            return []
        used = self.used(now, cal)
        out: list[ClockNotice] = []
        for f in warn_at:
            if f < 1.0 and f not in self.warned and used >= f * self.target - 1e-6:
                self.warned.append(f)
                out.append(ClockNotice(self.kind, f, now))
        if self.breached_at is None and used >= self.target - 1e-6:
            self.breached_at = now
            self.state = BREACHED
            out.append(ClockNotice(self.kind, 1.0, now))
        return out

    def next_check(self, cal: CalendarLike, warn_at: tuple[float, ...]) -> float | None:
        """When ``notices`` will next have something to say (None while paused or done)."""
        if self.done or self.deferred or self.run_since is None:
            return None
        times = []
        for f in warn_at:
            if f < 1.0 and f not in self.warned:
                due, _ = cal.add(self.run_since, max(0.0, f * self.target - self.consumed))
                times.append(due)
        if self.breached_at is None:
            times.append(self.due_at)
        return min(times) if times else None

    def to_dict(self) -> dict[str, Any]:
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
            "breached_at": self.breached_at,
            "warned": list(self.warned),
            "business_elapsed": self.business_elapsed,
            "deferred": self.deferred,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SlaClock:
        return cls(
            kind=d["kind"],
            target=d["target"],
            calendar=d["calendar"],
            started_at=d["started_at"],
            due_at=d["due_at"] or 0.0,
            state=d["state"],
            provisional=d.get("provisional", False),
            run_since=d.get("run_since"),
            consumed=d.get("consumed", 0.0),
            stopped_at=d.get("stopped_at"),
            breached_at=d.get("breached_at"),
            warned=list(d.get("warned", [])),
            business_elapsed=d.get("business_elapsed"),
            deferred=d.get("deferred", False),
        )
