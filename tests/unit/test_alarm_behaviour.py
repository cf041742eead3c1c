"""Alarm behaviour, table-driven on a manual clock: hold-for, escalation over time, re-raise,
flapping, parent-down suppression and maintenance windows (AlarmBook.fold / tick, pure); what
each change does to tickets (gateway.core.reactions); maintenance windows (gateway.core.maintenance).

Each case is a script of steps ``"<t> <op> [key] [L<level>]"``:

* ``r dev/fault`` raises ``dev/fault`` on device ``dev`` (``.../reachability`` keys come
  from a ``heartbeat.lost`` event), ``c dev/fault`` clears it, ``t`` ticks the book;
* ``<t>`` is seconds after the start of the manual clock.

Next to each step: the changes expected, each ``"<kind> <key>"``, in order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.config import build_policies, load_config
from gateway.core.alarms import ACTIVE, CLEARED, PENDING, SUPPRESSED, AlarmBook
from gateway.core.calendars import default_calendars
from gateway.core.inventory import Inventory
from gateway.core.maintenance import (
    MaintenanceBook,
    MaintenanceError,
    UnknownWindow,
    Window,
    new_window,
    parse_when,
)
from gateway.core.reactions import dispatch
from gateway.core.tickets import TicketDesk
from gateway.model import Device, Event, FaultLevel
from rules.engine import Classification
from tests.helpers import EXAMPLE

T0 = ManualClock().now()

DEVICES = [
    Device("gp", "network.router", site="hq"),
    Device("p", "network.switch", site="hq", parent="gp"),
    Device("c", "network.switch", site="hq", parent="p"),
    Device("c2", "mine.gas-sensor", site="north", parent="p"),
    Device("sw", "network.switch", site="hq"),
    Device("gs", "mine.gas-sensor", site="north"),
]


@dataclass
class Case:
    id: str
    steps: list[tuple[str, list[str]]]
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)  # key → Classification fields
    windows: list[Window] = field(default_factory=list)
    final: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # key → (state, level, count)


def _cls(key: str, level: int, action: str, rules: dict[str, dict[str, Any]]) -> Classification:
    opts = dict(rules.get(key) or rules.get("*") or {})
    opts.setdefault("level", level)
    lvl = opts.pop("level")
    if action == "clear":
        return Classification("r", "clear", key, None)
    esc = tuple((float(s), FaultLevel(v)) for s, v in opts.pop("escalate", ()))
    return Classification("r-" + key.split("/")[-1], "raise", key, FaultLevel(lvl), "t " + key, escalate=esc, **opts)


def run(case: Case) -> AlarmBook:
    clock = ManualClock()
    book = AlarmBook(inventory=Inventory(DEVICES), maintenance=MaintenanceBook(case.windows))
    for step, expected in case.steps:
        parts = step.split()
        t = float(parts[0])
        clock.set(T0 + t)
        now = clock.now()
        if parts[1] == "t":
            changes = book.tick(now)
        else:
            key = parts[2]
            level = int(parts[3][1:]) if len(parts) > 3 else 3
            name = "heartbeat.lost" if key.endswith("/reachability") else "x"
            ev = Event(now, "test", key.split("/")[0], name, {"n": t})
            c = _cls(key, level, "clear" if parts[1] == "c" else "raise", case.rules)
            changes = book.fold(c, ev, key.split("/")[0], now)
        got = [f"{ch.kind} {ch.alarm.key}" for ch in changes]
        assert got == expected, f"{case.id}: step {step!r}: {got} != {expected}"
    for key, (state, level, count) in case.final.items():
        a = book.open.get(key) or book.previous(key)
        assert a is not None, f"{case.id}: no alarm for {key}"
        assert (a.state, int(a.level), a.count) == (state, level, count), f"{case.id}: {key}"
    return book


HOLD = {"*": {"hold_for": 60.0}}
COUNT = {"*": {"hold_count": 3, "hold_for": 60.0}}
ESC = {"*": {"escalate": [(600, 2), (1800, 1)]}}
FLAP = {"*": {"flap_count": 4, "flap_window": 600.0}}
K = "sw/if1"

CASES = [
    # -- hold-for --------------------------------------------------------------------------------
    Case("hold-for-activates-at-expiry", [
        ("0 r sw/if1", [f"pending {K}"]),
        ("30 t", []),
        ("40 r sw/if1", [f"repeated {K}"]),
        ("60 t", [f"raised {K}"]),
        ("61 t", []),
    ], HOLD, final={K: (ACTIVE, 3, 2)}),
    Case("hold-for-cleared-before-expiry-never-active", [
        ("0 r sw/if1", [f"pending {K}"]),
        ("30 c sw/if1", [f"cleared {K}"]),
        ("60 t", []),
    ], HOLD, final={K: (CLEARED, 3, 1)}),
    Case("hold-for-event-after-expiry-without-tick", [
        ("0 r sw/if1", [f"pending {K}"]),
        ("70 r sw/if1", [f"raised {K}", f"repeated {K}"]),
    ], HOLD, final={K: (ACTIVE, 3, 2)}),
    Case("hold-for-clear-after-expiry-without-tick", [
        ("0 r sw/if1", [f"pending {K}"]),
        ("70 c sw/if1", [f"raised {K}", f"cleared {K}"]),
    ], HOLD),
    Case("hold-count-3-in-60s", [
        ("0 r sw/if1", [f"pending {K}"]),
        ("10 r sw/if1", [f"repeated {K}"]),
        ("20 r sw/if1", [f"raised {K}"]),
        ("30 r sw/if1", [f"repeated {K}"]),
    ], COUNT, final={K: (ACTIVE, 3, 4)}),
    Case("hold-count-lapses-and-expires", [
        ("0 r sw/if1", [f"pending {K}"]),
        ("50 r sw/if1", [f"repeated {K}"]),
        ("109 t", []),
        ("110 t", [f"cleared {K}"]),
        ("200 r sw/if1", [f"pending {K}"]),
    ], COUNT),
    Case("hold-count-sliding-window", [
        ("0 r sw/if1", [f"pending {K}"]),
        ("50 r sw/if1", [f"repeated {K}"]),
        ("100 r sw/if1", [f"repeated {K}"]),  # the one at 0 has left the window
        ("105 r sw/if1", [f"raised {K}"]),
    ], COUNT),
    # -- escalation over time --------------------------------------------------------------------
    Case("escalates-over-time", [
        ("0 r sw/if1", [f"raised {K}"]),
        ("599 t", []),
        ("600 t", [f"escalated {K}"]),
        ("1799 t", []),
        ("1800 t", [f"escalated {K}"]),
        ("9000 t", []),
    ], ESC, final={K: (ACTIVE, 1, 1)}),
    Case("escalation-cancelled-by-clear", [
        ("0 r sw/if1", [f"raised {K}"]),
        ("100 c sw/if1", [f"cleared {K}"]),
        ("700 t", []),
    ], ESC, final={K: (CLEARED, 3, 1)}),
    Case("escalation-due-seen-by-next-event", [
        ("0 r sw/if1", [f"raised {K}"]),
        ("700 r sw/if1", [f"escalated {K}", f"repeated {K}"]),
    ], ESC, final={K: (ACTIVE, 2, 2)}),
    Case("worse-reading-skips-time-step", [
        ("0 r sw/if1", [f"raised {K}"]),
        ("10 r sw/if1 L1", [f"escalated {K}"]),
        ("600 t", []),
        ("1800 t", []),
    ], ESC, final={K: (ACTIVE, 1, 2)}),
    Case("hold-then-escalation-from-first-seen", [
        ("0 r sw/if1", [f"pending {K}"]),
        ("700 t", [f"raised {K}"]),  # held past the 600 s step: active at level 2 already
        ("1800 t", [f"escalated {K}"]),
    ], {"*": {"hold_for": 700.0, "escalate": [(600, 2), (1800, 1)]}}, final={K: (ACTIVE, 1, 1)}),
    # -- re-raise --------------------------------------------------------------------------------
    Case("re-raise-opens-new-occurrence", [
        ("0 r sw/if1", [f"raised {K}"]),
        ("5 r sw/if1", [f"repeated {K}"]),
        ("10 c sw/if1", [f"cleared {K}"]),
        ("11 c sw/if1", []),
        ("20 r sw/if1", [f"raised {K}"]),
    ], final={K: (ACTIVE, 3, 1)}),
    # -- flapping --------------------------------------------------------------------------------
    Case("flapping-becomes-one-intermittent-alarm-then-settles-cleared", [
        ("0 r sw/if1", [f"raised {K}"]),
        ("10 c sw/if1", [f"cleared {K}"]),
        ("20 r sw/if1", [f"raised {K}"]),
        ("30 c sw/if1", [f"flapping {K}"]),
        ("40 r sw/if1", [f"repeated {K}"]),
        ("50 c sw/if1", []),
        ("60 r sw/if1", [f"repeated {K}"]),
        ("70 c sw/if1", []),
        ("669 t", []),
        ("670 t", [f"cleared {K}"]),
    ], FLAP, final={K: (CLEARED, 4, 3)}),
    Case("flapping-settles-with-fault-present", [
        ("0 r sw/if1", [f"raised {K}"]),
        ("10 c sw/if1", [f"cleared {K}"]),
        ("20 r sw/if1", [f"raised {K}"]),
        ("30 c sw/if1", [f"flapping {K}"]),
        ("40 r sw/if1", [f"repeated {K}"]),
        ("640 t", [f"escalated {K}"]),  # back to the rule's level 3, still active
        ("700 c sw/if1", [f"cleared {K}"]),
    ], FLAP),
    Case("flapping-on-a-raise", [
        ("0 r sw/if1", [f"raised {K}"]),
        ("10 c sw/if1", [f"cleared {K}"]),
        ("20 r sw/if1", [f"raised {K}"]),
        ("30 c sw/if1", [f"cleared {K}"]),
        ("40 r sw/if1", [f"flapping {K}"]),
    ], {"*": {"flap_count": 5, "flap_window": 600.0}}, final={K: (ACTIVE, 4, 1)}),
    Case("slow-transitions-are-not-flapping", [
        ("0 r sw/if1", [f"raised {K}"]),
        ("10 c sw/if1", [f"cleared {K}"]),
        ("700 r sw/if1", [f"raised {K}"]),
        ("710 c sw/if1", [f"cleared {K}"]),
        ("1400 r sw/if1", [f"raised {K}"]),
        ("1410 c sw/if1", [f"cleared {K}"]),
    ], FLAP),
    Case("flapping-while-pending-under-hold", [
        ("0 r sw/if1", [f"pending {K}"]),
        ("10 c sw/if1", [f"cleared {K}"]),
        ("20 r sw/if1", [f"pending {K}"]),
        ("30 c sw/if1", [f"flapping {K}"]),  # a hold alone would hide the bouncing forever
    ], {"*": {"hold_for": 60.0, "flap_count": 4, "flap_window": 600.0}}),
    # -- parent-down suppression -----------------------------------------------------------------
    Case("child-suppressed-then-unsuppressed-when-parent-recovers-first", [
        ("0 r p/reachability L1", ["raised p/reachability"]),
        ("10 r c/if1", ["suppressed c/if1"]),
        ("20 r c/if1", ["repeated c/if1"]),
        ("30 c p/reachability", ["cleared p/reachability", "unsuppressed c/if1"]),
    ], final={"c/if1": (ACTIVE, 3, 2)}),
    Case("child-clears-first-never-active", [
        ("0 r p/reachability L1", ["raised p/reachability"]),
        ("10 r c/if1", ["suppressed c/if1"]),
        ("20 c c/if1", ["cleared c/if1"]),
        ("30 c p/reachability", ["cleared p/reachability"]),
    ], final={"c/if1": (CLEARED, 3, 1)}),
    Case("grandparent-down-suppresses-grandchild", [
        ("0 r gp/reachability L1", ["raised gp/reachability"]),
        ("5 r p/reachability L1", ["suppressed p/reachability"]),
        ("10 r c/if1", ["suppressed c/if1"]),
        ("20 c p/reachability", ["cleared p/reachability"]),  # still below a down grandparent
        ("30 c gp/reachability", ["cleared gp/reachability", "unsuppressed c/if1"]),
    ]),
    Case("parent-minor-fault-does-not-suppress", [
        ("0 r p/if9 L3", ["raised p/if9"]),
        ("10 r c/if1", ["raised c/if1"]),
    ]),
    Case("parent-critical-non-reachability-suppresses", [
        ("0 r p/psu L1", ["raised p/psu"]),
        ("10 r c2/gas", ["suppressed c2/gas"]),
        ("20 c p/psu", ["cleared p/psu", "unsuppressed c2/gas"]),
    ]),
    Case("parent-pending-does-not-suppress-yet", [
        ("0 r p/reachability L1", ["pending p/reachability"]),
        ("10 r c/if1", ["raised c/if1"]),
        ("60 t", ["raised p/reachability"]),
        ("70 r c/if2", ["suppressed c/if2"]),
    ], {"p/reachability": {"level": 1, "hold_for": 60.0}}),
    Case("parent-escalating-to-critical-suppresses-later-children", [
        ("0 r p/fan L2", ["raised p/fan"]),
        ("10 r c/if1", ["raised c/if1"]),
        ("600 t", ["escalated p/fan"]),
        ("610 r c/if2", ["suppressed c/if2"]),
        ("700 c p/fan", ["cleared p/fan", "unsuppressed c/if2"]),
    ], {"p/fan": {"level": 2, "escalate": [(600, 1)]}}),
    Case("two-faults-hold-parent-down-until-both-clear", [
        ("0 r p/reachability L1", ["raised p/reachability"]),
        ("1 r p/psu L1", ["raised p/psu"]),
        ("10 r c/if1", ["suppressed c/if1"]),
        ("20 c p/reachability", ["cleared p/reachability"]),
        ("30 c p/psu", ["cleared p/psu", "unsuppressed c/if1"]),
    ]),
    # -- maintenance windows ---------------------------------------------------------------------
    Case("maintenance-suppresses-then-unsuppresses-at-end", [
        ("0 r sw/if1", ["suppressed sw/if1"]),
        ("100 r sw/if1", ["repeated sw/if1"]),
        ("3599 t", []),
        ("3600 t", ["unsuppressed sw/if1"]),
    ], windows=[new_window("mw1", T0 - 10, T0 + 3600, devices=["sw"], author="li", reason="upgrade")],
        final={K: (ACTIVE, 3, 2)}),
    Case("maintenance-fault-gone-before-end", [
        ("0 r sw/if1", ["suppressed sw/if1"]),
        ("100 c sw/if1", ["cleared sw/if1"]),
        ("3600 t", []),
    ], windows=[new_window("mw1", T0 - 10, T0 + 3600, devices=["sw"])]),
    Case("maintenance-by-site-and-class-globs", [
        ("0 r sw/if1", ["suppressed sw/if1"]),
        ("0 r gs/gas", ["raised gs/gas"]),  # site north: out of scope
        ("0 r p/if1", ["suppressed p/if1"]),
    ], windows=[new_window("mw2", T0 - 10, T0 + 60, sites=["hq"], classes=["network.*"])]),
    Case("maintenance-not-started-or-over", [
        ("0 r sw/if1", ["raised sw/if1"]),
        ("200 r sw/if2", ["suppressed sw/if2"]),
        ("400 r sw/if3", ["raised sw/if3"]),
    ], windows=[new_window("mw3", T0 + 100, T0 + 300, devices=["s*"])]),
    Case("maintenance-already-active-alarm-keeps-state", [
        ("0 r sw/if1", ["raised sw/if1"]),
        ("150 r sw/if1", ["repeated sw/if1"]),
    ], windows=[new_window("mw4", T0 + 100, T0 + 300, devices=["sw"])], final={K: (ACTIVE, 3, 2)}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_behaviour(case: Case) -> None:
    run(case)


def test_ended_window_releases_at_next_tick() -> None:
    m = MaintenanceBook([new_window("mw", T0 - 10, T0 + 3600, devices=["sw"])])
    book = AlarmBook(inventory=Inventory(DEVICES), maintenance=m)
    [ch] = book.fold(_cls(K, 3, "raise", {}), Event(T0, "t", "sw", "x"), "sw", T0)
    assert (ch.kind, ch.alarm.suppressed_by) == ("suppressed", "maintenance:mw")
    assert book.next_deadline() == T0 + 3600
    m.end("mw", T0 + 60, by="li")
    assert book.next_deadline() == T0 + 60
    [ch] = book.tick(T0 + 60)
    assert (ch.kind, ch.alarm.state, ch.alarm.suppressed_by) == ("unsuppressed", ACTIVE, None)


def test_parent_and_maintenance_reason_hand_over() -> None:
    """Suppressed by the parent inside a window: when the parent recovers the window still
    holds the ticket back, and only its end releases it."""
    m = MaintenanceBook([new_window("mw", T0 - 10, T0 + 3600, devices=["c"])])
    book = AlarmBook(inventory=Inventory(DEVICES), maintenance=m)
    book.fold(_cls("p/reachability", 1, "raise", {}), Event(T0, "t", "p", "heartbeat.lost"), "p", T0)
    [ch] = book.fold(_cls("c/if1", 3, "raise", {}), Event(T0, "t", "c", "x"), "c", T0)
    assert ch.alarm.suppressed_by == "parent:p"
    changes = book.fold(_cls("p/reachability", 1, "clear", {}), Event(T0 + 5, "t", "p", "x"), "p", T0 + 5)
    assert [c.kind for c in changes] == ["cleared"]
    assert book.open["c/if1"].state == SUPPRESSED and book.open["c/if1"].suppressed_by == "maintenance:mw"
    assert [c.kind for c in book.tick(T0 + 3600)] == ["unsuppressed"]


def test_pending_alarm_state_and_hold_text() -> None:
    book = AlarmBook()
    [ch] = book.fold(_cls(K, 3, "raise", COUNT), Event(T0, "t", "sw", "x"), "sw", T0)
    assert ch.alarm.state == PENDING and ch.alarm.active_since is None
    assert ch.note == "waiting for 3 occurrences within 60 s"


def test_re_raise_remembers_previous_occurrence_and_ticket() -> None:
    book = AlarmBook()
    [ch] = book.fold(_cls(K, 3, "raise", {}), Event(T0, "t", "sw", "x"), "sw", T0)
    first = ch.alarm
    first.ticket_id = 7
    book.fold(_cls(K, 3, "clear", {}), Event(T0 + 10, "t", "sw", "x"), "sw", T0 + 10)
    [ch] = book.fold(_cls(K, 3, "raise", {}), Event(T0 + 20, "t", "sw", "x"), "sw", T0 + 20)
    assert ch.alarm.id != first.id
    assert (ch.alarm.previous_id, ch.alarm.previous_ticket, ch.alarm.previous_cleared_at) == (first.id, 7, T0 + 10)


def test_recent_occurrences_are_forgotten_after_retention() -> None:
    book = AlarmBook(recent_for=3600)
    book.fold(_cls(K, 3, "raise", {}), Event(T0, "t", "sw", "x"), "sw", T0)
    book.fold(_cls(K, 3, "clear", {}), Event(T0 + 1, "t", "sw", "x"), "sw", T0 + 1)
    assert book.previous(K) is not None
    book.tick(T0 + 4000)
    assert book.previous(K) is None


def test_state_survives_a_restart_through_extra() -> None:
    """What the store keeps (``extra``) is enough to resume holds, flaps and suppressions."""
    from gateway.core.alarms import Alarm

    book = AlarmBook(inventory=Inventory(DEVICES))
    book.fold(_cls("p/reachability", 1, "raise", {}), Event(T0, "t", "p", "heartbeat.lost"), "p", T0)
    book.fold(_cls("c/if1", 3, "raise", {}), Event(T0, "t", "c", "x"), "c", T0)
    book.fold(_cls("sw/if1", 3, "raise", HOLD), Event(T0, "t", "sw", "x"), "sw", T0)
    book.fold(_cls("gs/gas", 3, "raise", ESC), Event(T0, "t", "gs", "x"), "gs", T0)
    copies = []
    for a in book.take_dirty():
        b = Alarm(a.id, a.key, a.device, a.level, a.state, a.rule_id, a.title, a.count, a.first_seen, a.last_seen,
                  event=a.event)
        b.restore_extra(a.extra())
        copies.append(b)
    again = AlarmBook(inventory=Inventory(DEVICES))
    again.load(copies)
    assert again.open["c/if1"].suppressed_by == "parent:p"
    assert again.next_deadline() == 0.0  # suppressed alarms are re-checked once after a load
    assert again.tick(T0 + 1) == []  # the parent is still down
    assert [c.kind for c in again.tick(T0 + 60)] == ["raised"]  # sw/if1's hold
    assert [c.kind for c in again.tick(T0 + 600)] == ["escalated"]  # gs/gas's step
    changes = again.fold(_cls("p/reachability", 1, "clear", {}), Event(T0 + 700, "t", "p", "x"), "p", T0 + 700)
    assert [c.kind for c in changes] == ["cleared", "unsuppressed"]


def test_timer_changes_are_dated_when_due_not_when_noticed() -> None:
    """A late tick (or an event that notices an expired hold) dates the change at the
    deadline, so the ticket's clocks start when the fault became real."""
    book = AlarmBook()
    book.fold(_cls(K, 3, "raise", HOLD), Event(T0, "t", "sw", "x"), "sw", T0)
    raised, repeated = book.fold(_cls(K, 3, "raise", HOLD), Event(T0 + 70, "t", "sw", "x"), "sw", T0 + 70)
    assert (raised.kind, raised.at, raised.alarm.active_since) == ("raised", T0 + 60, T0 + 60)
    assert (repeated.kind, repeated.at) == ("repeated", T0 + 70)
    book2 = AlarmBook()
    book2.fold(_cls(K, 3, "raise", ESC), Event(T0, "t", "sw", "x"), "sw", T0)
    [ch] = book2.tick(T0 + 1000)
    assert (ch.kind, ch.at, int(ch.alarm.level)) == ("escalated", T0 + 600, 2)


