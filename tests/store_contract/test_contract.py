"""The Store contract (``gateway.store.Store``), run against every backend: one transaction
per batch, upsert and reload of alarms and tickets (with their behaviour state and SLA
timers), timeline order, next ids, delivery keys, the help-desk outbox (order per ticket,
leases, final states, operator triage, links), maintenance windows, meta values."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from gateway import failpoints
from gateway.core.tickets import TimelineEntry
from gateway.errors import StoreError
from gateway.model import FaultLevel
from gateway.store import INVENTORY_VERSION, RULES_RELOADS, BatchWrite, OutboxRow, Store, StoreReader
from gateway.store.migrations.sqlite import LATEST
from tests.store_contract import samples as s
from tests.store_contract.backends import Backend

T0 = s.T0


def snapshot(st: StoreReader) -> dict[str, Any]:
    """Everything a reader can see (for "nothing of the batch is visible")."""
    return {
        "alarms": st.list_alarms(limit=10_000),
        "tickets": st.list_tickets(limit=10_000),
        "timeline": {t: st.timeline(t) for t in range(1, 10)},
        "outbox": st.outbox_list(limit=10_000),
        "counts": st.outbox_counts(),
        "meta": {k: st.get_meta(k) for k in ("m", "other")},
        "keys": st.load_delivery_keys(0.0),
        "next_ids": st.next_ids(),
        "maintenance": st.list_maintenance(),
        "links": st.remote_links("desk"),
    }


def base_batch() -> BatchWrite:
    return BatchWrite(
        alarms=[s.alarm(1, ticket_id=1)],
        tickets=[s.ticket(1)],
        timeline=[s.entry(1, T0, "opened")],
        outbox=[OutboxRow("desk", 1, "gw-t1", "open", {"id": 1})],
        meta={"m": "1"},
        delivery_keys=[("k-old", T0)],
    )


def second_batch() -> BatchWrite:
    """Touches every kind of row: an update and an insert of alarms and tickets, appends,
    a meta update, a new key and the forgetting of an old one."""
    return BatchWrite(
        alarms=[s.alarm(1, ticket_id=1, count=9), s.alarm(5)],
        tickets=[s.ticket(1, status="acknowledged"), s.ticket(5, alarm_id=5)],
        timeline=[s.entry(1, T0 + 100, "acknowledge"), s.entry(5, T0 + 100, "opened")],
        outbox=[OutboxRow("desk", 1, "gw-t1-m1", "ack", {"id": 1}), OutboxRow("desk", 5, "gw-t5", "open", {"id": 5})],
        meta={"m": "2", "other": "x"},
        delivery_keys=[("k-new", T0 + 100)],
        forget_keys_before=T0 + 50,
    )


# -- one transaction per batch ---------------------------------------------------------------
def test_a_batch_failing_after_its_rows_are_written_leaves_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.commit(base_batch())
    before = snapshot(store)
    monkeypatch.setitem(failpoints.ARMED, "store_mid_commit", "raise")
    with pytest.raises(StoreError, match="store_mid_commit"):
        store.commit(second_batch())
    assert snapshot(store) == before
    # The store is usable afterwards, and the same batch can be retried as is.
    monkeypatch.delitem(failpoints.ARMED, "store_mid_commit")
    store.commit(second_batch())
    after = snapshot(store)
    assert after["next_ids"] == (6, 6)
    assert [k for k, _ in after["keys"]] == ["k-new"]
    assert after["meta"] == {"m": "2", "other": "x"}


@pytest.mark.parametrize("table", ["alarms", "tickets", "timeline", "outbox", "meta", "delivery_keys"])
def test_a_batch_refused_by_the_database_midway_leaves_nothing(
    store: Store, backend: Backend, location: str, table: str
) -> None:
    """The database refuses one kind of row; every row written before it in the same batch
    (alarms come first, delivery keys last) must vanish with it."""
    store.commit(base_batch())
    before = snapshot(store)
    with backend.refuse_inserts(location, table):
        with pytest.raises(StoreError, match="commit failed"):
            store.commit(second_batch())
        assert snapshot(store) == before
    store.commit(second_batch())
    assert snapshot(store)["next_ids"] == (6, 6)


def test_an_empty_batch_writes_nothing(store: Store) -> None:
    store.commit(BatchWrite(forget_keys_before=T0 + 1e9))
    store.commit(base_batch())
    before = snapshot(store)
    store.commit(BatchWrite())
    store.commit(BatchWrite(forget_keys_before=T0 + 1e9))  # nothing recorded: nothing forgotten
    assert snapshot(store) == before


def test_a_commit_is_seen_whole_by_another_connection(store: Store, open_store: Callable[..., Store]) -> None:
    other = open_store()
    store.commit(base_batch())
    assert snapshot(other) == snapshot(store)


def test_readers_on_other_threads_run_while_the_writer_commits(store: Store) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                ids = [a["id"] for a in store.list_alarms()]
                assert ids == sorted(ids, reverse=True)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for r in readers:
        r.start()
    for i in range(1, 51):
        store.commit(BatchWrite(alarms=[s.alarm(i)]))
    stop.set()
    for r in readers:
        r.join()
    assert not errors
    assert store.next_ids() == (51, 1)


def test_state_survives_closing_and_reopening(store: Store, open_store: Callable[..., Store]) -> None:
    store.commit(base_batch())
    store.commit(second_batch())
    before = snapshot(store)
    store.close()
    store.close()  # idempotent
    assert snapshot(open_store()) == before


# -- alarms ------------------------------------------------------------------------------------
def _alarm_state(a: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return a.to_dict(), a.extra()


def test_alarms_upsert_and_reload_with_behaviour_state(store: Store) -> None:
    store.commit(BatchWrite(alarms=[s.alarm(1), s.stateful_alarm(2), s.alarm(3, state="cleared", cleared_at=T0 + 9)]))
    newer = s.alarm(1, count=7, level=FaultLevel.CRITICAL, ticket_id=4)
    newer.acked = True
    store.commit(BatchWrite(alarms=[newer]))

    loaded = store.load_open_alarms()
    assert [a.id for a in loaded] == [1, 2]  # cleared ones are not state to resume
    assert [_alarm_state(a) for a in loaded] == [_alarm_state(newer), _alarm_state(s.stateful_alarm(2))]
    assert store.get_alarm(1) == newer.to_dict()
    assert store.get_alarm(3) == s.alarm(3, state="cleared", cleared_at=T0 + 9).to_dict()
    assert store.get_alarm(99) is None
    by_id = store.alarms_by_id([3, 99, 1])  # what the change feed's readers use
    assert by_id == [store.get_alarm(1), store.get_alarm(3)]
    assert store.alarms_by_id([]) == []
    assert [a["id"] for a in store.list_alarms()] == [3, 2, 1]
    assert [a["id"] for a in store.list_alarms(state="cleared")] == [3]
    assert [a["id"] for a in store.list_alarms(limit=2)] == [3, 2]


def test_find_alarms_filters(store: Store) -> None:
    store.commit(BatchWrite(alarms=[
        s.alarm(1, device="sw-1"), s.alarm(2, device="sw-2", level=FaultLevel.CRITICAL),
        s.alarm(3, device="sw-2", state="cleared"), s.alarm(4, device="sw-3", state="pending"),
    ]))

    def ids(**kw: Any) -> list[int]:
        return [a["id"] for a in store.find_alarms(**kw)]

    assert ids() == [4, 3, 2, 1]
    assert ids(devices=["sw-2"]) == [3, 2]
    assert ids(devices=["sw-2"], states=["active"]) == [2]
    assert ids(levels=[int(FaultLevel.CRITICAL)]) == [2]
    assert ids(states=["active", "pending"]) == [4, 2, 1]
    assert ids(states=[]) == []  # an empty filter matches nothing
    assert ids(limit=1) == [4]
    assert ids(before=4, limit=2) == [3, 2]  # pages by cursor: older than the last one shown
    assert ids(devices=["sw-2"], before=3) == [2]


# -- tickets and their timers ----------------------------------------------------------------
def test_tickets_upsert_and_reload_with_their_clocks(store: Store) -> None:
    store.commit(BatchWrite(tickets=[s.ticket(1), s.ticket(2, status="acknowledged"), s.ticket(3)]))
    closed = s.ticket(3, status="closed", closed_at=T0 + 500)
    store.commit(BatchWrite(tickets=[closed]))

    loaded = store.load_open_tickets()
    assert loaded == [s.ticket(1), s.ticket(2, status="acknowledged")]  # clocks: due times, consumed, warned
    assert loaded[0].clocks[1].provisional and loaded[0].clocks[0].warned == [0.5]
    assert store.load_ticket(3) == closed  # a reopen reads a closed ticket back
    assert store.load_ticket(99) is None
    assert store.tickets_by_id([3, 99, 1]) == [s.ticket(1), closed]
    assert store.get_ticket(3) == closed.to_dict()
    assert store.get_ticket(99) is None
    assert [t["id"] for t in store.list_tickets()] == [3, 2, 1]
    assert [t["id"] for t in store.list_tickets(status="closed")] == [3]
    assert [t["id"] for t in store.list_tickets(limit=1)] == [3]


def test_find_tickets_filters(store: Store) -> None:
    store.commit(BatchWrite(tickets=[
        s.ticket(1, site="north"), s.ticket(2, site="south", device="sw-2"),
        s.ticket(3, site="south", level=FaultLevel.CRITICAL, status="closed", closed_at=T0 + 1),
    ]))

    def ids(**kw: Any) -> list[int]:
        return [t["id"] for t in store.find_tickets(**kw)]

    assert ids() == [3, 2, 1]
    assert ids(sites=["south"]) == [3, 2]
    assert ids(sites=["south"], statuses=["open"]) == [2]
    assert ids(devices=["sw-2", "sw-1"], levels=[int(FaultLevel.MAJOR)]) == [2, 1]
    assert ids(sites=[]) == []
    assert ids(limit=2) == [3, 2]
    assert ids(limit=2, before=2) == [1]  # the next page after ticket 2
    assert ids(sites=["south"], before=3) == [2]


def test_tickets_opened_in_a_range(store: Store) -> None:
    store.commit(BatchWrite(tickets=[
        s.ticket(1, opened_at=T0 + 20), s.ticket(2, opened_at=T0 + 10), s.ticket(3, opened_at=T0 + 10),
        s.ticket(4, opened_at=T0 + 30), s.ticket(5, opened_at=T0 + 15, policy="silver"),
    ]))
    assert [t.id for t in store.tickets_opened("gold", T0 + 10, T0 + 30)] == [2, 3, 1]  # [start, end)
    assert [t.id for t in store.tickets_opened("silver", T0, T0 + 100)] == [5]
    assert store.tickets_opened("gold", T0 + 40, T0 + 50) == []


def test_timeline_keeps_commit_order(store: Store) -> None:
    store.commit(BatchWrite(timeline=[s.entry(1, T0 + 5, "opened"), s.entry(2, T0, "opened"), s.entry(1, T0, "comment", "é")]))
    store.commit(BatchWrite(timeline=[s.entry(1, T0 - 100, "acknowledge")]))
    assert [(e["kind"], e["ts"]) for e in store.timeline(1)] == [("opened", T0 + 5), ("comment", T0), ("acknowledge", T0 - 100)]
    assert store.timeline(1)[1] == {"ticket_id": 1, "ts": T0, "actor": "user:li", "kind": "comment", "note": "é",
                                    "on_behalf_of": ""}
    assert [e["kind"] for e in store.timeline(2)] == ["opened"]
    assert store.timeline(3) == []


def test_timeline_since_lists_the_kinds_asked_for_from_a_time_on_in_commit_order(store: Store) -> None:
    store.commit(BatchWrite(timeline=[s.entry(1, T0 + 5, "acknowledge"), s.entry(2, T0 - 1, "arrive"),
                                      s.entry(2, T0 + 9, "comment"), s.entry(3, T0, "arrive")]))
    store.commit(BatchWrite(timeline=[s.entry(1, T0 + 1, "restore")]))
    got = store.timeline_since(T0, ["acknowledge", "arrive", "restore"])
    assert [(e["ticket_id"], e["kind"], e["ts"]) for e in got] == [(1, "acknowledge", T0 + 5), (3, "arrive", T0),
                                                                  (1, "restore", T0 + 1)]
    assert store.timeline_since(T0, []) == []


def test_timeline_keeps_on_behalf_of_apart_from_the_actor(store: Store) -> None:
    """Issue 21 item 12: the actor is the authenticated caller; a name it gave is kept beside it."""
    entry = TimelineEntry(ticket_id=1, ts=T0, actor="alice", kind="comment", note="n", on_behalf_of="somebody-else")
    store.commit(BatchWrite(timeline=[entry]))
    (row,) = store.timeline(1)
    assert (row["actor"], row["on_behalf_of"]) == ("alice", "somebody-else")


def test_next_ids_follow_the_largest_committed_ids(store: Store, open_store: Callable[..., Store]) -> None:
    assert store.next_ids() == (1, 1)
    store.commit(BatchWrite(alarms=[s.alarm(7, state="cleared", cleared_at=T0)], tickets=[s.ticket(3)]))
    assert store.next_ids() == (8, 4)
    store.commit(BatchWrite(alarms=[s.alarm(2)], tickets=[s.ticket(9, status="closed", closed_at=T0)]))
    assert store.next_ids() == (8, 10)  # closed and cleared rows hold their ids too
    assert open_store().next_ids() == (8, 10)


def test_meta_values_are_upserted(store: Store) -> None:
    assert store.get_meta("sync.since.desk") is None
    store.commit(BatchWrite(meta={"sync.since.desk": "1", "a": "b"}))
    store.commit(BatchWrite(meta={"sync.since.desk": "2"}))
    assert (store.get_meta("sync.since.desk"), store.get_meta("a")) == ("2", "b")


# -- delivery keys -------------------------------------------------------------------------
def test_delivery_keys_are_loaded_by_cutoff_and_forgotten_before_one(store: Store) -> None:
    store.commit(BatchWrite(delivery_keys=[("a", T0), ("b", T0 + 10), ("c", T0 + 20)]))
    assert store.load_delivery_keys(T0 + 10) == [("b", T0 + 10), ("c", T0 + 20)]  # at or after
    assert store.load_delivery_keys(0.0) == [("a", T0), ("b", T0 + 10), ("c", T0 + 20)]  # oldest first
    store.commit(BatchWrite(delivery_keys=[("d", T0 + 30), ("a", T0 + 40)], forget_keys_before=T0 + 20))
    # "b" is older than the cutoff; "c" is at it and stays; the repeated "a" took its new time.
    assert store.load_delivery_keys(0.0) == [("c", T0 + 20), ("d", T0 + 30), ("a", T0 + 40)]


def test_a_batch_of_delivery_keys_reads_back_key_by_key(store: Store) -> None:
    """A batch's keys of one time share rows (``sql.pack_keys``); each still loads, is
    forgotten and takes a new time on its own — odd characters included."""
    odd = ["", "line\nbreak", "\nleading", "back\\slash\\n", "\\", "x" * 300]
    first = [f"snmp-inform:snmp:{i:032x}" for i in range(40)] + odd
    store.commit(BatchWrite(delivery_keys=[(k, T0) for k in first]))
    assert store.load_delivery_keys(0.0) == [(k, T0) for k in first]
    again = [first[3], "line\nbreak", "new"]
    store.commit(BatchWrite(delivery_keys=[(k, T0 + 10) for k in again]))
    expected = [(k, T0) for k in first if k not in again] + [(k, T0 + 10) for k in again]
    assert sorted(store.load_delivery_keys(0.0)) == sorted(expected)
    assert [at for _, at in store.load_delivery_keys(0.0)] == sorted(at for _, at in expected)  # oldest first
    assert sorted(store.load_delivery_keys(T0 + 5)) == sorted((k, T0 + 10) for k in again)
    store.commit(BatchWrite(delivery_keys=[("later", T0 + 20)], forget_keys_before=T0 + 5))
    assert sorted(store.load_delivery_keys(0.0)) == sorted([(k, T0 + 10) for k in again] + [("later", T0 + 20)])


# -- outbox ----------------------------------------------------------------------------------
def _outbox(store: Store, *rows: tuple[str, int, str]) -> None:
    store.commit(BatchWrite(outbox=[OutboxRow(c, t, f"{c}-{t}-{kind}", kind, {"kind": kind, "n": [1, {"x": "ü"}]})
                                    for c, t, kind in rows]))


def _due(store: Store, now: float, limit: int = 100) -> list[tuple[str, int, str]]:
    return [(r["connector"], r["ticket_id"], r["kind"]) for r in store.outbox_due(now, limit)]


def test_outbox_hands_out_the_head_of_each_ticket_queue_in_order(store: Store) -> None:
    _outbox(store, ("desk", 1, "open"), ("desk", 2, "open"), ("desk", 1, "ack"))
    _outbox(store, ("pd", 1, "open"), ("desk", 1, "close"))
    assert _due(store, T0) == [("desk", 1, "open"), ("desk", 2, "open"), ("pd", 1, "open")]
    assert _due(store, T0, limit=2) == [("desk", 1, "open"), ("desk", 2, "open")]
    delivered = []
    while rows := store.outbox_due(T0):
        for r in rows:
            store.outbox_attempt(r["id"], T0, 60.0)
            store.outbox_delivered(r["id"], T0, None, r["connector"], r["ticket_id"], r["key"])
            delivered.append((r["connector"], r["ticket_id"], r["kind"]))
    per_ticket = [d for d in delivered if d[:2] == ("desk", 1)]
    assert per_ticket == [("desk", 1, "open"), ("desk", 1, "ack"), ("desk", 1, "close")]
    assert len(delivered) == 5
    row = store.outbox_list(state="delivered", limit=1)[0]
    assert row["payload"] == {"kind": "close", "n": [1, {"x": "ü"}]} and row["delivered_at"] == T0


def test_a_leased_message_is_not_handed_out_again_until_its_lease_ends(store: Store) -> None:
    _outbox(store, ("desk", 1, "open"), ("desk", 1, "ack"))
    [head] = store.outbox_due(T0)
    assert (head["state"], head["attempts"]) == ("pending", 0)
    store.outbox_attempt(head["id"], T0, 60.0)
    assert store.outbox_due(T0) == [] and store.outbox_due(T0 + 59.9) == []  # the whole ticket waits
    [again] = store.outbox_due(T0 + 60)  # the worker died: the lease ran out
    assert (again["id"], again["state"], again["attempts"]) == (head["id"], "sending", 1)


def test_claim_hands_out_and_leases_the_heads_in_one_step(store: Store) -> None:
    _outbox(store, ("desk", 1, "open"), ("desk", 2, "open"), ("desk", 1, "ack"), ("pd", 3, "open"))
    got = store.outbox_claim(T0, 60.0, ["desk"])
    assert [(r["ticket_id"], r["kind"], r["state"], r["attempts"], r["next_attempt"]) for r in got] == [
        (1, "open", "sending", 1, T0 + 60), (2, "open", "sending", 1, T0 + 60)]
    assert {r["id"]: r for r in store.outbox_list(state="sending")} == {r["id"]: r for r in got}  # as stored
    assert store.outbox_claim(T0 + 59.9, 60.0, ["desk"]) == []  # leased: the tickets wait
    assert store.outbox_claim(T0, 60.0, []) == []
    assert [r["connector"] for r in store.outbox_claim(T0, 60.0)] == ["pd"]  # None: every connector
    store.outbox_delivered(got[0]["id"], T0, None, "desk", 1, got[0]["key"])
    [again, nxt] = store.outbox_claim(T0 + 60, 60.0, ["desk"], limit=5)  # lease over; ticket 1 moved on
    assert (nxt["ticket_id"], nxt["kind"], nxt["attempts"]) == (1, "ack", 1)
    assert (again["ticket_id"], again["attempts"]) == (2, 2)


def test_a_partitions_claim_takes_only_its_tickets_messages(store: Store) -> None:
    """A partition's outbox worker (shard (P, p)) claims the messages of tickets numbered
    p mod P only (docs/scaling.md): two partitions' workers never share a ticket's queue."""
    _outbox(store, *[("desk", t, "open") for t in range(1, 9)])
    got = {p: [r["ticket_id"] for r in store.outbox_claim(T0, 60.0, ["desk"], shard=(4, p))] for p in range(4)}
    assert got == {0: [4, 8], 1: [1, 5], 2: [2, 6], 3: [3, 7]}
    assert store.outbox_claim(T0, 60.0, ["desk"]) == []  # all leased by the four


def test_concurrent_claimers_never_get_the_same_message(store: Store, open_store: Callable[..., Store]) -> None:
    """Several workers (threads, each with its own connection, as a second gateway would
    have) claim and deliver until the outbox is empty: each message exactly once."""
    _outbox(store, *[("desk", t, kind) for kind in ("open", "ack", "close") for t in range(1, 41)])
    claimers = [open_store() for _ in range(4)]
    got: list[list[int]] = [[] for _ in claimers]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        st = claimers[i]
        try:
            idle = 0
            while idle < 3:
                rows = st.outbox_claim(T0, 60.0, ["desk"], limit=7)
                idle = 0 if rows else idle + 1
                for r in rows:
                    got[i].append(r["id"])
                    st.outbox_delivered(r["id"], T0, None, "desk", r["ticket_id"], r["key"])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(claimers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = [i for g in got for i in g]
    assert len(ids) == len(set(ids)) == 120
    assert store.outbox_counts() == {"delivered": 120}


def test_leases_are_released_at_worker_start(store: Store) -> None:
    _outbox(store, ("desk", 1, "open"))
    [head] = store.outbox_due(T0)
    store.outbox_attempt(head["id"], T0, 3600.0)
    store.outbox_reset_leases()
    [again] = store.outbox_due(T0)
    assert (again["state"], again["attempts"]) == ("pending", 1)  # attempts kept: look it up by key


def test_retry_later_releases_the_message_at_its_time(store: Store) -> None:
    _outbox(store, ("desk", 1, "open"))
    [head] = store.outbox_due(T0)
    store.outbox_attempt(head["id"], T0, 60.0)
    store.outbox_retry_later(head["id"], T0 + 5, "timeout " + "x" * 1000)
    assert store.outbox_due(T0 + 4.9) == []
    [again] = store.outbox_due(T0 + 5)
    assert again["state"] == "pending" and again["last_error"] is not None and len(again["last_error"]) == 500


def test_delivered_messages_are_never_handed_out_again(store: Store) -> None:
    _outbox(store, ("desk", 1, "open"))
    [head] = store.outbox_due(T0)
    store.outbox_attempt(head["id"], T0, 60.0)
    store.outbox_delivered(head["id"], T0 + 1, "HD-1", "desk", 1, head["key"])
    store.outbox_reset_leases()
    assert store.outbox_due(T0 + 1e9) == []
    assert store.outbox_requeue(head["id"]) is False and store.outbox_discard(head["id"]) is False
    assert store.outbox_counts() == {"delivered": 1}


def test_links_to_remote_tickets_first_one_wins(store: Store) -> None:
    _outbox(store, ("desk", 1, "open"), ("desk", 1, "ack"), ("desk", 2, "open"), ("pd", 1, "open"))
    ids = {(r["connector"], r["ticket_id"], r["kind"]): r["id"] for r in store.outbox_list()}
    store.outbox_delivered(ids["desk", 1, "open"], T0, "HD-1", "desk", 1, "k1")
    store.outbox_delivered(ids["desk", 1, "ack"], T0, "HD-other", "desk", 1, "k1")  # a replay: ignored
    store.outbox_delivered(ids["desk", 2, "open"], T0, None, "desk", 2, "k2")  # no remote id: no link
    store.outbox_delivered(ids["pd", 1, "open"], T0, "PD-1", "pd", 1, "k1")
    assert store.remote_id("desk", 1) == "HD-1"
    assert store.remote_id("desk", 2) is None
    assert store.remote_links("desk") == {"HD-1": 1}
    assert store.remote_links("pd") == {"PD-1": 1}
    assert store.remote_links("nobody") == {}
    assert store.outbox_list(state="delivered")[-1]["remote_id"] == "HD-1"


def test_failed_messages_are_parked_and_triaged_by_operators(store: Store) -> None:
    _outbox(store, ("desk", 1, "open"), ("desk", 1, "ack"), ("desk", 2, "open"))
    first = store.outbox_due(T0)[0]
    store.outbox_attempt(first["id"], T0, 60.0)
    store.outbox_failed(first["id"], "permanent: 400 bad request")
    # Parked: not handed out; the ticket's next message goes on.
    assert _due(store, T0 + 1e6) == [("desk", 1, "ack"), ("desk", 2, "open")]
    [failed] = store.outbox_list(state="failed")
    assert (failed["id"], failed["last_error"], failed["attempts"]) == (first["id"], "permanent: 400 bad request", 1)
    assert store.outbox_counts() == {"failed": 1, "pending": 2}

    assert store.outbox_requeue(first["id"]) is True
    assert store.outbox_requeue(first["id"]) is False  # not failed any more
    assert next(r["id"] for r in store.outbox_due(T0)) == first["id"]  # due now, head again
    assert store.outbox_list(state="pending")[-1]["attempts"] == 1

    store.outbox_attempt(first["id"], T0, 60.0)
    store.outbox_failed(first["id"], "again")
    assert store.outbox_discard(first["id"]) is True
    assert store.outbox_discard(first["id"]) is False
    assert store.outbox_requeue(first["id"]) is False
    assert first["id"] not in [r["id"] for r in store.outbox_due(T0 + 1e9)]
    assert store.outbox_counts() == {"discarded": 1, "pending": 2}
    assert store.outbox_requeue(12345) is False and store.outbox_discard(12345) is False


def test_outbox_list_is_newest_first(store: Store) -> None:
    _outbox(store, ("desk", 1, "open"), ("desk", 2, "open"), ("desk", 3, "open"))
    rows = store.outbox_list()
    assert [r["ticket_id"] for r in rows] == [3, 2, 1]
    assert [r["ticket_id"] for r in store.outbox_list(limit=1)] == [3]
    assert store.outbox_list(state="failed") == []
    r = rows[0]
    assert set(r) == {"id", "connector", "ticket_id", "key", "kind", "payload", "state", "attempts", "next_attempt",
                      "remote_id", "last_error", "created_at", "delivered_at"}
    assert (r["key"], r["state"], r["attempts"], r["remote_id"], r["last_error"], r["delivered_at"]) == (
        "desk-3-open", "pending", 0, None, None, None)


# -- maintenance windows ----------------------------------------------------------------------
def test_maintenance_windows_are_saved_replaced_and_listed(store: Store) -> None:
    store.save_maintenance(s.window("mw-b", T0 + 100, T0 + 200))
    store.save_maintenance(s.window("mw-a", T0 + 100, T0 + 300))
    store.save_maintenance(s.window("mw-c", T0, T0 + 50))
    assert [w["id"] for w in store.list_maintenance()] == ["mw-c", "mw-a", "mw-b"]  # by start, then id
    ended = {**s.window("mw-a", T0 + 100, T0 + 300), "end": T0 + 150, "ended_by": "li"}
    store.save_maintenance(ended)
    assert [w for w in store.list_maintenance() if w["id"] == "mw-a"] == [ended]
    assert [w["id"] for w in store.list_maintenance(ending_after=T0 + 150)] == ["mw-b"]  # strictly later
    assert [w["id"] for w in store.list_maintenance(ending_after=T0 + 149)] == ["mw-a", "mw-b"]


# -- schema and read-only opening -------------------------------------------------------------
def test_a_new_store_is_at_the_newest_schema(store: Store) -> None:
    assert store.schema_version() == LATEST


def test_a_read_only_store_reads_and_refuses_writes(store: Store, backend: Backend, open_store: Callable[..., Store]) -> None:
    backend.require("readonly_open")
    store.commit(base_batch())
    ro = open_store(readonly=True)
    assert snapshot(ro) == snapshot(store)
    assert ro.schema_version() == LATEST
    with pytest.raises(StoreError):
        ro.commit(second_batch())
    with pytest.raises(StoreError):
        ro.save_maintenance(s.window("mw-1", T0, T0 + 1))
    with pytest.raises(StoreError):
        ro.outbox_reset_leases()
    assert snapshot(ro) == snapshot(store)
    store.commit(second_batch())
    assert snapshot(ro) == snapshot(store)  # it sees later commits


def test_a_batch_repeating_a_row_keeps_the_last_state_and_every_appended_row(store: Store) -> None:
    """The same alarm, ticket or key twice in one batch: the later state wins (backends that
    write a batch as multi-row statements must not fail or keep the first)."""
    store.commit(BatchWrite(
        alarms=[s.alarm(1, count=1), s.alarm(2), s.alarm(1, count=5)],
        tickets=[s.ticket(1), s.ticket(1, status="acknowledged")],
        timeline=[s.entry(1, T0, "opened"), s.entry(1, T0, "opened")],
        delivery_keys=[("k", T0), ("k", T0 + 1)],
        meta={"m": "1"},
    ))
    assert [(a["id"], a["count"]) for a in store.list_alarms()] == [(2, 1), (1, 5)]
    assert [t["status"] for t in store.list_tickets()] == ["acknowledged"]
    assert len(store.timeline(1)) == 2 and store.load_delivery_keys(0.0) == [("k", T0 + 1)]
    big = [s.alarm(i) for i in range(1, 2502)]  # more rows than one statement takes
    store.commit(BatchWrite(alarms=big, delivery_keys=[(f"d{i}", T0) for i in range(2501)]))
    assert len(store.list_alarms(limit=5000)) == 2501 and len(store.load_delivery_keys(0.0)) == 2502


# -- inventory (devices kept in the store) -----------------------------------------------------
def _row(dev_id: str, **kw: Any) -> dict[str, Any]:
    return {"id": dev_id, "name": kw.get("name", ""), "class": kw.get("cls", "network.switch"), "site": "hq",
            "region": "", "policy": "p", "parent": kw.get("parent", ""), "addresses": ["10.0.0.1"], "aliases": [],
            "heartbeat_interval": kw.get("interval"), "poll": "snmp"}


def test_devices_are_saved_replaced_removed_and_their_changes_logged(store: Store) -> None:
    store.save_devices([{"device": "b", "action": "add", "data": _row("b")},
                        {"device": "a", "action": "add", "data": _row("a", interval=30.0)}], "ops:li", T0)
    assert [d["id"] for d in store.list_devices()] == ["a", "b"]  # by id
    assert store.list_devices()[0] == _row("a", interval=30.0)  # exactly as saved
    store.save_devices([{"device": "a", "action": "update", "data": _row("a", name="core")},
                        {"device": "b", "action": "remove", "data": None},
                        {"device": "zz", "action": "remove", "data": None}], "ops:wang", T0 + 10)
    assert store.list_devices() == [_row("a", name="core")]
    log = store.device_changes()
    assert [(c["device"], c["action"], c["actor"], c["at"]) for c in log] == [
        ("zz", "remove", "ops:wang", T0 + 10), ("b", "remove", "ops:wang", T0 + 10),
        ("a", "update", "ops:wang", T0 + 10), ("a", "add", "ops:li", T0), ("b", "add", "ops:li", T0)]
    assert [c["action"] for c in store.device_changes("a")] == ["update", "add"]
    assert store.device_changes("a", limit=1)[0]["data"] == _row("a", name="core")
    assert store.device_changes("b")[0]["data"] is None
    store.save_devices([], "x", T0)  # nothing to do, nothing logged
    assert len(store.device_changes()) == 5


def test_every_device_save_bumps_the_inventory_version_in_its_transaction(
    store: Store, open_store: Callable[..., Store]
) -> None:
    """What the other leaders of a partitioned central poll: one cheap read that moves with
    every saved change, and only then (a failed or empty save leaves it)."""
    other = open_store()  # another process on the same store
    assert other.counter(INVENTORY_VERSION) == 0  # never bumped
    store.save_devices([{"device": "a", "action": "add", "data": _row("a")}], "li", T0)
    assert other.counter(INVENTORY_VERSION) == 1
    store.save_devices([{"device": "a", "action": "update", "data": _row("a", name="core")},
                        {"device": "b", "action": "add", "data": _row("b")}], "li", T0 + 1)
    assert other.counter(INVENTORY_VERSION) == 2  # one per save, not per device
    store.save_devices([], "li", T0 + 2)
    bad: dict[str, Any] = {"device": None, "action": "add", "data": _row("x")}
    with pytest.raises(StoreError):
        store.save_devices([bad], "li", T0 + 3)  # type: ignore[list-item]
    assert other.counter(INVENTORY_VERSION) == 2
    store.save_devices([{"device": "b", "action": "remove", "data": None}], "li", T0 + 4)
    assert other.counter(INVENTORY_VERSION) == 3
    assert other.counter(RULES_RELOADS) == 0  # counters are independent


def test_concurrent_counter_bumps_are_each_counted(store: Store, open_store: Callable[..., Store]) -> None:
    stores = [store, open_store(), open_store()]
    got: list[int] = []
    lock = threading.Lock()

    def bump(st: Store) -> None:
        for _ in range(20):
            v = st.bump_counter(RULES_RELOADS)
            with lock:
                got.append(v)

    threads = [threading.Thread(target=bump, args=(st,)) for st in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 61))  # each bump its own value, none lost
    assert store.counter(RULES_RELOADS) == 60 and store.counter(INVENTORY_VERSION) == 0


def test_a_device_save_that_fails_changes_nothing(store: Store) -> None:
    store.save_devices([{"device": "a", "action": "add", "data": _row("a")}], "li", T0)
    before = (store.list_devices(), store.device_changes())
    many = [{"device": f"d{i}", "action": "add", "data": _row(f"d{i}")} for i in range(50)]
    bad: dict[str, Any] = {"device": None, "action": "add", "data": _row("x")}  # id NOT NULL
    with pytest.raises(StoreError):
        store.save_devices([*many, bad], "li", T0 + 1)  # type: ignore[list-item]
    assert (store.list_devices(), store.device_changes()) == before


def test_ten_thousand_devices_in_one_save(store: Store) -> None:
    store.save_devices([{"device": f"d{i:05}", "action": "add", "data": _row(f"d{i:05}")} for i in range(10_000)],
                       "import", T0)
    assert len(store.list_devices()) == 10_000
    assert len(store.device_changes(limit=20_000)) == 10_000


def test_the_first_delivered_report_of_a_ticket_is_found(store: Store) -> None:
    _outbox(store, ("mail", 1, "restore"), ("mail", 1, "report"), ("boss", 1, "report"), ("mail", 2, "report"))
    ids = {(r["connector"], r["ticket_id"], r["kind"]): r["id"] for r in store.outbox_list()}
    store.outbox_delivered(ids["mail", 1, "restore"], T0, None, "mail", 1, "k1")
    assert store.outbox_report_delivered(1) is None  # a notice is not the report
    store.outbox_failed(ids["mail", 2, "report"], "refused")
    assert store.outbox_report_delivered(2) is None  # failed is not delivered
    store.outbox_delivered(ids["boss", 1, "report"], T0 + 20, None, "boss", 1, "k1")
    store.outbox_delivered(ids["mail", 1, "report"], T0 + 10, None, "mail", 1, "k1")
    assert store.outbox_report_delivered(1) == ("mail", T0 + 10)
    assert store.outbox_report_delivered(3) is None
