"""Partition assignment (gateway.core.partitions) and the site → partition hash: fair shares,
hand-over on join, leave and death, driven by a manual clock."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest

from gateway.clock import ManualClock
from gateway.core.partitions import assign, member_of, next_in_series, shares
from gateway.forward.config import ForwardConfig, partition_of

TTL = 3.0


class Cluster:
    """The lease table as the supervisors see it: member rows and partition rows, each
    renewed at every step by whoever holds it, on a manual clock."""

    def __init__(self, partitions: int, clock: ManualClock) -> None:
        self.p = partitions
        self.clock = clock
        self.members: dict[str, float] = {}
        self.holders: dict[int, tuple[str, float]] = {}
        self.alive: set[str] = set()

    def join(self, name: str) -> None:
        self.alive.add(name)

    def leave(self, name: str) -> None:
        """A clean stop: the rows are released at once."""
        self.alive.discard(name)
        self.members.pop(name, None)
        self.holders = {p: h for p, h in self.holders.items() if h[0] != name}

    def die(self, name: str) -> None:
        """kill -9: the rows stay until they expire."""
        self.alive.discard(name)

    def step(self) -> dict[int, str]:
        """One round: live members renew, compute, shed what is not theirs, take free rows."""
        now = self.clock.now()
        for m in self.alive:
            self.members[m] = now + TTL
        for p, (h, _exp) in list(self.holders.items()):
            if h in self.alive:
                self.holders[p] = (h, now + TTL)
        want = assign(self.p, self.members, self.holders, now)
        for p, (h, _exp) in list(self.holders.items()):
            if h in self.alive and want.get(p) != h:
                del self.holders[p]  # its child stops and releases the lease
        for p, m in want.items():
            cur = self.holders.get(p)
            if m in self.alive and (cur is None or cur[1] <= now):
                self.holders[p] = (m, now + TTL)  # the lease is free or expired: taken
        return want

    def settle(self, rounds: int = 4, every: float = TTL / 4) -> dict[int, str]:
        for _ in range(rounds):
            self.step()
            self.clock.advance(every)
        return {p: h for p, (h, exp) in self.holders.items() if exp > self.clock.now()}


@pytest.mark.parametrize(("p", "n", "want"), [
    (4, 1, [4]), (4, 2, [2, 2]), (4, 3, [2, 1, 1]), (8, 3, [3, 3, 2]), (2, 3, [1, 1, 0]), (1, 2, [1, 0]),
], ids=["4on1", "4on2", "4on3", "8on3", "2on3", "1on2"])
def test_every_partition_has_one_member_and_shares_are_fair(p: int, n: int, want: list[int]) -> None:
    members = {f"m{i}": 10.0 for i in range(n)}
    got = assign(p, members, {}, now=0.0)
    assert sorted(got) == list(range(p))
    assert sorted(Counter(got.values()).values(), reverse=True) == [w for w in want if w]


def test_expired_members_get_nothing_and_no_member_means_no_assignment() -> None:
    assert assign(4, {"a": 5.0}, {}, now=5.0) == {}
    got = assign(4, {"a": 10.0, "b": 4.0}, {0: ("b", 20.0)}, now=5.0)
    assert set(got.values()) == {"a"}


def test_holders_keep_what_they_hold_up_to_their_share() -> None:
    holders = {0: ("b", 9.0), 1: ("b", 9.0), 2: ("a", 9.0), 3: ("a", 9.0)}
    assert assign(4, {"a": 9.0, "b": 9.0}, holders, now=0.0) == {0: "b", 1: "b", 2: "a", 3: "a"}
    # c joins: exactly one partition moves to it (a and b hold the most, one keeps 2).
    got = assign(4, {"a": 9.0, "b": 9.0, "c": 9.0}, holders, now=0.0)
    assert Counter(got.values()) == Counter({"a": 2, "b": 1, "c": 1})
    assert sum(1 for p, m in got.items() if holders[p][0] != m) == 1


def test_join_leave_and_death_hand_partitions_over_on_a_clock() -> None:
    clock = ManualClock(1000.0)
    c = Cluster(4, clock)
    c.join("a")
    c.join("b")
    held = c.settle()
    assert sorted(Counter(held.values()).values()) == [2, 2]
    c.join("c")
    held = c.settle()
    assert sorted(Counter(held.values()).values()) == [1, 1, 2] and "c" in held.values()
    c.leave("b")  # released at once: moved within a couple of rounds
    c.step()
    clock.advance(TTL / 4)
    held = c.settle(rounds=2)
    assert sorted(held) == [0, 1, 2, 3] and set(held.values()) == {"a", "c"}
    c.die("c")  # its rows lapse after one TTL, then the survivor takes everything
    dead_at = clock.now()
    for _ in range(12):
        c.step()
        clock.advance(TTL / 4)
        if set(c.holders) == {0, 1, 2, 3} and {h for h, _ in c.holders.values()} == {"a"}:
            break
    assert {h for h, _ in c.holders.values()} == {"a"} and len(c.holders) == 4
    assert clock.now() - dead_at <= TTL + TTL / 2


def test_after_any_join_leave_or_death_every_partition_is_held_fairly_by_a_live_member() -> None:
    clock = ManualClock(0.0)
    c = Cluster(6, clock)
    events = [("join", "a"), ("join", "b"), ("join", "c"), ("die", "a"), ("join", "d"), ("leave", "c"),
              ("join", "a2"), ("die", "b"), ("die", "d")]
    for what, who in events:
        getattr(c, what)(who)
        held = c.settle(rounds=8)
        assert sorted(held) == list(range(6)), (what, who, held)
        assert set(held.values()) <= c.alive
        counts = [sum(1 for m in held.values() if m == x) for x in c.alive]
        assert max(counts) - min(counts) <= 1, (what, who, held)
    assert set(c.settle().values()) == {"a2"}


def test_shares_and_member_names() -> None:
    assert shares(5, ["a", "b"], {"b": 3}) == {"b": 3, "a": 2}
    assert shares(5, [], {}) == {}
    assert member_of("noc-1@host:42#p3:4711") == "noc-1@host:42"


def test_site_partition_is_crc32_and_the_subject_carries_it() -> None:
    assert partition_of("mine-a", 4) == zlib.crc32(b"mine-a") % 4
    assert partition_of("mine-a", 1) == 0
    one = ForwardConfig(mode="edge", site="mine-a")
    assert one.subject("ev", "mine-a") == "gw.ev.mine-a"  # P = 1: today's subject
    assert one.filter_subject("ev", None) == "gw.ev.>" and one.filter_subject("hb", None) == "gw.hb.*"
    four = ForwardConfig(mode="edge", site="mine-a", partitions=4)
    p = partition_of("mine-a", 4)
    assert four.subject("ev", "mine-a") == f"gw.ev.{p}.mine-a"
    assert four.subject("hb", "mine-a") == f"gw.hb.{p}.mine-a"
    assert four.filter_subject("ev", 2) == "gw.ev.2.*"
    spread = Counter(partition_of(f"site-{i}", 4) for i in range(400))
    assert len(spread) == 4 and min(spread.values()) > 60


@pytest.mark.parametrize(("n", "step", "offset", "want"), [
    (1, 1, 0, 1), (7, 1, 0, 7), (1, 4, 0, 4), (1, 4, 1, 1), (2, 4, 1, 5), (10, 4, 3, 11), (12, 4, 0, 12),
], ids=["one", "one-7", "p0-first", "p1-first", "p1-next", "p3-after-10", "p0-exact"])
def test_a_partition_numbers_alarms_and_tickets_in_its_own_series(n: int, step: int, offset: int, want: int) -> None:
    assert next_in_series(n, step, offset) == want


def test_the_ticket_desk_and_alarm_book_hand_out_a_partitions_series() -> None:
    from gateway.core.alarms import AlarmBook

    book = AlarmBook(10)
    book.id_step, book.id_offset = 4, 3
    assert [book._take_id() for _ in range(3)] == [11, 15, 19]