# -- what each change does to tickets (gateway.core.reactions), on the example's contracts ----------------


POLICIES = build_policies(load_config(EXAMPLE))
CALS = default_calendars()
SWD = Device("sw", "network.switch", site="hq", policy="mine-monitoring")


class Desk:
    """A book and a desk wired like the pipeline: every change goes through dispatch."""

    def __init__(self, **policy: Any) -> None:
        pol = dataclasses.replace(POLICIES["mine-monitoring"], **policy)
        self.policies = {**POLICIES, "mine-monitoring": pol}
        self.desk = TicketDesk(self.policies, CALS)
        self.book = AlarmBook(inventory=Inventory([SWD, *DEVICES[:3]]))
        self.texts: list[str] = []

    def _react(self, changes: list[Any]) -> list[str]:
        out = []
        for ch in changes:
            o = dispatch(ch, self.book._device(ch.alarm.device), self.desk, self.policies, "mine-monitoring")
            out.append(o.action)
            self.texts.append(o.text)
        return out

    def r(self, t: float, key: str = K, level: int = 3, **rule: Any) -> list[str]:
        dev = key.split("/")[0]
        c = _cls(key, level, "raise", {"*": rule} if rule else {})
        return self._react(self.book.fold(c, Event(T0 + t, "t", dev, "x"), dev, T0 + t))

    def c(self, t: float, key: str = K) -> list[str]:
        dev = key.split("/")[0]
        return self._react(self.book.fold(_cls(key, 3, "clear", {}), Event(T0 + t, "t", dev, "x"), dev, T0 + t))

    def tick(self, t: float) -> list[str]:
        return self._react(self.book.tick(T0 + t))


