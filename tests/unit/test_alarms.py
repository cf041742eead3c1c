"""AlarmBook: one alarm per key, exact counts, clear, re-raise, escalation (pure, manual clock)."""

from __future__ import annotations

from gateway.alarms import ACTIVE, CLEARED, AlarmBook
from gateway.clock import ManualClock
from gateway.model import Event, FaultLevel
from rules.engine import Classification


def raise_(key: str = "d/if/1", level: int = 3) -> Classification:
    return Classification("r", "raise", key, FaultLevel(level), "t")


def clear(key: str = "d/if/1") -> Classification:
    return Classification("r", "clear", key, None)


EV = Event(0.0, "t", "d", "x", {"a": 1})


def test_raise_repeat_clear_reraise() -> None:
    clock = ManualClock()
    book = AlarmBook()
    t0 = clock.now()
    ch = book.apply(raise_(), EV, "d", t0)
    assert ch is not None and ch.kind == "raised" and ch.alarm.state == ACTIVE
    first = ch.alarm
    for _ in range(50):
        clock.advance(1)
        ch = book.apply(raise_(), EV, "d", clock.now())
        assert ch is not None and ch.kind == "repeated"
    assert first.count == 51 and first.first_seen == t0 and first.last_seen == t0 + 50
    clock.advance(5)
    ch = book.apply(clear(), EV, "d", clock.now())
    assert ch is not None and ch.kind == "cleared" and first.state == CLEARED and first.cleared_at == t0 + 55
    assert book.apply(clear(), EV, "d", clock.now()) is None  # nothing open any more
    ch = book.apply(raise_(), EV, "d", clock.now())
    assert ch is not None and ch.kind == "raised" and ch.alarm.id != first.id and ch.alarm.count == 1


def test_worse_level_escalates_milder_does_not() -> None:
    book = AlarmBook()
    book.apply(raise_(level=2), EV, "d", 0)
    ch = book.apply(raise_(level=1), EV, "d", 1)
    assert ch is not None and ch.kind == "escalated" and ch.alarm.level == FaultLevel.CRITICAL
    ch = book.apply(raise_(level=3), EV, "d", 2)
    assert ch is not None and ch.kind == "repeated" and ch.alarm.level == FaultLevel.CRITICAL


def test_dirty_folds_a_storm_into_one_row() -> None:
    book = AlarmBook()
    for i in range(1000):
        book.apply(raise_(key=f"k{i % 3}"), EV, "d", i)
    dirty = book.take_dirty()
    assert sorted(a.key for a in dirty) == ["k0", "k1", "k2"]
    assert sum(a.count for a in dirty) == 1000
    assert book.take_dirty() == []


def test_load_restores_open_alarms_and_ids() -> None:
    book = AlarmBook()
    a = book.apply(raise_(), EV, "d", 0).alarm  # type: ignore[union-attr]
    book2 = AlarmBook()
    book2.load([a])
    ch = book2.apply(raise_(), EV, "d", 1)
    assert ch is not None and ch.kind == "repeated" and ch.alarm.count == 2
    ch = book2.apply(raise_(key="other"), EV, "d", 1)
    assert ch is not None and ch.alarm.id == a.id + 1
