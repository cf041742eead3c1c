"""Tickets: opened for alarms that need people, with SLA clocks, timeline and transitions (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.alarms import Alarm
from gateway.model import Device, FaultLevel
from gateway.sla import ClockNotice, Policy, SlaClock

__all__ = ["Ticket", "TimelineEntry", "TicketDesk", "TicketError", "STATUSES", "ACTIONS"]

STATUSES = ("open", "acknowledged", "solution_proposed", "on_site", "restored", "closed")

#: action → (clock it stops, status it moves to)
ACTIONS: dict[str, tuple[str | None, str | None]] = {
    "acknowledge": ("response", "acknowledged"),
    "propose_solution": ("solution", "solution_proposed"),
    "arrive": ("on_site", "on_site"),
    "restore": ("restore", "restored"),
    "close": ("report", "closed"),
    "reopen": (None, "open"),
    "pause": (None, None),
    "resume": (None, None),
    "comment": (None, None),
    "set_level": (None, None),
    "set_report": (None, None),
}

_RANK = {s: i for i, s in enumerate(STATUSES)}


class TicketError(ValueError):
    """An action that does not apply (unknown ticket, closed ticket, bad level)."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    ticket_id: int
    ts: float
    actor: str
    kind: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"ticket_id": self.ticket_id, "ts": self.ts, "actor": self.actor, "kind": self.kind, "note": self.note}


@dataclass(slots=True)
class Ticket:
    id: int
    alarm_id: int
    alarm_key: str
    device: str
    site: str
    region: str
    level: FaultLevel
    status: str
    policy: str
    title: str
    opened_at: float
    updated_at: float
    clocks: list[SlaClock] = field(default_factory=list)
    closed_at: float | None = None
    paused: bool = False
    report: dict[str, str] = field(default_factory=dict)
    remote: dict[str, str] = field(default_factory=dict)

    def clock(self, kind: str) -> SlaClock | None:
        for c in self.clocks:
            if c.kind == kind:
                return c
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "alarm_id": self.alarm_id,
            "alarm_key": self.alarm_key,
            "device": self.device,
            "site": self.site,
            "region": self.region,
            "level": int(self.level),
            "status": self.status,
            "policy": self.policy,
            "title": self.title,
            "opened_at": self.opened_at,
            "updated_at": self.updated_at,
            "closed_at": self.closed_at,
            "paused": self.paused,
            "clocks": [c.to_dict() for c in self.clocks],
            "report": dict(self.report),
            "remote": dict(self.remote),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Ticket:
        return cls(
            id=d["id"],
            alarm_id=d["alarm_id"],
            alarm_key=d["alarm_key"],
            device=d["device"],
            site=d.get("site", ""),
            region=d.get("region", ""),
            level=FaultLevel(d["level"]),
            status=d["status"],
            policy=d["policy"],
            title=d.get("title", ""),
            opened_at=d["opened_at"],
            updated_at=d["updated_at"],
            clocks=[SlaClock.from_dict(c) for c in d.get("clocks", [])],
            closed_at=d.get("closed_at"),
            paused=d.get("paused", False),
            report=dict(d.get("report", {})),
            remote=dict(d.get("remote", {})),
        )


