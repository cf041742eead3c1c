"""Guards of the decision core against hostile input (issue 21, item 1), on a manual clock:
unknown devices open no tickets by default; a hard cap and a per-source rate limit on new
unknown ids (counted, one gateway alarm); the ticket circuit breaker (more than N new tickets
per window → one storm ticket and the rest held back, their alarms recorded)."""

from __future__ import annotations

import tomllib
from typing import Any

from gateway.core.admission import UnknownAdmission
from gateway.core.breaker import STORM_KEY, TicketBreaker
from gateway.core.decider import Decider
from gateway.core.inventory import Inventory
from gateway.model import Device, Event
from rules import RuleEngine, parse_pack
from tests.helpers import ROOT
from tests.unit.test_decider import PACK, T0, make

GATEWAY_PACK = parse_pack(tomllib.loads((ROOT / "rules" / "packs" / "gateway.toml").read_text("utf-8")))


def ev(t: float, device: str, name: str, source: str = "test", **attrs: Any) -> Event:
    return Event(T0 + t, source, device, name, attrs)


def guarded(**kw: Any) -> Decider:
    dec = make(**kw)
    dec.engine = RuleEngine([parse_pack(PACK), GATEWAY_PACK])
    many = [Device(f"d{i}", "network.switch", policy="mine-monitoring") for i in range(100)]
    dec.inventory = Inventory([*dec.inventory, *many], "mine-monitoring")
    dec.book.inventory = dec.inventory
    return dec


# -- the breaker alone -----------------------------------------------------------------------


def test_breaker_trips_above_the_limit_and_ends_after_a_quiet_window() -> None:
    b = TicketBreaker(limit=5, window=60.0)
    assert [b.allow(T0 + i) for i in range(8)] == [True] * 5 + [False] * 3
    [n] = b.tick(T0 + 8)
    assert (n.state, n.held) == ("ongoing", 3)
    assert b.tick(T0 + 9) == []  # nothing new held back: nothing to say
    assert b.next_due() == T0 + 7 + 60
    assert not b.allow(T0 + 30)  # still open: held back, and the quiet window restarts
    assert b.tick(T0 + 89) != [] and b.tripped
    [n] = b.tick(T0 + 90)
    assert (n.state, n.held) == ("ended", 4) and not b.tripped
    assert b.allow(T0 + 91)  # a fresh budget


def test_breaker_is_a_sliding_window() -> None:
    b = TicketBreaker(limit=3, window=10.0)
    assert all(b.allow(T0 + t) for t in (0, 1, 2))
    assert b.allow(T0 + 10.5)  # the first one left the window
    assert not b.allow(T0 + 10.6)


# -- unknown devices -------------------------------------------------------------------------


def test_unknown_devices_alarm_without_tickets_by_default() -> None:
    dec = guarded()
    d = dec.step([ev(0, "invented-1", "power.lost"), ev(0, "d1", "power.lost")], T0 + 1)
    assert sorted(a.key for a in d.alarms) == ["d1/power", "invented-1/power"]  # shown
    assert [t.alarm_key for t in d.tickets] == ["d1/power"]  # only the inventory device tickets
    dec.unknown_tickets = True  # the switch: unknown devices may ticket
    d = dec.step([ev(2, "invented-2", "power.lost")], T0 + 2)
    assert [t.alarm_key for t in d.tickets] == ["invented-2/power"]


def test_unknown_device_cap_refuses_and_counts_with_one_gateway_alarm() -> None:
    dec = guarded()
    dec.admission = UnknownAdmission(cap=50, per_minute=1e9, burst=10**9)
    beats = [ev(i * 0.001, f"big-{i}", "power.lost") for i in range(200)]
    d = dec.step(beats, T0 + 1)
    assert len(dec.inventory.unknown) - 1 == 50  # 50 admitted, plus the gateway itself
    assert d.counts.unknown_refused == 150 and dec.admission.overflow == 150
    [gw] = [a for a in d.alarms if a.key == "gateway/unknown-devices"]
    assert gw.attrs["overflow"] == 150 and gw.attrs["cap"] == 50
    assert [t.alarm_key for t in d.tickets] == ["gateway/unknown-devices"]  # its one ticket
    d = dec.step([ev(2 + i * 0.001, f"more-{i}", "power.lost") for i in range(100)], T0 + 3)
    assert [a.count for a in d.alarms if a.key == "gateway/unknown-devices"] == [2]  # still one alarm
    assert len(dec.book.open) == 1 + 50
    # Known devices are never refused.
    d = dec.step([ev(4, "d7", "power.lost")], T0 + 4)
    assert [t.alarm_key for t in d.tickets] == ["d7/power"]


