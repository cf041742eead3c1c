"""The decision core: events and commands in; the rows to write, the changes to publish and
the counts out — ``Decider.step(items, now) -> Decision`` (pure, synchronous, takes ``now``).

The order, stated once (in :meth:`Decider.step`). Every caller runs it: the daemon's single
writer (``gateway.runtime.pipeline``), ``gateway rules replay`` (``gateway.core.replay``) and
``gateway rules test`` (``gateway.cli.rules``), so the three cannot disagree.

1. Each item, in arrival order:

   * a **command** runs as ``fn(now)`` (NOC actions, reloads, adapter hooks); its result
     or exception is handed back in :attr:`Decision.results`;
   * an **event** is recorded → its device **resolved** (inventory) → handed to telemetry
     → fed to the liveness **watchdog** (a ``heartbeat.restored`` it answers joins the
     items) → **classified** (rules) → **folded** into the alarm book at the event's own
     time, where the **suppression** stage (:class:`~gateway.core.suppression.Suppressor`:
     parent down, maintenance window) decides whether a fault that becomes live is held
     back → each alarm change is **reacted** to with tickets
     (:func:`gateway.core.reactions.dispatch`).

2. **Losses** the watchdog has due by ``now`` join after the items (their heartbeats
   counted first), in chunks of :attr:`Decider.loss_chunk`.
3. **Alarm timers** (hold-for expiry, escalation over time, flaps settling, suppressions
   that ended) → reactions. Before SLA timers, so a hold that expired opens its ticket first.
4. **SLA timers**: warnings and breaches.
5. **Rows**: the alarms and tickets changed, the timeline, and the **outbox**: one message
   per help-desk connector for each ticket message, never echoed back to the help desk
   the change came from.

What is not here belongs to the pipeline: the queue, batching, delivery-key dedup, commit
callbacks (acks released after the commit), the store transaction and its retries, and
the listeners that get :attr:`Decision.changes` after the commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from gateway.core.admission import REFUSED_EVENT, UnknownAdmission
from gateway.core.alarms import (
    CLEARED_CHANGE,
    FLAPPING,
    PENDING_CHANGE,
    RAISED,
    REPEATED,
    SUPPRESSED_CHANGE,
    Alarm,
    AlarmBook,
    AlarmChange,
)
from gateway.core.breaker import STORM_EVENT, STORM_KEY, BreakerNotice, TicketBreaker
from gateway.core.inventory import Inventory
from gateway.core.reactions import Outcome, dispatch
from gateway.core.sla import ClockNotice, Policy
from gateway.core.suppression import Suppressor
from gateway.core.tickets import Ticket, TicketDesk, TimelineEntry
from gateway.core.watchdog import Watchdog
from gateway.model import Device, Event, OutboxMessage
from rules.engine import Classification, RuleEngine

__all__ = [
    "Change",
    "Command",
    "Counts",
    "Decider",
    "Decision",
    "OutboxMessage",
    "Reaction",
    "Trace",
]

# The daemon's logger, as before the order moved here (log configs filter on it).
log = logging.getLogger("gateway.pipeline")

#: A command runs inside the decision with ``now``; its return value is handed back.
Command: TypeAlias = Callable[[float], Any]
#: What listeners are told after the commit: an alarm change, or an SLA notice of a ticket.
Change: TypeAlias = AlarmChange | tuple[Ticket, ClockNotice]

# Marks where the watchdog's due losses are taken: after the items' own events.
_LOSSES_DUE = object()


@dataclass(slots=True)
class Counts:
    """What one step counted (deltas: the pipeline adds them to its stats)."""

    classified: int = 0
    unclassified: int = 0
    alarms_raised: int = 0
    alarms_cleared: int = 0
    alarms_pending: int = 0
    alarms_suppressed: int = 0
    alarms_flapping: int = 0
    tickets_opened: int = 0
    sla_warnings: int = 0
    sla_breaches: int = 0
    #: Tickets the circuit breaker held back (their alarms are recorded).
    tickets_held: int = 0
    #: Events of unknown devices not admitted (cap reached or too many new ids).
    unknown_refused: int = 0


@dataclass(slots=True)
class Reaction:
    """One alarm change and what the ticket desk did about it (``None``: the desk failed
    and it was logged; the alarm is recorded all the same)."""

    change: AlarmChange
    outcome: Outcome | None


@dataclass(slots=True)
class Trace:
    """What one event did, for dry runs and replays (``Decider(tracing=True)``).

    ``event`` and ``device`` are None for the timers that run at the end of a step.
    ``reactions`` includes ``repeated`` changes (with their no-op outcome).
    """

    event: Event | None
    device: Device | None
    classifications: list[Classification]
    reactions: list[Reaction] = field(default_factory=list)


@dataclass(slots=True)
class Decision:
    """Everything one step decided.

    Attributes:
        alarms, tickets, timeline, outbox: the rows to write, in one transaction.
        changes: what to publish to listeners once those rows are committed, in order
            (``repeated`` alarm changes are not published).
        counts: what the step counted.
        results: one ``(result, exception)`` per command item, in order.
        trace: per event (and the timers), what happened; empty unless tracing.
    """

    alarms: list[Alarm]
    tickets: list[Ticket]
    timeline: list[TimelineEntry]
    outbox: list[OutboxMessage]
    changes: list[Change]
    counts: Counts
    results: list[tuple[Any, BaseException | None]]
    trace: list[Trace]

    def __bool__(self) -> bool:
        """Whether there is anything to write."""
        return bool(self.alarms or self.tickets or self.timeline or self.outbox)


def _unique() -> str:
    return uuid.uuid4().hex[:12]


class Decider:
    """Owns the decision order over the alarm book and the ticket desk (one caller at a time).

    Args:
        engine: the rules.
        inventory: device lookup (swapped by a reload).
        book: the alarm book; its :attr:`AlarmBook.suppressor` is the suppression stage.
        desk: the ticket desk.
        policies: contracts by name (swapped by a reload).
        instance: this gateway's name, part of every outbox key.
        connectors: help-desk connector names; no connectors, no outbox messages.
        watchdog: the liveness watchdog (None: liveness is not watched).
        tracing: record a :class:`Trace` per event (dry runs and replays; costs time).
        unique: makes the unique part of an outbox key (tests pass a deterministic one).

    Attributes:
        liveness_events: event names that count as a heartbeat for the watchdog.
        track_unknown: whether a heartbeat of a device not in the inventory starts
            watching it.
        liveness_scan: watchdog heap entries looked at per step (re-arms are cheap).
        loss_chunk: losses raised per step. Each costs an alarm, a ticket and their
            rows, so a mass loss is decided in chunks interleaved with the heartbeats
            queued meanwhile, instead of one step that holds the writer for seconds.
        recorder: called with every event decided (including losses and restorations).
        telemetry: called with ``(event, device)`` for every event before classification;
            must be O(1).
        unknown_tickets: whether alarms of devices not in the inventory open tickets
            (default no: they are shown and counted until adopted into the inventory).
        admission: caps the unknown devices and rate-limits new ids per source (None: all
            admitted). Events of refused ids are counted, not decided; one gateway alarm
            (``gateway.unknown_devices``) says so.
        breaker: the ticket circuit breaker (None: off). When it trips, one gateway alarm
            (``gateway.ticket_storm``) and its ticket stand for the tickets held back.

    The gateway's alarms about itself (rules of the ``gateway`` pack keyed ``gateway/…``)
    are never refused and always open their tickets.
    """

    def __init__(
        self,
        *,
        engine: RuleEngine,
        inventory: Inventory,
        book: AlarmBook,
        desk: TicketDesk,
        policies: Mapping[str, Policy],
        instance: str = "gw1",
        connectors: Iterable[str] = (),
        watchdog: Watchdog | None = None,
        tracing: bool = False,
        unique: Callable[[], str] = _unique,
    ) -> None:
        self.engine = engine
        self.inventory = inventory
        self.book = book
        self.desk = desk
        self.policies = policies
        self.instance = instance
        self.connectors = list(connectors)
        self.watchdog = watchdog
        self.liveness_events: frozenset[str] = frozenset({"heartbeat", "status"})
        self.track_unknown = True
        self._now = 0.0
        self.liveness_scan = 20_000
        self.loss_chunk = 500
        self.recorder: Callable[[Event], object] | None = None
        self.telemetry: Callable[[Event, Device], object] | None = None
        self.tracing = tracing
        self.unique = unique
        #: The outbox connector escalation notices are written for (``""``: none are
        #: written; the steps are still recorded on the tickets and their timelines).
        self.notify_connector = ""
        self.unknown_tickets = False
        self.admission: UnknownAdmission | None = None
        self.breaker: TicketBreaker | None = None
        self._own: tuple[RuleEngine | None, frozenset[str], frozenset[str]] = (None, frozenset(), frozenset())
        self._gate_fn = self._ticket_gate
        self._held = 0

    @property
    def suppressor(self) -> Suppressor:
        """The suppression stage (parent down, maintenance windows) the book asks."""
        return self.book.suppressor

    # -- the order -------------------------------------------------------------------------
    def step(self, items: Iterable[Event | Command], now: float) -> Decision:
        """Decide ``items`` (events and commands, in order), then the timers due by ``now``.

        Args:
            items: events (each folded at its own ``ts``) and commands (run with ``now``).
            now: the time of the step: commands, watchdog losses and timers use it.

        Returns:
            The rows to write, the changes to publish, the counts, the commands' results.
        """
        work: list[Any] = list(items)
        self._now = now
        wd = self.watchdog
        if wd is not None:
            work.append(_LOSSES_DUE)
        changes: list[Change] = []
        results: list[tuple[Any, BaseException | None]] = []
        trace: list[Trace] | None = [] if self.tracing else None
        counts = Counts()
        classified = unclassified = 0
        book, desk = self.book, self.desk
        resolve = self.inventory.resolve
        classify = self.engine.classify
        fold = book.fold
        react = self._react
        rec = self.recorder
        tel = self.telemetry
        beats = self.liveness_events
        tr: Trace | None = None
        adm = self.admission
        own_events = self._own_rules()[1] if adm is not None else frozenset()
        unknown = self.inventory.unknown
        refused = 0
        self._held = 0
        for item in work:  # items appended meanwhile (restorations, losses) are decided too
            if isinstance(item, Event):
                ev = item
            elif item is _LOSSES_DUE:
                assert wd is not None
                work.extend(wd.due(now, limit=self.liveness_scan, max_lost=self.loss_chunk))
                continue
            else:
                try:
                    results.append((item(now), None))
                except Exception as e:  # noqa: BLE001 - handed back to whoever sent it
                    results.append((None, e))
                continue
            if rec is not None:
                rec(ev)
            dev = resolve(ev.device)
            if adm is not None and not dev.known and dev.id not in adm.admitted and ev.name not in own_events:
                tracked = wd is not None and dev.id in wd  # watched before a restart
                if not adm.admit(dev.id, ev.source, now, known_before=tracked):
                    unknown.pop(dev.id, None)
                    refused += 1
                    continue
            if tel is not None:
                tel(ev, dev)
            if wd is not None and (ev.name in beats or ev.name == "heartbeat.lost"):
                sign = self._liveness(wd, ev, dev)
                if sign is not None:
                    work.append(sign)  # heartbeat.restored: decided in this same step
            cs = classify(ev, dev)
            if trace is not None:
                tr = Trace(ev, dev, cs)
                trace.append(tr)
            if not cs:
                unclassified += 1
                continue
            classified += 1
            for c in cs:
                for ch in fold(c, ev, dev, ev.ts):
                    if ch.kind == REPEATED:  # the hot path of a storm: nothing to do
                        if tr is not None:
                            tr.reactions.append(Reaction(ch, self._dispatch(ch, dev)))
                        continue
                    react(ch, dev, changes, counts, tr)
        counts.classified = classified
        counts.unclassified = unclassified
        # Alarm timers before SLA timers: a hold-for that expired opens its ticket first.
        if trace is not None:
            tr = Trace(None, None, [])
            trace.append(tr)
        for ch in book.tick(now):
            react(ch, resolve(ch.alarm.device), changes, counts, tr)
        # The gateway's own alarms about refused unknown devices and held-back tickets.
        counts.unknown_refused = refused
        for ev in self._own_events(now):
            self._decide_one(ev, changes, counts, tr)
        counts.tickets_held = self._held
        for t, notice in desk.tick(now):
            if notice.fraction >= 1.0:
                counts.sla_breaches += 1
            else:
                counts.sla_warnings += 1
            changes.append((t, notice))
        tickets = desk.take_dirty()
        outbox = self._outbox(tickets)
        outbox += self._escalations()
        return Decision(
            alarms=book.take_dirty(),
            tickets=tickets,
            timeline=desk.take_timeline(),
            outbox=outbox,
            changes=changes,
            counts=counts,
            results=results,
            trace=trace if trace is not None else [],
        )

    def next_due(self) -> float | None:
        """When :meth:`step` next has timer work (SLA checks, watchdog deadlines, hold-for
        expiry, escalations, flaps, suppressions ending); None: nothing scheduled."""
        nxt = self.desk.next_check()
        wd = self.watchdog
        wd_next = wd.next_deadline() if wd is not None else None
        if wd_next is not None and (nxt is None or wd_next < nxt):
            nxt = wd_next
        due = self.book.next_deadline()
        if due is not None and (nxt is None or due < nxt):
            nxt = due
        br = self.breaker
        due = br.next_due() if br is not None else None
        if due is not None and (nxt is None or due < nxt):
            nxt = due
        return nxt

    # -- stages ----------------------------------------------------------------------------
    def _liveness(self, wd: Watchdog, ev: Event, dev: Device) -> Event | None:
        """Feed the watchdog; returns a ``heartbeat.restored`` to decide, if any."""
        if ev.name == "heartbeat.lost":
            if ev.source != "watchdog":  # a last will: the device is lost now, not at its deadline
                wd.lost_now(dev.id, ev.ts, reason=str(ev.attrs.get("reason", "lwt")))
            return None
        if dev.id not in wd:
            if not dev.known and not self.track_unknown:
                return None
            wd.track(dev.id, interval=dev.heartbeat_interval, device_class=dev.device_class, now=ev.ts)
        return wd.heartbeat(dev.id, ev.ts)

    def _dispatch(self, ch: AlarmChange, dev: Device) -> Outcome:
        return dispatch(ch, dev, self.desk, self.policies, self.inventory.default_policy, self._gate_fn)

    def _own_rules(self) -> tuple[RuleEngine | None, frozenset[str], frozenset[str]]:
        """``(engine, event names, rule ids)`` of the gateway's alarms about itself: rules of
        the gateway pack keyed ``gateway/…`` (not those about a device, like a trap storm
        from a sender). Cached per engine."""
        own = self._own
        if own[0] is not self.engine:
            rules = [
                r for r in getattr(self.engine, "rules", ())
                if r.pack == "gateway" and str(getattr(r.source, "key", "")).startswith("gateway/")
            ]
            own = self._own = (
                self.engine,
                frozenset(e for r in rules for e in r.events),
                frozenset(r.id for r in rules),
            )
        return own

    def _ticket_gate(self, a: Alarm, dev: Device) -> str | None:
        """Asked before each ticket is opened: unknown devices, then the circuit breaker."""
        if a.rule_id in self._own_rules()[2]:
            return None  # the gateway's alarms about itself: one each, always ticketed
        if not dev.known and not self.unknown_tickets:
            return f"no ticket: {dev.id} is not in the inventory (adopt it to ticket its alarms)"
        br = self.breaker
        if br is not None and not br.allow(self._now):
            self._held += 1
            return (
                f"no ticket: ticket circuit breaker open (more than {br.limit} new tickets in "
                f"{br.window:g} s; {br.held} held back, see the ticket of {STORM_KEY})"
            )
        return None

    def _own_events(self, now: float) -> list[Event]:
        out: list[Event] = []
        adm = self.admission
        if adm is not None:
            report = adm.take_report()
            if report is not None:
                out.append(Event(now, "gateway", "gateway", REFUSED_EVENT, report))
        br = self.breaker
        if br is not None:
            for n in br.tick(now):
                if n.state == "ended":
                    self._storm_summary(n, now)
                out.append(Event(now, "gateway", "gateway", STORM_EVENT, n.attrs()))
        return out

    def _storm_summary(self, n: BreakerNotice, now: float) -> None:
        """The storm ticket's last word before its alarm clears: what was held back."""
        a = self.book.open.get(STORM_KEY)
        if a is None or a.ticket_id is None or a.ticket_id not in self.desk.open:
            return
        try:
            self.desk.act(
                a.ticket_id, "comment", now, "gateway",
                f"ticket storm over: {n.held} tickets held back (more than {n.limit} new tickets in "
                f"{n.window:g} s); their alarms are recorded without tickets",
            )
        except Exception:  # a ticket-side bug must not lose the step
            log.exception("storm summary on ticket %s failed", a.ticket_id)

    def _decide_one(self, ev: Event, changes: list[Change], counts: Counts, tr: Trace | None) -> None:
        """One event of the gateway's own, decided like any other (after the timers)."""
        if self.recorder is not None:
            self.recorder(ev)
        dev = self.inventory.resolve(ev.device)
        cs = self.engine.classify(ev, dev)
        counts.classified += bool(cs)
        counts.unclassified += not cs
        for c in cs:
            for ch in self.book.fold(c, ev, dev, ev.ts):
                if ch.kind != REPEATED:
                    self._react(ch, dev, changes, counts, tr)

    def _react(
        self, ch: AlarmChange, dev: Device, changes: list[Change], counts: Counts, tr: Trace | None
    ) -> None:
        """React to one alarm change with tickets (see gateway.core.reactions)."""
        kind = ch.kind
        if ch.alarm.device != dev.id:  # e.g. a child un-suppressed by its parent's clear
            dev = self.inventory.resolve(ch.alarm.device)
        out: Outcome | None
        try:
            out = self._dispatch(ch, dev)
        except Exception:  # a ticket-side bug must not lose the step: the alarm is still recorded
            log.exception("ticket reaction to alarm %d (%s) failed", ch.alarm.id, kind)
            out = None
        if kind == RAISED:
            counts.alarms_raised += 1
        elif kind == CLEARED_CHANGE:
            counts.alarms_cleared += 1
        elif kind == PENDING_CHANGE:
            counts.alarms_pending += 1
        elif kind == SUPPRESSED_CHANGE:
            counts.alarms_suppressed += 1
        elif kind == FLAPPING:
            counts.alarms_flapping += 1
        if out is not None and out.action == "opened":
            counts.tickets_opened += 1
        changes.append(ch)
        if tr is not None:
            tr.reactions.append(Reaction(ch, out))

    def _escalations(self) -> list[OutboxMessage]:
        """One ``escalation`` message per fired step for the notifier's connector, keyed by
        ticket and step (a step fires once, so the key is its idempotency key too)."""
        fired = self.desk.take_escalations()
        names = [c.strip() for c in self.notify_connector.split(",") if c.strip()]  # several notifiers: comma
        if not names or not fired:
            return []
        out: list[OutboxMessage] = []
        for t, f in fired:
            key = f"gw-{self.instance}-t{t.id}-e-{f.step.id}"
            payload = {**t.to_dict(), "ticket_key": f"gw-{self.instance}-t{t.id}", "event": "escalation",
                       "escalation": f.payload()}
            for conn in names:
                out.append(OutboxMessage(conn, t.id, key, "escalation", payload))
        return out

    def _outbox(self, tickets: list[Ticket]) -> list[OutboxMessage]:
        """The desk's messages of this step, one per connector, shaped for the help desks."""
        messages = self.desk.take_outbox()
        connectors = self.connectors
        if not messages or not connectors:
            return []
        out: list[OutboxMessage] = []
        by_id = {t.id: t for t in tickets}
        open_tickets, open_alarms = self.desk.open, self.book.open
        for tid, kind, extra in messages:
            t = by_id.get(tid) or open_tickets.get(tid)
            snapshot: dict[str, Any] = t.to_dict() if t is not None else {"id": tid}
            alarm = open_alarms.get(snapshot.get("alarm_key", "")) if t is not None else None
            if alarm is not None:
                snapshot["count"] = alarm.count
                snapshot["first_event"] = alarm.event
                snapshot["first_seen"] = alarm.first_seen
            snapshot.update(extra)
            ticket_key = snapshot["ticket_key"] = f"gw-{self.instance}-t{tid}"
            adopt = extra.get("adopt") or {}
            only = extra.get("to")  # a message for some connectors only (a report for the customer)
            for conn in only if isinstance(only, list) else connectors:
                if extra.get("actor") == f"helpdesk:{conn}" and conn not in adopt:
                    continue  # it came from that help desk: don't echo it back
                # (A ticket opened from a help-desk ticket still sends that help desk its
                # "open": the connector adopts the remote ticket instead of creating one.)
                key = ticket_key if kind == "open" else f"{ticket_key}-m{self.unique()}"
                out.append(OutboxMessage(conn, tid, key, kind, snapshot))
        return out
