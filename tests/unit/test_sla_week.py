"""A scripted week of faults for each shipped contract, run on a manual clock (no sleeping):
the final table of met/breached clocks, the warnings and breaches fired, and penalties.

The :class:`Week` driver plays the scheduler: between two scripted steps it wakes exactly
when :meth:`TicketDesk.next_check` says, as the pipeline's timer does.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.clock import ManualClock
from gateway.config import build_policies, load_config
from gateway.core.alarms import AlarmBook
from gateway.core.calendars import default_calendars
from gateway.core.penalties import sum_penalties, ticket_penalty
from gateway.core.report import render_sla_summary, sla_summary
from gateway.core.tickets import Ticket, TicketDesk
from gateway.model import Device, Event, FaultLevel
from rules.engine import Classification
from tests.helpers import EXAMPLE

CST = ZoneInfo("Asia/Shanghai")
POLICIES = build_policies(load_config(EXAMPLE))
CALS = default_calendars()


def local(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CST).timestamp()


class Week:
    """Plays scripted steps on a manual clock, firing SLA notices when they fall due."""

    def __init__(self, policy: str, start: str) -> None:
        self.policy = POLICIES[policy]
        self.clock = ManualClock(local(start))
        self.desk = TicketDesk(POLICIES, CALS)
        self.book = AlarmBook()
        self.ids: dict[str, int] = {}
        self.tickets: dict[str, Ticket] = {}
        self.fired: list[tuple[str, str, float, str]] = []
        self._label = {}  # type: dict[int, str]

    def _until(self, when: float) -> None:
        while True:
            nxt = self.desk.next_check()
            if nxt is None or nxt > when:
                break
            self.clock.set(max(nxt, self.clock.now()))
            self._collect(self.desk.tick(self.clock.now()))
        self.clock.set(when)
        self._collect(self.desk.tick(when))

    def _collect(self, notices: list[Any]) -> None:
        for t, n in notices:
            at = datetime.fromtimestamp(n.at, CST).strftime("%a %H:%M")
            self.fired.append((self._label[t.id], n.kind, n.fraction, at))

    def run(self, steps: list[tuple[str, str, str, dict[str, Any]]], end: str) -> None:
        # Steps are grouped per ticket for reading; they play in time order.
        for when, label, action, kw in sorted(steps, key=lambda s: local(s[0])):
            self._until(local(when))
            now = self.clock.now()
            if action == "open":
                ev = Event(now, "test", kw["device"], "fault")
                c = Classification("r", "raise", label, FaultLevel(kw["level"]), label)
                ch = self.book.apply(c, ev, kw["device"], now)
                assert ch is not None
                dev = Device(kw["device"], region=kw.get("region", ""), policy=self.policy.name)
                t = self.desk.open_for(ch.alarm, dev, self.policy, now)
                self.ids[label], self.tickets[label] = t.id, t
                self._label[t.id] = label
            elif action == "escalate":
                self.desk.on_alarm_escalated(self.ids[label], FaultLevel(kw["level"]), now, "rule:r")
            else:
                self.desk.act(self.ids[label], action, now, kw.pop("by", "user:noc"), **kw)
        self._until(local(end))

    def table(self) -> dict[str, dict[str, str]]:
        now = self.clock.now()
        return {
            label: {c.kind: c.outcome(now, CALS[c.calendar]) for c in t.clocks}
            for label, t in self.tickets.items()
        }

    def breaches(self) -> list[tuple[str, str, str]]:
        return [(label, kind, at) for label, kind, f, at in self.fired if f == 1.0]


def test_week_software_7x24_with_penalties() -> None:
    """Response 4 h (the penalty threshold too), the 1 h remote-fix window as a dispatch clock
    of its own, restore 4 h; 1 % per incident without a response within 4 h, 1 % per started
    day of restore overrun."""
    w = Week("software-7x24", "2026-03-02 00:00")  # Monday; no holidays this week
    w.run(
        [
            ("2026-03-02 09:00", "T1", "open", {"device": "app-1", "level": 1}),
            ("2026-03-02 09:40", "T1", "ack", {}),
            ("2026-03-02 09:50", "T1", "dispatch", {}),
            ("2026-03-02 12:30", "T1", "restore", {"note": "patched"}),
            ("2026-03-02 22:00", "T2", "open", {"device": "app-2", "level": 2}),
            ("2026-03-02 22:50", "T2", "dispatch", {}),
            # 2.5 h: within the 4 h the contract allows (the old 1 h reading charged 1 % here).
            ("2026-03-03 00:30", "T2", "ack", {"note": "night shift was late"}),
            ("2026-03-03 01:30", "T2", "restore", {}),  # 3.5 h: met
            ("2026-03-03 10:00", "T1", "close", {}),
            ("2026-03-04 08:00", "T3", "open", {"device": "app-3", "level": 3}),
            ("2026-03-04 08:20", "T3", "ack", {}),
            ("2026-03-04 08:50", "T3", "dispatch", {}),
            ("2026-03-04 09:00", "T3", "pause", {"note": "waiting on the customer's DBA"}),
            ("2026-03-04 15:00", "T3", "resume", {}),
            ("2026-03-04 17:30", "T3", "restore", {}),  # 1 h + 2.5 h running = 3.5 h: met
            ("2026-03-05 10:00", "T4", "open", {"device": "app-1", "level": 1}),
            ("2026-03-05 10:30", "T4", "ack", {}),
            ("2026-03-05 11:30", "T4", "dispatch", {}),  # the window closed at 11:00
            ("2026-03-06 15:00", "T4", "restore", {}),  # due Thu 14:00: 25 h late = 2 started days
            ("2026-03-07 12:00", "T5", "open", {"device": "app-4", "level": 4}),
            ("2026-03-07 20:00", "T5", "restore", {"by": "device"}),  # never acknowledged; 4 h late
            ("2026-03-08 21:00", "T6", "open", {"device": "app-2", "level": 2}),
            ("2026-03-08 21:10", "T6", "ack", {}),
            ("2026-03-08 21:30", "T6", "dispatch", {}),
        ],
        end="2026-03-09 00:00",
    )
    assert w.table() == {
        "T1": {"response": "met", "dispatch": "met", "restore": "met"},
        "T2": {"response": "met", "dispatch": "met", "restore": "met"},
        "T3": {"response": "met", "dispatch": "met", "restore": "met"},
        "T4": {"response": "met", "dispatch": "breached", "restore": "breached"},
        "T5": {"response": "breached", "dispatch": "breached", "restore": "breached"},
        "T6": {"response": "met", "dispatch": "met", "restore": "running"},
    }
    assert w.breaches() == [
        ("T4", "dispatch", "Thu 11:00"),
        ("T4", "restore", "Thu 14:00"),
        ("T5", "dispatch", "Sat 13:00"),
        ("T5", "response", "Sat 16:00"),
        ("T5", "restore", "Sat 16:00"),
    ]
    # Warnings fire once each. T3's restore clock ran 08:00-09:00, paused until 15:00: it
    # reached 50 % (2 h) at 16:00 and 80 % (3 h 12) at 17:12, not at 10:00 and 11:12.
    counts = Counter((label, kind, f) for label, kind, f, _ in w.fired)
    assert all(n == 1 for n in counts.values())
    assert [(f, at) for label, kind, f, at in w.fired if (label, kind) == ("T3", "restore")] == [
        (0.5, "Wed 16:00"),
        (0.8, "Wed 17:12"),
    ]

    terms = POLICIES["software-7x24"].penalties
    assert terms is not None and terms.contract_value == 1_000_000
    assert terms.response_missed_after == 4 * 3600.0
    now = w.clock.now()
    per = {label: ticket_penalty(t, terms, CALS, now) for label, t in w.tickets.items()}
    assert {k: (p.response_missed, p.restore_days, p.pct, p.amount) for k, p in per.items()} == {
        "T1": (False, 0, 0.0, 0.0),
        "T2": (False, 0, 0.0, 0.0),
        "T3": (False, 0, 0.0, 0.0),
        "T4": (False, 2, 2.0, 20_000.0),
        "T5": (True, 1, 2.0, 20_000.0),
        "T6": (False, 0, 0.0, 0.0),
    }
    assert not per["T6"].final and per["T4"].final
    total = sum_penalties(per.values(), terms)
    assert (total.pct, total.amount, total.capped, total.final) == (4.0, 40_000.0, False, False)
    assert [p.ticket_id for p in total.tickets] == [w.ids["T4"], w.ids["T5"]]

    s = sla_summary(w.tickets.values(), POLICIES["software-7x24"], CALS, month="2026-03", tz="Asia/Shanghai", now=now)
    assert [lv["tickets"] for lv in s["levels"]] == [2, 2, 1, 1]
    assert [(c["clock"], c["met"], c["breached"], c["open"]) for c in s["clocks"]] == [
        ("response", 5, 1, 0),
        ("dispatch", 4, 2, 0),
        ("restore", 3, 2, 1),
    ]
    assert s["penalties"]["amount"] == 40_000.0
    text = render_sla_summary(s)
    assert "1 % per incident not responded to within 4 h; 1 % per started day beyond the restore deadline" in text


def test_week_mine_monitoring() -> None:
    w = Week("mine-monitoring", "2026-03-02 00:00")
    w.run(
        [
            ("2026-03-02 08:00", "M1", "open", {"device": "gas-1", "level": 1}),
            ("2026-03-02 08:30", "M1", "ack", {}),
            ("2026-03-02 09:30", "M1", "propose", {}),
            ("2026-03-02 15:00", "M1", "arrive", {}),
            ("2026-03-02 18:00", "M1", "restore", {}),
            ("2026-03-02 14:00", "M2", "open", {"device": "fan-2", "level": 3}),
            ("2026-03-02 15:00", "M2", "ack", {}),
            # Escalated to level 1: solution 2 h and on site 8 h, counted from 14:00.
            ("2026-03-02 16:30", "M2", "escalate", {"level": 1}),
            ("2026-03-02 21:30", "M2", "arrive", {}),
            ("2026-03-03 02:00", "M2", "propose", {}),
            ("2026-03-03 03:00", "M2", "restore", {}),
            ("2026-03-03 09:00", "M3", "open", {"device": "belt-3", "level": 4}),
            ("2026-03-03 09:30", "M3", "pause", {"note": "waiting for access to the face"}),
            ("2026-03-03 20:00", "M3", "resume", {}),
            ("2026-03-03 20:30", "M3", "ack", {}),  # 1 h of running time
            ("2026-03-04 02:00", "M3", "propose", {}),  # 6.5 h
            ("2026-03-04 19:00", "M3", "arrive", {}),  # 34 h wall, 23.5 h running: met
            ("2026-03-05 23:00", "M4", "open", {"device": "gas-4", "level": 2}),
            ("2026-03-06 00:30", "M4", "ack", {}),  # 1.5 h: breached
            ("2026-03-06 02:00", "M4", "propose", {}),  # 3 h: met
            ("2026-03-06 12:00", "M4", "arrive", {}),  # 13 h: breached
            ("2026-03-06 13:00", "M4", "restore", {}),
            ("2026-03-07 10:00", "M5", "open", {"device": "gas-5", "level": 2}),
            # The device clears by itself: the response (a first assessment given to the
            # customer, human_only) keeps running and is breached at 11:00 unanswered.
            ("2026-03-07 10:20", "M5", "restore", {"by": "device"}),
            # Same, but an operator gives the assessment in time after the clear: met.
            ("2026-03-08 08:00", "M6", "open", {"device": "gas-6", "level": 3}),
            ("2026-03-08 08:10", "M6", "restore", {"by": "device"}),
            ("2026-03-08 09:00", "M6", "ack", {}),
        ],
        end="2026-03-09 00:00",
    )
    assert w.table() == {
        "M1": {"response": "met", "solution": "met", "on_site": "met"},
        "M2": {"response": "met", "solution": "breached", "on_site": "met"},
        "M3": {"response": "met", "solution": "met", "on_site": "met"},
        "M4": {"response": "breached", "solution": "met", "on_site": "breached"},
        "M5": {"response": "breached", "solution": "met", "on_site": "not_needed"},
        "M6": {"response": "met", "solution": "met", "on_site": "not_needed"},
    }
    # M2's solution breach is dated at its re-targeted due time, 16:00, though found at 16:30.
    assert w.breaches() == [
        ("M2", "solution", "Mon 16:00"),
        ("M4", "response", "Fri 00:00"),
        ("M4", "on_site", "Fri 11:00"),
        ("M5", "response", "Sat 11:00"),
    ]
    m6 = w.tickets["M6"].clock("response")
    assert m6 is not None and m6.stopped_by == "acknowledge" and m6.business_elapsed == 3600.0
    assert POLICIES["mine-monitoring"].penalties is None


def test_week_medical_devices() -> None:
    w = Week("medical-devices", "2026-03-02 00:00")
    w.run(
        [
            ("2026-03-02 10:00", "D1", "open", {"device": "pump-1", "level": 1}),
            ("2026-03-02 10:20", "D1", "ack", {}),
            ("2026-03-02 13:00", "D1", "propose", {}),
            ("2026-03-02 19:00", "D1", "restore", {}),  # 9 h of 8: breached
            ("2026-03-03 09:00", "D2", "open", {"device": "vent-2", "level": 2}),
            ("2026-03-03 09:50", "D2", "ack", {}),
            ("2026-03-04 08:00", "D2", "arrive", {}),  # 23 h: met
            ("2026-03-04 10:00", "D2", "propose", {}),  # 25 h: breached
            ("2026-03-04 11:00", "D2", "restore", {}),
            ("2026-03-04 15:00", "D3", "open", {"device": "pump-3", "level": 3}),
            # Level 1 from 16:00: response 1 h is due at once; a restore clock (8 h) appears.
            ("2026-03-04 16:00", "D3", "level", {"level": 1, "note": "ward reports outage"}),
            ("2026-03-04 16:30", "D3", "ack", {}),
            ("2026-03-04 18:30", "D3", "propose", {}),
            ("2026-03-04 22:00", "D3", "restore", {}),
            ("2026-03-06 20:00", "D4", "open", {"device": "pump-4", "level": 4}),
            ("2026-03-06 21:00", "D4", "ack", {}),
            ("2026-03-07 09:00", "D4", "pause", {"note": "waiting on the customer"}),
        ],
        end="2026-03-09 00:00",
    )
    assert w.table() == {
        "D1": {"response": "met", "solution": "met", "restore": "breached"},
        "D2": {"response": "met", "solution": "breached", "on_site": "met"},
        "D3": {"response": "breached", "solution": "met", "restore": "met"},
        "D4": {"response": "met", "solution": "paused"},
    }
    assert w.breaches() == [
        ("D1", "restore", "Mon 18:00"),
        ("D2", "solution", "Wed 09:00"),
        ("D3", "response", "Wed 16:00"),
    ]
    d4 = w.tickets["D4"].clock("solution")
    assert d4 is not None and d4.used(w.clock.now(), CALS["24x7"]) == pytest.approx(13 * 3600)


def test_week_network_equipment_around_the_spring_festival() -> None:
    w = Week("network-equipment", "2026-02-09 00:00")  # Monday; Sat 02-14 is a 调休 working day
    bj, sx = {"region": "beijing"}, {"region": "shanxi"}
    w.run(
        [
            ("2026-02-09 09:00", "N1", "open", {"device": "core-1", "level": 1, **bj}),
            ("2026-02-09 09:05", "N1", "ack", {}),  # urgent: 10 min
            ("2026-02-09 10:30", "N1", "arrive", {}),  # 2 h in Beijing
            ("2026-02-09 12:00", "N1", "restore", {}),
            ("2026-02-09 14:00", "N2", "open", {"device": "edge-2", "level": 2, **sx}),
            ("2026-02-09 14:25", "N2", "ack", {}),  # urgent 10 min: breached
            ("2026-02-10 13:00", "N2", "arrive", {}),  # 23 h of 24: met
            ("2026-02-10 15:00", "N2", "restore", {}),  # report due Thu 15:00
            ("2026-02-10 09:00", "N3", "open", {"device": "core-3", "level": 3, **bj}),
            ("2026-02-10 12:00", "N3", "ack", {}),  # 24 h: met
            ("2026-02-10 14:00", "N3", "arrive", {}),  # 5 h of 4: breached
            ("2026-02-10 15:00", "N3", "restore", {}),
            ("2026-02-11 09:00", "N3", "close", {}),  # report in 18 h: met
            ("2026-02-11 09:30", "N1", "close", {}),  # report in 45.5 h: met
            ("2026-02-11 10:00", "N4", "open", {"device": "edge-4", "level": 4, **sx}),
            ("2026-02-11 18:00", "N4", "ack", {}),
            ("2026-02-12 16:00", "N2", "close", {}),  # report 49 h after restore: breached
            ("2026-02-13 09:00", "N4", "arrive", {}),  # 48 h: due Fri 10:00
            ("2026-02-13 11:00", "N4", "restore", {}),  # report due Sun 11:00, never closed
            ("2026-02-13 17:30", "N5", "open", {"device": "edge-5", "level": 3, **sx}),
            ("2026-02-14 09:00", "N5", "ack", {}),
        ],
        end="2026-02-16 00:00",
    )
    assert w.table() == {
        "N1": {"response": "met", "on_site": "met", "report": "met"},
        "N2": {"response": "breached", "on_site": "met", "report": "breached"},
        "N3": {"response": "met", "on_site": "breached", "report": "met"},
        "N4": {"response": "met", "on_site": "met", "report": "breached"},
        "N5": {"response": "met", "on_site": "breached", "report": "waiting"},
    }
    assert w.breaches() == [
        ("N2", "response", "Mon 14:10"),
        ("N3", "on_site", "Tue 13:00"),
        ("N2", "report", "Thu 15:00"),
        ("N4", "report", "Sun 11:00"),
        # 48 calendar hours outside Beijing: the Spring Festival holiday counts.
        ("N5", "on_site", "Sun 17:30"),
    ]
    n5 = w.tickets["N5"].clock("on_site")
    assert n5 is not None and n5.calendar == "24x7"
    assert datetime.fromtimestamp(n5.due_at, CST).strftime("%Y-%m-%d %H:%M") == "2026-02-15 17:30"
    # Fri 17:30 → Mon 00:00 on the 24x7 calendar.
    assert n5.used(w.clock.now(), CALS["24x7"]) == pytest.approx(54.5 * 3600)
    assert POLICIES["network-equipment"].penalties is None
