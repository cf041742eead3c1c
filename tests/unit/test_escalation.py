"""Owners, teams, the on-call rota and escalation tiers — pure logic on a manual clock.

A ticket's escalation steps fire once each at their fraction of a clock or time after
opening, are recorded on the ticket and its timeline, reach the right people (the owner,
or the team's on-call when nobody owns the ticket), and never fire twice — not even when
the ticket is rebuilt from its stored form, as after a restart.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.clock import ManualClock
from gateway.core.alarms import AlarmBook
from gateway.core.calendars import default_calendars
from gateway.core.escalation import EscalationStep, Staffing
from gateway.core.oncall import Override, Shift, Team, parse_days, parse_hhmm
from gateway.core.sla import ClockTarget, Policy
from gateway.core.tickets import Ticket, TicketDesk, TicketError
from gateway.model import Device, Event, FaultLevel
from rules.engine import Classification

H = 3600.0
CST = ZoneInfo("Asia/Shanghai")
CALS = default_calendars()


def local(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CST).timestamp()


POLICY = Policy(
    "software",
    levels={
        1: {"response": ClockTarget(H, "24x7"), "restore": ClockTarget(4 * H, "24x7")},
        3: {"response": ClockTarget(2 * H, "24x7")},
    },
)
NOC = Team(
    "noc",
    lead="lead.li",
    members=("alice", "bob"),
    shifts=(
        Shift(parse_days("mon-fri"), parse_hhmm("08:00"), parse_hhmm("20:00"), "alice"),
        Shift(parse_days("daily"), parse_hhmm("20:00"), parse_hhmm("08:00"), "bob"),
    ),
    overrides=(Override(local("2026-03-04 12:00"), local("2026-03-04 14:00"), "carol"),),
    tz="Asia/Shanghai",
)
STEPS = (
    EscalationStep("owner-50", notify="owner", clock="response", at=0.5),
    EscalationStep("lead-80", notify="team_lead", clock="response", at=0.8),
    EscalationStep("manager-breach", notify="service_manager", action="escalate", clock="response", at=1.0),
    EscalationStep("dispatch", notify="team", action="dispatch_on_site", after=H, unless=("restore", "arrive")),
    EscalationStep("experts", notify="experts", action="expert_consultation", after=0.0, levels=frozenset({1, 2})),
)
STAFF = Staffing(teams=(NOC,), steps={"software": STEPS}, service_manager="wang.mgr", experts=("dr.expert",))


def _desk() -> TicketDesk:
    return TicketDesk({"software": POLICY}, CALS, staffing=STAFF)


def _open(desk: TicketDesk, now: float, level: int = 1) -> Ticket:
    book = AlarmBook()
    ch = book.apply(Classification("r", "raise", "k", FaultLevel(level), "t"), Event(now, "t", "d", "x"), "d", now)
    assert ch is not None
    return desk.open_for(ch.alarm, Device("d", site="s1", policy="software"), POLICY, now)


def test_rota_weekdays_nights_and_overrides() -> None:
    assert NOC.on_call(local("2026-03-04 09:00")) == "alice"  # a Wednesday
    assert NOC.on_call(local("2026-03-04 13:00")) == "carol"  # the override wins
    assert NOC.on_call(local("2026-03-04 23:30")) == "bob"
    assert NOC.on_call(local("2026-03-05 07:59")) == "bob"  # the night shift runs past midnight
    assert NOC.on_call(local("2026-03-07 10:00")) == "lead.li"  # Saturday day: no shift, the lead
    with pytest.raises(ValueError, match="not a day"):
        parse_days("mon-funday")
    with pytest.raises(ValueError, match="HH:MM"):
        parse_hhmm("25:00")


def test_steps_fire_once_in_order_and_reach_the_right_people() -> None:
    clock = ManualClock(local("2026-03-04 09:00"))
    desk = _desk()
    t = _open(desk, clock.now())
    assert t.team == "noc"
    desk.tick(clock.now())
    fired = [(tk.id, f.step.id, f.recipients) for tk, f in desk.take_escalations()]
    assert fired == [(t.id, "experts", ("dr.expert",))]
    # The desk's timer wakes at the next step: 50 % of the 1 h response clock.
    assert desk.next_check() == pytest.approx(clock.now() + 0.5 * H)
    clock.advance(0.5 * H)
    desk.tick(clock.now())
    [(_, f)] = desk.take_escalations()
    assert f.step.id == "owner-50" and f.recipients == ("alice",)  # nobody owns it: the on-call
    assert "on call" in f.note
    desk.act(t.id, "take", clock.now(), "user:bob")
    assert t.owner == "bob"
    clock.advance(0.3 * H)
    desk.tick(clock.now())
    assert [(f.step.id, f.recipients) for _, f in desk.take_escalations()] == [("lead-80", ("lead.li",))]
    clock.advance(0.2 * H)  # 1 h: breach and the dispatch step together
    desk.tick(clock.now())
    got = sorted((f.step.id, f.recipients) for _, f in desk.take_escalations())
    assert got == [("dispatch", ("alice", "bob")), ("manager-breach", ("wang.mgr",))]
    clock.advance(10 * H)
    desk.tick(clock.now())
    assert desk.take_escalations() == []
    kinds = [e.kind for e in desk.take_timeline()]
    assert kinds.count("escalation") == 5
    assert set(t.escalations) == {"experts", "owner-50", "lead-80", "manager-breach", "dispatch"}


def test_a_rebuilt_ticket_does_not_fire_again() -> None:
    """The fired steps travel with the ticket's stored form: a restart loads them back."""
    now = local("2026-03-04 09:00")
    desk = _desk()
    t = _open(desk, now)
    desk.tick(now + 0.6 * H)
    assert {f.step.id for _, f in desk.take_escalations()} == {"experts", "owner-50"}
    stored = t.to_dict()
    fresh = _desk()
    fresh.load([Ticket.from_dict(stored)], t.id + 1)
    fresh.tick(now + 0.6 * H)
    assert fresh.take_escalations() == []
    fresh.tick(now + 0.85 * H)
    assert [f.step.id for _, f in fresh.take_escalations()] == ["lead-80"]


