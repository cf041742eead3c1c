"""AlarmBook: one alarm per key, exact counts, clear, re-raise, escalation (pure, manual clock),
and property tests of any raise/clear/tick interleaving against small reference models."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.core.alarms import ACTIVE, CLEARED, PENDING, SUPPRESSED, Alarm, AlarmBook
from gateway.core.inventory import Inventory
from gateway.model import Device, Event, FaultLevel
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


# -- property tests: any interleaving agrees with a small reference model -------------------------

KEYS = [f"d{i % 3}/k{i}" for i in range(6)]
T0 = 1_767_225_600.0

raise_clear_ops = st.lists(
    st.tuples(st.sampled_from(KEYS), st.sampled_from("rc"), st.integers(1, 4), st.integers(0, 30)), max_size=150
)


@settings(max_examples=300, deadline=None)
@given(raise_clear_ops)
def test_any_interleaving_matches_reference_model(ops: list[tuple[str, str, int, int]]) -> None:
    """Raise/clear for many keys: each key's alarm is open iff the model says so, at the
    model's level; every change is the one the model predicts; counts are exact."""
    book = AlarmBook()
    model: dict[str, dict[str, int]] = {}  # open keys → level, count
    raises = dict.fromkeys(KEYS, 0)
    occurrences = dict.fromkeys(KEYS, 0)
    seen: dict[int, Alarm] = {}
    t = T0
    for key, op, lvl, dt in ops:
        t += dt
        ev = Event(t, "t", key.split("/")[0], "x", {})
        if op == "r":
            changes = book.fold(raise_(key, lvl), ev, ev.device, t)
            raises[key] += 1
            m = model.get(key)
            if m is None:
                model[key] = {"level": lvl, "count": 1}
                occurrences[key] += 1
                expected = ["raised"]
            else:
                m["count"] += 1
                expected = ["escalated"] if lvl < m["level"] else ["repeated"]
                m["level"] = min(m["level"], lvl)
        else:
            changes = book.fold(clear(key), ev, ev.device, t)
            expected = ["cleared"] if model.pop(key, None) is not None else []
        assert [c.kind for c in changes] == expected
        for c in changes:
            seen[c.alarm.id] = c.alarm
        assert set(book.open) == set(model)
        for k, m in model.items():
            a = book.open[k]
            assert (int(a.level), a.count, a.state) == (m["level"], m["count"], ACTIVE)
    for k in KEYS:
        mine = [a for a in seen.values() if a.key == k]
        assert sum(a.count for a in mine) == raises[k]
        assert len(mine) == occurrences[k]
        assert all(a.state == CLEARED for a in mine if a is not book.open.get(k))


hold_ops = st.lists(
    st.tuples(st.sampled_from(KEYS + ["tick"]), st.sampled_from("rc"), st.integers(0, 40)), max_size=150
)


@settings(max_examples=300, deadline=None)
@given(hold_ops, st.sampled_from([0.0, 30.0, 60.0]))
def test_hold_for_matches_reference_model(ops: list[tuple[str, str, int]], hold: float) -> None:
    """With a hold-for, a key is pending until something looks at it (a tick, or its own
    next event) at or after first_seen + hold; then active. Clears end it either way."""
    book = AlarmBook()
    model: dict[str, dict[str, float]] = {}  # key → first, count, active (0/1)
    t = T0
    total = 0
    counted = 0
    for key, op, dt in ops:
        t += dt
        if key == "tick":
            book.tick(t)
            for m in model.values():
                m["active"] = float(m["active"] or t >= m["first"] + hold)
        else:
            ev = Event(t, "t", key.split("/")[0], "x", {})
            if op == "r":
                total += 1
                book.fold(Classification("r", "raise", key, FaultLevel.MINOR, "t", hold_for=hold), ev, ev.device, t)
                m = model.get(key)
                if m is None:
                    model[key] = {"first": t, "count": 1, "active": float(hold == 0)}
                else:
                    m["count"] += 1
                    m["active"] = float(m["active"] or t >= m["first"] + hold)
            else:
                for ch in book.fold(clear(key), ev, ev.device, t):
                    if ch.kind == "cleared":
                        counted += ch.alarm.count
                model.pop(key, None)
        assert set(book.open) == set(model)
        for k, m in model.items():
            a = book.open[k]
            assert a.state == (ACTIVE if m["active"] else PENDING), (k, m, a)
            assert a.count == m["count"]
    assert counted + sum(a.count for a in book.open.values()) == total


FAMILY = Inventory([Device("p", "network.switch"), Device("c1", "network.switch", parent="p"),
                    Device("c2", "mine.gas-sensor", parent="p")])
FAMILY_KEYS = ["p/reachability", "c1/a", "c1/b", "c2/a"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FAMILY_KEYS), st.sampled_from("rc"), st.integers(0, 20)), max_size=120))
def test_parent_suppression_invariants(ops: list[tuple[str, str, int]]) -> None:
    """Whatever the order: a child's fault becomes suppressed exactly when its parent is down
    at that moment, and none stays suppressed once the parent is up again."""
    book = AlarmBook(inventory=FAMILY)
    t = T0
    for key, op, dt in ops:
        t += dt
        dev = key.split("/")[0]
        parent_down_before = "p/reachability" in book.open
        if op == "r":
            lvl = FaultLevel.CRITICAL if dev == "p" else FaultLevel.MINOR
            name = "heartbeat.lost" if dev == "p" else "x"
            changes = book.fold(Classification("r", "raise", key, lvl, "t"), Event(t, "t", dev, name), dev, t)
        else:
            changes = book.fold(clear(key), Event(t, "t", dev, "x"), dev, t)
        for ch in changes:
            if ch.alarm.device != "p" and ch.kind in ("raised", "suppressed"):
                assert (ch.kind == "suppressed") == parent_down_before
        parent_down = "p/reachability" in book.open
        for a in book.open.values():
            if a.state == SUPPRESSED:
                assert parent_down and a.suppressed_by == "parent:p"
