"""HA with real processes on PostgreSQL: the operator talks to either instance. A standby
answers ``/healthz`` itself (role standby; ``?role=leader`` is 503 there, for keepalived)
and forwards the rest to the leader with the caller's credentials: a ticket reported, read,
acknowledged and commented through the standby reaches the store once, its SSE stream
carries the leader's changes; right after the leader is killed the standby still answers a
read (from the database), and then the former standby answers as the leader on the same
port."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.test_ha_fencing import LEASE, Instance, _holder
from tests.helpers import wait_until
from tests.store_contract.backends import POSTGRESQL, pg_dsn, pg_schema

OP_TOKEN = "op-token-for-the-ha-standby-test"


def _free_tcp() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def location(tmp_path: Path) -> Iterator[str]:
    loc = POSTGRESQL.location(tmp_path)
    yield loc
    POSTGRESQL.drop(loc)


def _api(port: int) -> dict[str, Any]:
    return {"api": {"enabled": True, "host": "127.0.0.1", "port": port,
                    "tokens": [{"token": OP_TOKEN, "role": "operator", "name": "noc-desk"}]}}


def _rows(location: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_dsn(), autocommit=True, options=f"-c search_path={pg_schema(location)}") as db:
        return list(db.execute(sql, args).fetchall())


def test_the_standby_serves_and_forwards_and_then_leads(tmp_path: Path, location: str) -> None:
    pa, pb = _free_tcp(), _free_tcp()
    a = Instance(tmp_path, "gw-a", location, extra=_api(pa))
    b: Instance | None = None
    sa = httpx.Client(base_url=f"http://127.0.0.1:{pa}", timeout=20)
    sb = httpx.Client(base_url=f"http://127.0.0.1:{pb}", timeout=20)
    auth = {"Authorization": f"Bearer {OP_TOKEN}"}
    try:
        wait_until(lambda: "gateway ready" in a.text() or a.proc.poll() is not None, 60)
        assert a.proc.poll() is None, a.text()
        b = Instance(tmp_path, "gw-b", location, extra=_api(pb))
        wait_until(lambda: "standby: gw-a holds the leader lease" in b.text(), 60)  # type: ignore[union-attr]
        wait_until(lambda: _get_ok(sb, "/healthz"), 30)

        h = sb.get("/healthz")
        assert h.status_code == 200 and h.json()["role"] == "standby" and h.json()["leader"] == "gw-a", h.text
        assert sb.get("/healthz", params={"role": "leader"}).status_code == 503
        assert sa.get("/healthz", params={"role": "leader"}).status_code == 200
        assert sa.get("/healthz").json()["role"] == "leader"

        # The caller's credentials go along, and only they: no token, no action.
        r = sb.post("/api/v1/tickets", json={"device": "sw-1", "level": 2, "title": "fan noise",
                                             "reported_by": "caller", "channel": "phone"})
        assert r.status_code == 401, r.text
        r = sb.post("/api/v1/tickets", headers=auth, json={"device": "sw-1", "level": 2, "title": "fan noise",
                                                           "reported_by": "caller", "channel": "phone"})
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        assert sb.get(f"/api/v1/tickets/{tid}", headers=auth).json()["title"] == "fan noise"  # a read
        assert sb.get("/", headers=auth).status_code == 200  # the board page

        seen: list[str] = []
        streaming = threading.Event()

        def listen() -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{pb}", timeout=httpx.Timeout(30, read=30)) as c, \
                    c.stream("GET", "/api/v1/events/stream", headers={**auth, "Accept": "text/event-stream"}) as s:
                streaming.set()
                for line in s.iter_lines():
                    seen.append(line)
                    if "ack through the standby" in line or "acknowledge" in line:
                        return

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        assert streaming.wait(20)
        r = sb.post(f"/api/v1/tickets/{tid}/acknowledge", headers=auth, json={"note": "ack through the standby"})
        assert r.status_code == 200, r.text
        t.join(30)
        assert any("acknowledge" in ln or "ack through the standby" in ln for ln in seen), seen[-5:]

        assert _rows(location, "SELECT count(*) FROM tickets") == [(1,)]
        acks = _rows(location, "SELECT actor FROM timeline WHERE ticket_id = %s AND kind = 'acknowledge'", tid)
        assert acks == [("noc-desk",)], acks  # once, as the caller

        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        during = sb.get(f"/api/v1/tickets/{tid}", headers=auth)  # no leader yet: read from the database
        assert during.status_code == 200 and during.json()["title"] == "fan noise", during.text
        wait_until(lambda: _holder(location) == "gw-b", 4 * LEASE + 20)
        wait_until(lambda: "gateway ready" in b.text(), 60)  # type: ignore[union-attr]
        wait_until(lambda: _get_ok(sb, "/healthz") and sb.get("/healthz").json().get("role") == "leader", 30)
        assert sb.get("/healthz", params={"role": "leader"}).status_code == 200
        r = sb.post(f"/api/v1/tickets/{tid}/comment", headers=auth, json={"note": "after the failover"})
        assert r.status_code == 200, r.text
        assert sb.get(f"/api/v1/tickets/{tid}", headers=auth).json()["id"] == tid
        assert _rows(location, "SELECT count(*) FROM timeline WHERE ticket_id = %s AND note = %s",
                     tid, "after the failover") == [(1,)]
    finally:
        sa.close()
        sb.close()
        a.stop()
        if b is not None:
            b.stop()


def _get_ok(c: httpx.Client, path: str) -> bool:
    try:
        return c.get(path).status_code == 200
    except httpx.HTTPError:
        return False
