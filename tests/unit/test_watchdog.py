"""Unit tests of the liveness watchdog: deadlines, restores, last wills, grace, outages, learning."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.core.watchdog import LOST, RESTORED, Watchdog

T0 = 1_767_225_600.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


# ---------------------------------------------------------------------- deadlines

DEADLINES = [
    # constructor kwargs, track(interval=), effective interval, tolerance
    pytest.param({}, None, 30.0, 3, id="default-interval-x-tolerance"),
    pytest.param({"tolerance": 1}, None, 30.0, 1, id="tolerance-1"),
    pytest.param({}, 5.0, 5.0, 3, id="explicit-interval"),
    pytest.param({"class_intervals": {"pump": 10.0}}, None, 10.0, 3, id="class-interval"),
    pytest.param({"class_intervals": {"pump": 10.0}}, 2.0, 2.0, 3, id="explicit-beats-class"),
]


@pytest.mark.parametrize(("kw", "interval", "effective", "tol"), DEADLINES)
def test_loss_fires_at_the_deadline_not_before_and_once(kw, interval, effective, tol, clock):
    wd = Watchdog(default_interval=30.0, **kw)
    wd.track("d1", interval=interval, device_class="pump", now=clock.now())
    deadline = T0 + effective * tol
    assert wd.next_deadline() == deadline
    clock.set(deadline - 0.001)
    assert wd.due(clock.now()) == []
    clock.set(deadline)
    (ev,) = wd.due(clock.now())
    assert (ev.name, ev.device, ev.source, ev.ts) == (LOST, "d1", "watchdog", deadline)
    assert ev.attrs == {"interval": effective, "last_seen": T0, "missed": tol, "reason": "timeout"}
    clock.advance(10 * effective * tol)
    assert wd.due(clock.now()) == []
    assert wd.next_deadline() is None


def test_heartbeats_push_the_deadline_and_restore_a_lost_device(clock):
    wd = Watchdog(default_interval=10.0)
    wd.track("d1", now=T0)
    for k in range(1, 6):
        assert wd.heartbeat("d1", T0 + 10 * k) is None
    assert wd.next_deadline() == T0 + 50 + 30
    assert wd.due(T0 + 79) == []
    (lost,) = wd.due(T0 + 85)
    assert lost.ts == T0 + 80 and lost.attrs["last_seen"] == T0 + 50
    restored = wd.heartbeat("d1", T0 + 100)
    assert restored is not None
    assert (restored.name, restored.ts) == (RESTORED, T0 + 100)
    assert restored.attrs == {"interval": 10.0, "last_seen": T0 + 50, "lost_at": T0 + 85, "down_for": 15.0}
    assert wd.next_deadline() == T0 + 130
    assert wd.heartbeat("d1", T0 + 101) is None  # restored fires once


def test_unknown_device_is_tracked_from_its_first_heartbeat():
    wd = Watchdog(default_interval=1.0)
    assert wd.heartbeat("new", T0) is None
    assert "new" in wd and len(wd) == 1
    assert [e.device for e in wd.due(T0 + 3)] == ["new"]


def test_late_heartbeat_does_not_move_last_seen_back():
    wd = Watchdog(default_interval=10.0)
    wd.heartbeat("d", T0 + 20)
    wd.heartbeat("d", T0 + 5)
    status = wd.status("d")
    assert status is not None and status.last_seen == T0 + 20


# ---------------------------------------------------------------------- last will


def test_lwt_is_an_immediate_loss_and_only_once():
    wd = Watchdog(default_interval=60.0)
    wd.track("cam", now=T0)
    ev = wd.lost_now("cam", T0 + 1)
    assert ev is not None
    assert (ev.name, ev.ts, ev.attrs["reason"]) == (LOST, T0 + 1, "lwt")
    assert wd.lost_now("cam", T0 + 2) is None
    assert wd.due(T0 + 1000) == []  # the timeout does not fire a second loss
    assert wd.heartbeat("cam", T0 + 5).name == RESTORED


def test_lwt_for_an_untracked_device_still_reports_it():
    wd = Watchdog(default_interval=60.0)
    ev = wd.lost_now("ghost", T0, reason="status")
    assert ev is not None and ev.attrs["reason"] == "status"


# ---------------------------------------------------------------------- restart grace and snapshots


RESTART_GRACE = [
    # grace=, the device's interval (None: the 60 s default), last heartbeat before the restart
    # (seconds relative to it), when it is lost (seconds after the restart)
    pytest.param(None, 4.0, -1.0, 12.0, id="4s-device-own-deadline-after-a-beat"),
    pytest.param(None, 4.0, -1000.0, 12.0, id="4s-device-own-deadline-long-silent"),
    pytest.param(None, None, -1000.0, 180.0, id="default-device-own-deadline"),
    pytest.param(None, 100.0, -10.0, 300.0, id="slow-device-own-deadline"),
    pytest.param(100.0, 4.0, -1000.0, 12.0, id="grace-never-extends-a-short-deadline"),
    pytest.param(100.0, None, -1000.0, 100.0, id="grace-caps-a-long-deadline"),
    pytest.param(100.0, 100.0, -250.0, 100.0, id="grace-caps-a-slow-device"),
    pytest.param(100.0, 100.0, -10.0, 290.0, id="grace-keeps-a-later-deadline-from-a-beat"),
    pytest.param(5.0, 4.0, -1000.0, 5.0, id="short-grace-caps-a-4s-device"),
    pytest.param(0.0, 4.0, -1000.0, 0.0, id="zero-grace"),
]


@pytest.mark.parametrize(("grace", "interval", "beat", "lost_after"), RESTART_GRACE)
def test_restart_grace_is_each_devices_own_deadline_capped_by_grace(grace, interval, beat, lost_after, clock):
    """After a restart a device gets its own interval x tolerance, not the default's: a gas
    sensor beating every 4 s is watched again 12 s after a restart, not after 3 minutes. An
    explicit grace is a ceiling for every device, never an extension."""
    before = Watchdog(default_interval=60.0, tolerance=3, grace=grace)
    before.track("dev", interval=interval, now=T0 - 5000)
    before.heartbeat("dev", T0 + beat)
    state = json.loads(json.dumps(before.snapshot()))

    clock.set(T0)  # the gateway starts again
    wd = Watchdog(default_interval=60.0, tolerance=3, grace=grace)
    wd.restore(state)
    wd.track("dev", interval=interval, now=clock.now())
    wd.restart_grace(clock.now())
    assert wd.next_deadline() == T0 + lost_after
    if lost_after:
        clock.set(T0 + lost_after - 0.001)
        assert wd.due(clock.now()) == []
    clock.set(T0 + lost_after)
    (ev,) = wd.due(clock.now())
    assert (ev.device, ev.ts) == ("dev", T0 + lost_after)


def test_restart_grace_holds_every_device_until_its_own_deadline(clock):
    """Several devices at once: each waits its own grace; the floor is not one global time."""
    wd = Watchdog(default_interval=10.0, grace=100.0)
    wd.track("stale", now=T0 - 1000)  # silent since long before the restart: 30 s
    wd.track("gas", interval=4.0, now=T0 - 1000)  # 12 s
    wd.track("pump", interval=60.0, now=T0 - 1000)  # 180 s, capped at 100 s
    wd.track("fresh", interval=100.0, now=T0)  # deadline T0+300, later than any grace
    wd.restart_grace(clock.now())
    fired = []
    while (nd := wd.next_deadline()) is not None and nd <= T0 + 300:
        clock.set(nd)
        fired += [(e.device, e.ts - T0) for e in wd.due(clock.now())]
    assert fired == [("gas", 12.0), ("stale", 30.0), ("pump", 100.0), ("fresh", 300.0)]


def test_snapshot_restore_keeps_last_seen_and_lost_state():
    wd = Watchdog(default_interval=10.0, learn=True)
    wd.track("a", interval=5.0, now=T0)
    wd.heartbeat("b", T0)
    wd.heartbeat("b", T0 + 8)
    wd.track("c", now=T0)
    wd.lost_now("c", T0 + 1)
    state = json.loads(json.dumps(wd.snapshot()))  # plain data, survives JSON

    again = Watchdog(default_interval=10.0, learn=True)
    assert again.restore(state) == 3
    assert {d.id: (d.last_seen, d.lost) for d in again.devices()} == {
        "a": (T0, False),
        "b": (T0 + 8, False),
        "c": (T0, True),
    }
    assert again.status("a").interval == 5.0
    assert again.status("b").learned == pytest.approx(8.0)
    again.restart_grace(T0 + 3600)
    # Each device gets its own deadline: a 5 s x 3, b its learned 8 s x 3.
    assert again.due(T0 + 3600 + 14.9) == []
    assert [e.device for e in again.due(T0 + 3600 + 15)] == ["a"]
    assert again.due(T0 + 3600 + 23.9) == []
    assert [e.device for e in again.due(T0 + 3600 + 24)] == ["b"]  # c was already lost
    assert again.heartbeat("c", T0 + 4000).name == RESTORED


def test_restore_rejects_unknown_versions():
    with pytest.raises(ValueError):
        Watchdog(10.0).restore({"version": 99})


# ---------------------------------------------------------------------- broker outages


def test_no_losses_during_a_broker_outage_and_rearm_from_reconnect():
    wd = Watchdog(default_interval=10.0)
    for d in ("a", "b", "c"):
        wd.track(d, now=T0)
    wd.heartbeat("a", T0 + 20)
    wd.broker_down(T0 + 21)
    assert wd.broker_outage_since == T0 + 21
    assert wd.due(T0 + 500) == []
    assert wd.next_deadline() is None
    wd.broker_up(T0 + 600)
    assert wd.next_deadline() == T0 + 630
    assert wd.due(T0 + 629) == []  # no "lost" storm at reconnect
    assert sorted(e.device for e in wd.due(T0 + 630)) == ["a", "b", "c"]


@pytest.mark.parametrize("grace", [None, 100.0, 5.0], ids=["no-grace", "grace-100s", "grace-5s"])
def test_reconnect_rearms_each_device_with_its_own_deadline(grace, clock):
    """After a broker outage every device has its own full interval x tolerance from the
    reconnect (silence during the outage says nothing), and no more: a 4 s gas sensor is
    watched again 12 s after the reconnect, not after the default's 3 minutes. An explicit
    grace neither extends nor shortens that (it caps only the restart grace)."""
    wd = Watchdog(default_interval=60.0, tolerance=3, grace=grace)
    wd.track("gas", interval=4.0, now=T0)
    wd.track("slow", now=T0)
    wd.broker_down(T0 + 5)
    clock.set(T0 + 100)
    wd.broker_up(clock.now())
    assert wd.next_deadline() == T0 + 112
    assert wd.due(T0 + 111.999) == []
    assert [e.device for e in wd.due(T0 + 112)] == ["gas"]
    assert wd.due(T0 + 279.999) == []
    assert [e.device for e in wd.due(T0 + 280)] == ["slow"]


def test_heartbeat_after_reconnect_counts_normally():
    wd = Watchdog(default_interval=10.0)
    wd.track("a", now=T0)
    wd.broker_down(T0 + 1)
    wd.broker_up(T0 + 100)
    wd.heartbeat("a", T0 + 110)
    assert wd.next_deadline() == T0 + 140


# ---------------------------------------------------------------------- learned cadence

LEARN = [
    pytest.param(2.0, 2.0, id="faster-than-default"),
    pytest.param(20.0, 20.0, id="slower-than-default"),
    pytest.param(0.01, 1.0, id="clamped-low"),
    pytest.param(1000.0, 100.0, id="clamped-high"),
]


@pytest.mark.parametrize(("gap", "want"), LEARN)
def test_learned_cadence_converges_within_bounds(gap, want):
    wd = Watchdog(default_interval=10.0, learn=True)
    t = T0
    wd.heartbeat("d", t)
    for _ in range(60):
        t += gap
        wd.heartbeat("d", t)
        wd.due(t)
    status = wd.status("d")
    assert status is not None
    assert status.interval == pytest.approx(want, rel=0.01)
    assert status.deadline == pytest.approx(t + 3 * want, rel=0.01)


def test_learning_shortens_an_armed_deadline():
    wd = Watchdog(default_interval=100.0, learn=True)
    t = T0
    for _ in range(30):
        wd.heartbeat("d", t)
        t += 1.0
    # The cadence (1 s) is clamped to learn_min = 10 s: the deadline is 30 s after the
    # last beat, not the 300 s that the default would give, and the earlier heap entry
    # made for it is what fires.
    assert wd.status("d").interval == 10.0
    assert wd.next_deadline() == t - 1 + 30
    assert wd.due(t + 28) == []
    assert [e.device for e in wd.due(t + 29)] == ["d"]


def test_explicit_interval_beats_learning():
    wd = Watchdog(default_interval=10.0, learn=True)
    wd.track("d", interval=60.0, now=T0)
    for k in range(1, 10):
        wd.heartbeat("d", T0 + k)
    assert wd.status("d").interval == 60.0


def test_one_long_gap_does_not_teach_hours():
    wd = Watchdog(default_interval=10.0, learn=True, learn_max=10_000.0)
    t = T0
    for _ in range(20):
        wd.heartbeat("d", t)
        t += 10.0
    wd.heartbeat("d", t + 5000)
    assert wd.status("d").interval < 25.0


# ---------------------------------------------------------------------- many devices


def test_ten_thousand_devices_fire_in_deadline_order():
    rng = random.Random(7)
    wd = Watchdog(default_interval=60.0, tolerance=2)
    intervals = {f"dev-{i:05d}": float(rng.randint(1, 600)) for i in range(10_000)}
    for dev, iv in intervals.items():
        wd.track(dev, interval=iv, now=T0)
    for dev in list(intervals)[::3]:
        wd.heartbeat(dev, T0 + 100)
    expected = {
        dev: (T0 + 100 if i % 3 == 0 else T0) + 2 * iv for i, (dev, iv) in enumerate(intervals.items())
    }
    fired = []
    t = T0
    while len(fired) < len(intervals):
        nd = wd.next_deadline()
        assert nd is not None and nd >= t
        t = nd
        fired.extend(wd.due(t))
    assert [e.ts for e in fired] == sorted(e.ts for e in fired)
    assert {e.device: e.ts for e in fired} == expected
    assert len({e.device for e in fired}) == 10_000
    assert wd.stats()["lost"] == 10_000


def test_due_with_a_limit_spreads_a_mass_loss_over_calls():
    wd = Watchdog(default_interval=10.0)
    for k in range(100):
        wd.track(f"d{k:03d}", now=T0)
    wd.broker_down(T0 + 1)
    wd.broker_up(T0 + 5)  # every key (T0+30) is now a lazy lower bound of T0+35
    assert wd.due(T0 + 34, limit=7) == []  # re-arms at most 7 entries, fires nothing
    events = []
    calls = 0
    while (nd := wd.next_deadline()) is not None and nd <= T0 + 100:
        batch = wd.due(T0 + 100, limit=7)
        assert len(batch) <= 7
        events += batch
        calls += 1
    assert sorted(e.device for e in events) == [f"d{k:03d}" for k in range(100)]
    assert {e.ts for e in events} == {T0 + 35}
    assert calls == 15


def test_max_lost_raises_a_mass_loss_in_chunks_earliest_deadline_first():
    wd = Watchdog(default_interval=10.0)
    for k in range(50):
        wd.track(f"d{k:02d}", now=T0 + k)  # deadlines T0+30 .. T0+79
    wd.track("late", now=T0 + 500)
    chunks = []
    while batch := wd.due(T0 + 100, max_lost=8):
        assert len(batch) <= 8
        chunks.append(batch)
    assert [len(c) for c in chunks] == [8] * 6 + [2]
    fired = [e for c in chunks for e in c]
    assert [e.device for e in fired] == [f"d{k:02d}" for k in range(50)]  # deadline order across chunks
    assert [e.ts for e in fired] == [T0 + 30 + k for k in range(50)]
    assert wd.next_deadline() == T0 + 530  # "late" was never due


def test_max_lost_does_not_count_re_arms():
    wd = Watchdog(default_interval=10.0)
    for k in range(20):
        wd.track(f"d{k:02d}", now=T0)
    for k in range(10):
        wd.heartbeat(f"d{k:02d}", T0 + 20)  # lazy keys T0+30, true deadlines T0+50
    batch = wd.due(T0 + 31, max_lost=3)
    assert [e.device for e in batch] == ["d10", "d11", "d12"]  # slots order the equal keys
    assert wd.next_deadline() == T0 + 30  # seven more losses due, nothing else touched
    assert len(wd.due(T0 + 31)) == 7
    assert wd.next_deadline() == T0 + 50


def test_untrack_leaves_no_ghost_losses():
    wd = Watchdog(default_interval=1.0)
    wd.track("a", now=T0)
    wd.track("b", now=T0)
    assert wd.untrack("a") and not wd.untrack("a")
    wd.track("c", now=T0)  # reuses a's slot
    assert sorted(e.device for e in wd.due(T0 + 3)) == ["b", "c"]


def test_constructor_validation():
    with pytest.raises(ValueError):
        Watchdog(0)
    with pytest.raises(ValueError):
        Watchdog(10, tolerance=0)
    with pytest.raises(ValueError):
        Watchdog(10, class_intervals={"x": -1})
    with pytest.raises(ValueError):
        Watchdog(10).track("d", interval=0, now=T0)


# ---------------------------------------------------------------------- against a naive model


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.floats(0.0, 40.0), st.booleans()), max_size=60))
def test_matches_a_naive_model(steps):
    """Each step: advance the time, then heartbeat device k (or only run due())."""
    wd = Watchdog(default_interval=5.0, tolerance=2)
    last: dict[str, float] = {}
    lost: set[str] = set()
    now = T0
    for k, dt, beat in steps:
        now += dt
        expect_lost = sorted(d for d, ls in last.items() if d not in lost and ls + 10.0 <= now)
        got = wd.due(now)
        assert sorted(e.device for e in got) == expect_lost
        lost.update(expect_lost)
        if beat:
            dev = f"d{k}"
            ev = wd.heartbeat(dev, now)
            assert (ev is not None) == (dev in lost)
            lost.discard(dev)
            last[dev] = max(last.get(dev, now), now)
