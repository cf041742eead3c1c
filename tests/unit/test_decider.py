"""The decision core (gateway.core.decider) on a manual clock: what one step writes, publishes
and counts — storms, suppression as a stage (parent down, maintenance), timers, commands,
liveness, and outbox messages per help-desk connector."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.config import build_policies, load_config
from gateway.core.alarms import AlarmBook, AlarmChange
from gateway.core.calendars import default_calendars
from gateway.core.decider import Decider, Decision
from gateway.core.inventory import Inventory
from gateway.core.maintenance import MaintenanceBook, new_window
from gateway.core.suppression import Suppressor
from gateway.core.tickets import TicketDesk
from gateway.core.watchdog import Watchdog
from gateway.model import Device, Event
from rules import RuleEngine, parse_pack
from tests.helpers import EXAMPLE

T0 = ManualClock().now()
POLICIES = build_policies(load_config(EXAMPLE))
CALS = default_calendars()
DEVICES = [
    Device("core", "network.router", site="hq", policy="mine-monitoring"),
    Device("sw", "network.switch", site="hq", parent="core", policy="mine-monitoring"),
    Device("gs", "mine.gas-sensor", site="north", policy="mine-monitoring"),
]
PACK = {
    "pack": {"name": "t"},
    "rules": [
        {"id": "link", "event": "link.down", "level": 3, "key": "{device}/if/{ifIndex}", "clear_on": ["link.up"]},
        {"id": "power", "event": "power.lost", "level": 1, "key": "{device}/power", "clear_on": ["power.ok"]},
        {"id": "fan", "event": "fan", "level": 2, "key": "{device}/fan", "hold_for": 60},
        {"id": "lost", "event": "heartbeat.lost", "level": 1, "key": "{device}/reachability",
         "clear_on": ["heartbeat.restored"]},
    ],
}


def make(connectors: tuple[str, ...] = (), windows: tuple[Any, ...] = (), **kw: Any) -> Decider:
    inventory = Inventory(DEVICES, "mine-monitoring")
    book = AlarmBook(suppressor=Suppressor(inventory, MaintenanceBook(windows)))
    counter = itertools.count(1)
    return Decider(
        engine=RuleEngine([parse_pack(PACK)]),
        inventory=inventory,
        book=book,
        desk=TicketDesk(POLICIES, CALS),
        policies=POLICIES,
        instance="gwT",
        connectors=connectors,
        unique=lambda: f"u{next(counter)}",
        **kw,
    )


def ev(t: float, device: str, name: str, **attrs: Any) -> Event:
    return Event(T0 + t, "test", device, name, attrs)


def kinds(d: Decision) -> list[str]:
    return [f"{c.kind} {c.alarm.key}" if isinstance(c, AlarmChange) else f"sla {c[0].id}" for c in d.changes]


def test_a_trap_storm_folds_into_one_alarm_and_one_ticket() -> None:
    dec = make()
    storm = [ev(i * 0.001, "sw", "link.down", ifIndex=1) for i in range(5000)]
    d = dec.step(storm, T0 + 5)
    assert kinds(d) == ["raised sw/if/1"]  # repeats are folded, not published
    [alarm] = d.alarms
    [ticket] = d.tickets
    assert (alarm.count, alarm.ticket_id, ticket.alarm_id) == (5000, ticket.id, alarm.id)
    assert (d.counts.classified, d.counts.alarms_raised, d.counts.tickets_opened) == (5000, 1, 1)
    d = dec.step(storm, T0 + 10)
    assert kinds(d) == [] and [a.count for a in d.alarms] == [10_000] and d.tickets == []
    assert len(dec.desk.open) == 1


def test_unclassified_events_are_counted_only() -> None:
    d = make().step([ev(0, "sw", "nobody.cares"), ev(0, "10.0.0.9", "x")], T0)
    assert (d.counts.classified, d.counts.unclassified) == (0, 2)
    assert not d and d.changes == []


def test_parent_down_suppression_is_a_stage_between_fold_and_tickets() -> None:
    dec = make()
    d = dec.step([ev(0, "core", "power.lost"), ev(1, "sw", "link.down", ifIndex=1)], T0 + 1)
    assert kinds(d) == ["raised core/power", "suppressed sw/if/1"]
    assert dec.suppressor.down.is_down("core")
    assert dec.suppressor.reason(DEVICES[1], T0 + 1) == "parent:core"
    assert [t.alarm_key for t in d.tickets] == ["core/power"]  # the child's fault opens no ticket
    assert d.counts.alarms_suppressed == 1
    d = dec.step([ev(30, "core", "power.ok")], T0 + 30)
    assert kinds(d)[:2] == ["cleared core/power", "unsuppressed sw/if/1"]  # cause before effect
    assert dec.book.open["sw/if/1"].ticket_id is not None  # its ticket opens when the cause ends
    assert dec.suppressor.reason(DEVICES[1], T0 + 30) is None


def test_maintenance_holds_tickets_back_until_the_window_ends() -> None:
    dec = make(windows=(new_window("mw", T0, T0 + 600, devices=["gs"]),))
    d = dec.step([ev(10, "gs", "link.down", ifIndex=2)], T0 + 10)
    assert kinds(d) == ["suppressed gs/if/2"] and d.tickets == []
    assert d.alarms[0].suppressed_by == "maintenance:mw"
    assert dec.next_due() == T0 + 600  # the step has work when the window ends
    assert kinds(dec.step((), T0 + 599)) == []
    d = dec.step((), T0 + 600)
    assert kinds(d) == ["unsuppressed gs/if/2"]
    assert [t.alarm_key for t in d.tickets] == ["gs/if/2"] and d.tickets[0].opened_at == T0 + 600


def test_alarm_timers_run_after_the_events_and_before_sla_timers() -> None:
    dec = make()
    d = dec.step([ev(0, "gs", "fan")], T0)
    assert kinds(d) == ["pending gs/fan"] and d.tickets == []
    assert dec.next_due() == T0 + 60
    d = dec.step([ev(70, "sw", "link.down", ifIndex=3)], T0 + 70)
    assert kinds(d) == ["raised sw/if/3", "raised gs/fan"]  # the batch's own event first, then the hold
    assert d.alarms[1].active_since == T0 + 60  # dated when the hold expired, not when noticed
    # A week later every SLA clock has breached: notices follow, nothing is re-raised.
    d = dec.step((), T0 + 7 * 86_400)
    assert kinds(d) and all(k.startswith("sla ") for k in kinds(d))
    assert d.counts.sla_breaches >= 2 and d.timeline


def test_commands_run_in_order_with_the_events_and_hand_back_results() -> None:
    dec = make()
    seen: list[int] = []

    def count_open(now: float) -> int:
        seen.append(len(dec.book.open))
        return len(dec.book.open)

    def boom(now: float) -> None:
        raise ValueError("no")

    d = dec.step([count_open, ev(0, "sw", "link.down", ifIndex=1), count_open, boom], T0)
    assert seen == [0, 1]
    assert [r for r, _ in d.results[:2]] == [0, 1]
    assert isinstance(d.results[2][1], ValueError)


def test_outbox_one_message_per_connector_never_echoed_to_its_source() -> None:
    dec = make(connectors=("hd1", "hd2"))
    d = dec.step([ev(0, "sw", "link.down", ifIndex=1)], T0)
    [tid] = [t.id for t in d.tickets]
    assert [(m.connector, m.key, m.kind) for m in d.outbox] == [
        ("hd1", f"gw-gwT-t{tid}", "open"),
        ("hd2", f"gw-gwT-t{tid}", "open"),
    ]
    payload = d.outbox[0].payload
    assert (payload["count"], payload["first_event"], payload["ticket_key"]) == (1, "link.down", f"gw-gwT-t{tid}")

    def from_hd1(now: float) -> None:
        dec.desk.act(tid, "comment", now, "helpdesk:hd1", "seen")

    d = dec.step([from_hd1], T0 + 5)
    assert [(m.connector, m.key) for m in d.outbox] == [("hd2", f"gw-gwT-t{tid}-mu1")]
    assert d.outbox[0].payload["actor"] == "helpdesk:hd1"


def test_no_connectors_no_outbox() -> None:
    d = make().step([ev(0, "sw", "link.down", ifIndex=1)], T0)
    assert d.tickets and d.outbox == []


def test_liveness_losses_join_after_the_events_and_restore_in_the_same_step() -> None:
    dec = make(watchdog=Watchdog(10.0, 3, grace=0.0))
    dec.step([ev(0, "gs", "heartbeat")], T0)  # tracked from its first heartbeat
    assert dec.next_due() == T0 + 30
    # Its deadline (30) has passed by the step's time, but the heartbeat that waited in
    # the batch counts first: no loss.
    d = dec.step([ev(25, "gs", "heartbeat")], T0 + 45)
    assert kinds(d) == [] and dec.next_due() == T0 + 55
    d = dec.step((), T0 + 60)
    assert kinds(d) == ["raised gs/reachability"] and d.tickets
    d = dec.step([ev(61, "gs", "heartbeat")], T0 + 61)
    assert kinds(d) == ["cleared gs/reachability"]


def test_tracing_records_every_event_and_the_timers() -> None:
    dec = make(tracing=True)
    d = dec.step([ev(0, "sw", "link.down", ifIndex=1), ev(1, "sw", "link.down", ifIndex=1), ev(2, "sw", "x")], T0 + 2)
    first, second, third, timers = d.trace
    assert first.device is not None and first.device.id == "sw"
    assert [(r.change.kind, r.outcome.action if r.outcome else None) for r in first.reactions] == [("raised", "opened")]
    assert [r.outcome.text if r.outcome else None for r in second.reactions] == ["repeat of alarm 1 (count 2)"]
    assert third.classifications == [] and third.reactions == []
    assert timers.event is None and timers.reactions == []
    assert make().step([ev(0, "sw", "link.down", ifIndex=1)], T0).trace == []  # off by default


def test_a_failing_desk_loses_no_alarm(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    dec = make()

    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("desk bug")

    monkeypatch.setattr(dec.desk, "open_for", broken)
    d = dec.step([ev(0, "sw", "link.down", ifIndex=1)], T0)
    assert kinds(d) == ["raised sw/if/1"] and [a.key for a in d.alarms] == ["sw/if/1"] and d.tickets == []
    assert "ticket reaction to alarm 1 (raised) failed" in caplog.text
