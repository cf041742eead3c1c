"""The leader lease of HA gateways (PostgreSQL): one holder at a time, takeover only after
expiry with a new fencing token, and a fenced store refuses every write of an instance
that lost the lease, in the database, even when its own clock still trusts the lease."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store import BatchWrite, OutboxRow
from gateway.store.lease import FencedError, Lease
from gateway.store.postgresql import PostgresStore
from tests.helpers import wait_until
from tests.store_contract import samples as s
from tests.store_contract.backends import POSTGRESQL, pg_dsn, pg_schema

T0 = s.T0


@pytest.fixture
def pg_store(tmp_path: Path) -> Iterator[PostgresStore]:
    loc = POSTGRESQL.location(tmp_path)
    st = PostgresStore(pg_dsn(), schema=pg_schema(loc))
    yield st
    st.close()
    POSTGRESQL.drop(loc)


def test_one_holder_at_a_time_and_a_new_token_at_each_takeover(pg_store: PostgresStore) -> None:
    a = Lease(pg_store.conninfo, "gw-a", ttl=1.0)
    b = Lease(pg_store.conninfo, "gw-b", ttl=1.0)
    try:
        assert a.try_acquire() and a.token == 1 and a.held()
        assert not b.try_acquire() and not b.held()
        assert a.try_acquire() and a.token == 1  # renewing keeps the token
        assert Lease.current(pg_store.conninfo)[:2] == ("gw-a", 1)  # type: ignore[index]
        wait_until(b.try_acquire, timeout=10)  # a stopped renewing: b takes over once it expired
        assert b.token == 2 and not a.held()
        assert not a.try_acquire()  # the old holder cannot take it back while b renews
        b.release()
        assert a.try_acquire() and a.token == 3  # a clean stop hands over at once
    finally:
        a.close()
        b.close()


def test_a_fenced_store_refuses_every_write_after_a_takeover(pg_store: PostgresStore) -> None:
    # margin -60: a's own clock keeps trusting its lease for a minute (a paused process, a
    # clock jump): only the database check stands between it and a second leader's data.
    a = Lease(pg_store.conninfo, "gw-a", ttl=1.0, margin=-60.0)
    b = Lease(pg_store.conninfo, "gw-b", ttl=1.0)
    try:
        assert a.try_acquire()
        pg_store.fence = a
        pg_store.commit(BatchWrite(alarms=[s.alarm(1)], outbox=[OutboxRow("desk", 1, "gw-t1", "open", {})]))
        wait_until(b.try_acquire, timeout=10)
        assert a.held()  # locally it still believes it leads
        before = (pg_store.list_alarms(), pg_store.outbox_list(), pg_store.list_maintenance())
        writes = {
            "commit": lambda: pg_store.commit(BatchWrite(alarms=[s.alarm(2)], meta={"m": "x"})),
            "claim": lambda: pg_store.outbox_claim(T0 + 1e9, 60.0),
            "maintenance": lambda: pg_store.save_maintenance(s.window("mw-1", T0, T0 + 1)),
            "reset": pg_store.outbox_reset_leases,
        }
        for what, write in writes.items():
            with pytest.raises(FencedError, match="another instance holds the leader lease"):
                write()
            assert not a.held(), what  # the refusal also ends its local trust
            a._until = float("inf")  # play the confused clock again for the next write
        assert (pg_store.list_alarms(), pg_store.outbox_list(), pg_store.list_maintenance()) == before
        assert pg_store.get_meta("m") is None
        pg_store.fence = b  # the new leader writes
        pg_store.commit(BatchWrite(alarms=[s.alarm(2)]))
        assert [x["id"] for x in pg_store.list_alarms()] == [2, 1]
    finally:
        a.close()
        b.close()


def test_an_instance_that_never_held_the_lease_writes_nothing(pg_store: PostgresStore) -> None:
    c = Lease(pg_store.conninfo, "gw-c", ttl=5.0)
    pg_store.fence = c
    with pytest.raises(FencedError, match="not the leader"):
        pg_store.commit(BatchWrite(alarms=[s.alarm(1)]))
    assert pg_store.list_alarms() == []
    c.close()


def test_the_row_names_the_leaders_api_for_the_standbys(pg_store: PostgresStore) -> None:
    a = Lease(pg_store.conninfo, "gw-a", ttl=1.0, url="http://10.0.0.1:8080")
    b = Lease(pg_store.conninfo, "gw-b", ttl=1.0, url="http://10.0.0.2:8080")
    try:
        assert b.leader() is None  # nobody leads yet
        assert a.try_acquire()
        assert b.leader() == ("gw-a", "http://10.0.0.1:8080")
        a.release()
        assert b.leader() is None  # a released (or expired) lease names nobody
        assert b.try_acquire()
        assert a.leader() == ("gw-b", "http://10.0.0.2:8080")  # the new holder's address replaces the old
    finally:
        a.close()
        b.close()


def test_partition_leases_are_independent_and_each_fences_its_own_writer(pg_store: PostgresStore, tmp_path: Path) -> None:
    """A partitioned central (docs/scaling.md): one lease row per partition. Two leaders of
    two partitions write side by side; a takeover of one partition fences that partition's
    old leader only. ``rows`` lists the rows the supervisors assign from."""
    other = PostgresStore(pg_dsn(), schema=pg_store.schema)
    p0_a = Lease(pg_store.conninfo, "a#p0:1", ttl=1.0, name="partition/0", margin=-60.0)
    p1_b = Lease(pg_store.conninfo, "b#p1:2", ttl=1.0, name="partition/1")
    p0_b = Lease(pg_store.conninfo, "b#p0:3", ttl=1.0, name="partition/0")
    member = Lease(pg_store.conninfo, "a", ttl=5.0, name="member/a")
    try:
        assert p0_a.try_acquire() and p1_b.try_acquire() and member.try_acquire()
        assert not p0_b.try_acquire()
        pg_store.fence, other.fence = p0_a, p1_b
        pg_store.commit(BatchWrite(alarms=[s.alarm(4)]))
        other.commit(BatchWrite(alarms=[s.alarm(1)]))
        got = member.rows("partition/")
        assert got is not None
        now, rows = got
        assert [(n, h) for n, h, _e in rows] == [("partition/0", "a#p0:1"), ("partition/1", "b#p1:2")]
        assert all(e > now for _n, _h, e in rows)
        wait_until(lambda: p1_b.try_acquire() and p0_b.try_acquire(), timeout=10)  # a stopped renewing p0
        assert p0_b.token == 2 and p1_b.token == 1
        with pytest.raises(FencedError):
            pg_store.commit(BatchWrite(alarms=[s.alarm(8)]))
        other.commit(BatchWrite(alarms=[s.alarm(5)]))  # partition 1's leader is untouched
        assert sorted(a["id"] for a in pg_store.list_alarms()) == [1, 4, 5]
    finally:
        for lease in (p0_a, p1_b, p0_b, member):
            lease.close()
        other.close()


def test_a_process_restarted_under_the_same_name_is_a_new_holder(pg_store: PostgresStore) -> None:
    """``[ha] name`` is fixed per machine: a supervisor restarting the gateway while its old
    process is only paused must not hand the new one the old token (the old one would pass
    the fence when it wakes)."""
    old = Lease(pg_store.conninfo, "gw-a", ttl=1.0, margin=-60.0)
    new = Lease(pg_store.conninfo, "gw-a", ttl=1.0)
    try:
        assert old.try_acquire() and old.token == 1
        assert not new.try_acquire()  # the name alone does not renew someone else's lease
        assert old.try_acquire() and old.token == 1  # the process holding it still renews it
        wait_until(new.try_acquire, timeout=10)  # once it lapsed: a takeover, with a new token
        assert new.token == 2
        pg_store.fence = old
        with pytest.raises(FencedError, match="another instance holds the leader lease"):
            pg_store.commit(BatchWrite(alarms=[s.alarm(1)]))
        assert not old.try_acquire()
        assert pg_store.list_alarms() == []
    finally:
        old.close()
        new.close()
