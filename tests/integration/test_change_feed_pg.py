"""The PostgreSQL change feed (gateway.store.notify) against a real server: a batch far
larger than one notification can carry arrives whole, split into payloads PostgreSQL
accepts; the listener whose connection is killed says so, reconnects by itself and hears
the next commit; the notifier that cannot reach the database drops and counts, and sends
again once it can."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from gateway.store.notify import (
    PAYLOAD_MAX,
    ChangeListener,
    ChangeNotifier,
    Changes,
    channel_of,
    decode,
    encode,
)
from tests.helpers import wait_until
from tests.store_contract.backends import POSTGRESQL, pg_dsn


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    location = POSTGRESQL.location(tmp_path)
    s = POSTGRESQL.open(location)
    try:
        yield s
    finally:
        s.close()
        POSTGRESQL.drop(location)


def _batch(alarms: int, tickets: int, notices: int) -> tuple[list[Any], list[Any], list[Any]]:
    a = [SimpleNamespace(id=1_000_000 + i) for i in range(alarms)]
    t = [SimpleNamespace(id=2_000_000 + i) for i in range(tickets)]
    n = [(SimpleNamespace(id=3_000 + i), SimpleNamespace(kind="resolve", fraction=0.8, at=1.7e9 + i / 7))
         for i in range(notices)]
    return a, t, n


def test_payloads_stay_under_the_limit_and_lose_nothing() -> None:
    c = Changes(list(range(5000)), list(range(10**9, 10**9 + 3000)),
                [(i, "respond", 1.0, 1.7e9 + i / 3) for i in range(300)])
    payloads = encode(c)
    assert len(payloads) > 3
    assert all(len(p.encode()) <= PAYLOAD_MAX for p in payloads)
    back = [decode(p) for p in payloads]
    assert [i for b in back for i in b.alarms] == c.alarms  # type: ignore[union-attr]
    assert [i for b in back for i in b.tickets] == c.tickets  # type: ignore[union-attr]
    assert [n for b in back for n in b.notices] == c.notices  # type: ignore[union-attr]
    assert encode(Changes([7])) == ['{"a":[7]}']
    assert decode("not json") is None


def test_a_large_batch_arrives_whole_through_postgresql(store: Any) -> None:
    channel = channel_of(store.schema)
    heard: list[Changes] = []
    with psycopg.connect(pg_dsn(), autocommit=True) as ear:
        ear.execute(f'LISTEN "{channel}"')
        notifier = ChangeNotifier(store.conninfo, channel)
        notifier.start()
        try:
            alarms, tickets, notices = _batch(3000, 2000, 100)
            notifier.on_commit(alarms, tickets, notices)
            notifier.on_commit([], [], [])  # nothing changed: nothing sent
            notifier.on_commit([], [SimpleNamespace(id=5)], [])
            want = len(alarms) + len(tickets) + len(notices) + 1
            got = 0
            for n in ear.notifies(timeout=10):
                c = decode(n.payload)
                assert c is not None
                heard.append(c)
                got += len(c.alarms) + len(c.tickets) + len(c.notices)
                if got >= want:
                    break
        finally:
            notifier.stop()
    assert notifier.failures == 0 and notifier.dropped == 0 and notifier.sent == len(heard) > 2
    assert [i for c in heard for i in c.alarms] == [a.id for a in alarms]
    assert [i for c in heard for i in c.tickets] == [t.id for t in tickets] + [5]
    assert [n[:3] for c in heard for n in c.notices] == [(t.id, "resolve", 0.8) for t, _ in notices]


def test_the_listener_reconnects_after_its_connection_is_lost(store: Any) -> None:
    channel = channel_of(store.schema)
    heard: list[Changes] = []
    states: list[bool] = []
    lock = threading.Lock()

    def on_change(c: Changes) -> None:
        with lock:
            heard.append(c)

    listener = ChangeListener(store.conninfo, channel, on_change, states.append, backoff=(0.1, 0.5))
    notifier = ChangeNotifier(store.conninfo, channel)
    listener.start()
    notifier.start()
    try:
        wait_until(lambda: states == [True], 10)
        notifier.on_commit([SimpleNamespace(id=1)], [], [])
        wait_until(lambda: [c.alarms for c in heard] == [[1]], 10)
        pid = listener.backend_pid()
        with psycopg.connect(pg_dsn(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(lambda: states == [True, False, True], 10)
        assert listener.connects == 2 and listener.backend_pid() != pid
        notifier.on_commit([], [SimpleNamespace(id=2)], [])
        wait_until(lambda: [c.tickets for c in heard] == [[], [2]], 10)
    finally:
        notifier.stop()
        listener.stop()
    assert states == [True, False, True, False]  # stopping: not listening any more


def test_a_notifier_without_its_database_drops_counts_and_recovers(store: Any, caplog: Any) -> None:
    channel = channel_of(store.schema)
    notifier = ChangeNotifier(store.conninfo, channel)
    bad = ChangeNotifier(store.conninfo + " port=1", channel)  # nobody listens on port 1
    assert notifier.send([Changes([1])])
    assert not bad.send([Changes([1])]) and not bad.send([Changes([2])])
    assert bad.failures == 2 and bad.dropped == 2
    assert sum("notifications not sent" in r.getMessage() for r in caplog.records) == 1  # one line, not one per batch
    bad.conninfo = store.conninfo
    assert bad.send([Changes([3])]) and bad.sent == 1
    notifier.stop()
    bad.stop()


async def test_the_notifiers_counters_are_in_metrics(tmp_path: Path) -> None:
    """A gateway on PostgreSQL tells its commits through the notifier; ``/metrics`` shows
    what it sent and what it dropped (a drop is a change the other boards learn late)."""
    import re
    import time

    import httpx

    from gateway.app import Gateway
    from gateway.model import Event
    from tests.fixtures.api import OP, api_config
    from tests.helpers import committed, eventually
    from tests.store_contract.backends import pg_schema

    loc = POSTGRESQL.location(tmp_path)
    cfg = api_config(tmp_path, 0)
    cfg.store.backend, cfg.store.dsn, cfg.store.db_schema = "postgresql", pg_dsn(), pg_schema(loc)
    try:
        async with Gateway(cfg) as gw:
            assert gw.api is not None
            assert gw.pipeline.offer(Event(time.time(), "test", "sw-1", "IF-MIB::linkDown", {"ifIndex": 1}))
            await committed(gw.pipeline)

            async def sent() -> int:
                async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as http:  # type: ignore[union-attr]
                    text = (await http.get("/metrics", headers=OP)).text
                m = re.search(r'gateway_component_stat\{component="notifier",name="sent"\} (\S+)', text)
                assert m is not None, text[-2000:]
                assert re.search(r'gateway_component_stat\{component="notifier",name="dropped"\} 0\.0', text)
                return int(float(m.group(1)))

            assert await eventually(sent, timeout=10, what="the notifier sent nothing") >= 1
    finally:
        POSTGRESQL.drop(loc)
