"""Tickets: opened for alarms that need people, with SLA clocks, timeline and transitions (pure).

Lifecycle (status only moves forward, except ``reopen``)::

    open ──acknowledge──> acknowledged ──propose_solution──> solution_proposed
      ──arrive──> on_site ──restore──> restored ──close──> closed ──reopen──> open

Any step may be skipped. Besides the status moves: ``dispatch`` (an engineer was sent:
stops the ``dispatch`` clock, the remote-fix window), ``no_on_site`` (no on-site visit is
needed: the ``on_site`` clock becomes *not applicable*, never *met*), ``pause``/``resume`` (waiting on the
customer, access or parts: no clock counts meanwhile), ``set_level`` (re-targets the
clocks from the ticket's start), ``comment`` and ``set_report`` (the post-incident
report's free-text parts). Each action is a :class:`TimelineEntry` with its time, actor
(``user:NAME``, ``rule:ID``, ``helpdesk:NAME``, ``device``, ``sla``) and note.

Which clock each action stops:

* ``acknowledge`` stops ``response`` only: acknowledging is the response; the other
  clocks keep running.
* ``dispatch`` stops ``dispatch`` (so does ``arrive``: an engineer on site was dispatched);
  ``no_on_site`` makes ``on_site`` ``not_needed``.
* ``propose_solution`` stops ``solution``; ``arrive`` stops ``on_site``.
* ``restore`` stops ``restore`` and, when still running, ``response`` and ``solution``
  (restoring answers them); ``on_site`` and ``dispatch`` become ``not_needed`` unless
  already late; ``report`` starts. A clock the policy lists in ``human_only`` is stopped
  only when a person restores (not ``device``, ``rule:…`` or ``sla``): a device clearing by itself
  leaves it running (the mine contract's response is a first assessment to the customer).
* ``close`` does what ``restore`` does if service was not restored yet, then stops
  ``report`` (close a ticket once the written report is delivered); a ``report`` clock
  that never started becomes ``not_needed``.
* ``reopen`` (of a restored or closed ticket) runs again every clock that ``restore``
  or ``close`` stopped, with the business time it had used (the restored span does not
  count); a ``report`` clock that was not breached waits for the next restore.

SLA warnings and breaches (see :meth:`TicketDesk.tick`) become timeline entries
``sla_warning`` / ``sla_breach`` and outbox ``update`` messages whose payload carries
``event`` (``"sla_warning"`` / ``"sla_breach"``) and ``sla`` (``clock``, ``fraction``,
``at``, ``due_at``, ``target``). Each threshold fires once; when several were crossed at
once (after downtime or a level change) only the highest is announced. A deadline
computed without holiday data gets a ``provisional`` timeline entry and a logged warning.

Timers scale with what is due, not with what is open: the desk keeps one heap of
``(next check, ticket id)`` entries, refreshed for the tickets an action touched, so
:meth:`TicketDesk.tick` and :meth:`TicketDesk.next_check` cost nothing per idle ticket
(a mass outage leaves tens of thousands of tickets open, and the pipeline asks both on
every batch).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.core.alarms import Alarm
from gateway.core.escalation import Fired, Staffing
from gateway.core.partitions import next_in_series
from gateway.core.sla import GOAL_ACTIONS, ClockNotice, ClockTarget, Policy, SlaClock, kind_order
from gateway.model import Device, FaultLevel

__all__ = [
    "ACTIONS",
    "CHANNELS",
    "OUTBOX_KINDS",
    "REPORTED_SKEW",
    "REPORT_FIELDS",
    "STATUSES",
    "VERBS",
    "Ticket",
    "TicketDesk",
    "TicketError",
    "TimelineEntry",
    "canonical_action",
    "is_person",
]

log = logging.getLogger("gateway.tickets")

STATUSES = ("open", "acknowledged", "solution_proposed", "on_site", "restored", "closed")

#: action → (clock whose goal it reaches, status it moves to)
ACTIONS: dict[str, tuple[str | None, str | None]] = {
    "acknowledge": ("response", "acknowledged"),
    "dispatch": ("dispatch", None),
    "no_on_site": (None, None),
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
    "take": (None, None),
    "assign": (None, None),
    "hand_over": (None, None),
}

#: Short names (CLI verbs, API path segments, help-desk statuses) → actions.
VERBS: dict[str, str] = {
    "ack": "acknowledge",
    "acknowledged": "acknowledge",
    "propose": "propose_solution",
    "arrived": "arrive",
    "resolve": "restore",
    "resolved": "restore",
    "restored": "restore",
    "closed": "close",
    "reopened": "reopen",
    "level": "set_level",
    "report": "set_report",
    "dispatched": "dispatch",
    "no-visit": "no_on_site",
    "no-on-site": "no_on_site",
    "handover": "hand_over",
    "hand-over": "hand_over",
}

#: The post-incident report's free-text parts a person supplies.
REPORT_FIELDS = ("symptoms", "cause", "solution", "follow_up")

#: Outbox message kind per action (``set_report`` writes none).
OUTBOX_KINDS: dict[str, str] = {
    "acknowledge": "update",
    "dispatch": "update",
    "no_on_site": "update",
    "propose_solution": "update",
    "arrive": "update",
    "restore": "resolve",
    "close": "close",
    "reopen": "reopen",
    "pause": "update",
    "resume": "update",
    "comment": "comment",
    "set_level": "level",
    "take": "update",
    "assign": "update",
    "hand_over": "update",
}

_RANK = {s: i for i, s in enumerate(STATUSES)}
# Actions that only record the moment their goal was first reached.
_MILESTONE_ONCE = ("acknowledge", "dispatch", "propose_solution", "arrive")
# Clocks a restore makes not needed (instead of stopping them).
_SKIPPED_BY_RESTORE = ("on_site", "dispatch")
#: How people tell the vendor of a fault (a ticket's ``origin`` besides ``alarm``).
CHANNELS = ("phone", "email", "helpdesk")
#: A reported time this close to the entry counts as "now": no reason needed, not "future".
REPORTED_SKEW = 60.0


#: Actors that are not people: the device itself, a rule, the SLA timers.
_MACHINE_ACTORS = ("device", "sla", "system")


def is_person(actor: str) -> bool:
    """Whether ``actor`` is a person (an operator, an API user, a help-desk user), not the
    device clearing by itself, a rule or the SLA timers."""
    return actor not in _MACHINE_ACTORS and not actor.startswith("rule:")
# What may still be done to a closed ticket.
_ON_CLOSED = ("reopen", "comment", "set_report")
# Ownership actions (who is on the ticket): they move no clock.
_OWNERSHIP = ("take", "assign", "hand_over")
# A clock fires this close to its check (the slack ``SlaClock.notices`` allows).
_CHECK_SLACK = 1e-3


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _span(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def canonical_action(name: str) -> str:
    """Return the action for an action name or a short verb (``ack`` → ``acknowledge``).

    Raises:
        TicketError: The name is neither.
    """
    action = VERBS.get(name, name)
    if action not in ACTIONS:
        known = ", ".join(sorted(set(ACTIONS) | set(VERBS)))
        raise TicketError(f"unknown action {name!r}; known: {known}")
    return action


class TicketError(ValueError):
    """An action that does not apply (unknown ticket, closed ticket, bad level, ...)."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of a ticket's history.

    Attributes:
        ticket_id: The ticket.
        ts: When it happened (epoch seconds).
        actor: Who did it: ``user:NAME``, ``rule:ID``, ``helpdesk:NAME``, ``device``, ``sla``.
        kind: The action (``opened``, ``acknowledge``, ``paused``, ``sla_breach``, ...).
        note: Free text.
        on_behalf_of: A name the caller gave for whom it acted (kept apart: ``actor`` is
            always the authenticated caller); ``""`` when none was given.
    """

    ticket_id: int
    ts: float
    actor: str
    kind: str
    note: str = ""
    on_behalf_of: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "ticket_id": self.ticket_id,
            "ts": self.ts,
            "actor": self.actor,
            "kind": self.kind,
            "note": self.note,
            "on_behalf_of": self.on_behalf_of,
        }


@dataclass(slots=True)
class Ticket:
    """A fault that needs people, with its SLA clocks.

    Attributes:
        milestones: Action → when: the first ``acknowledge``, ``propose_solution`` and
            ``arrive``; the latest ``restore``, ``close`` and ``reopen`` (a reopen drops
            ``restore`` and ``close``).
        pauses: ``[start, end]`` spans during which no clock counted (``end`` is ``None``
            while paused).
        urgent: The contract calls this ticket's level urgent (urgent response target).
        report: The post-incident report's free-text parts (see :data:`REPORT_FIELDS`).
        remote: Help-desk ids by connector.
        device_class: The device's class (selects the policy's class variants).
        origin: ``alarm`` (opened by an alarm) or the channel a person reported it by:
            ``phone``, ``email``, ``helpdesk``.
        reported_by: Who reported it (a person's ticket).
        entered_at: When a person's ticket was entered, if its clocks start earlier
            (back-dated to the reported time); ``None`` otherwise.
        backdate_reason: Why the start is back-dated (required when it is).
        alarm_ids: Alarms linked to the ticket (the opening alarm first, if any).
        owner: The engineer on the ticket (a user name; ``""``: nobody owns it).
        team: The team the ticket belongs to (``""``: none).
        late_s: Its opening event arrived this many seconds late from an edge (a WAN
            cut); ``None`` when it came in time.
        escalations: Escalation step id → when it fired (each step fires once; kept with
            the ticket, so a restart does not fire it again).
    """

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
    milestones: dict[str, float] = field(default_factory=dict)
    pauses: list[list[float | None]] = field(default_factory=list)
    urgent: bool = False
    device_class: str = ""
    origin: str = "alarm"
    reported_by: str = ""
    entered_at: float | None = None
    backdate_reason: str = ""
    alarm_ids: list[int] = field(default_factory=list)
    owner: str = ""
    team: str = ""
    escalations: dict[str, float] = field(default_factory=dict)
    late_s: float | None = None

    def clock(self, kind: str) -> SlaClock | None:
        """Return the clock of ``kind``, or ``None`` if the contract defines none."""
        for c in self.clocks:
            if c.kind == kind:
                return c
        return None

    @property
    def provisional(self) -> bool:
        """Some deadline was computed with fallback holiday data."""
        return any(c.provisional for c in self.clocks)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the store's ``data`` column)."""
        d = {
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
            "urgent": self.urgent,
            "provisional": self.provisional,
            "clocks": [c.to_dict() for c in self.clocks],
            "milestones": dict(self.milestones),
            "pauses": [list(p) for p in self.pauses],
            "report": dict(self.report),
            "remote": dict(self.remote),
            "device_class": self.device_class,
            "origin": self.origin,
            "reported_by": self.reported_by,
            "entered_at": self.entered_at,
            "backdate_reason": self.backdate_reason,
            "alarm_ids": list(self.alarm_ids),
            "owner": self.owner,
            "team": self.team,
            "escalations": dict(self.escalations),
        }
        if self.late_s is not None:
            d["late_s"] = self.late_s
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Ticket:
        """Rebuild a ticket from :meth:`to_dict` output (older rows lack some keys)."""
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
            milestones={str(k): float(v) for k, v in d.get("milestones", {}).items()},
            pauses=[list(p) for p in d.get("pauses", [])],
            urgent=d.get("urgent", False),
            device_class=d.get("device_class", ""),
            origin=d.get("origin", "alarm"),
            reported_by=d.get("reported_by", ""),
            entered_at=d.get("entered_at"),
            backdate_reason=d.get("backdate_reason", ""),
            alarm_ids=[int(a) for a in d.get("alarm_ids", [])],
            owner=str(d.get("owner") or ""),
            team=str(d.get("team") or ""),
            escalations={str(k): float(v) for k, v in (d.get("escalations") or {}).items()},
            late_s=d.get("late_s"),
        )