def test_dispatch_raise_opens_ticket_at_activation_and_clear_restores() -> None:
    d = Desk()
    assert d.r(0, hold_for=60.0) == ["none"]
    assert d.desk.open == {}
    assert d.tick(60) == ["opened"]
    [t] = d.desk.open.values()
    assert (t.opened_at, int(t.level), t.policy) == (T0 + 60, 3, "mine-monitoring")
    assert d.texts[-1] == f"open ticket {t.id} (policy mine-monitoring, level 3)"
    assert d.r(70, hold_for=60.0) == ["none"] and d.texts[-1].startswith("repeat of alarm")
    assert d.c(80) == ["restored"]
    assert t.status == "restored"


@pytest.mark.parametrize(
    "policy, second_after, expected",
    [
        ({}, 100, ["opened", "opened"]),
        ({"reraise": "reopen", "reopen_within": 3600.0}, 100, ["opened", "reopened"]),
        ({"reraise": "reopen", "reopen_within": 3600.0}, 7200, ["opened", "opened"]),
    ],
    ids=["default-new-ticket", "reopen-within-window", "reopen-window-passed"],
)
def test_dispatch_reraise_policy(policy: dict[str, Any], second_after: float, expected: list[str]) -> None:
    d = Desk(**policy)
    got = d.r(0)
    d.c(10)
    got += d.r(10 + second_after)
    assert got == expected
    tickets = sorted(d.desk.open.values(), key=lambda t: t.id)
    assert len(tickets) == expected.count("opened")
    if "reopened" in expected:
        assert tickets[0].status == "open" and d.book.open[K].ticket_id == tickets[0].id