def test_new_unknown_ids_are_rate_limited_per_source() -> None:
    dec = guarded()
    dec.admission = UnknownAdmission(cap=10_000, per_minute=60, burst=10)
    d = dec.step([ev(0, f"a-{i}", "power.lost", source="mqtt") for i in range(30)]
                 + [ev(0, f"b-{i}", "power.lost", source="snmp") for i in range(5)], T0)
    assert d.counts.unknown_refused == 20 and dec.admission.rate_limited == 20
    assert len(dec.admission) == 15  # 10 (burst) from mqtt, all 5 from snmp
    # Ids admitted before are never refused; a minute later the source has a new budget.
    d = dec.step([ev(1, "a-0", "power.ok", source="mqtt")], T0 + 1)
    assert d.counts.unknown_refused == 0
    d = dec.step([ev(70, f"c-{i}", "x", source="mqtt") for i in range(12)], T0 + 70)
    assert d.counts.unknown_refused == 2


# -- the circuit breaker in the decision ------------------------------------------------------


def test_ticket_flood_becomes_one_storm_ticket_and_the_alarms_are_kept() -> None:
    dec = guarded()
    dec.breaker = TicketBreaker(limit=10, window=60.0)
    d = dec.step([ev(i * 0.01, f"d{i}", "power.lost") for i in range(60)], T0 + 1)
    keys = [t.alarm_key for t in d.tickets]
    assert len(keys) == 11 and keys[-1] == STORM_KEY  # ten, then the storm ticket
    assert d.counts.tickets_held == 50 and d.counts.alarms_raised == 61  # every fault recorded
    storm = dec.book.open[STORM_KEY]
    assert storm.state == "active" and storm.attrs["held"] == 50
    # More faults while open: held back, the storm alarm summarises (no second storm ticket).
    d = dec.step([ev(10 + i * 0.01, f"d{60 + i}", "power.lost") for i in range(5)], T0 + 10)
    assert d.tickets == [] or all(t.alarm_key == STORM_KEY for t in d.tickets)
    assert dec.book.open[STORM_KEY].attrs["held"] == 55
    assert dec.next_due() is not None and dec.next_due() <= T0 + 70  # type: ignore[operator]
    # A quiet window: the storm ends, its ticket says what was held back and is restored.
    d = dec.step([], T0 + 71)
    [t] = [t for t in d.tickets if t.alarm_key == STORM_KEY]
    assert t.status == "restored"
    assert any("55 tickets held back" in (e.note or "") for e in d.timeline)
    assert STORM_KEY not in dec.book.open or dec.book.open[STORM_KEY].state == "cleared"
    # ...and the budget is back.
    d = dec.step([ev(80, "d90", "power.lost")], T0 + 80)
    assert [t.alarm_key for t in d.tickets] == ["d90/power"]


def test_the_gateways_own_alarms_pass_a_full_cap_and_an_open_breaker() -> None:
    """Refusing unknown devices and holding tickets back must not silence the gateway about
    itself: a broker outage still raises its alarm and opens its ticket."""
    dec = guarded()
    dec.admission = UnknownAdmission(cap=0, per_minute=1, burst=1)
    dec.breaker = TicketBreaker(limit=1, window=60.0)
    d = dec.step([ev(0, "d1", "power.lost"), ev(0, "d2", "power.lost"),
                  ev(0, "mqtt://broker:1883", "mqtt.broker_unreachable", source="mqtt")], T0)
    keys = [t.alarm_key for t in d.tickets]
    assert keys[0] == "d1/power" and "gateway/mqtt://broker:1883" in keys and STORM_KEY in keys
    assert "d2/power" not in keys and d.counts.tickets_held == 1