#: Loads any ticket (closed ones too) by id; ``None`` when there is none.
TicketLoader = Callable[[int], "Ticket | None"]


class TicketDesk:
    """Owns the tickets that are not closed.

    Pure: the caller passes ``now`` and persists ``take_dirty()``, ``take_timeline()``
    and ``take_outbox()`` in one transaction.

    Args:
        policies: Contracts by name.
        calendars: Calendars by name (every name a target refers to).
        next_id: The id the next ticket gets.
        loader: Loads a closed ticket, so that it can be reopened, commented on or get
            its report parts set; without one those actions on closed tickets fail.
    """

    def __init__(
        self,
        policies: Mapping[str, Policy],
        calendars: Mapping[str, Any],
        next_id: int = 1,
        loader: TicketLoader | None = None,
        staffing: Staffing | None = None,
    ) -> None:
        self.policies = policies
        #: Teams, roles and escalation steps (``None``: no teams, no escalation).
        self.staffing = staffing
        self.calendars = calendars
        self.loader = loader
        self.open: dict[int, Ticket] = {}
        self._next_id = next_id
        #: Ids handed out are ``id_offset`` mod ``id_step`` (a partition's series, docs/scaling.md).
        self.id_step, self.id_offset = 1, 0
        self._dirty: dict[int, Ticket] = {}
        self._timeline: list[TimelineEntry] = []
        self._behalf: tuple[str, str] | None = None  # (actor, on behalf of) during act()
        self._outbox: list[tuple[int, str, dict[str, Any]]] = []
        self._fired: list[tuple[Ticket, ClockNotice]] = []
        self._escalated: list[tuple[Ticket, Fired]] = []
        # SLA timers: a heap of (next check, ticket id). An entry is live while it equals
        # _check_at[id]; others are stale and skipped. Tickets whose clocks may have
        # changed wait in _touched until the next tick() or next_check() re-reads them.
        self._timers: list[tuple[float, int]] = []
        self._check_at: dict[int, float] = {}
        self._touched: set[int] = set()
        # Tickets people reported, by device: an alarm of the device attaches to one.
        self._reported: dict[str, list[int]] = {}

    def _take_id(self) -> int:
        n = next_in_series(self._next_id, self.id_step, self.id_offset)
        self._next_id = n + 1
        return n

    # -- persistence hand-off ------------------------------------------------------------
    def load(self, tickets: list[Ticket], next_id: int) -> None:
        """Adopt the open tickets read from the store."""
        for t in tickets:
            if t.status != "closed":
                self.open[t.id] = t
                self._fire_soon(t.id)
                if t.origin != "alarm":
                    self._reported.setdefault(t.device, []).append(t.id)
        self._next_id = max(self._next_id, next_id)

    def take_dirty(self) -> list[Ticket]:
        """Return (and forget) the tickets changed since the last call."""
        out = list(self._dirty.values())
        self._dirty.clear()
        return out

    def take_timeline(self) -> list[TimelineEntry]:
        """Return (and forget) the timeline entries written since the last call."""
        out, self._timeline = self._timeline, []
        return out

    def take_outbox(self) -> list[tuple[int, str, dict[str, Any]]]:
        """Return (and forget) ``(ticket id, outbox kind, payload fields)`` since the last call."""
        out, self._outbox = self._outbox, []
        return out

    def set_staffing(self, staffing: Staffing | None) -> None:
        """Swap teams and escalation steps (a reload); every open ticket's timer is re-read."""
        self.staffing = staffing
        self._touched.update(self.open)

    def take_escalations(self) -> list[tuple[Ticket, Fired]]:
        """Return (and forget) the escalation steps fired since the last call, with their tickets."""
        out, self._escalated = self._escalated, []
        return out

    def _cal(self, name: str) -> Any:
        return self.calendars[name]

    def _warn_at(self, t: Ticket) -> tuple[float, ...]:
        policy = self.policies.get(t.policy)
        return policy.warn_at if policy else (0.5, 0.8)

    def _note(
        self,
        t: Ticket,
        ts: float,
        actor: str,
        kind: str,
        note: str = "",
        outbox: str | None = None,
        **extra: Any,
    ) -> None:
        t.updated_at = max(t.updated_at, ts)
        self._dirty[t.id] = t
        self._touched.add(t.id)
        behalf = self._behalf[1] if self._behalf is not None and self._behalf[0] == actor else ""
        self._timeline.append(TimelineEntry(t.id, ts, actor, kind, note, behalf))
        if outbox:
            if behalf:
                extra = {**extra, "on_behalf_of": behalf}
            self._outbox.append((t.id, outbox, {"note": note, "actor": actor, "event": kind, **extra}))

    def _provisional_check(self, t: Ticket, before: Mapping[str, bool], now: float) -> None:
        """Warn loudly (log and timeline) when a deadline just became provisional."""
        for c in t.clocks:
            if c.provisional and not before.get(c.kind, False) and not c.deferred:
                msg = (
                    f"{c.kind} deadline computed without holiday data for its dates "
                    f"(Mon-Fri minus fixed-date holidays): provisional, verify it"
                )
                log.warning("ticket %d: %s", t.id, msg)
                self._note(t, now, "sla", "provisional", msg)

    @staticmethod
    def _prov(t: Ticket) -> dict[str, bool]:
        return {c.kind: c.provisional for c in t.clocks}

    # -- opening -------------------------------------------------------------------------
    def open_for(self, alarm: Alarm, device: Device, policy: Policy, now: float) -> Ticket:
        """Open a ticket for an alarm and start the clocks the contract defines for its level.

        Args:
            alarm: The alarm; its ``ticket_id`` is set.
            device: The alarm's device (its region selects region variants).
            policy: The device's contract.
            now: When the clocks start (normally the alarm's first event).

        Returns:
            The new ticket.
        """
        clocks: list[SlaClock] = []
        for kind, target in policy.targets(int(alarm.level), device.region, device.device_class).items():
            if kind == "report":
                clocks.append(SlaClock.deferred_clock(kind, target, now))
            else:
                clocks.append(SlaClock.start(kind, target, now, self._cal(target.calendar)))
        t = Ticket(
            id=self._take_id(),
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
            urgent=policy.is_urgent(int(alarm.level)),
            device_class=device.device_class,
            alarm_ids=[alarm.id],
        )
        late = alarm.attrs.get("late_s")
        if isinstance(late, (int, float)):
            t.late_s = float(late)  # its event came late from an edge: the board says so
        if self.staffing is not None:
            t.team = self.staffing.team_for(device.site, policy.name)
        self.open[t.id] = t
        alarm.ticket_id = t.id
        urgent = ", urgent" if t.urgent else ""
        note = f"{alarm.title} (level {int(alarm.level)}{urgent})"
        self._note(t, now, "rule:" + alarm.rule_id, "opened", note, "open")
        self._provisional_check(t, {}, now)
        return t

    def open_reported(self, *, on_behalf_of: str = "", **kw: Any) -> Ticket:
        """Open a ticket a person reported (see :meth:`_open_reported`); ``on_behalf_of`` as in :meth:`act`."""
        actor = str(kw.get("actor", ""))
        self._behalf = (actor, on_behalf_of) if on_behalf_of else None
        try:
            return self._open_reported(**kw)
        finally:
            self._behalf = None

    def _open_reported(
        self,
        *,
        device: Device,
        policy: Policy,
        level: FaultLevel,
        title: str,
        reported_by: str,
        channel: str,
        now: float,
        actor: str,
        reported_at: float | None = None,
        reason: str = "",
        remote: tuple[str, str] | None = None,
    ) -> Ticket:
        """Open a ticket a person reported (a customer's call, e-mail or help-desk ticket).

        The clocks start at the reported time, which may be earlier than the entry
        (``now``): a back-dated start needs a ``reason``, and both times are kept and shown.
        Without a reason, a reported time within :data:`REPORTED_SKEW` of ``now`` counts as
        ``now`` (two machines' clocks); a reported time later than that is refused.

        Args:
            device: The device concerned (its region and class select variants).
            policy: The device's contract.
            level: The fault level the person judged.
            title: What is wrong, in a line.
            reported_by: Who reported it (name, phone number, e-mail).
            channel: One of :data:`CHANNELS`.
            now: When it is entered.
            actor: Who enters it (``user:NAME``, ``helpdesk:NAME``).
            reported_at: When the vendor was told (default ``now``).
            reason: Why the start is back-dated (required when it is).
            remote: ``(connector, remote id)`` of the help-desk ticket it came from; a
                second call for the same remote ticket returns the ticket already open.

        Returns:
            The ticket.

        Raises:
            TicketError: Bad input (unknown channel, empty title, a reported time in the
                future, a back-dated start without a reason). Nothing changed.
        """
        if channel not in CHANNELS:
            raise TicketError(f"unknown channel {channel!r}; known: {', '.join(CHANNELS)}")
        title, reported_by, reason = title.strip(), reported_by.strip(), reason.strip()
        if not title:
            raise TicketError("a reported ticket needs a title")
        if not reported_by:
            raise TicketError("a reported ticket needs reported_by (who reported it)")
        if remote is not None:
            for tid in self._reported.get(device.id, ()):
                t = self.open.get(tid)
                if t is not None and t.remote.get(remote[0]) == remote[1]:
                    return t
        start = now if reported_at is None else float(reported_at)
        if start > now + REPORTED_SKEW:
            raise TicketError(
                f"reported_at {_utc(start)} is in the future (now {_utc(now)}): "
                "clocks cannot start after the ticket is entered"
            )
        start = min(start, now)
        if now - start > REPORTED_SKEW and not reason:
            raise TicketError(
                f"reported_at {_utc(start)} is {_span(now - start)} before entry: a back-dated start needs a reason"
            )
        if not reason:
            start = now  # a minute's difference without a reason: the clocks of two machines
        backdated = start < now
        clocks: list[SlaClock] = []
        for kind, target in policy.targets(int(level), device.region, device.device_class).items():
            if kind == "report":
                clocks.append(SlaClock.deferred_clock(kind, target, start))
            else:
                clocks.append(SlaClock.start(kind, target, start, self._cal(target.calendar)))
        t = Ticket(
            id=self._take_id(),
            alarm_id=0,
            alarm_key="",
            device=device.id,
            site=device.site,
            region=device.region,
            level=level,
            status="open",
            policy=policy.name,
            title=title,
            opened_at=start,
            updated_at=now,
            clocks=clocks,
            urgent=policy.is_urgent(int(level)),
            device_class=device.device_class,
            origin=channel,
            reported_by=reported_by,
            entered_at=now if backdated else None,
            backdate_reason=reason if backdated else "",
            remote={remote[0]: remote[1]} if remote is not None else {},
        )
        self.open[t.id] = t
        self._reported.setdefault(device.id, []).append(t.id)
        urgent = ", urgent" if t.urgent else ""
        note = f"{title} (level {int(level)}{urgent}); reported by {reported_by} via {channel}"
        if backdated:
            note += f"; clocks start at the reported time {_utc(start)}, back-dated: {reason}"
        extra: dict[str, Any] = {"description": f"Reported by {reported_by} via {channel} at {_utc(start)}"
                                 + (f" (entered {_utc(now)}; back-dated: {reason})" if backdated else "")}
        if remote is not None:
            extra["adopt"] = {remote[0]: remote[1]}
        self._note(t, now, actor, "opened", note, "open", **extra)
        self._provisional_check(t, {}, now)
        self._fire(t, now)
        return t

    def reported_for(self, device_id: str) -> Ticket | None:
        """The oldest ticket a person reported for the device that is open and not restored."""
        ids = self._reported.get(device_id)
        if not ids:
            return None
        live = [tid for tid in ids if tid in self.open]
        if live:
            self._reported[device_id] = live
        else:
            del self._reported[device_id]
        for tid in live:
            t = self.open[tid]
            if t.status not in ("restored", "closed"):
                return t
        return None

    def attach_alarm(
        self, ticket_id: int, alarm: Alarm, now: float, actor: str, note: str = "", on_behalf_of: str = ""
    ) -> Ticket:
        """Link an alarm to a ticket (see :meth:`_attach_alarm`); ``on_behalf_of`` as in :meth:`act`."""
        self._behalf = (actor, on_behalf_of) if on_behalf_of else None
        try:
            return self._attach_alarm(ticket_id, alarm, now, actor, note)
        finally:
            self._behalf = None

    def _attach_alarm(self, ticket_id: int, alarm: Alarm, now: float, actor: str, note: str = "") -> Ticket:
        """Link an alarm to a ticket: the alarm's changes (clear, escalation) act on it.

        A more severe alarm re-targets the ticket to its level. The ticket's clocks keep
        their start.

        Raises:
            TicketError: The ticket is closed or unknown, or the alarm is already linked
                to it or to another open ticket.
        """
        t = self._find(ticket_id, "link")
        if alarm.ticket_id == t.id or alarm.id in t.alarm_ids:
            raise TicketError(f"alarm {alarm.id} is already linked to ticket {t.id}")
        if alarm.ticket_id is not None and alarm.ticket_id in self.open:
            raise TicketError(
                f"alarm {alarm.id} already has ticket {alarm.ticket_id}; link that ticket or close it first"
            )
        self._fire(t, now)
        alarm.ticket_id = t.id
        t.alarm_ids.append(alarm.id)
        if not t.alarm_key:
            t.alarm_id, t.alarm_key = alarm.id, alarm.key
        text = f"alarm {alarm.id} linked ({alarm.key}, level {int(alarm.level)}: {alarm.title})"
        self._note(t, now, actor, "alarm_linked", text + (f". {note}" if note else ""), "update")
        if alarm.level < t.level and t.status not in ("restored", "closed"):
            self._set_level(t, alarm.level, now, actor, f"alarm {alarm.id} is level {int(alarm.level)}")
        return t

    # -- transitions ---------------------------------------------------------------------
    def queue_report(self, ticket_id: int, now: float, actor: str, to: Sequence[str], text: str) -> Ticket:
        """Queue the post-incident report for the customer: an outbox ``report`` message for the
        notifiers ``to`` only (not the help desks). The ``report`` clock keeps running: it stops
        when the delivery is confirmed (the notifier's delivery closes the ticket)."""
        t = self.get(ticket_id)
        if t.status not in ("restored", "closed"):
            raise TicketError(f"ticket {ticket_id} is {t.status}: the report goes out after the service is restored")
        if not to:
            raise TicketError("no notifier delivers reports for this contract (a notify entry with reports = true)")
        self._note(t, now, actor, "report_queued", f"incident report queued for {', '.join(to)}", "report",
                   to=list(to), report_text=text)
        return t

    def get(self, ticket_id: int) -> Ticket:
        """Return an open ticket.

        Raises:
            TicketError: It is unknown or closed.
        """
        t = self.open.get(ticket_id)
        if t is None:
            raise TicketError(f"ticket {ticket_id} is not open (unknown or closed)")
        return t

    def _find(self, ticket_id: int, action: str) -> Ticket:
        t = self.open.get(ticket_id)
        if t is not None:
            return t
        loaded = self.loader(ticket_id) if self.loader is not None else None
        if loaded is None:
            if self.loader is None:
                raise TicketError(f"ticket {ticket_id} is not open (unknown or closed)")
            raise TicketError(f"no ticket {ticket_id}")
        if loaded.status != "closed":  # open in the store but not here: adopt it
            self.open[loaded.id] = loaded
            self._fire_soon(loaded.id)
            return loaded
        if action not in _ON_CLOSED:
            raise TicketError(f"ticket {ticket_id} is closed; reopen it first")
        return loaded

    def act(
        self, ticket_id: int, action: str, now: float, actor: str, note: str = "", on_behalf_of: str = "", **kw: Any
    ) -> Ticket:
        """Apply an operator, help-desk or rule action to a ticket.

        Warnings and breaches due by ``now`` fire first, so the timeline keeps time order
        and a late action finds its clock already breached.

        Args:
            ticket_id: The ticket.
            action: An action of :data:`ACTIONS` or a verb of :data:`VERBS`.
            now: When it happened.
            actor: Who did it.
            note: Free text for the timeline and the help desk.
            on_behalf_of: Whom ``actor`` says it acts for; recorded beside it, never instead.
            **kw: ``level`` (1-4 or a name) for ``set_level``; ``fields`` (a mapping of
                :data:`REPORT_FIELDS`) for ``set_report``.

        Returns:
            The ticket.

        Raises:
            TicketError: The action does not apply. Nothing changed, except that SLA
                notices already due by ``now`` may have fired (as a tick would).
        """
        self._behalf = (actor, on_behalf_of) if on_behalf_of else None
        try:
            return self._act(ticket_id, action, now, actor, note, **kw)
        finally:
            self._behalf = None

    def _act(self, ticket_id: int, action: str, now: float, actor: str, note: str, **kw: Any) -> Ticket:
        action = canonical_action(action)
        t = self._find(ticket_id, action)
        if t.status != "closed":
            self._fire(t, now)
        if action == "pause":
            return self._pause(t, now, actor, note)
        if action == "resume":
            return self._resume(t, now, actor, note)
        if action == "comment":
            if not note.strip():
                raise TicketError("a comment needs a note")
            self._note(t, now, actor, "comment", note, "comment")
            return t
        if action == "set_level":
            if kw.get("level") is None:
                raise TicketError("set_level needs a level (1-4)")
            try:
                level = FaultLevel.parse(kw["level"])
            except ValueError:
                raise TicketError(
                    f"unknown fault level {kw['level']!r} (use 1-4 or critical/major/minor/warning)"
                ) from None
            if level == t.level:
                raise TicketError(f"ticket {t.id} is already level {int(level)}")
            self._set_level(t, level, now, actor, note)
            return t
        if action == "set_report":
            return self._set_report(t, now, actor, note, kw.get("fields") or {})
        if action in _OWNERSHIP:
            return self._own(t, action, now, actor, note, kw)
        if action == "reopen":
            return self._reopen(t, now, actor, note)
        if action == "no_on_site":
            return self._no_on_site(t, now, actor, note)
        return self._progress(t, action, now, actor, note)

    def _no_on_site(self, t: Ticket, now: float, actor: str, note: str) -> Ticket:
        """No on-site visit is needed: the on-site clock is not applicable (not met)."""
        c = t.clock("on_site")
        if c is None:
            raise TicketError(f"ticket {t.id}: its contract sets no on-site clock at level {int(t.level)}")
        if c.done:
            raise TicketError(f"ticket {t.id}: the on-site clock already stopped ({c.state})")
        c.skip(now, self._cal(c.calendar), "no_on_site")
        text = "no on-site visit needed: on-site clock not applicable"
        if c.state != "not_needed":
            text = f"no on-site visit needed; the on-site deadline had already passed ({c.state})"
        self._note(t, now, actor, "no_on_site", text + (f". {note}" if note else ""), "update")
        return t

    def _own(self, t: Ticket, action: str, now: float, actor: str, note: str, kw: Mapping[str, Any]) -> Ticket:
        """take (the actor becomes the owner), assign (to ``kw["to"]``, optionally a
        ``kw["team"]``), hand_over (from the owner to ``kw["to"]``; a note says what is
        handed over)."""
        if t.status == "closed":
            raise TicketError(f"ticket {t.id} is closed; reopen it first")
        to = str(kw.get("to") or "").strip()
        team = str(kw.get("team") or "").strip()
        me = actor.split(":", 1)[1] if actor.startswith("user:") else actor
        before = t.owner
        if action == "take":
            to = str(kw.get("owner") or me).strip()
            if t.owner == to:
                raise TicketError(f"ticket {t.id} is already owned by {to}")
            text = f"taken by {to}" + (f" (from {before})" if before else "")
        elif action == "assign":
            if not to and not team:
                raise TicketError("assign needs a person ('to') or a team")
            if to and to == t.owner and (not team or team == t.team):
                raise TicketError(f"ticket {t.id} is already owned by {to}")
            parts = []
            if to:
                parts.append(f"assigned to {to}" + (f" (was {before})" if before else ""))
            if team and team != t.team:
                parts.append(f"team {t.team or '-'} → {team}")
            text = "; ".join(parts) or f"team {team}"
        else:
            if not t.owner:
                raise TicketError(f"ticket {t.id} has no owner to hand over from; use take or assign")
            if not to:
                raise TicketError("hand_over needs the person taking over ('to')")
            if to == t.owner:
                raise TicketError(f"ticket {t.id} is already owned by {to}")
            text = f"handed over from {before} to {to}"
        if to:
            t.owner = to
        if team:
            t.team = team
        self._note(t, now, actor, action, text + (f". {note}" if note else ""), OUTBOX_KINDS[action],
                   owner=t.owner, team=t.team, previous_owner=before)
        return t

    def _progress(self, t: Ticket, action: str, now: float, actor: str, note: str) -> Ticket:
        """acknowledge, propose_solution, arrive, restore, close."""
        if action in _MILESTONE_ONCE and action in t.milestones:
            raise TicketError(f"ticket {t.id}: {action} was already recorded")
        if action == "restore" and t.status == "restored":
            raise TicketError(f"ticket {t.id} is already restored")
        before = self._prov(t)
        if t.paused:
            if action == "close":
                self._end_pause(t, now)
            else:
                self._resume_clocks(t, now)
                self._note(t, now, actor, "resumed", f"resumed by {action}")
        cal = self._cal
        if action in ("acknowledge", "dispatch", "propose_solution", "arrive"):
            c = t.clock(ACTIONS[action][0] or "")
            if c is not None:
                c.stop(now, cal(c.calendar), action)
            d = t.clock("dispatch") if action == "arrive" else None
            if d is not None and not d.done:  # an engineer on site was dispatched
                d.stop(now, cal(d.calendar), action)
        elif action == "restore" or (action == "close" and "restore" not in t.milestones):
            self._stop_for_restore(t, now, action, actor)
        if action == "close" and is_person(actor):
            # A person closing the ticket has answered what only a person could.
            for c in t.clocks:
                if c.kind in self._human_only(t) and not c.done and not c.deferred:
                    c.stop(now, cal(c.calendar), action)
        if action == "close":
            rep = t.clock("report")
            if rep is not None:
                if rep.deferred:
                    rep.skip(now, cal(rep.calendar), "close")
                else:
                    rep.stop(now, cal(rep.calendar), "close")
            t.closed_at = now
            self.open.pop(t.id, None)
        if action in _MILESTONE_ONCE:
            t.milestones.setdefault(action, now)
        else:
            t.milestones[action] = now
        status = ACTIONS[action][1]
        if status is not None and (_RANK[status] > _RANK.get(t.status, 0) or action == "close"):
            t.status = status
        extra: dict[str, Any] = {}
        if action == "restore":
            extra["resolution"] = note or t.report.get("solution", "") or "service restored"
        self._note(t, now, actor, action, note, OUTBOX_KINDS[action], **extra)
        self._provisional_check(t, before, now)
        return t

    def _human_only(self, t: Ticket) -> frozenset[str]:
        policy = self.policies.get(t.policy)
        return policy.human_only if policy is not None else frozenset()

    def _stop_for_restore(self, t: Ticket, now: float, action: str, actor: str) -> None:
        keep = frozenset() if is_person(actor) else self._human_only(t)
        for c in t.clocks:
            cal = self._cal(c.calendar)
            if c.kind in keep:
                continue
            if c.kind in ("response", "solution", "restore"):
                c.stop(now, cal, action)
            elif c.kind in _SKIPPED_BY_RESTORE:
                c.skip(now, cal, action)
            elif c.kind == "report" and action == "restore":
                c.begin(now, cal)

    def _pause(self, t: Ticket, now: float, actor: str, note: str) -> Ticket:
        if t.paused:
            raise TicketError(f"ticket {t.id} is already paused")
        changed = [c.pause(now, self._cal(c.calendar)) for c in t.clocks]
        if not any(changed):
            raise TicketError(f"ticket {t.id}: no running clock to pause")
        t.paused = True
        t.pauses.append([now, None])
        self._note(t, now, actor, "paused", note, "update")
        return t

    def _resume(self, t: Ticket, now: float, actor: str, note: str) -> Ticket:
        if not t.paused:
            raise TicketError(f"ticket {t.id} is not paused")
        before = self._prov(t)
        self._resume_clocks(t, now)
        self._note(t, now, actor, "resumed", note, "update")
        self._provisional_check(t, before, now)
        return t

    def _resume_clocks(self, t: Ticket, now: float) -> None:
        for c in t.clocks:
            c.resume(now, self._cal(c.calendar))
        self._end_pause(t, now)

    @staticmethod
    def _end_pause(t: Ticket, now: float) -> None:
        t.paused = False
        if t.pauses and t.pauses[-1][1] is None:
            t.pauses[-1][1] = now

    def _reopen(self, t: Ticket, now: float, actor: str, note: str) -> Ticket:
        if t.status not in ("restored", "closed"):
            raise TicketError(
                f"ticket {t.id} is {t.status}; only a restored or closed ticket can be reopened"
            )
        before = self._prov(t)
        for c in t.clocks:
            cal = self._cal(c.calendar)
            if c.kind == "report":
                if not c.breached:
                    c.rewind()
            elif c.stopped_by in ("restore", "close"):
                c.reopen(now, cal)
        t.milestones.pop("restore", None)
        t.milestones.pop("close", None)
        t.milestones["reopen"] = now
        t.status = "open"
        t.closed_at = None
        self.open[t.id] = t
        self._note(t, now, actor, "reopened", note, "reopen")
        self._provisional_check(t, before, now)
        return t

    def _set_report(self, t: Ticket, now: float, actor: str, note: str, fields: Mapping[str, Any]) -> Ticket:
        if not fields:
            raise TicketError(f"set_report needs at least one of {', '.join(REPORT_FIELDS)}")
        unknown = sorted(set(fields) - set(REPORT_FIELDS))
        if unknown:
            raise TicketError(f"unknown report field {unknown[0]!r}; known: {', '.join(REPORT_FIELDS)}")
        for k, v in fields.items():
            text = str(v).strip()
            if text:
                t.report[k] = text
            else:
                t.report.pop(k, None)
        what = ", ".join(k for k in REPORT_FIELDS if k in fields)
        self._note(t, now, actor, "report", f"report: {what} set" + (f". {note}" if note else ""))
        return t

    def _set_level(self, t: Ticket, level: FaultLevel, now: float, actor: str, note: str) -> None:
        """Re-target the clocks for ``level`` from the ticket's start.

        Clocks the new level defines are re-targeted (or created as if they had run
        since the start); clocks it does not define that are still open become
        ``not_needed``. Finished clocks keep their result.
        """
        old = t.level
        t.level = level
        policy = self.policies.get(t.policy)
        before = self._prov(t)
        withdrawn: list[str] = []
        if policy is not None:
            t.urgent = policy.is_urgent(int(level))
            targets = policy.targets(int(level), t.region, t.device_class)
            for c in t.clocks:
                tgt = targets.get(c.kind)
                if tgt is None:
                    c.skip(now, self._cal(c.calendar), "set_level")
                    continue
                cal = self._cal(tgt.calendar)
                consumed = None
                if tgt.calendar != c.calendar and not c.deferred and not c.done:
                    consumed = self._business_since(t, c.started_at, now, cal)
                if c.retarget(tgt, now, cal, consumed):
                    withdrawn.append(c.kind)
            for kind, tgt in targets.items():
                if t.clock(kind) is None:
                    t.clocks.append(self._replay(t, kind, tgt, now))
            t.clocks.sort(key=lambda c: kind_order(c.kind))
        text = f"level {int(old)} → {int(level)}"
        if withdrawn:
            text += f"; breach withdrawn ({', '.join(withdrawn)}): the new target is not exceeded"
        if note:
            text += f". {note}"
        self._note(t, now, actor, "level", text, "level")
        self._provisional_check(t, before, now)

    def _business_since(self, t: Ticket, start: float, end: float, cal: Any) -> float:
        """Business seconds in ``[start, end]`` on ``cal``, paused spans excluded."""
        total = float(cal.elapsed(start, end))
        for ps, pe in t.pauses:
            assert ps is not None
            lo, hi = max(ps, start), min(end if pe is None else pe, end)
            if hi > lo:
                total -= cal.elapsed(lo, hi)
        return max(0.0, total)

    def _replay(self, t: Ticket, kind: str, tgt: ClockTarget, now: float) -> SlaClock:
        """A clock the new level adds, as if it had run since the ticket's start."""
        cal = self._cal(tgt.calendar)
        if kind == "report":
            restored = t.milestones.get("restore")
            if restored is None:
                return SlaClock.deferred_clock(kind, tgt, t.opened_at)
            start = restored
        else:
            start = t.opened_at
        c = SlaClock.start(kind, tgt, start, cal)
        goal = t.milestones.get(GOAL_ACTIONS[kind])
        ends = [goal] if goal is not None else []
        if kind != "report":
            ends += [t.milestones[a] for a in ("restore", "close") if a in t.milestones]
        stop_at = min(ends) if ends else None
        events: list[tuple[float, int]] = []
        for ps, pe in t.pauses:
            assert ps is not None
            if pe is not None and pe <= start:
                continue
            events.append((max(ps, start), 0))
            if pe is not None:
                events.append((pe, 1))
        for ts, ev in sorted(events):
            if ts > now or (stop_at is not None and ts >= stop_at):
                break
            if ev == 0:
                c.pause(ts, cal)
            else:
                c.resume(ts, cal)
        if stop_at is not None:
            if goal is not None and stop_at == goal:
                c.stop(stop_at, cal, GOAL_ACTIONS[kind])
            else:
                by = "restore" if "restore" in t.milestones else "close"
                (c.skip if kind in _SKIPPED_BY_RESTORE else c.stop)(stop_at, cal, by)
        return c

    # -- alarm hooks ---------------------------------------------------------------------
    def on_alarm_cleared(self, ticket_id: int, now: float, actor: str) -> Ticket | None:
        """The device recovered: service is restored (the restore clock stops)."""
        t = self.open.get(ticket_id)
        if t is None or t.status in ("restored", "closed"):
            return None
        return self.act(ticket_id, "restore", now, actor, "fault cleared by the device")

    def on_alarm_escalated(self, ticket_id: int, level: FaultLevel, now: float, actor: str) -> None:
        """The alarm's level rose: re-target the ticket (a lower level is ignored)."""
        t = self.open.get(ticket_id)
        if t is not None and level < t.level:
            self._fire(t, now)
            self._set_level(t, level, now, actor, "escalated")

    # -- time ----------------------------------------------------------------------------
    def _fire(self, t: Ticket, now: float) -> None:
        """Record the warnings and breaches of one ticket due by ``now``."""
        warn_at = self._warn_at(t)
        for c in t.clocks:
            for n in c.notices(now, self._cal(c.calendar), warn_at):
                self._fired.append((t, n))
                sla = {
                    "clock": c.kind,
                    "fraction": n.fraction,
                    "at": n.at,
                    "due_at": c.due_at,
                    "target": c.target,
                }
                if n.fraction >= 1.0:
                    self._note(t, n.at, "sla", "sla_breach", f"{c.kind} deadline breached", "update", sla=sla)
                else:
                    pct = round(n.fraction * 100)
                    note = f"{c.kind} at {pct} % of its target"
                    self._note(t, n.at, "sla", "sla_warning", note, "update", sla=sla)
        if self.staffing is not None:
            for f in self.staffing.due(t, now, self._cal):
                self._escalated.append((t, f))
                self._note(t, f.at, "escalation", "escalation", f.note)

    def tick(self, now: float) -> list[tuple[Ticket, ClockNotice]]:
        """Fire SLA warnings and breaches due by ``now`` (each once).

        Only the tickets whose next check has come are looked at.

        Returns:
            The notices fired since the last call, including those an action fired
            first, with their tickets.
        """
        self._refresh()
        heap = self._timers
        check_at = self._check_at
        due: list[Ticket] = []
        # Taken first, then fired: a ticket re-armed at or before ``now`` waits for the
        # next tick instead of spinning this one.
        while heap and heap[0][0] <= now + _CHECK_SLACK:
            at, tid = heapq.heappop(heap)
            if check_at.get(tid) != at:
                continue
            del check_at[tid]
            t = self.open.get(tid)
            if t is not None:
                due.append(t)
        for t in due:
            self._fire(t, now)
            self._schedule(t)
        out, self._fired = self._fired, []
        return out

    def next_check(self) -> float | None:
        """Return when :meth:`tick` next has something to fire (``None``: nothing pending)."""
        self._refresh()
        heap = self._timers
        while heap:
            at, tid = heap[0]
            if self._check_at.get(tid) == at and tid in self.open:
                return at
            heapq.heappop(heap)
        return None

    def _ticket_check(self, t: Ticket) -> float | None:
        """The earliest next check of the ticket's clocks."""
        warn_at = self._warn_at(t)
        best: float | None = None
        for c in t.clocks:
            n = c.next_check(self._cal(c.calendar), warn_at)
            if n is not None and (best is None or n < best):
                best = n
        if self.staffing is not None:
            e = self.staffing.next_at(t, self._cal)
            if e is not None and (best is None or e < best):
                best = e
        return best

    def _schedule(self, t: Ticket) -> None:
        """Give ``t`` a live heap entry at its next check (none when nothing is pending)."""
        self._touched.discard(t.id)
        at = self._ticket_check(t) if t.id in self.open else None
        if at is None:
            self._check_at.pop(t.id, None)
        elif self._check_at.get(t.id) != at:
            self._check_at[t.id] = at
            heapq.heappush(self._timers, (at, t.id))

    def _fire_soon(self, tid: int) -> None:
        """Look at a ticket that came from the store at the next tick, whatever its clocks say."""
        self._touched.discard(tid)
        self._check_at[tid] = 0.0
        heapq.heappush(self._timers, (0.0, tid))

    def _refresh(self) -> None:
        """Re-read the timers of the tickets touched since the last tick or check."""
        if not self._touched:
            return
        touched, self._touched = self._touched, set()
        for tid in touched:
            t = self.open.get(tid)
            if t is None:
                self._check_at.pop(tid, None)
            elif self._check_at.get(tid) != 0.0:  # a pending "fire soon" stays
                self._schedule(t)