class TicketDesk:
    """Owns the tickets that are not closed. Pure: the caller passes ``now`` and persists
    ``take_dirty()``, ``take_timeline()`` and ``take_outbox()`` in one transaction."""

    def __init__(self, policies: Mapping[str, Policy], calendars: Mapping[str, Any], next_id: int = 1) -> None:
        self.policies = policies
        self.calendars = calendars
        self.open: dict[int, Ticket] = {}
        self._next_id = next_id
        self._dirty: dict[int, Ticket] = {}
        self._timeline: list[TimelineEntry] = []
        self._outbox: list[tuple[int, str, dict[str, Any]]] = []
        self.notices: list[tuple[Ticket, ClockNotice]] = []

    # -- persistence hand-off ------------------------------------------------------------
    def load(self, tickets: list[Ticket], next_id: int) -> None:
        for t in tickets:
            if t.status != "closed":
                self.open[t.id] = t
        self._next_id = max(self._next_id, next_id)

    def take_dirty(self) -> list[Ticket]:
        out = list(self._dirty.values())
        self._dirty.clear()
        return out

    def take_timeline(self) -> list[TimelineEntry]:
        out, self._timeline = self._timeline, []
        return out

    def take_outbox(self) -> list[tuple[int, str, dict[str, Any]]]:
        out, self._outbox = self._outbox, []
        return out

    def _cal(self, name: str) -> Any:
        return self.calendars[name]

    def _note(self, t: Ticket, now: float, actor: str, kind: str, note: str = "", outbox: str | None = None) -> None:
        t.updated_at = now
        self._dirty[t.id] = t
        self._timeline.append(TimelineEntry(t.id, now, actor, kind, note))
        if outbox:
            self._outbox.append((t.id, outbox, {"note": note, "actor": actor, "event": kind}))

    # -- opening -------------------------------------------------------------------------
    def open_for(self, alarm: Alarm, device: Device, policy: Policy, now: float) -> Ticket:
        """Open a ticket for an alarm and start the clocks the contract defines for its level."""
        clocks: list[SlaClock] = []
        for kind, target in policy.targets(int(alarm.level), device.region).items():
            if kind == "report":
                clocks.append(SlaClock.deferred_clock(kind, target, now))
            else:
                clocks.append(SlaClock.start(kind, target, now, self._cal(target.calendar)))
        t = Ticket(
            id=self._next_id,
            alarm_id=alarm.id,
            alarm_key=alarm.key,
            device=device.id,
            site=device.site,
            region=device.region,
            level=alarm.level,
            status="open",
            policy=policy.name,
            title=alarm.title,
            opened_at=now,
            updated_at=now,
            clocks=clocks,
        )
        self._next_id += 1
        self.open[t.id] = t
        alarm.ticket_id = t.id
        self._note(t, now, "rule:" + alarm.rule_id, "opened", f"{alarm.title} (level {int(alarm.level)})", "open")
        return t

    # -- transitions ---------------------------------------------------------------------
    def get(self, ticket_id: int) -> Ticket:
        t = self.open.get(ticket_id)
        if t is None:
            raise TicketError(f"ticket {ticket_id} is not open (unknown or closed)")
        return t

    def act(self, ticket_id: int, action: str, now: float, actor: str, note: str = "", **kw: Any) -> Ticket:
        """Apply an operator, help-desk or rule action to an open ticket."""
        if action not in ACTIONS:
            raise TicketError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        t = self.get(ticket_id)
        clock_kind, status = ACTIONS[action]
        if action == "pause":
            changed = [c.pause(now, self._cal(c.calendar)) for c in t.clocks]
            if not any(changed):
                raise TicketError(f"ticket {ticket_id}: no running clock to pause")
            t.paused = True
            self._note(t, now, actor, "paused", note, "update")
            return t
        if action == "resume":
            changed = [c.resume(now, self._cal(c.calendar)) for c in t.clocks]
            if not any(changed):
                raise TicketError(f"ticket {ticket_id}: no paused clock to resume")
            t.paused = False
            self._note(t, now, actor, "resumed", note, "update")
            return t
        if action == "comment":
            self._note(t, now, actor, "comment", note, "comment")
            return t
        if action == "set_level":
            self._set_level(t, FaultLevel.parse(kw["level"]), now, actor, note)
            return t
        if action == "set_report":
            for k, v in kw.get("fields", {}).items():
                t.report[k] = str(v)
            self._note(t, now, actor, "report", ", ".join(sorted(kw.get("fields", {}))))
            return t
        if action == "reopen":
            t.status = "open"
            self._note(t, now, actor, "reopened", note, "reopen")
            return t
        if t.paused and action != "close":
            for c in t.clocks:
                c.resume(now, self._cal(c.calendar))
            t.paused = False
        stops = [clock_kind] if clock_kind else []
        if action == "restore":
            # Restoring service answers and solves the fault too; on-site is moot.
            stops = ["response", "solution", "restore"]
            on_site = t.clock("on_site")
            if on_site is not None and not on_site.done:
                on_site.stop(now, self._cal(on_site.calendar))
                if on_site.state == "met":
                    on_site.state = "not_needed"
        if action == "close":
            stops = ["response", "solution", "restore", "report"]
        for kind in stops:
            c = t.clock(kind)
            if c is not None and not c.deferred:
                c.stop(now, self._cal(c.calendar))
        if action in ("restore", "close"):
            rep = t.clock("report")
            if rep is not None and rep.deferred and action == "restore":
                rep.begin(now, self._cal(rep.calendar))
            if action == "close" and rep is not None and rep.deferred:
                rep.state = "not_needed"
                rep.deferred = False
                rep.stopped_at = now
        if status is not None and (_RANK.get(status, 0) > _RANK.get(t.status, 0) or action == "close"):
            t.status = status
        if action == "close":
            t.closed_at = now
            del self.open[t.id]
        outbox = {"acknowledge": "update", "restore": "resolve", "close": "close"}.get(action, "update")
        self._note(t, now, actor, action, note, outbox)
        return t

    def _set_level(self, t: Ticket, level: FaultLevel, now: float, actor: str, note: str) -> None:
        if level == t.level:
            return
        policy = self.policies[t.policy]
        targets = policy.targets(int(level), t.region)
        old = t.level
        t.level = level
        for c in t.clocks:
            tgt = targets.get(c.kind)
            if tgt is not None:
                c.retarget(tgt.seconds, self._cal(c.calendar))
        self._note(t, now, actor, "level", f"level {int(old)} → {int(level)}. {note}".strip(), "level")

    def on_alarm_cleared(self, ticket_id: int, now: float, actor: str) -> Ticket | None:
        """The device recovered: service is restored (the restore clock stops)."""
        t = self.open.get(ticket_id)
        if t is None or t.status in ("restored", "closed"):
            return None
        return self.act(ticket_id, "restore", now, actor, "fault cleared by the device")

    def on_alarm_escalated(self, ticket_id: int, level: FaultLevel, now: float, actor: str) -> None:
        t = self.open.get(ticket_id)
        if t is not None and level < t.level:
            self._set_level(t, level, now, actor, "escalated")

    # -- time ----------------------------------------------------------------------------
    def tick(self, now: float) -> list[tuple[Ticket, ClockNotice]]:
        """Fire SLA warnings and breaches due by ``now`` (each once) onto the timeline."""
        fired: list[tuple[Ticket, ClockNotice]] = []
        for t in self.open.values():
            policy = self.policies.get(t.policy)
            warn_at = policy.warn_at if policy else (0.5, 0.8)
            for c in t.clocks:
                for n in c.notices(now, self._cal(c.calendar), warn_at):
                    fired.append((t, n))
                    if n.fraction >= 1.0:
                        self._note(t, now, "sla", "breach", f"{c.kind} deadline breached", "update")
                    else:
                        self._note(t, now, "sla", "warning", f"{c.kind} at {int(n.fraction * 100)} % of its target")
        return fired

    def next_check(self) -> float | None:
        best: float | None = None
        for t in self.open.values():
            policy = self.policies.get(t.policy)
            warn_at = policy.warn_at if policy else (0.5, 0.8)
            for c in t.clocks:
                n = c.next_check(self._cal(c.calendar), warn_at)
                if n is not None and (best is None or n < best):
                    best = n
        return best
