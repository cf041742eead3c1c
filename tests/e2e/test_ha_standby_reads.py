"""HA with real processes on PostgreSQL: the leader is killed (kill -9) and, its lease being
long, nobody replaces it yet. The standby still serves the reads from the database (the
ticket list, a ticket with its timeline, the alarms, the board snapshot and page, the change
stream's hello), marked ``X-Gateway-Served-By``, with what the leader had committed; a change gets 503 with ``Retry-After`` and writes nothing. Then the
standby, told to stop, stops at once (exit 0)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from gateway.store.notify import channel_of
from tests.e2e.test_ha_fencing import Instance, _alarm_keys, _holder
from tests.e2e.test_ha_standby_api import OP_TOKEN, _api, _free_tcp, _get_ok, _rows
from tests.helpers import SseReader, wait_until
from tests.store_contract.backends import POSTGRESQL, pg_dsn, pg_schema

LEASE = 30.0  # nobody takes over during the test: the standby is on its own


@pytest.fixture
def location(tmp_path: Path) -> Iterator[str]:
    loc = POSTGRESQL.location(tmp_path)
    yield loc
    POSTGRESQL.drop(loc)


def _brief(tickets: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(t["id"], t["title"], t["status"], t["device"], t["level"]) for t in tickets]


def test_the_standby_serves_reads_from_the_database_while_nobody_leads(tmp_path: Path, location: str) -> None:
    pa, pb = _free_tcp(), _free_tcp()
    a = Instance(tmp_path, "gw-a", location, lease=LEASE, extra=_api(pa))
    b: Instance | None = None
    auth = {"Authorization": f"Bearer {OP_TOKEN}"}
    sa = httpx.Client(base_url=f"http://127.0.0.1:{pa}", timeout=20, headers=auth)
    sb = httpx.Client(base_url=f"http://127.0.0.1:{pb}", timeout=20)
    try:
        wait_until(lambda: "gateway ready" in a.text() or a.proc.poll() is not None, 60)
        assert a.proc.poll() is None, a.text()
        b = Instance(tmp_path, "gw-b", location, lease=LEASE, extra=_api(pb))
        wait_until(lambda: "standby: gw-a holds the leader lease" in b.text(), 60)  # type: ignore[union-attr]
        wait_until(lambda: _get_ok(sb, "/healthz"), 30)

        ids = []
        for title in ("fan noise", "door open"):
            r = sa.post("/api/v1/tickets", json={"device": "sw-1", "level": 2, "title": title,
                                                 "reported_by": "caller", "channel": "phone"})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        assert sa.post(f"/api/v1/tickets/{ids[0]}/acknowledge", json={"note": "on it"}).status_code == 200
        a.trap(5)
        wait_until(lambda: any(k.endswith("/5") for k in _alarm_keys(location)), 30)
        tickets = sa.get("/api/v1/tickets").json()
        alarms = sa.get("/api/v1/alarms").json()
        r = sb.get("/api/v1/tickets", headers=auth)  # the leader answers, through the standby
        assert r.status_code == 200 and "x-gateway-served-by" not in r.headers
        assert _brief(r.json()) == _brief(tickets)

        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        killed = time.monotonic()

        r = sb.get("/api/v1/tickets", headers=auth)
        assert r.status_code == 200, r.text
        assert r.headers["x-gateway-served-by"] == "standby gw-b (database)"
        assert _brief(r.json()) == _brief(tickets) and {t["id"] for t in tickets} >= set(ids)
        assert sb.get("/api/v1/tickets").status_code == 401  # the same tokens, checked here
        detail = sb.get(f"/api/v1/tickets/{ids[0]}", headers=auth).json()
        assert detail["status"] == "acknowledged"
        assert [(e["kind"], e["note"]) for e in detail["timeline"] if e["kind"] == "acknowledge"] == [
            ("acknowledge", "on it")]
        r = sb.get("/api/v1/alarms", headers=auth)
        assert r.status_code == 200 and [x["key"] for x in r.json()] == [x["key"] for x in alarms]
        board = sb.get("/api/v1/board", headers=auth).json()
        assert sorted(t["id"] for t in board["tickets"]) == sorted(t["id"] for t in tickets)
        assert [x["key"] for x in board["alarms"]] == [x["key"] for x in alarms]
        assert any(d["id"] == "sw-1" and d["open_alarms"] for d in board["devices"]), board["devices"]
        page = sb.get("/")
        assert page.status_code == 200 and "x-gateway-served-by" in page.headers

        # A change is not made by a standby: 503 with Retry-After, and nothing written.
        r = sb.post(f"/api/v1/tickets/{ids[1]}/acknowledge", headers=auth, json={"note": "from the standby"})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
        assert _rows(location, "SELECT count(*) FROM timeline WHERE note = %s", "from the standby") == [(0,)]

        h = sb.get("/healthz").json()
        assert h["role"] == "standby" and h["leader"] == "gw-a", h  # the lease has not lapsed yet

        # The change stream says hello (the board loads its snapshot), from the database.
        with httpx.stream("GET", f"http://127.0.0.1:{pb}/api/v1/events/stream",
                          headers={**auth, "Accept": "text/event-stream"}, timeout=10) as s:
            assert s.status_code == 200 and s.headers["x-gateway-served-by"] == "standby gw-b (database)"
            lines = s.iter_lines()
            assert next(lines).startswith("retry:") and next(lines) == "event: hello"

        assert _holder(location) == "gw-a" and time.monotonic() - killed < LEASE  # nobody took over meanwhile
        # A standby asked to stop (systemctl stop) stops at once: it never led, nothing to drain.
        b.proc.terminate()
        assert b.proc.wait(10) == 0, b.text()
        assert "stopped while standing by" in b.text()
    finally:
        sa.close()
        sb.close()
        a.stop()
        if b is not None:
            b.stop()


def _listening(location: str) -> list[int]:
    """The server processes LISTENing for the store's changes (their last query was LISTEN)."""
    return [int(r[0]) for r in _rows(location, "SELECT pid FROM pg_stat_activity WHERE query LIKE %s",
                                      f'LISTEN "{channel_of(pg_schema(location))}"')]


