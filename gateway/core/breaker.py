"""The ticket circuit breaker: no input can push a flood of tickets into a help desk (pure).

More than ``limit`` new tickets within ``window`` seconds trips it. While it is open, each
further ticket is held back (its alarm is recorded as always, without a ticket) and counted;
the decision core turns the trip into one ``gateway.ticket_storm`` event — the gateway's own
alarm, whose one ticket summarises the storm — and, once no ticket was held back for a whole
window, into an ``ended`` event that clears it. Takes ``now``; no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["STORM_EVENT", "STORM_KEY", "BreakerNotice", "TicketBreaker"]

#: The event the decision core decides when the breaker trips, summarises and closes.
STORM_EVENT = "gateway.ticket_storm"
#: The key of its alarm (the gateway pack's rule ``gateway-ticket-storm``).
STORM_KEY = "gateway/ticket-storm"


@dataclass(frozen=True, slots=True)
class BreakerNotice:
    """What changed: ``state`` ``ongoing`` (tripped, or more held back) or ``ended``."""

    state: str
    held: int
    since: float
    limit: int
    window: float

    def attrs(self) -> dict[str, object]:
        return {"state": self.state, "held": self.held, "since": self.since, "limit": self.limit, "window": self.window}


class TicketBreaker:
    """At most ``limit`` new tickets per sliding ``window`` seconds.

    Attributes:
        held_total: tickets held back since the gateway started.
        trips: how often it tripped.
    """

    def __init__(self, limit: int = 200, window: float = 60.0) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be at least 1 and window positive")
        self.limit = limit
        self.window = window
        self._opened: deque[float] = deque()
        self.open_since: float | None = None
        self.held = 0  # held back in the current storm
        self.held_total = 0
        self.trips = 0
        self._last_held = 0.0
        self._reported = 0
        self._notices: list[BreakerNotice] = []

    @property
    def tripped(self) -> bool:
        return self.open_since is not None

    def allow(self, now: float) -> bool:
        """May a new ticket be opened at ``now``? (A yes counts it.)"""
        opened = self._opened
        horizon = now - self.window
        while opened and opened[0] <= horizon:
            opened.popleft()
        if self.open_since is None and len(opened) < self.limit:
            opened.append(now)
            return True
        if self.open_since is None:
            self.open_since = now
            self.trips += 1
            self.held = 0
            self._reported = 0
        self.held += 1
        self.held_total += 1
        self._last_held = now
        return False

    def tick(self, now: float) -> list[BreakerNotice]:
        """What to tell since the last tick: a summary while tripped (when more were held
        back), ``ended`` once a whole window passed without a ticket held back."""
        since = self.open_since
        if since is not None:
            if now - self._last_held >= self.window:
                self.open_since = None
                self._opened.clear()  # a fresh budget after the storm
                self._notices.append(BreakerNotice("ended", self.held, since, self.limit, self.window))
            elif self.held != self._reported:
                self._reported = self.held
                self._notices.append(BreakerNotice("ongoing", self.held, since, self.limit, self.window))
        out, self._notices = self._notices, []
        return out

    def next_due(self) -> float | None:
        """When :meth:`tick` next has something to do (the storm may end)."""
        return self._last_held + self.window if self.open_since is not None else None
