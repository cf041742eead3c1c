"""Alarms: the living fault, one per key — AlarmBook.fold(classification, event, device, now) (pure).

An :class:`Alarm` is one occurrence of a fault key. Its states::

    pending ──hold met──> active <──unsuppressed── suppressed
       │                    │                          │
       └──(clear/expire)────┴────────(clear)───────────┴──> cleared

* **pending**: the rule has a hold-for (the fault must persist ``hold_for`` seconds, or
  repeat ``hold_count`` times within ``hold_for``); recorded, no ticket.
* **active**: a real fault; the pipeline may open a ticket.
* **suppressed**: a real fault whose ticket is held back because a parent device is down
  (``suppressed_by = "parent:<id>"``) or a maintenance window covers the device
  (``"maintenance:<window id>"``). When the cause goes away first, the alarm becomes
  active ("unsuppressed") and its ticket may open then.
* **cleared**: over. A re-raise of the key opens a NEW occurrence (new id) that remembers
  the previous one (``previous_id``/``previous_ticket``) so a policy can reopen its ticket.

Over time (:meth:`AlarmBook.tick`): pending alarms become active when their hold expires
(or are dropped as ``expired`` when a repeat-count hold lapses), live alarms escalate along
their rule's ``escalate`` steps, and flapping alarms settle. Flap detection: when a key
with ``flap_count`` set sees that many raise/clear transitions within ``flap_window``, its
alarm becomes ONE level-4 *intermittent* alarm (``flapping``) that absorbs further raises
and clears; once the key has been quiet for ``flap_window`` it clears (if the fault is
gone) or returns to the rule's level (if the fault stayed).

Whether a fault that becomes live is held back, and when that ends, is the
:class:`~gateway.core.suppression.Suppressor`'s answer (parent down, maintenance windows):
the book asks it at those moments and never reads the inventory or the windows itself.

Pure: no clock, no I/O. Callers pass ``now`` (the event's time in :meth:`fold`, the
clock's in :meth:`tick`), persist what :meth:`take_dirty` returns — so a storm folds into
one row update per key per batch — and react to the returned :class:`AlarmChange` list.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.core.partitions import next_in_series
from gateway.core.suppression import MAINTENANCE, PARENT, Suppressor
from gateway.model import Device, Event, FaultLevel
from rules.engine import Classification
from rules.inhibit import counts_as_down

if TYPE_CHECKING:
    from gateway.core.inventory import Inventory
    from gateway.core.maintenance import MaintenanceBook

__all__ = [
    "ACTIVE",
    "CLEARED",
    "CLEARED_CHANGE",
    "ESCALATED",
    "FLAPPING",
    "MAINTENANCE",
    "PARENT",
    "PENDING",
    "PENDING_CHANGE",
    "RAISED",
    "REPEATED",
    "SUPPRESSED",
    "SUPPRESSED_CHANGE",
    "UNSUPPRESSED",
    "Alarm",
    "AlarmBook",
    "AlarmChange",
]

PENDING = "pending"
ACTIVE = "active"
CLEARED = "cleared"
SUPPRESSED = "suppressed"

#: Change kinds returned by AlarmBook.fold and AlarmBook.tick.
RAISED = "raised"  # became active: a ticket may open
PENDING_CHANGE = "pending"  # recorded, waiting for its hold-for: no ticket
REPEATED = "repeated"  # one more occurrence of a live alarm
ESCALATED = "escalated"  # level changed (worse reading, escalation over time, flapping settled)
CLEARED_CHANGE = "cleared"  # over (by a recovery event, an expired hold, a settled flap)
SUPPRESSED_CHANGE = "suppressed"  # a real fault, recorded, no ticket (parent down / maintenance)
UNSUPPRESSED = "unsuppressed"  # the suppression ended first: a ticket may open now
FLAPPING = "flapping"  # turned into one level-4 intermittent alarm

_INTERMITTENT = "Intermittent: "
_LIVE = (ACTIVE, SUPPRESSED)


@dataclass(slots=True)
class Alarm:
    """One occurrence of a fault. A re-raise after a clear is a new Alarm with the same key.

    The fields after ``acked`` are the alarm's behaviour state; :meth:`extra` and
    :meth:`restore_extra` carry them through the store so a restart resumes holds,
    escalations, suppressions and flaps where they were.
    """

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
    #: "parent:<device>" or "maintenance:<window id>" while suppressed.
    suppressed_by: str | None = None
    #: When it became active or suppressed (None while pending). Tickets start here.
    active_since: float | None = None
    #: The level the rule gave (escalation over time and flapping start from it).
    rule_level: FaultLevel | None = None
    hold_for: float = 0.0
    hold_count: int = 0
    #: Occurrence times inside the hold window (pending, repeat-count holds only).
    occurrences: list[float] = field(default_factory=list)
    escalate: tuple[tuple[float, FaultLevel], ...] = ()
    flap_count: int = 0
    flap_window: float = 0.0
    #: Raise/clear transition times of this key inside the flap window.
    transitions: list[float] = field(default_factory=list)
    flapping: bool = False
    #: While flapping: whether the underlying fault is present right now.
    fault_up: bool = True
    previous_id: int | None = None
    previous_ticket: int | None = None
    previous_cleared_at: float | None = None
    #: Why it cleared: "event", "expired" (hold lapsed), "stable" (flapping settled).
    clear_reason: str = ""
    #: When the book next has to look at it (not persisted; rebuilt by load).
    due: float | None = None

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
            "suppressed_by": self.suppressed_by,
            "active_since": self.active_since,
            "flapping": self.flapping,
            "clear_reason": self.clear_reason,
            "previous_id": self.previous_id,
        }

    def extra(self) -> dict[str, Any]:
        """Behaviour state for the store (only what differs from the defaults)."""
        d: dict[str, Any] = {}
        if self.suppressed_by is not None:
            d["suppressed_by"] = self.suppressed_by
        if self.active_since is not None:
            d["active_since"] = self.active_since
        if self.rule_level is not None and self.rule_level != self.level:
            d["rule_level"] = int(self.rule_level)
        if self.hold_for:
            d["hold_for"] = self.hold_for
        if self.hold_count:
            d["hold_count"] = self.hold_count
        if self.occurrences:
            d["occurrences"] = list(self.occurrences)
        if self.escalate:
            d["escalate"] = [[s, int(lvl)] for s, lvl in self.escalate]
        if self.flap_count:
            d["flap_count"] = self.flap_count
            d["flap_window"] = self.flap_window
        if self.transitions:
            d["transitions"] = list(self.transitions)
        if self.flapping:
            d["flapping"] = True
            d["fault_up"] = self.fault_up
        if self.previous_id is not None:
            d["previous_id"] = self.previous_id
            d["previous_ticket"] = self.previous_ticket
            d["previous_cleared_at"] = self.previous_cleared_at
        if self.clear_reason:
            d["clear_reason"] = self.clear_reason
        return d

    def restore_extra(self, d: Mapping[str, Any]) -> None:
        """The inverse of :meth:`extra` (unknown keys are ignored)."""
        self.suppressed_by = d.get("suppressed_by")
        self.active_since = d.get("active_since")
        rl = d.get("rule_level")
        self.rule_level = FaultLevel(rl) if rl is not None else self.level
        self.hold_for = float(d.get("hold_for", 0.0))
        self.hold_count = int(d.get("hold_count", 0))
        self.occurrences = [float(t) for t in d.get("occurrences", ())]
        self.escalate = tuple((float(s), FaultLevel(lvl)) for s, lvl in d.get("escalate", ()))
        self.flap_count = int(d.get("flap_count", 0))
        self.flap_window = float(d.get("flap_window", 0.0))
        self.transitions = [float(t) for t in d.get("transitions", ())]
        self.flapping = bool(d.get("flapping", False))
        self.fault_up = bool(d.get("fault_up", True))
        self.previous_id = d.get("previous_id")
        self.previous_ticket = d.get("previous_ticket")
        self.previous_cleared_at = d.get("previous_cleared_at")
        self.clear_reason = d.get("clear_reason", "")
        if self.active_since is None and self.state in _LIVE:
            self.active_since = self.first_seen

    @property
    def count_hold(self) -> bool:
        """A repeat-count hold (N occurrences, within ``hold_for`` when set)."""
        return self.hold_count > 1

    def hold_text(self) -> str:
        if self.count_hold:
            within = f" within {self.hold_for:g} s" if self.hold_for else ""
            return f"{self.hold_count} occurrences{within}"
        return f"hold-for {self.hold_for:g} s"


@dataclass(slots=True)
class AlarmChange:
    """What happened to an alarm, when, and (for people) why. A value: never changed once
    made (not ``frozen`` because one is made per event and frozen creation costs 3x)."""

    kind: str
    alarm: Alarm
    at: float = 0.0
    note: str = ""


class AlarmBook:
    """Owns the open alarms (one per key). Pure: the caller passes ``now``.

    Args:
        next_id: the first alarm id to hand out.
        suppressor: the suppression stage it asks (parent down, maintenance windows);
            by default one built from ``inventory`` and ``maintenance``.
        inventory: parent chains and device lookup, for the default suppressor (None: no parents).
        maintenance: maintenance windows, for the default suppressor (None: none).
        recent_for: how long (seconds) a cleared occurrence is remembered for re-raise
            links (``previous_ticket``) and flap counting across occurrences.
    """

    def __init__(
        self,
        next_id: int = 1,
        *,
        suppressor: Suppressor | None = None,
        inventory: Inventory | None = None,
        maintenance: MaintenanceBook | None = None,
        recent_for: float = 86_400.0,
    ) -> None:
        self.open: dict[str, Alarm] = {}
        self.suppressor = suppressor if suppressor is not None else Suppressor(inventory, maintenance)
        self.recent_for = recent_for
        self._next_id = next_id
        #: Ids handed out are ``id_offset`` mod ``id_step`` (a partition's series, docs/scaling.md).
        self.id_step, self.id_offset = 1, 0
        self._dirty: dict[int, Alarm] = {}
        self._heap: list[tuple[float, int, str]] = []  # (due, alarm id, key), lazily invalidated
        self._recent: dict[str, Alarm] = {}  # key → its last cleared occurrence
        self._recent_order: deque[tuple[float, str, int]] = deque()

    # The suppressor's inputs, where a reload swaps them (``book.inventory = new``).
    @property
    def inventory(self) -> Inventory | None:
        return self.suppressor.inventory

    @inventory.setter
    def inventory(self, inventory: Inventory | None) -> None:
        self.suppressor.inventory = inventory

    @property
    def maintenance(self) -> MaintenanceBook | None:
        return self.suppressor.maintenance

    @maintenance.setter
    def maintenance(self, maintenance: MaintenanceBook | None) -> None:
        self.suppressor.maintenance = maintenance

    # -- persistence hand-off ------------------------------------------------------------
    def load(self, alarms: Iterable[Alarm]) -> None:
        """Restore open alarms after a restart (indexes and timers are rebuilt)."""
        loaded = []
        for a in alarms:
            self._next_id = max(self._next_id, a.id + 1)
            if a.state == CLEARED:
                continue
            if a.rule_level is None:
                a.rule_level = a.level
            self.open[a.key] = a
            loaded.append(a)
        sup = self.suppressor
        for a in loaded:
            if a.state == SUPPRESSED and a.suppressed_by:
                sup.hold(a.suppressed_by, a.key)
            if self._counts_down(a):
                sup.mark_down(a.device, a.key, True)
            a.due = None
            self._schedule(a)
        # A parent that recovered while we were down, or a window edited meanwhile:
        # the next tick re-checks every suppressed alarm.
        sup.loaded()

    def _take_id(self) -> int:
        n = next_in_series(self._next_id, self.id_step, self.id_offset)
        self._next_id = n + 1
        return n

    def set_next_id(self, next_id: int) -> None:
        self._next_id = max(self._next_id, next_id)

    def touch(self, alarm: Alarm) -> None:
        """Mark an alarm changed by someone else (ticket link, ack) for the next write."""
        self._dirty[alarm.id] = alarm

    def take_dirty(self) -> list[Alarm]:
        out = list(self._dirty.values())
        self._dirty.clear()
        return out

    def recheck_suppressed(self) -> None:
        """Re-evaluate every suppressed alarm at the next tick (after a reload changed
        the inventory's parents or the maintenance windows)."""
        self.suppressor.recheck()

    # -- events --------------------------------------------------------------------------
    def fold(self, c: Classification, event: Event, device: Device | str, now: float) -> list[AlarmChange]:
        """Fold one classified event into the book.

        Args:
            c: the classification (raise or clear of ``c.key``).
            event: the event it came from (its name and attributes are kept).
            device: the device (or its id; then it is looked up in the inventory).
            now: the event's time.

        Returns:
            Every change, in order: usually one; none when a clear found nothing open;
            more when, e.g., a parent's clear releases its suppressed children.
        """
        a = self.open.get(c.key)
        if c.action == "clear":
            if a is None:
                return []
            out: list[AlarmChange] = []
            if a.due is not None and now >= a.due:
                self._step(a, now, out)
                if self.open.get(c.key) is not a:
                    return out
            self._clear(a, now, out)
            return out
        if a is not None:
            if a.due is None or now < a.due:
                return self._repeat(a, c, event, now)  # the hot path of a storm
            # A timer of this alarm is due and no tick has run it yet: run it first, so
            # the outcome does not depend on when the pipeline last ticked.
            out = []
            self._step(a, now, out)
            if self.open.get(c.key) is a:
                out.extend(self._repeat(a, c, event, now))
            else:
                out.extend(self._new(c, event, self._device(device), now))
            return out
        return self._new(c, event, self._device(device), now)

    def apply(self, c: Classification, event: Event, device_id: str, now: float) -> AlarmChange | None:
        """Fold and return only the change to ``c.key`` (None when nothing changed).

        For callers that look at one key; anything that opens tickets uses :meth:`fold`,
        which also returns changes to other keys (e.g. children un-suppressed by a clear).
        """
        for ch in self.fold(c, event, device_id, now):
            if ch.alarm.key == c.key:
                return ch
        return None

    # -- time ----------------------------------------------------------------------------
    def tick(self, now: float) -> list[AlarmChange]:
        """Apply everything due by ``now``: hold-for expiry, escalation over time, flaps
        settling, maintenance windows that ended. Returns the changes in order."""
        out: list[AlarmChange] = []
        heap = self._heap
        due = []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap))
        # Entries taken first, then run: a timer that re-arms at or before ``now`` waits for
        # the next tick instead of spinning this one.
        for t, aid, key in due:
            a = self.open.get(key)
            if a is None or a.id != aid or a.due != t:
                continue  # stale: the alarm moved on since this entry was pushed
            a.due = None
            self._step(a, now, out)
        for reason in self.suppressor.ended(now):
            self._release(reason, now, out)
        self._prune_recent(now)
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (None: nothing scheduled)."""
        heap = self._heap
        best: float | None = None
        while heap:
            t, aid, key = heap[0]
            a = self.open.get(key)
            if a is None or a.id != aid or a.due != t:
                heapq.heappop(heap)
                continue
            best = t
            break
        end = self.suppressor.next_end()  # a suppression that ends (0.0: a re-check is asked)
        if end is not None:
            best = end if best is None else min(best, end)
        return best

    # -- queries -------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Open alarms by state (for metrics and the board)."""
        out = dict.fromkeys((PENDING, ACTIVE, SUPPRESSED), 0)
        for a in self.open.values():
            out[a.state] = out.get(a.state, 0) + 1
        out["flapping"] = sum(1 for a in self.open.values() if a.flapping)
        return out

    def previous(self, key: str) -> Alarm | None:
        """The last cleared occurrence of ``key`` still remembered."""
        return self._recent.get(key)

    # -- internals -----------------------------------------------------------------------
    def _device(self, device: Device | str) -> Device:
        return self.suppressor.resolve(device)

    def _new(self, c: Classification, event: Event, dev: Device, now: float) -> list[AlarmChange]:
        assert c.level is not None, "a raise classification has a level"
        a = Alarm(
            id=self._take_id(),
            key=c.key,
            device=dev.id,
            level=c.level,
            state=PENDING,
            rule_id=c.rule_id,
            title=c.title,
            count=1,
            first_seen=now,
            last_seen=now,
            event=event.name,
            attrs=event.attrs,
            labels=c.labels,
            rule_level=c.level,
            hold_for=c.hold_for,
            hold_count=c.hold_count,
            escalate=c.escalate,
            flap_count=c.flap_count,
            flap_window=c.flap_window,
        )
        prev = self._recent.pop(c.key, None)
        if prev is not None:
            a.previous_id = prev.id
            a.previous_ticket = prev.ticket_id
            a.previous_cleared_at = prev.cleared_at
            if c.flap_count:
                a.transitions = [t for t in prev.transitions if t > now - c.flap_window]
        self.open[c.key] = a
        self._dirty[a.id] = a
        out: list[AlarmChange] = []
        if c.flap_count and self._transition(a, now):
            self._start_flapping(a, dev, now, True, out)
            return out
        if a.count_hold:
            a.occurrences = [now]
        elif a.hold_for <= 0:
            self._activate(a, dev, now, out)
            return out
        self._schedule(a)
        out.append(AlarmChange(PENDING_CHANGE, a, now, f"waiting for {a.hold_text()}"))
        return out

    def _repeat(self, a: Alarm, c: Classification, event: Event, now: float) -> list[AlarmChange]:
        """One more occurrence of an open alarm."""
        a.count += 1
        a.last_seen = now
        a.attrs = event.attrs
        self._dirty[a.id] = a
        if a.state == PENDING or a.flapping:
            return self._repeat_special(a, c, now)
        if c.level is not None and c.level < a.level:
            return self._worse(a, c, now)
        return [AlarmChange(REPEATED, a, now)]

    def _repeat_special(self, a: Alarm, c: Classification, now: float) -> list[AlarmChange]:
        """One more occurrence of a pending or flapping alarm (count already taken)."""
        if a.flapping:
            if not a.fault_up:
                a.fault_up = True
                self._transition(a, now)
            return [AlarmChange(REPEATED, a, now)]
        if c.level is not None and c.level < a.level:
            a.level = c.level
            a.rule_level = c.level
            a.title = c.title
        if a.count_hold:
            occ = a.occurrences
            occ.append(now)
            if a.hold_for > 0:
                cutoff = now - a.hold_for
                while occ and occ[0] < cutoff:
                    occ.pop(0)
            if len(occ) > a.hold_count:
                del occ[: len(occ) - a.hold_count]
            if len(occ) >= a.hold_count:
                out: list[AlarmChange] = []
                self._activate(a, self._device(a.device), now, out)
                return out
        return [AlarmChange(REPEATED, a, now)]

    def _worse(self, a: Alarm, c: Classification, now: float) -> list[AlarmChange]:
        """A worse reading on a live fault raises its level; a milder one does not lower
        it (only a clear ends the fault)."""
        assert c.level is not None
        a.level = c.level
        a.rule_level = c.level if a.rule_level is None else min(a.rule_level, c.level)
        a.title = c.title
        out = [AlarmChange(ESCALATED, a, now, "worse reading")]
        self._refresh_down(a, now, out)
        self._schedule(a)
        return out

    def _activate(self, a: Alarm, dev: Device, now: float, out: list[AlarmChange]) -> None:
        """Pending (or new) → active, or suppressed when a parent is down or a window covers it."""
        a.active_since = now
        a.occurrences = []
        lvl = self._escalated_level(a, now)
        a.level = min(a.level, lvl)  # a long hold may already have passed an escalation step
        reason = self.suppressor.reason(dev, now)
        if reason is not None:
            a.state = SUPPRESSED
            a.suppressed_by = reason
            self.suppressor.hold(reason, a.key)
            kind, note = SUPPRESSED_CHANGE, reason
        else:
            a.state = ACTIVE
            a.suppressed_by = None
            kind, note = RAISED, ""
        self._dirty[a.id] = a
        out.append(AlarmChange(kind, a, now, note))
        self._refresh_down(a, now, out)
        self._schedule(a)

    def _clear(self, a: Alarm, now: float, out: list[AlarmChange]) -> None:
        """A recovery event for ``a``."""
        a.last_seen = now
        self._dirty[a.id] = a
        if a.flapping:
            if a.fault_up:
                a.fault_up = False
                self._transition(a, now)
            return  # the intermittent alarm holds until the key is quiet
        if a.flap_count and self._transition(a, now):
            self._start_flapping(a, self._device(a.device), now, False, out)
            return
        self._end(a, now, "event", out)

    def _end(self, a: Alarm, now: float, reason: str, out: list[AlarmChange]) -> None:
        if a.suppressed_by is not None:
            self.suppressor.let_go(a.suppressed_by, a.key)
        a.state = CLEARED
        a.cleared_at = now
        a.last_seen = max(a.last_seen, now)
        a.clear_reason = reason
        a.due = None
        del self.open[a.key]
        self._dirty[a.id] = a
        self._recent[a.key] = a
        self._recent_order.append((now, a.key, a.id))
        out.append(AlarmChange(CLEARED_CHANGE, a, now, reason))
        # After the parent's own clear, so a reader sees cause before effect.
        self._set_down(a, False, now, out)

    def _transition(self, a: Alarm, now: float) -> bool:
        """Count a raise/clear transition of ``a``'s key; True when it is now flapping."""
        tr = a.transitions
        tr.append(now)
        cutoff = now - a.flap_window
        while tr and tr[0] <= cutoff:
            tr.pop(0)
        if len(tr) > a.flap_count:
            del tr[: len(tr) - a.flap_count]
        return len(tr) >= a.flap_count

    def _start_flapping(self, a: Alarm, dev: Device, now: float, up: bool, out: list[AlarmChange]) -> None:
        a.flapping = True
        a.fault_up = up
        a.level = FaultLevel.WARNING
        if not a.title.startswith(_INTERMITTENT):
            a.title = _INTERMITTENT + a.title
        a.cleared_at = None
        a.occurrences = []
        self._dirty[a.id] = a
        if a.state not in _LIVE:
            a.active_since = now
            reason = self.suppressor.reason(dev, now)
            if reason is not None:
                a.state = SUPPRESSED
                a.suppressed_by = reason
                self.suppressor.hold(reason, a.key)
            else:
                a.state = ACTIVE
        out.append(
            AlarmChange(FLAPPING, a, now, f"{len(a.transitions)} transitions within {a.flap_window:g} s")
        )
        self._refresh_down(a, now, out)
        self._schedule(a)

    def _stop_flapping(self, a: Alarm, now: float, out: list[AlarmChange]) -> None:
        a.flapping = False
        a.transitions = []
        a.title = a.title.removeprefix(_INTERMITTENT)
        if not a.fault_up:
            self._end(a, now, "stable", out)
            return
        a.fault_up = True
        base = a.rule_level if a.rule_level is not None else a.level
        a.level = FaultLevel(min(base, self._escalated_level(a, now, base)))
        self._dirty[a.id] = a
        if a.level != FaultLevel.WARNING:
            out.append(AlarmChange(ESCALATED, a, now, "stopped flapping; the fault stayed"))
        self._refresh_down(a, now, out)

    def _step(self, a: Alarm, now: float, out: list[AlarmChange]) -> None:
        """Do what is due for ``a`` by ``now``, then schedule its next look.

        A change is dated when it became due (the hold's expiry, the escalation step), not
        when it was noticed, so a late timer or a lazily observed key gives the same ticket
        times as a punctual one.
        """
        if a.state == PENDING:
            if a.count_hold:
                if a.hold_for > 0 and (not a.occurrences or now >= a.occurrences[-1] + a.hold_for):
                    at = a.occurrences[-1] + a.hold_for if a.occurrences else now
                    self._end(a, min(now, at), "expired", out)
                    return
            elif now >= a.first_seen + a.hold_for:
                self._activate(a, self._device(a.device), a.first_seen + a.hold_for, out)
                return
        elif a.flapping:
            if not a.transitions or now >= a.transitions[-1] + a.flap_window:
                at = a.transitions[-1] + a.flap_window if a.transitions else now
                self._stop_flapping(a, min(now, at), out)
                if a.state == CLEARED:
                    return
        elif a.state in _LIVE:
            lvl = self._escalated_level(a, now)
            if lvl < a.level:
                old = a.level
                at = min(
                    a.first_seen + after
                    for after, step in a.escalate
                    if step == lvl and a.first_seen + after <= now
                )
                a.level = lvl
                self._dirty[a.id] = a
                out.append(
                    AlarmChange(ESCALATED, a, min(now, at), f"unresolved: level {int(old)} → {int(lvl)}")
                )
                self._refresh_down(a, now, out)
        self._schedule(a)

    def _escalated_level(self, a: Alarm, now: float, start: FaultLevel | None = None) -> FaultLevel:
        lvl = a.level if start is None else start
        for after, step in a.escalate:
            if a.first_seen + after <= now and step < lvl:
                lvl = step
        return lvl

    def _schedule(self, a: Alarm) -> None:
        t: float | None = None
        if a.state == PENDING:
            if a.count_hold:
                if a.hold_for > 0 and a.occurrences:
                    t = a.occurrences[-1] + a.hold_for
            else:
                t = a.first_seen + a.hold_for
        elif a.flapping:
            if a.transitions:
                t = a.transitions[-1] + a.flap_window
        elif a.state in _LIVE and a.escalate:
            steps = [a.first_seen + after for after, lvl in a.escalate if lvl < a.level]
            if steps:
                t = min(steps)
        if t is None:
            a.due = None
        elif t != a.due:
            a.due = t
            heapq.heappush(self._heap, (t, a.id, a.key))

    @staticmethod
    def _counts_down(a: Alarm) -> bool:
        return a.state in _LIVE and not a.flapping and counts_as_down(int(a.level), a.event, a.labels)

    def _refresh_down(self, a: Alarm, now: float, out: list[AlarmChange]) -> None:
        self._set_down(a, self._counts_down(a), now, out)

    def _set_down(self, a: Alarm, down: bool, now: float, out: list[AlarmChange]) -> None:
        if self.suppressor.mark_down(a.device, a.key, down) and not down:
            self._release(PARENT + a.device, now, out)

    def _release(self, reason: str, now: float, out: list[AlarmChange]) -> None:
        """Re-evaluate the alarms suppressed for ``reason``: those with no other reason
        left become active ("unsuppressed"); the others keep being suppressed."""
        sup = self.suppressor
        keys = sup.take(reason)
        if not keys:
            return
        alarms = sorted(
            (a for k in keys if (a := self.open.get(k)) is not None and a.suppressed_by == reason),
            key=lambda a: a.id,
        )
        for a in alarms:
            new = sup.reason(sup.resolve(a.device), now)
            self._dirty[a.id] = a
            if new is None:
                a.state = ACTIVE
                a.suppressed_by = None
                out.append(AlarmChange(UNSUPPRESSED, a, now, f"{reason} ended"))
            else:
                a.suppressed_by = new
                sup.hold(new, a.key)

    def _prune_recent(self, now: float) -> None:
        order = self._recent_order
        cutoff = now - self.recent_for
        while order and order[0][0] < cutoff:
            _, key, aid = order.popleft()
            prev = self._recent.get(key)
            if prev is not None and prev.id == aid:
                del self._recent[key]
