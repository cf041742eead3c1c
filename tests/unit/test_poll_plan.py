"""Poll scheduling (spread, jitter without drift, backoff, late polls) and restart detection from
sysUpTime — pure logic, run on made-up times."""

from __future__ import annotations

import random

import pytest

from adapters.poll.plan import Plan, restarted, spread_fraction


def test_ten_thousand_devices_are_spread_over_the_interval() -> None:
    plan = Plan(jitter=0.0, backoff_after=3, backoff_max=600, rng=random.Random(1))
    for i in range(10_000):
        plan.set(f"dev-{i}", 60.0, now=1000.0)
    per_second = [0] * 60
    for s in range(60):
        per_second[s] = len(plan.due(1000.0 + s + 1 - 1e-9))
    assert sum(per_second) == 10_000
    # ~167 a second; none of the 60 one-second buckets holds more than 25 % above that.
    assert max(per_second) < 10_000 / 60 * 1.25 and min(per_second) > 10_000 / 60 * 0.75


def test_slots_stay_put_under_jitter() -> None:
    plan = Plan(jitter=0.2, backoff_after=3, backoff_max=600, rng=random.Random(7))
    plan.set("a", 10.0, now=0.0)
    slot = spread_fraction("a") * 10.0
    t = 0.0
    for k in range(200):
        nxt = plan.next_time()
        assert nxt is not None and abs(nxt - (slot + 10.0 * k)) <= 2.0 + 1e-9
        t = nxt
        assert plan.due(t) == ["a"]
        plan.done("a", ok=True, now=t + 0.01)


def test_backoff_doubles_after_failures_and_an_answer_resets_it() -> None:
    plan = Plan(jitter=0.0, backoff_after=2, backoff_max=80.0, rng=random.Random(1))
    plan.set("a", 10.0, now=0.0)
    gaps = []
    prev = None
    for ok in [False, False, False, False, False, False, True, True]:
        t = plan.next_time()
        assert t is not None
        if prev is not None:
            gaps.append(round(t - prev, 6))
        prev = t
        plan.due(t)
        plan.done("a", ok=ok, now=t + 0.1)
    # failures 1, 2 → 10 s; 3 → 20; 4 → 40; 5, 6 → 80 (cap); then an answer → 10 again.
    assert gaps == [10.0, 20.0, 40.0, 80.0, 80.0, 80.0, 10.0]


def test_a_device_is_not_polled_again_while_its_poll_runs_and_late_slots_are_skipped() -> None:
    plan = Plan(jitter=0.0, backoff_after=3, backoff_max=600, rng=random.Random(1))
    plan.set("a", 1.0, now=0.0)
    t = plan.next_time()
    assert t is not None and plan.due(t) == ["a"]
    assert plan.due(t + 5) == []  # still busy
    plan.done("a", ok=True, now=t + 3.5)  # the poll took 3.5 intervals
    nxt = plan.next_time()
    assert nxt is not None and nxt > t + 3.5 and abs((nxt - t) % 1.0) < 1e-9
    assert plan.skipped == 3


def test_removed_and_changed_devices() -> None:
    plan = Plan(jitter=0.0, backoff_after=3, backoff_max=600, rng=random.Random(1))
    plan.set("a", 100.0, now=0.0)
    plan.set("a", 1.0, now=0.0)  # a shorter interval takes effect at once
    t = plan.next_time()
    assert t is not None and t <= 1.0
    assert plan.remove("a") and plan.next_time() is None and len(plan) == 0


RESTART_CASES = [
    # before, before_at, after, after_at, restarted?
    pytest.param(100_00, 1000.0, 160_00, 1060.0, False, id="steady"),
    pytest.param(100_00, 1000.0, 5_00, 1060.0, True, id="uptime-went-back"),
    pytest.param(100_00, 1000.0, 990_00, 2000.0, True, id="restarted-long-ago-ran-longer-since"),
    pytest.param(100_00, 1000.0, 165_00, 1060.0, False, id="agent-clock-a-little-fast"),
    pytest.param(2**32 - 30_00, 0.0, 30_00, 60.0, False, id="timeticks-wrapped"),
    pytest.param(2**32 - 30_00, 0.0, 5_00, 60.0, True, id="restart-near-the-wrap"),
]


@pytest.mark.parametrize(("before", "before_at", "after", "after_at", "expected"), RESTART_CASES)
def test_restart_detection(before: int, before_at: float, after: int, after_at: float, expected: bool) -> None:
    assert restarted(before, before_at, after, after_at, slack=10.0) is expected