def test_stopped_clock_and_unless_actions_cancel_steps() -> None:
    now = local("2026-03-04 09:00")
    desk = _desk()
    t = _open(desk, now)
    desk.act(t.id, "acknowledge", now + 0.2 * H, "user:alice")  # response met before 50 %
    desk.act(t.id, "arrive", now + 0.5 * H, "user:alice")  # on site: no dispatch needed
    desk.tick(now + 5 * H)
    assert [f.step.id for _, f in desk.take_escalations()] == ["experts"]
    # level 3: no expert step (levels 1-2 only)
    t3 = _open(desk, now, level=3)
    desk.tick(now)
    assert "experts" not in {f.step.id for tk, f in desk.take_escalations() if tk.id == t3.id}


def test_take_assign_hand_over() -> None:
    now = local("2026-03-04 09:00")
    desk = _desk()
    t = _open(desk, now)
    with pytest.raises(TicketError, match="no owner to hand over"):
        desk.act(t.id, "hand_over", now, "user:alice", to="bob")
    desk.act(t.id, "take", now, "user:alice")
    assert t.owner == "alice"
    with pytest.raises(TicketError, match="already owned by alice"):
        desk.act(t.id, "take", now, "user:alice")
    desk.act(t.id, "hand_over", now + 60, "user:alice", "the switch is rebooting", to="bob")
    desk.act(t.id, "assign", now + 120, "user:lead.li", to="carol", team="field")
    assert (t.owner, t.team) == ("carol", "field")
    with pytest.raises(TicketError, match="needs a person"):
        desk.act(t.id, "assign", now, "user:lead.li")
    notes = [(e.kind, e.actor, e.note) for e in desk.take_timeline() if e.kind in ("take", "hand_over", "assign")]
    assert notes == [
        ("take", "user:alice", "taken by alice"),
        ("hand_over", "user:alice", "handed over from alice to bob. the switch is rebooting"),
        ("assign", "user:lead.li", "assigned to carol (was bob); team noc → field"),
    ]
    assert Ticket.from_dict(t.to_dict()).owner == "carol"
