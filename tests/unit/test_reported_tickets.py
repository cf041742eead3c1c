"""Tickets people report (a customer's call, e-mail or help-desk ticket), through the decision
core on an injected clock: clocks from the reported time, back-dating with a reason, refusal
of a reported time in the future, and alarms attaching to an open reported ticket instead of
opening a second one. Dates are worked out by hand in Asia/Shanghai."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.config import build_policies, load_config
from gateway.core.alarms import AlarmBook, AlarmChange
from gateway.core.calendars import default_calendars
from gateway.core.decider import Decider, Decision
from gateway.core.inventory import Inventory
from gateway.core.maintenance import MaintenanceBook
from gateway.core.suppression import Suppressor
from gateway.core.tickets import Ticket, TicketDesk, TicketError
from gateway.model import Device, Event, FaultLevel
from rules import RuleEngine, parse_pack
from tests.helpers import EXAMPLE

CST = ZoneInfo("Asia/Shanghai")
POLICIES = build_policies(load_config(EXAMPLE))
CALS = default_calendars()
DEVICES = [
    Device("edge-7", "network.switch", site="taiyuan", region="shanxi", policy="network-equipment"),
    Device("gs-1", "mine.gas-sensor", site="north", policy="mine-monitoring"),
]
PACK = {
    "pack": {"name": "t"},
    "rules": [
        {"id": "link", "event": "link.down", "level": 3, "key": "{device}/if/{ifIndex}", "clear_on": ["link.up"]},
        {"id": "power", "event": "power.lost", "level": 1, "key": "{device}/power", "clear_on": ["power.ok"]},
    ],
}


def local(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CST).timestamp()


def show(ts: float | None) -> str:
    assert ts is not None
    return datetime.fromtimestamp(ts, CST).strftime("%Y-%m-%d %H:%M")


def make(connectors: tuple[str, ...] = ()) -> Decider:
    inventory = Inventory(DEVICES, "mine-monitoring")
    counter = itertools.count(1)
    return Decider(
        engine=RuleEngine([parse_pack(PACK)]),
        inventory=inventory,
        book=AlarmBook(suppressor=Suppressor(inventory, MaintenanceBook(()))),
        desk=TicketDesk(POLICIES, CALS),
        policies=POLICIES,
        instance="gwT",
        connectors=connectors,
        unique=lambda: f"u{next(counter)}",
    )


def report(dec: Decider, now: float, device: str = "edge-7", **kw: Any) -> Decision:
    """Open a reported ticket as a command of one step (as the API and the CLI do)."""
    dev = dec.inventory.resolve(device)
    args: dict[str, Any] = {"level": FaultLevel(3), "title": "users on floor 3 cannot connect",
                            "reported_by": "Zhang San, 0351-1234567", "channel": "phone",
                            "actor": "user:alice", **kw}

    def cmd(at: float) -> Ticket:
        return dec.desk.open_reported(device=dev, policy=POLICIES[dev.policy], now=at, **args)

    return dec.step([cmd], now)


def ev(ts: float, device: str, name: str, **attrs: Any) -> Event:
    return Event(ts, "test", device, name, attrs)


def test_clocks_start_at_the_reported_time_with_a_reason() -> None:
    """The customer called at Fri 16:30; the ticket was entered at 17:30. Network equipment,
    level 3, outside Beijing: response 24 h → Sat 16:30, on site 48 h → Sun 02-15 16:30."""
    dec = make(connectors=("desk",))
    d = report(dec, local("2026-02-13 17:30"), reported_at=local("2026-02-13 16:30"),
               reason="call taken on the duty phone, entered after the site visit")
    [(t, err)] = d.results
    assert err is None
    assert (t.origin, t.reported_by, t.status) == ("phone", "Zhang San, 0351-1234567", "open")
    assert show(t.opened_at) == "2026-02-13 16:30" and show(t.entered_at) == "2026-02-13 17:30"
    assert t.backdate_reason.startswith("call taken")
    assert {c.kind: show(c.due_at) for c in t.clocks if not c.deferred} == {
        "response": "2026-02-14 16:30", "on_site": "2026-02-15 16:30"}
    [entry] = d.timeline
    assert entry.kind == "opened" and entry.actor == "user:alice"
    assert "reported by Zhang San, 0351-1234567 via phone" in entry.note
    assert "back-dated: call taken on the duty phone" in entry.note
    [msg] = d.outbox
    assert msg.kind == "open" and msg.payload["origin"] == "phone"
    assert msg.payload["description"].startswith("Reported by Zhang San, 0351-1234567 via phone at 2026-02-13T08:30:00Z")
    assert d.counts.tickets_opened == 0  # counted for alarms only


def test_a_back_dated_start_breaches_what_is_already_late() -> None:
    """Mine monitoring, level 2: response 1 h. Reported 09:00, entered 11:00: the response
    breach is dated 10:00 and recorded in the same step."""
    dec = make()
    d = report(dec, local("2026-03-02 11:00"), device="gs-1", level=FaultLevel(2),
               reported_at=local("2026-03-02 09:00"), reason="e-mail read late", channel="email")
    [(t, _)] = d.results
    assert t.origin == "email"
    notices = [c for c in d.changes if not isinstance(c, AlarmChange)]
    breaches = [(n.kind, show(n.at)) for _, n in notices if n.fraction == 1.0]
    assert breaches == [("response", "2026-03-02 10:00")]
    assert [e.kind for e in d.timeline][:1] == ["opened"]


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"reported_at": local("2026-03-02 12:00")}, "reported_at 2026-03-02T04:00:00Z is in the future (now 2026-03-02T03:00:00Z)"),
        ({"reported_at": local("2026-03-02 10:30")}, "reported_at 2026-03-02T02:30:00Z is 30 min before entry: a back-dated start needs a reason"),
        ({"reported_at": local("2026-03-01 08:45"), "reason": "  "}, "is 26 h 15 min before entry: a back-dated start needs a reason"),
        ({"channel": "fax"}, "unknown channel 'fax'; known: phone, email, helpdesk"),
        ({"title": " "}, "a reported ticket needs a title"),
        ({"reported_by": ""}, "a reported ticket needs reported_by"),
    ],
    ids=["future", "back-dated-no-reason", "blank-reason", "channel", "title", "reported-by"],
)
def test_bad_reports_are_refused_and_change_nothing(kw: dict[str, Any], message: str) -> None:
    dec = make()
    d = report(dec, local("2026-03-02 11:00"), **kw)
    [(_, err)] = d.results
    assert isinstance(err, TicketError) and message in str(err)
    assert not d and dec.desk.open == {}


def test_a_reported_time_within_a_minute_counts_as_now() -> None:
    dec = make()
    now = local("2026-03-02 11:00")
    for offset in (-45.0, 30.0):  # a client clock a little behind or ahead
        d = report(dec, now, reported_at=now + offset)
        [(t, err)] = d.results
        assert err is None and t.opened_at == now and t.entered_at is None and t.backdate_reason == ""


def test_an_alarm_for_the_device_attaches_to_the_reported_ticket() -> None:
    dec = make(connectors=("desk",))
    d = report(dec, local("2026-03-02 09:00"))
    [(t, _)] = d.results
    # The switch reports a power loss at 09:20: level 1 attaches and re-targets the ticket.
    d = dec.step([ev(local("2026-03-02 09:20"), "edge-7", "power.lost")], local("2026-03-02 09:20"))
    [alarm] = d.alarms
    assert alarm.ticket_id == t.id and d.counts.tickets_opened == 0 and d.counts.alarms_raised == 1
    assert dec.desk.open.keys() == {t.id}
    assert (t.alarm_id, t.alarm_key, t.alarm_ids) == (alarm.id, "edge-7/power", [alarm.id])
    assert t.level == FaultLevel(1) and t.urgent
    assert [e.kind for e in d.timeline] == ["alarm_linked", "level", "sla_breach"]
    # Level 1 from the report at 09:00: urgent response 10 min (09:10, already passed),
    # on site 24 h outside Beijing.
    resp, on_site = t.clock("response"), t.clock("on_site")
    assert resp is not None and on_site is not None
    assert show(on_site.due_at) == "2026-03-03 09:00" and resp.breached
    # A second fault of the same device attaches too; a clear of the first restores the ticket.
    d = dec.step([ev(local("2026-03-02 09:30"), "edge-7", "link.down", ifIndex=4)], local("2026-03-02 09:30"))
    assert [a.ticket_id for a in d.alarms] == [t.id] and t.alarm_ids == [alarm.id, alarm.id + 1]
    d = dec.step([ev(local("2026-03-02 10:00"), "edge-7", "power.ok")], local("2026-03-02 10:00"))
    assert t.status == "restored" and [e.kind for e in d.timeline if e.kind == "restore"] == ["restore"]
    # Restored: the next fault opens a ticket of its own.
    d = dec.step([ev(local("2026-03-02 11:00"), "edge-7", "power.lost")], local("2026-03-02 11:00"))
    [new] = d.alarms
    assert new.ticket_id not in (None, t.id) and d.counts.tickets_opened == 1


def test_alarms_of_other_devices_open_their_own_tickets() -> None:
    dec = make()
    report(dec, local("2026-03-02 09:00"))
    d = dec.step([ev(local("2026-03-02 09:20"), "gs-1", "power.lost")], local("2026-03-02 09:20"))
    assert d.counts.tickets_opened == 1 and len(dec.desk.open) == 2


def test_link_an_alarm_to_a_reported_ticket_and_refuse_a_second_link() -> None:
    dec = make()
    # The gas sensor's alarm came first and has its own ticket; the customer then calls
    # about the switch. Linking the sensor's alarm to the switch's ticket is refused.
    d = dec.step([ev(local("2026-03-02 08:00"), "gs-1", "power.lost")], local("2026-03-02 08:00"))
    [gas] = d.alarms
    d = report(dec, local("2026-03-02 09:00"))
    [(t, _)] = d.results
    with pytest.raises(TicketError, match=f"alarm {gas.id} already has ticket {gas.ticket_id}"):
        dec.desk.attach_alarm(t.id, gas, local("2026-03-02 09:05"), "user:alice")
    # An alarm without a ticket links; linking it again is refused.
    loose = next(iter(dec.book.open.values()))
    loose.ticket_id = None
    dec.desk.attach_alarm(t.id, loose, local("2026-03-02 09:05"), "user:alice", "same outage")
    assert loose.ticket_id == t.id and t.alarm_ids == [loose.id]
    with pytest.raises(TicketError, match="already linked"):
        dec.desk.attach_alarm(t.id, loose, local("2026-03-02 09:06"), "user:alice")


def test_the_same_help_desk_ticket_is_adopted_once() -> None:
    dec = make(connectors=("desk", "hooks"))
    now = local("2026-03-02 09:00")
    d = report(dec, now, channel="helpdesk", actor="helpdesk:desk", remote=("desk", "17"))
    [(t, _)] = d.results
    assert t.remote == {"desk": "17"}
    # The origin help desk gets its "open" to adopt the remote ticket; others get a normal one.
    assert sorted((m.connector, m.kind, m.payload.get("adopt")) for m in d.outbox) == [
        ("desk", "open", {"desk": "17"}), ("hooks", "open", {"desk": "17"})]
    d = report(dec, now + 60, channel="helpdesk", actor="helpdesk:desk", remote=("desk", "17"))
    [(again, _)] = d.results
    assert again is t and len(dec.desk.open) == 1 and not d.outbox


def test_a_reported_ticket_survives_a_restart_and_still_takes_the_alarm() -> None:
    """Stored and loaded (as after a restart), the report keeps its origin, reporter, entry time
    and reason, and a later alarm of its device still attaches to it."""
    dec = make()
    d = report(dec, local("2026-03-02 11:00"), reported_at=local("2026-03-02 10:00"), reason="night call")
    [(t, _)] = d.results
    stored = Ticket.from_dict(t.to_dict())
    assert (stored.origin, stored.reported_by, stored.entered_at, stored.backdate_reason, stored.alarm_ids) == (
        "phone", "Zhang San, 0351-1234567", local("2026-03-02 11:00"), "night call", [])
    again = make()
    again.desk.load([stored], next_id=stored.id + 1)
    d = again.step([ev(local("2026-03-02 11:30"), "edge-7", "link.down", ifIndex=2)], local("2026-03-02 11:30"))
    [alarm] = d.alarms
    assert alarm.ticket_id == stored.id and d.counts.tickets_opened == 0


def test_an_intermittent_alarm_does_not_lower_a_reported_level() -> None:
    """A flapping alarm turns an alarm's ticket into level 4; a ticket a person reported keeps
    the level they judged."""
    from gateway.core.alarms import FLAPPING
    from gateway.core.reactions import dispatch

    dec = make()
    d = report(dec, local("2026-03-02 09:00"), level=FaultLevel(2))
    [(t, _)] = d.results
    d = dec.step([ev(local("2026-03-02 09:05"), "edge-7", "link.down", ifIndex=1)], local("2026-03-02 09:05"))
    [alarm] = d.alarms
    assert alarm.ticket_id == t.id
    alarm.level = FaultLevel(4)  # what the book does when the key starts flapping
    out = dispatch(AlarmChange(FLAPPING, alarm, local("2026-03-02 09:20"), "6 transitions"),
                   dec.inventory.resolve("edge-7"), dec.desk, POLICIES, "mine-monitoring")
    assert out.action == "none" and "keeps its reported level" in out.text
    assert t.level == FaultLevel(2)
