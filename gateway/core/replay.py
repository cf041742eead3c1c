"""Replay: recorded events through a rule set on a fresh in-memory alarm book and ticket desk.

Used by ``gateway rules replay`` to see what a new rule set would have done with a real
stream before it goes live, and to compare it with the live one. Nothing here touches the
store: the book, desk and inventory are fresh, time is a manual clock set to each event's
timestamp, and every event goes through the same :class:`gateway.core.decider.Decider` the
running pipeline uses, so a replay shows what the daemon would have done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.clock import ManualClock
from gateway.core.alarms import REPEATED, AlarmBook
from gateway.core.decider import Decider, Decision
from gateway.core.inventory import Inventory
from gateway.core.maintenance import MaintenanceBook, Window
from gateway.core.sla import Policy
from gateway.core.suppression import Suppressor
from gateway.core.tickets import Ticket, TicketDesk
from gateway.model import Device, Event
from rules.engine import RuleEngine

__all__ = ["KeySummary", "ReplayResult", "compare", "replay", "summarize"]


@dataclass(slots=True)
class ReplayResult:
    """What a replay produced.

    Attributes:
        events: events read.
        classified / unclassified: events some rule matched / none did.
        first_ts / last_ts: the time span replayed (after ``settle``).
        alarms: every alarm occurrence created, by id (open and cleared).
        tickets: every ticket opened, by id.
        log: (time, change kind, alarm key, what the desk did), in order.
    """

    events: int = 0
    classified: int = 0
    unclassified: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    alarms: dict[int, Any] = field(default_factory=dict)
    tickets: dict[int, Ticket] = field(default_factory=dict)
    log: list[tuple[float, str, str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        by_state: dict[str, int] = {}
        for a in self.alarms.values():
            by_state[a.state] = by_state.get(a.state, 0) + 1
        return by_state


def replay(
    events: Iterable[Event],
    engine: RuleEngine,
    policies: Mapping[str, Policy],
    calendars: Mapping[str, Any],
    devices: Iterable[Device] = (),
    default_policy: str = "",
    windows: Iterable[Window] = (),
    settle: float = 0.0,
    unknown_tickets: bool = False,
) -> ReplayResult:
    """Run ``events`` (in order) through ``engine`` and a fresh book and desk.

    Args:
        events: the recorded stream.
        engine: the rule set under test.
        policies: contracts by name.
        calendars: calendars by name.
        devices: the inventory.
        default_policy: policy for devices that name none.
        windows: maintenance windows in force.
        settle: seconds to run the clock on after the last event (hold-for expiries,
            escalations and flaps that would follow).
        unknown_tickets: whether alarms of devices not in the inventory open tickets
            (``[inventory] unknown_tickets``).

    Returns:
        The alarms and tickets produced.
    """
    inventory = Inventory(devices, default_policy)
    book = AlarmBook(suppressor=Suppressor(inventory, MaintenanceBook(windows)))
    desk = TicketDesk(policies, calendars)
    decider = Decider(engine=engine, inventory=inventory, book=book, desk=desk, policies=policies, tracing=True)
    decider.unknown_tickets = unknown_tickets
    res = ReplayResult()
    clock: ManualClock | None = None

    def take(d: Decision) -> None:
        res.classified += d.counts.classified
        res.unclassified += d.counts.unclassified
        for tr in d.trace:
            for r in tr.reactions:
                ch = r.change
                res.alarms[ch.alarm.id] = ch.alarm
                if ch.kind != REPEATED:
                    text = r.outcome.text if r.outcome is not None else "ticket reaction failed (see the log)"
                    res.log.append((ch.at, ch.kind, ch.alarm.key, text))

    for ev in events:
        if clock is None:
            clock = ManualClock(start=ev.ts)
            res.first_ts = ev.ts
        clock.set(max(clock.now(), ev.ts))  # a capture slightly out of order must not stop time
        # Timers due by the event's time act before it, as the daemon's timer would have.
        take(decider.step((), clock.now()))
        res.events += 1
        take(decider.step((ev,), clock.now()))
    if clock is not None:
        clock.advance(settle)
        take(decider.step((), clock.now()))
        res.last_ts = clock.now()
    res.tickets = dict(desk.open)
    return res


@dataclass(frozen=True, slots=True)
class KeySummary:
    """One fault key's outcome in a replay: how many occurrences, the last one's level,
    state and count, and how many tickets it opened."""

    occurrences: int
    level: int
    state: str
    count: int
    tickets: int

    def text(self) -> str:
        t = "ticket" if self.tickets == 1 else "tickets"
        return f"level {self.level} {self.state}, count {self.count}, {self.occurrences} occurrence(s), {self.tickets} {t}"


def summarize(res: ReplayResult) -> dict[str, KeySummary]:
    by_key: dict[str, list[Any]] = {}
    for a in sorted(res.alarms.values(), key=lambda a: a.id):
        by_key.setdefault(a.key, []).append(a)
    tickets: dict[str, int] = {}
    for t in res.tickets.values():
        tickets[t.alarm_key] = tickets.get(t.alarm_key, 0) + 1
    out = {}
    for key, alarms in by_key.items():
        last = alarms[-1]
        out[key] = KeySummary(
            len(alarms), int(last.level), last.state, sum(a.count for a in alarms), tickets.get(key, 0)
        )
    return out


def compare(live: ReplayResult, new: ReplayResult) -> list[str]:
    """Per fault key, what the new rule set does differently: ``+`` only with the new
    rules, ``-`` only with the live ones, ``~`` both but different. Empty: no difference."""
    a, b = summarize(live), summarize(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if x is None and y is not None:
            lines.append(f"+ {key}: {y.text()}")
        elif y is None and x is not None:
            lines.append(f"- {key}: {x.text()}")
        elif x is not None and y is not None and x != y:
            parts = []
            for name in ("level", "state", "count", "occurrences", "tickets"):
                u, v = getattr(x, name), getattr(y, name)
                if u != v:
                    parts.append(f"{name} {u} → {v}")
            lines.append(f"~ {key}: {'; '.join(parts)}")
    return lines
