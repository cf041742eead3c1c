"""Teams and their on-call rota (pure): who is on call for a team at a given moment.

A team has a lead, members and a weekly schedule of shifts in the gateway's time zone;
an override (holiday cover, a swap) names who is on call between two instants and wins
over the schedule. A shift whose end is not after its start runs over midnight into the
next day (``22:00``-``08:00`` listed for Monday covers Monday 22:00 to Tuesday 08:00).
When neither covers the moment, the team lead is on call.

Nothing here reads a clock: every question takes ``now`` (epoch seconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

__all__ = ["DAYS", "Override", "Shift", "Team", "members", "parse_days", "parse_hhmm", "team_for"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_days(text: str) -> frozenset[int]:
    """``"mon-fri"``, ``"sat,sun"``, ``"daily"`` → weekday numbers (Monday = 0).

    Raises:
        ValueError: a part is not a day or a range of days.
    """
    text = text.strip().lower()
    if text in ("daily", "all", "*", "mon-sun"):
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, _, hi = part.partition("-")
        if lo not in DAYS or (hi and hi not in DAYS):
            raise ValueError(f"{part!r} is not a day or day range (mon..sun, e.g. 'mon-fri')")
        a, b = DAYS.index(lo), DAYS.index(hi or lo)
        i = a
        while True:
            out.add(i)
            if i == b:
                break
            i = (i + 1) % 7
    return frozenset(out)


def parse_hhmm(text: str) -> int:
    """``"08:30"`` → minutes after midnight (``"24:00"`` allowed as the day's end).

    Raises:
        ValueError: not ``HH:MM``.
    """
    h, sep, m = text.strip().partition(":")
    if not sep or not h.isdigit() or not m.isdigit() or len(m) != 2:
        raise ValueError(f"{text!r} is not a time of day (HH:MM)")
    minutes = int(h) * 60 + int(m)
    if int(m) > 59 or minutes > 24 * 60:
        raise ValueError(f"{text!r} is not a time of day (HH:MM)")
    return minutes


@dataclass(frozen=True, slots=True)
class Shift:
    """``user`` is on call on ``days`` from ``start`` to ``end`` (minutes after midnight)."""

    days: frozenset[int]
    start: int
    end: int
    user: str

    def covers(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.end > self.start:
            return day in self.days and self.start <= minute < self.end
        # Over midnight: the evening part on a listed day, the morning part the day after.
        return (day in self.days and minute >= self.start) or (
            (day - 1) % 7 in self.days and minute < self.end
        )


@dataclass(frozen=True, slots=True)
class Override:
    """``user`` is on call in ``[start, end)`` (epoch seconds), whatever the schedule says."""

    start: float
    end: float
    user: str


@dataclass(frozen=True, slots=True)
class Team:
    """A team: who leads it, who is in it, what it covers and its on-call rota.

    Attributes:
        sites, policies: globs of the sites and contracts whose tickets the team takes
            (empty: any); the first team that matches a ticket gets it.
    """

    name: str
    lead: str = ""
    members: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()
    shifts: tuple[Shift, ...] = ()
    overrides: tuple[Override, ...] = ()
    tz: str = "UTC"

    def covers(self, site: str, policy: str) -> bool:
        """Whether the team takes tickets of ``site`` under ``policy``."""
        ok_site = not self.sites or any(fnmatchcase(site, g) for g in self.sites)
        ok_policy = not self.policies or any(fnmatchcase(policy, g) for g in self.policies)
        return ok_site and ok_policy

    def on_call(self, now: float) -> str:
        """Who is on call at ``now``: the latest override covering it, else the first shift
        covering it, else the lead (``""`` when the team has none)."""
        for o in reversed(self.overrides):
            if o.start <= now < o.end:
                return o.user
        local = datetime.fromtimestamp(now, self._tz())
        for s in self.shifts:
            if s.covers(local):
                return s.user
        return self.lead

    def next_change(self, now: float) -> float:
        """A moment at or before the next time :meth:`on_call` may answer differently
        (the next quarter hour or override edge): for showing the rota, not for timers."""
        edges = [o.start for o in self.overrides if o.start > now] + [o.end for o in self.overrides if o.end > now]
        local = datetime.fromtimestamp(now, self._tz())
        nxt = (local + timedelta(minutes=15 - local.minute % 15)).replace(second=0, microsecond=0)
        return min([nxt.timestamp(), *edges])

    def _tz(self) -> ZoneInfo:
        return ZoneInfo(self.tz)


def team_for(teams: Sequence[Team], site: str, policy: str) -> Team | None:
    """The first team that covers ``site`` and ``policy``, or ``None``."""
    for t in teams:
        if t.covers(site, policy):
            return t
    return None


def members(teams: Iterable[Team]) -> set[str]:
    """Everyone named by the teams (leads, members, shifts, overrides)."""
    out: set[str] = set()
    for t in teams:
        out.update(x for x in (t.lead, *t.members) if x)
        out.update(s.user for s in t.shifts)
        out.update(o.user for o in t.overrides)
    return out