def test_dispatch_escalation_retargets_and_flapping_sets_level_4() -> None:
    d = Desk()
    assert d.r(0, escalate=[(600, 2)]) == ["opened"]
    [t] = d.desk.open.values()
    response_due = t.clock("response").due_at  # type: ignore[union-attr]
    assert d.tick(600) == ["retargeted"]
    assert int(t.level) == 2 and t.clock("response").due_at != response_due  # type: ignore[union-attr]
    d2 = Desk()
    flap = {"flap_count": 3, "flap_window": 600.0}
    assert d2.r(0, **flap) == ["opened"]
    assert d2.c(10) == ["restored"]
    assert d2.r(20, **flap) == ["opened"]  # the third transition: one level-4 alarm, its own ticket
    tickets = sorted(d2.desk.open.values(), key=lambda t: t.id)
    assert [int(t.level) for t in tickets] == [3, 4]
    d4 = Desk()
    flap4 = {"flap_count": 4, "flap_window": 600.0}
    d4.r(0, **flap4)
    d4.c(10)
    d4.r(20, **flap4)
    assert d4.c(30) == ["retargeted"]  # the open ticket of the current occurrence goes to level 4
    assert sorted(int(t.level) for t in d4.desk.open.values()) == [3, 4]


def test_dispatch_suppressed_opens_nothing_until_unsuppressed() -> None:
    d = Desk()
    assert d.r(0, "p/reachability", 1) == ["opened"]
    assert d.r(10, "c/if1") == ["none"] and "suppressed by parent:p" in d.texts[-1]
    assert d.c(20, "p/reachability") == ["restored", "opened"]
    assert sorted(t.alarm_key for t in d.desk.open.values()) == ["c/if1", "p/reachability"]


