"""What an alarm change means for tickets: open, reopen, re-target, restore or nothing (pure).

One function, :func:`dispatch`, applied to every alarm change by the decision core
(:class:`gateway.core.decider.Decider`), which the pipeline (live), ``gateway rules test``
(dry run on a copy of the state) and ``gateway rules replay`` (a recorded stream through a
fresh book and desk) all run, so the three can never disagree.

The rules, by change kind:

* ``raised`` / ``unsuppressed``: open a ticket if the device's policy tickets the level.
  A re-raise of a key whose previous ticket was restored less than the policy's
  ``reopen_within`` ago reopens that ticket instead when the policy says
  ``reraise = "reopen"`` (default ``"new"``: a new ticket).
* ``pending`` / ``suppressed``: recorded, no ticket.
* ``repeated``: nothing (the alarm's count went up).
* ``escalated``: re-target the ticket's clocks; without a ticket, an active alarm may now
  open one (its new level is ticketed).
* ``flapping``: the ticket (if any) is re-targeted to level 4; without one, one ticket
  is opened for the intermittent alarm (if level 4 is ticketed).
* ``cleared``: the ticket is restored (its restore clock stops).

Wherever a ticket would be opened and the device has an open ticket a person reported (a
customer's call, e-mail or help-desk ticket) that is not restored yet, the alarm is
attached to that ticket instead (``attached``): one fault, one ticket, its clocks running
from the report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.core.alarms import (
    ACTIVE,
    CLEARED_CHANGE,
    ESCALATED,
    FLAPPING,
    PENDING_CHANGE,
    RAISED,
    REPEATED,
    SUPPRESSED_CHANGE,
    UNSUPPRESSED,
    Alarm,
    AlarmChange,
)
from gateway.core.sla import Policy
from gateway.model import Device

__all__ = ["Gate", "Outcome", "dispatch", "policy_for"]

#: Asked before a ticket is opened or reopened: a reason not to (one line), or None.
Gate = Callable[[Alarm, Device], str | None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the desk did for one alarm change.

    Attributes:
        action: ``opened``, ``reopened``, ``attached``, ``retargeted``, ``restored`` or ``none``.
        ticket_id: the ticket concerned, if any.
        text: one line for people, in the imperative ("open ticket 4 (policy …, level 2)").
    """

    action: str
    ticket_id: int | None
    text: str


def policy_for(dev: Device, policies: Mapping[str, Policy], default_policy: str) -> Policy | None:
    return policies.get(dev.policy) or policies.get(default_policy)


