"""The daemon's SQLite writer does not checkpoint its WAL inside commits: a thread of its own
does (``SqliteStore.start_checkpointer``), so an INFORM or QoS 1 message never waits for a
checkpoint's copy and sync."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.store import BatchWrite
from gateway.store.sqlite import SqliteStore
from tests.helpers import wait_until


def _wal_frames(path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames already checkpointed), as a passive checkpoint reports."""
    with sqlite3.connect(path, timeout=0.0) as db:
        _busy, log, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(log), int(done)


def _write_keys(store: SqliteStore, first: int, n: int) -> None:
    for i in range(first, first + n):
        store.commit(BatchWrite(delivery_keys=[(f"k-{i}-" + "x" * 200, float(i))]))


def test_commits_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    store = SqliteStore(path)
    cp = store.start_checkpointer(interval=0.05)
    try:
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        _write_keys(store, 0, 2000)  # well past the 1,000 pages of SQLite's own checkpoints
        wait_until(lambda: cp.runs >= 2)
        log, done = _wal_frames(path)
        assert log > 0 and done == log, (log, done)  # everything written reached the database file
        assert len(store.load_delivery_keys(0.0)) == 2000
    finally:
        cp.stop()
        store.close()
    assert not cp._thread.is_alive()
    reopened = SqliteStore(path)
    try:
        assert len(reopened.load_delivery_keys(0.0)) == 2000
    finally:
        reopened.close()


def test_without_the_checkpointer_sqlite_checkpoints_inside_commits(tmp_path: Path) -> None:
    """The contrast that shows what the checkpointer takes off the commit path: a plain
    store's commits checkpoint by themselves (the WAL is recycled past 1,000 pages)."""
    path = tmp_path / "gateway.db"
    store = SqliteStore(path)
    try:
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        _write_keys(store, 0, 2000)
        log, _done = _wal_frames(path)
        assert log < 1500, log  # recycled by the commits' own checkpoints
    finally:
        store.close()