def test_the_standby_stream_carries_the_leaders_changes_live_and_survives_a_lost_listener(
        tmp_path: Path, location: str) -> None:
    """A standby that cannot reach its leader (its advertised address leads nowhere) serves
    the change stream from the database: the leader's commits arrive on it as ``ticket``
    messages, on the same stream. The standby's LISTEN connection killed: its streams end,
    the client comes back (``hello``: reload) and the next commit arrives live again."""
    pa, pb, nowhere = _free_tcp(), _free_tcp(), _free_tcp()
    a = Instance(tmp_path, "gw-a", location, lease=LEASE,
                 extra={**_api(pa), "ha": {"advertise_url": f"http://127.0.0.1:{nowhere}"}})
    b: Instance | None = None
    auth = {"Authorization": f"Bearer {OP_TOKEN}"}
    sa = httpx.Client(base_url=f"http://127.0.0.1:{pa}", timeout=20, headers=auth)

    def report(title: str) -> int:
        r = sa.post("/api/v1/tickets", json={"device": "sw-1", "level": 2, "title": title,
                                             "reported_by": "caller", "channel": "phone"})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    try:
        wait_until(lambda: "gateway ready" in a.text() or a.proc.poll() is not None, 60)
        assert a.proc.poll() is None, a.text()
        b = Instance(tmp_path, "gw-b", location, lease=LEASE, extra=_api(pb))
        wait_until(lambda: "standby: gw-a holds the leader lease" in b.text(), 60)  # type: ignore[union-attr]
        wait_until(lambda: len(_listening(location)) == 1, 30)
        # Live once the loop has heard it (a stream opened between LISTEN and that is ended).
        wait_until(lambda: "change feed: streams live" in b.text(), 30)  # type: ignore[union-attr]
        with SseReader(f"http://127.0.0.1:{pb}", auth) as events:
            first = report("fan noise")
            # The standby reads a changed row when it hears of it, so it shows the row as it is
            # then: the open ticket is seen before it is acknowledged, not after.
            wait_until(lambda: (first, "open") in events.tickets(), 15)
            assert sa.post(f"/api/v1/tickets/{first}/acknowledge", json={"note": "on it"}).status_code == 200
            wait_until(lambda: (first, "acknowledged") in events.tickets(), 15)
            assert [e for e, _ in events.got].count("hello") == 1 and not events.ended
            assert events.ids == sorted(events.ids)

            with psycopg.connect(pg_dsn(), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (_listening(location)[0],))
            wait_until(lambda: events.ended, 15)  # the stream ends: the board reloads
        wait_until(lambda: "change feed: listening again" in b.text(), 30)  # type: ignore[union-attr]
        wait_until(lambda: b.text().count("change feed: streams live") == 2, 30)  # type: ignore[union-attr]
        assert b.text().count("change feed: not listening") == 1
        with SseReader(f"http://127.0.0.1:{pb}", auth) as again:
            second = report("door open")
            wait_until(lambda: (second, "open") in again.tickets(), 15)
            assert not again.ended
    finally:
        sa.close()
        a.stop()
        if b is not None:
            b.stop()
