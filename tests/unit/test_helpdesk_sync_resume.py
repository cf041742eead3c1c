"""The two-way help-desk sync carries on where it stopped after a restart: what people did
in the help desk while the gateway was down is applied once, and nothing already applied
is applied again. A real SQLite store keeps the position (committed the way the gateway's
single writer commits it); the help desk is an in-test connector that answers
``poll_changes`` from a list, as the HelpDesk interface documents (changes after
``since``, oldest first), with an injected clock."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.clock import ManualClock
from gateway.delivery.helpdesk.base import RemoteChange
from gateway.delivery.outbox import SyncPoller
from gateway.store import BatchWrite
from gateway.store.sqlite import SqliteStore


class _Store(SqliteStore):
    """The real store, with one help-desk ticket linked (R1 ↔ gateway ticket 1)."""

    def remote_links(self, connector: str) -> dict[str, int]:
        return {"R1": 1}


class _Desk:
    """A help desk's change list; ``poll_changes`` answers it as the interface says."""

    def __init__(self) -> None:
        self.changes: list[RemoteChange] = []

    async def poll_changes(self, remote_ids: Sequence[str], since: float) -> list[RemoteChange]:
        return [c for c in self.changes if c.remote_id in remote_ids and c.at > since]


def _change(status: str, at: float, note: str = "") -> RemoteChange:
    return RemoteChange(remote_id="R1", status=status, at=at, actor="user:7", note=note)


async def _poller(store: _Store, desk: _Desk, clock: ManualClock, applied: list[tuple[str, float]]) -> SyncPoller:
    async def apply(name: str, ticket: int, ch: RemoteChange) -> None:
        applied.append((ch.status, ch.at))

    async def save(values: dict[str, str]) -> None:
        store.commit(BatchWrite(meta=values))

    p = SyncPoller(store, {"hd": desk}, clock, apply, interval=3600, save=save)  # type: ignore[dict-item]
    await p.start()
    return p


async def test_changes_made_while_down_are_applied_once_after_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    desk = _Desk()
    store = _Store(tmp_path / "gw.db")
    applied: list[tuple[str, float]] = []

    first = await _poller(store, desk, clock, applied)
    clock.advance(30)
    desk.changes.append(_change("comment", clock.now() - 1, "on my way"))
    assert await first.poll_once() == 1
    await first.stop()

    # Down for an hour; meanwhile a person acknowledges and later resolves it there.
    clock.advance(600)
    desk.changes.append(_change("acknowledged", clock.now()))
    clock.advance(1200)
    desk.changes.append(_change("resolved", clock.now(), "replaced the PSU"))
    clock.advance(1800)

    second = await _poller(store, desk, clock, applied)
    assert await second.poll_once() == 2
    assert await second.poll_once() == 0
    await second.stop()
    # Each change once, in order; the comment from before the restart not again.
    assert [s for s, _ in applied] == ["comment", "acknowledged", "resolved"]
    store.close()


async def test_a_change_inside_the_skew_window_is_not_applied_again_after_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    desk = _Desk()
    store = _Store(tmp_path / "gw.db")
    applied: list[tuple[str, float]] = []

    first = await _poller(store, desk, clock, applied)
    clock.advance(10)
    desk.changes.append(_change("comment", clock.now(), "on my way"))  # newest: within the skew margin
    assert await first.poll_once() == 1
    await first.stop()
    clock.advance(1)

    second = await _poller(store, desk, clock, applied)
    assert await second.poll_once() == 0
    await second.stop()
    assert applied == [("comment", desk.changes[0].at)]
    store.close()


async def test_an_unreadable_saved_position_is_one_warning_and_syncs_from_now(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock()
    desk = _Desk()
    store = _Store(tmp_path / "gw.db")
    store.commit(BatchWrite(meta={"sync.since.hd": "yesterday", "sync.seen.hd": "[]"}))
    applied: list[tuple[str, float]] = []
    p = await _poller(store, desk, clock, applied)
    desk.changes.append(_change("comment", clock.now() - 100))  # older than now minus the skew
    clock.advance(1)
    assert await p.poll_once() == 0
    await p.stop()
    assert any("sync position unreadable" in r.getMessage() for r in caplog.records)
    store.close()
