"""The edge's durable forward queue (``ForwardQueue``): rows committed with their batch,
read in order, deleted only up to an acknowledged seq, bounded by dropping the oldest
readings (counted), never faults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway import failpoints
from gateway.errors import StoreError
from gateway.store import BatchWrite, ForwardRow, Store
from tests.store_contract import samples as s
from tests.store_contract.backends import Backend

T0 = s.T0


@pytest.fixture(autouse=True)
def _needs(backend: Backend) -> None:
    backend.require("forward_queue")


def _row(i: int, fault: bool = True) -> ForwardRow:
    return ForwardRow(T0 + i, fault, {"name": f"e{i}", "n": i})


def test_rows_commit_with_their_batch_and_come_back_in_order(store: Any, open_store: Callable[..., Store]) -> None:
    store.commit(BatchWrite(forward=[_row(1), _row(2, False)]))
    store.commit(BatchWrite(forward=[_row(3)]))
    head = store.forward_head(10)
    assert [(ts, p["n"]) for _, ts, p in head] == [(T0 + 1, 1), (T0 + 2, 2), (T0 + 3, 3)]
    seqs = [seq for seq, _, _ in head]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert store.forward_delete(seqs[1]) == 2
    assert [p["n"] for _, _, p in open_store().forward_head()] == [3]  # durable, seen by a new opening
    # A seq is never handed out again, even after its row is gone.
    store.forward_delete(seqs[2])
    store.commit(BatchWrite(forward=[_row(4)]))
    [(seq4, _, _)] = store.forward_head()
    assert seq4 > seqs[2]


def test_a_failed_batch_leaves_no_row(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(failpoints.ARMED, "store_mid_commit", "raise")
    with pytest.raises(StoreError, match="store_mid_commit"):
        store.commit(BatchWrite(forward=[_row(1)], forward_limit=1))
    assert store.forward_head() == [] and store.forward_stats() == (0, 0)


def test_the_bound_drops_oldest_readings_only_and_counts_them(store: Any) -> None:
    store.commit(BatchWrite(forward=[_row(1), _row(2, False), _row(3, False), _row(4)], forward_limit=10))
    store.commit(BatchWrite(forward=[_row(i, i % 2 == 0) for i in range(5, 13)], forward_limit=10))
    # 12 rows, bound 10: the two oldest readings (2, 3) went.
    assert [p["n"] for _, _, p in store.forward_head(100)] == [1, 4, *range(5, 13)]
    assert store.forward_stats() == (10, 2)
    # Only faults left beyond the bound: they stay (faults are never dropped).
    store.commit(BatchWrite(forward=[_row(i) for i in range(13, 20)], forward_limit=10))
    assert [p["n"] for _, _, p in store.forward_head(100)] == [1, 4, 6, 8, 10, 12, *range(13, 20)]
    assert store.forward_stats() == (13, 2 + 4)  # the four readings left (5, 7, 9, 11) went
