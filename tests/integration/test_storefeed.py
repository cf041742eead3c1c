"""The cross-process change stream (gateway.runtime.storefeed) on a real PostgreSQL: what a
writer's pipeline committed reaches a reader's bus through NOTIFY/LISTEN, split into
notices that PostgreSQL accepts; a reader whose connection is cut listens again by itself
and ends its open streams once, so boards reload what they may have missed."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import psycopg

from gateway.runtime.bus import ChangeBus
from gateway.runtime.storefeed import PAYLOAD_MAX, CommitNotifier, StoreFeed, payloads
from tests.helpers import eventually
from tests.store_contract.backends import pg_dsn


@dataclass
class _Row:
    id: int


def test_payloads_split_a_large_commit_into_notices_postgresql_accepts() -> None:
    sla = [("sla.warning", {"ticket_id": 7, "title": "x" * 100})]
    out = list(payloads(list(range(3000)), list(range(5000, 6500)), sla))
    assert len(out) > 1 and all(len(p.encode()) <= PAYLOAD_MAX for p in out)
    merged: dict[str, list[Any]] = {"a": [], "t": [], "s": []}
    for p in out:
        for k, v in json.loads(p).items():
            merged[k] += v
    assert merged["a"] == list(range(3000)) and merged["t"] == list(range(5000, 6500))
    assert merged["s"] == [["sla.warning", {"ticket_id": 7, "title": "x" * 100}]]
    # An SLA message too big for a notice goes as its ticket's id (the ticket is re-read).
    huge = [("sla.breach", {"ticket_id": 9, "title": "y" * 9000})]
    assert [json.loads(p) for p in payloads([], [], huge)] == [{"t": [9]}]


def _feed(bus: ChangeBus, channel: str) -> StoreFeed:
    return StoreFeed(pg_dsn(), bus, lambda i: {"id": i, "device": f"d{i}"}, lambda i: {"id": i, "status": "open"},
                     channel=channel)


async def test_commits_reach_the_readers_bus_and_a_cut_listener_comes_back() -> None:
    channel = f"gw_test_{id(object())}"
    bus = ChangeBus()
    sub = bus.subscribe()
    feed = _feed(bus, channel)
    feed.start()
    notifier = CommitNotifier(pg_dsn(), channel=channel)
    notifier.start()
    try:
        await eventually(lambda: feed.live, timeout=10)
        notifier.on_commit([_Row(1), _Row(2)], [_Row(10)], [])
        got = [await sub.get(10) for _ in range(3)]
        assert [(m["type"], m["data"]["id"]) for m in got if m] == [("alarm", 1), ("alarm", 2), ("ticket", 10)]

        # The database ends the reader's session: it listens again, and the open stream
        # ends once (``closed`` with reload) so its client reloads a snapshot.
        with psycopg.connect(pg_dsn(), autocommit=True) as db:
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE %s",
                       (f'LISTEN "{channel}"%',))
        end = await sub.get(15)
        assert end is not None and end["type"] == "closed" and end["data"] == {"reload": True}
        await eventually(lambda: feed.live and feed.reconnects == 1, timeout=15)
        again = bus.subscribe()
        notifier.on_commit([], [_Row(11)], [])
        m = await again.get(10)
        assert m is not None and (m["type"], m["data"]["id"]) == ("ticket", 11)
    finally:
        await asyncio.to_thread(notifier.close)
        await asyncio.to_thread(feed.close)
    assert notifier.sent == 2 and notifier.dropped == 0


async def test_a_writer_keeps_its_notices_while_the_database_is_away() -> None:
    """Nothing listens on a closed port: the notices stay queued (bounded, oldest dropped
    and counted), the writer is never held up."""
    notifier = CommitNotifier("host=127.0.0.1 port=9 user=postgres dbname=x connect_timeout=1", maxsize=3)
    notifier.start()
    try:
        for i in range(5):
            notifier.on_commit([_Row(i)], [], [])
        await eventually(lambda: notifier.dropped == 2, timeout=10)
        assert notifier.sent == 0
    finally:
        await asyncio.to_thread(notifier.close)
