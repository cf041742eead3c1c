"""Alarms: the living fault, one per key — AlarmBook.apply(classification, event, now) (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.model import Event, FaultLevel
from rules.engine import Classification

__all__ = ["Alarm", "AlarmChange", "AlarmBook", "ACTIVE", "PENDING", "CLEARED", "SUPPRESSED"]

PENDING = "pending"
ACTIVE = "active"
CLEARED = "cleared"
SUPPRESSED = "suppressed"

#: Change kinds returned by AlarmBook.apply.
RAISED, REPEATED, ESCALATED, CLEARED_CHANGE = "raised", "repeated", "escalated", "cleared"


@dataclass(slots=True)
class Alarm:
    """One occurrence of a fault. A re-raise after a clear is a new Alarm with the same key."""

    id: int
    key: str
    device: str
    level: FaultLevel
    state: str
    rule_id: str
    title: str
    count: int
    first_seen: float
    last_seen: float
    cleared_at: float | None = None
    ticket_id: int | None = None
    event: str = ""
    attrs: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    acked: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "device": self.device,
            "level": int(self.level),
            "state": self.state,
            "rule": self.rule_id,
            "title": self.title,
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "cleared_at": self.cleared_at,
            "ticket_id": self.ticket_id,
            "event": self.event,
            "attrs": dict(self.attrs),
            "labels": dict(self.labels),
            "acked": self.acked,
        }


@dataclass(frozen=True, slots=True)
class AlarmChange:
    kind: str  # "raised" | "repeated" | "escalated" | "cleared"
    alarm: Alarm


class AlarmBook:
    """Owns the open alarms (one per key). Pure: the caller passes ``now`` and persists
    what ``take_dirty`` returns, so a storm folds into one row update per key per batch."""

    def __init__(self, next_id: int = 1) -> None:
        self.open: dict[str, Alarm] = {}
        self._next_id = next_id
        self._dirty: dict[int, Alarm] = {}

    def load(self, alarms: Iterable[Alarm]) -> None:
        """Restore open alarms after a restart."""
        for a in alarms:
            if a.state != CLEARED:
                self.open[a.key] = a
            self._next_id = max(self._next_id, a.id + 1)

    def set_next_id(self, next_id: int) -> None:
        self._next_id = max(self._next_id, next_id)

    def apply(self, c: Classification, event: Event, device_id: str, now: float) -> AlarmChange | None:
        """Fold one classified event into the book; returns what changed (``None`` when
        a clear found nothing open)."""
        alarm = self.open.get(c.key)
        if c.action == "clear":
            if alarm is None:
                return None
            alarm.state = CLEARED
            alarm.cleared_at = now
            alarm.last_seen = now
            del self.open[c.key]
            self._dirty[alarm.id] = alarm
            return AlarmChange(CLEARED_CHANGE, alarm)
        if alarm is not None:
            alarm.count += 1
            alarm.last_seen = now
            alarm.attrs = event.attrs
            self._dirty[alarm.id] = alarm
            if c.level is not None and c.level < alarm.level:
                # A worse reading on the same fault raises its level; a milder one does
                # not lower it (only a clear ends the fault).
                alarm.level = c.level
                alarm.title = c.title
                return AlarmChange(ESCALATED, alarm)
            return AlarmChange(REPEATED, alarm)
        assert c.level is not None
        alarm = Alarm(
            id=self._next_id,
            key=c.key,
            device=device_id,
            level=c.level,
            state=ACTIVE,
            rule_id=c.rule_id,
            title=c.title,
            count=1,
            first_seen=now,
            last_seen=now,
            event=event.name,
            attrs=event.attrs,
            labels=c.labels,
        )
        self._next_id += 1
        self.open[c.key] = alarm
        self._dirty[alarm.id] = alarm
        return AlarmChange(RAISED, alarm)

    def touch(self, alarm: Alarm) -> None:
        """Mark an alarm changed by someone else (ticket link, ack) for the next write."""
        self._dirty[alarm.id] = alarm

    def take_dirty(self) -> list[Alarm]:
        out = list(self._dirty.values())
        self._dirty.clear()
        return out
