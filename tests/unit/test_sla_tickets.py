"""SLA due times from the shipped policies, pause/resume, re-targeting, warnings and breaches,
and ticket transitions — all on a manual clock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.alarms import AlarmBook
from gateway.calendars import default_calendars
from gateway.clock import ManualClock
from gateway.config import build_policies, load_config
from gateway.model import Device, Event, FaultLevel
from gateway.tickets import TicketDesk, TicketError
from rules.engine import Classification
from tests.helpers import EXAMPLE

H = 3600.0
CST = ZoneInfo("Asia/Shanghai")
POLICIES = build_policies(load_config(EXAMPLE))
CALS = default_calendars()

# (policy, level, region) → {clock: hours}, computed by hand from DESIGN §3.
EXPECTED = {
    ("mine-monitoring", 1, ""): {"response": 1, "solution": 2, "on_site": 8},
    ("mine-monitoring", 2, ""): {"response": 1, "solution": 4, "on_site": 12},
    ("mine-monitoring", 3, ""): {"response": 2, "solution": 6, "on_site": 12},
    ("mine-monitoring", 4, ""): {"response": 2, "solution": 8, "on_site": 24},
    ("medical-devices", 1, ""): {"response": 1, "solution": 4, "restore": 8},
    ("medical-devices", 2, ""): {"response": 1, "solution": 24, "on_site": 24},
    ("medical-devices", 3, ""): {"response": 2, "solution": 24},
    ("medical-devices", 4, ""): {"response": 2, "solution": 48},
    ("network-equipment", 1, "beijing"): {"response": 1 / 6, "on_site": 2},
    ("network-equipment", 2, "beijing"): {"response": 1 / 6, "on_site": 2},
    ("network-equipment", 3, "beijing"): {"response": 24, "on_site": 4},
    ("network-equipment", 4, "beijing"): {"response": 24, "on_site": 4},
    ("network-equipment", 1, "shanxi"): {"response": 1 / 6, "on_site": 24},
    ("network-equipment", 2, "shanxi"): {"response": 1 / 6, "on_site": 24},
    ("software-7x24", 1, ""): {"response": 1, "restore": 4},
    ("software-7x24", 4, ""): {"response": 1, "restore": 4},
}


def _open(policy: str, level: int, region: str, now: float) -> tuple[TicketDesk, int]:
    desk = TicketDesk(POLICIES, CALS)
    book = AlarmBook()
    ch = book.apply(Classification("r", "raise", "k", FaultLevel(level), "t"), Event(now, "t", "d", "x"), "d", now)
    assert ch is not None
    t = desk.open_for(ch.alarm, Device("d", region=region, policy=policy), POLICIES[policy], now)
    return desk, t.id


@pytest.mark.parametrize("policy, level, region", list(EXPECTED), ids=[f"{p}-L{lv}-{r or 'any'}" for p, lv, r in EXPECTED])
def test_due_times_24x7(policy: str, level: int, region: str) -> None:
    now = ManualClock().now()
    desk, tid = _open(policy, level, region, now)
    t = desk.open[tid]
    got = {c.kind: (c.due_at - now) / H for c in t.clocks if not c.deferred}
    assert got == pytest.approx(EXPECTED[(policy, level, region)])


def test_network_on_site_two_working_days_outside_beijing() -> None:
    opened = datetime(2026, 11, 17, 10, 0, tzinfo=CST).timestamp()  # a Tuesday
    desk, tid = _open("network-equipment", 3, "shanxi", opened)
    on_site = desk.open[tid].clock("on_site")
    assert on_site is not None
    assert datetime.fromtimestamp(on_site.due_at, CST) == datetime(2026, 11, 19, 10, 0, tzinfo=CST)


def test_report_clock_starts_at_restore() -> None:
    clock = ManualClock()
    desk, tid = _open("network-equipment", 1, "beijing", clock.now())
    rep = desk.open[tid].clock("report")
    assert rep is not None and rep.deferred
    clock.advance(3 * H)
    desk.act(tid, "restore", clock.now(), "noc")
    assert not rep.deferred and rep.due_at == pytest.approx(clock.now() + 48 * H)


def test_ack_meets_response_only() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 1, "", clock.now())
    clock.advance(0.5 * H)
    t = desk.act(tid, "acknowledge", clock.now(), "alice", "on it")
    assert t.status == "acknowledged"
    resp, sol = t.clock("response"), t.clock("solution")
    assert resp is not None and sol is not None
    assert resp.state == "met" and resp.business_elapsed == pytest.approx(0.5 * H)
    assert sol.state == "running" and not sol.done


def test_pause_excludes_paused_time() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 1, "", clock.now())
    start = clock.now()
    clock.advance(0.25 * H)
    desk.act(tid, "pause", clock.now(), "alice", "waiting on customer")
    clock.advance(5 * H)
    desk.act(tid, "resume", clock.now(), "alice")
    resp = desk.open[tid].clock("response")
    assert resp is not None and resp.due_at == pytest.approx(start + 5.25 * H + 1 * H)
    assert resp.state == "running"


def test_warnings_once_then_breach_once() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 1, "", clock.now())
    start = clock.now()
    fired: list[tuple[str, float, float]] = []
    for _ in range(int(3 * 60)):  # three hours, minute by minute
        clock.advance(60)
        fired += [(n.kind, n.fraction, (clock.now() - start) / 60) for _, n in desk.tick(clock.now())]
    # response 1 h: 30, 48, 60 min; solution 2 h: 60, 96, 120 min.
    assert fired == [
        ("response", 0.5, 30), ("response", 0.8, 48), ("response", 1.0, 60),
        ("solution", 0.5, 60), ("solution", 0.8, 96), ("solution", 1.0, 120),
    ]
    resp = desk.open[tid].clock("response")
    assert resp is not None and resp.state == "breached"
    desk.act(tid, "acknowledge", clock.now(), "late")
    assert resp.state == "breached" and resp.done


def test_level_change_retargets_from_ticket_start() -> None:
    clock = ManualClock()
    desk, tid = _open("mine-monitoring", 3, "", clock.now())
    start = clock.now()
    clock.advance(0.5 * H)
    desk.act(tid, "set_level", clock.now(), "alice", level=1)
    t = desk.open[tid]
    assert t.level == FaultLevel.CRITICAL
    assert {c.kind: c.due_at - start for c in t.clocks} == pytest.approx({"response": 1 * H, "solution": 2 * H, "on_site": 8 * H})


def test_restore_and_close_flow_and_errors() -> None:
    clock = ManualClock()
    desk, tid = _open("medical-devices", 1, "", clock.now())
    clock.advance(2 * H)
    t = desk.act(tid, "restore", clock.now(), "device")
    assert t.status == "restored"
    assert {c.kind: c.state for c in t.clocks} == {"response": "breached", "solution": "met", "restore": "met"}
    desk.act(tid, "close", clock.now(), "alice")
    with pytest.raises(TicketError):
        desk.act(tid, "acknowledge", clock.now(), "alice")
    timeline = [(e.actor, e.kind) for e in desk.take_timeline()]
    assert timeline[0] == ("rule:r", "opened") and ("device", "restore") in timeline and timeline[-1] == ("alice", "close")
