"""Sample rows for the store contract tests and the legacy fixtures: alarms with behaviour
state, tickets with SLA clocks (the timers a restart must resume), maintenance windows."""

from __future__ import annotations

from typing import Any

from gateway.core.alarms import Alarm
from gateway.core.maintenance import new_window
from gateway.core.sla import SlaClock
from gateway.core.tickets import Ticket, TimelineEntry
from gateway.model import FaultLevel

T0 = 1_750_000_000.0


def alarm(
    id: int, *, key: str | None = None, device: str = "sw-1", state: str = "active", level: FaultLevel = FaultLevel.MAJOR,
    count: int = 1, ticket_id: int | None = None, cleared_at: float | None = None, at: float = T0,
) -> Alarm:
    a = Alarm(
        id=id, key=key or f"{device}/if/{id}", device=device, level=level, state=state, rule_id="link-down",
        title=f"link {id} down", count=count, first_seen=at, last_seen=at + count, cleared_at=cleared_at,
        ticket_id=ticket_id, event="linkDown", attrs={"ifIndex": id, "name": "ge-0/0/1"}, labels={"site": "north"},
        active_since=at if state in ("active", "suppressed") else None, rule_level=level,
    )
    return a


def stateful_alarm(id: int) -> Alarm:
    """An alarm whose behaviour state (suppression, hold, escalation, flapping) must survive."""
    a = alarm(id, state="suppressed", level=FaultLevel.MINOR)
    a.suppressed_by = "maintenance:mw-1"
    a.active_since = T0 + 5
    a.rule_level = FaultLevel.MAJOR
    a.hold_for = 30.0
    a.hold_count = 3
    a.occurrences = [T0, T0 + 1.5]
    a.escalate = ((600.0, FaultLevel.CRITICAL),)
    a.flap_count = 4
    a.flap_window = 300.0
    a.transitions = [T0 + 2, T0 + 3]
    a.acked = True
    return a


def ticket(
    id: int, *, alarm_id: int = 1, device: str = "sw-1", site: str = "north", status: str = "open",
    level: FaultLevel = FaultLevel.MAJOR, policy: str = "gold", opened_at: float = T0, closed_at: float | None = None,
) -> Ticket:
    return Ticket(
        id=id, alarm_id=alarm_id, alarm_key=f"{device}/if/{alarm_id}", device=device, site=site, region="r1",
        level=level, status=status, policy=policy, title=f"ticket {id}", opened_at=opened_at, updated_at=opened_at + 1,
        clocks=[
            SlaClock(kind="response", target=900.0, calendar="24x7", started_at=opened_at, due_at=opened_at + 900,
                     run_since=opened_at, warned=[0.5]),
            SlaClock(kind="restore", target=14400.0, calendar="workdays", started_at=opened_at,
                     due_at=opened_at + 86400, run_since=opened_at, consumed=12.5, provisional=True),
        ],
        closed_at=closed_at,
        report={"cause": "fibre cut"} if status == "closed" else {},
        remote={"desk": f"HD-{id}"},
    )


def entry(ticket_id: int, ts: float, kind: str, note: str = "") -> TimelineEntry:
    return TimelineEntry(ticket_id=ticket_id, ts=ts, actor="user:li", kind=kind, note=note)


def window(id: str, start: float, end: float) -> dict[str, Any]:
    return new_window(id, start, end, devices=["sw-1"], author="li", reason="firmware", created_at=start).to_dict()