def test_dispatch_level_not_ticketed_by_policy() -> None:
    d = Desk(ticket_levels=frozenset({1, 2}))
    assert d.r(0) == ["none"]
    assert d.texts[-1] == "no ticket: policy mine-monitoring does not ticket level 3"
    assert d.r(10, level=1) == ["opened"]  # a worse reading makes it ticketable


# -- maintenance windows (gateway.core.maintenance) -----------------------------------------------------



@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"devices": ["sw"], "start": 10, "end": 10}, "end must be after start"),
        ({"start": 0, "end": 10}, "at least one of devices"),
        ({"devices": ["sw"], "start": 0, "end": 10, "id": " "}, "needs an id"),
    ],
    ids=["empty-span", "empty-scope", "no-id"],
)
def test_bad_windows_rejected(kwargs: dict[str, Any], problem: str) -> None:
    wid = kwargs.pop("id", "w")
    with pytest.raises(MaintenanceError, match=problem):
        new_window(wid, **kwargs)


def test_window_end_and_lookup() -> None:
    m = MaintenanceBook([new_window("a", 100, 200, devices=["sw"]), new_window("b", 150, 400, sites=["hq"])])
    sw = DEVICES[4]
    assert m.active_for(sw, 99) is None
    assert m.active_for(sw, 160).id == "a"  # type: ignore[union-attr]  # the earliest-started one
    assert m.active_for(sw, 250).id == "b"  # type: ignore[union-attr]
    ended = m.end("b", 300, by="li")
    assert (ended.end, ended.ended_by) == (300, "li") and m.active_for(sw, 300) is None
    with pytest.raises(MaintenanceError, match="already ended"):
        m.end("b", 301)
    with pytest.raises(KeyError):
        m.end("nope", 301)
    with pytest.raises(UnknownWindow, match="no maintenance window 'nope'"):
        m.end("nope", 301)
    assert [w.id for w in m.windows(350, include_past=False)] == []
    assert Window.from_dict(ended.to_dict()) == ended


@pytest.mark.parametrize(
    "text, expected",
    [
        ("now", 1000.0),
        ("+2h", 1000.0 + 7200),
        ("-30m", 1000.0 - 1800),
        ("1767225600", 1767225600.0),
        ("2026-01-01T08:00:00", 1767225600.0),  # local time in Asia/Shanghai
        ("2026-01-01T00:00:00Z", 1767225600.0),
    ],
    ids=["now", "plus", "minus", "epoch", "local", "utc"],
)
def test_parse_when(text: str, expected: float) -> None:
    assert parse_when(text, 1000.0, "Asia/Shanghai") == expected