def dispatch(
    ch: AlarmChange,
    dev: Device,
    desk: Any,
    policies: Mapping[str, Policy],
    default_policy: str,
    gate: Gate | None = None,
) -> Outcome:
    """Apply one alarm change to the ticket desk.

    Args:
        ch: the change (from AlarmBook.fold or AlarmBook.tick).
        dev: the alarm's device.
        desk: the TicketDesk.
        policies: contracts by name.
        default_policy: policy for devices that name none.
        gate: asked before a ticket is opened or reopened (unknown devices, the ticket
            circuit breaker); a reason it gives means no ticket, the alarm stays recorded.

    Returns:
        What was done.
    """
    a = ch.alarm
    at = ch.at or a.last_seen
    kind = ch.kind
    if kind == REPEATED:
        return Outcome("none", a.ticket_id, f"repeat of alarm {a.id} (count {a.count})")
    if kind == PENDING_CHANGE:
        return Outcome("none", None, f"record alarm {a.id} as pending, no ticket until {a.hold_text()}")
    if kind == SUPPRESSED_CHANGE:
        return Outcome("none", None, f"record alarm {a.id}, no ticket: suppressed by {a.suppressed_by}")
    policy = policy_for(dev, policies, default_policy)
    if kind in (RAISED, UNSUPPRESSED):
        return _open(a, dev, desk, policy, at, gate)
    if kind == ESCALATED:
        t = desk.open.get(a.ticket_id) if a.ticket_id is not None else None
        if t is not None:
            if a.level < t.level:
                desk.on_alarm_escalated(t.id, a.level, at, "rule:" + a.rule_id)
                return Outcome("retargeted", t.id, f"re-target ticket {t.id} to level {int(a.level)}")
            return Outcome("none", t.id, f"alarm {a.id} now level {int(a.level)}; ticket {t.id} unchanged")
        if a.state == ACTIVE:
            return _open(a, dev, desk, policy, at, gate)
        return Outcome("none", None, f"alarm {a.id} now level {int(a.level)} ({a.state}), no ticket")
    if kind == FLAPPING:
        if a.state != ACTIVE:
            return Outcome(
                "none",
                a.ticket_id,
                f"alarm {a.id} is intermittent, no ticket: suppressed by {a.suppressed_by}",
            )
        t = desk.open.get(a.ticket_id) if a.ticket_id is not None else None
        if t is not None and t.status not in ("restored", "closed"):
            if getattr(t, "origin", "alarm") != "alarm":
                # A person reported it at their level; an intermittent alarm does not lower it.
                return Outcome("none", t.id, f"alarm {a.id} is intermittent; ticket {t.id} keeps its reported level")
            if t.level != a.level:
                desk.act(
                    t.id,
                    "set_level",
                    at,
                    "rule:" + a.rule_id,
                    f"intermittent fault ({ch.note})",
                    level=int(a.level),
                )
            return Outcome(
                "retargeted", t.id, f"re-target ticket {t.id} to level {int(a.level)} (intermittent)"
            )
        return _open(a, dev, desk, policy, at, gate)
    if kind == CLEARED_CHANGE:
        if a.ticket_id is not None and desk.on_alarm_cleared(a.ticket_id, at, "device") is not None:
            return Outcome("restored", a.ticket_id, f"restore ticket {a.ticket_id}")
        return Outcome("none", a.ticket_id, f"clear alarm {a.id} ({ch.note or 'event'})")
    return Outcome("none", a.ticket_id, f"{kind} alarm {a.id}")


def _open(a: Alarm, dev: Device, desk: Any, policy: Policy | None, at: float, gate: Gate | None = None) -> Outcome:
    if a.ticket_id is not None and a.ticket_id in desk.open:
        return Outcome("none", a.ticket_id, f"alarm {a.id} already has ticket {a.ticket_id}")
    if policy is None:
        return Outcome("none", None, f"no ticket: no policy {dev.policy!r} and no default policy")
    level = int(a.level)
    if not policy.opens_ticket(level):
        return Outcome("none", None, f"no ticket: policy {policy.name} does not ticket level {level}")
    if gate is not None:
        refused = gate(a, dev)
        if refused is not None:
            return Outcome("none", None, refused)
    if getattr(policy, "reraise", "new") == "reopen" and a.previous_ticket is not None:
        prev = desk.open.get(a.previous_ticket)
        window = float(getattr(policy, "reopen_within", 0.0))
        if prev is not None and a.previous_cleared_at is not None and at - a.previous_cleared_at <= window:
            actor = "rule:" + a.rule_id
            note = f"fault {a.key} is back (alarm {a.id})"
            if prev.status == "restored":
                desk.act(prev.id, "reopen", at, actor, note)
            if level < int(prev.level):
                desk.on_alarm_escalated(prev.id, a.level, at, actor)
            a.ticket_id = prev.id
            return Outcome(
                "reopened", prev.id, f"reopen ticket {prev.id} (policy {policy.name}, level {level})"
            )
    reported = desk.reported_for(dev.id)
    if reported is not None:
        desk.attach_alarm(reported.id, a, at, "rule:" + a.rule_id, "the device raised it")
        return Outcome(
            "attached",
            reported.id,
            f"attach alarm {a.id} to ticket {reported.id} (reported by {reported.reported_by} via {reported.origin})",
        )
    # Clocks start when the alarm became a real fault: after its hold-for, or when the
    # suppression that held its ticket back ended.
    t = desk.open_for(a, dev, policy, at)
    return Outcome("opened", t.id, f"open ticket {t.id} (policy {policy.name}, level {level})")
