"""The board and API of a partitioned central (P = 2 and 3, two instances sharing the
partitions): either instance lists the tickets of every partition; an ack sent to one
instance for a ticket whose partition the other leads is forwarded to that partition's
child and applied once, and shows on the first instance's change stream as the child's own
stream shows it (live, same stream); while the owning partition has no reachable leader a change is
answered 503 with ``Retry-After`` and nothing is written, and once another instance
leads it the same change goes through; ``/api/v1/sites`` shows each site's link state and
the backlog its edge's heartbeat reports.

Real ``nats-server -js``, real PostgreSQL, real central processes (supervisor + children);
the edges are simulated by the test speaking their protocol (as in
tests/e2e/test_forward_partitions.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from gateway.forward.config import partition_of
from tests.fixtures.natsjs import JetStreamServer
from tests.helpers import ROOT, SseReader, base_config, wait_until, write_config
from tests.store_contract.backends import POSTGRESQL, pg_dsn, pg_schema

LEASE = 2.0
TOKEN = "op-token-for-the-partitioned-board"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _sites(P: int) -> list[str]:
    """One site per partition (found by the hash itself)."""
    out: dict[int, str] = {}
    i = 0
    while len(out) < P:
        out.setdefault(partition_of(f"site-{i}", P), f"site-{i}")
        i += 1
    return [out[p] for p in range(P)]


def _free_tcp() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def location(tmp_path: Path) -> Iterator[str]:
    loc = POSTGRESQL.location(tmp_path)
    yield loc
    POSTGRESQL.drop(loc)


class Central:
    """One central instance (the partition supervisor) with its board and API."""

    def __init__(self, tmp: Path, name: str, location: str, js_url: str, P: int, **sections: Any) -> None:
        self.name = name
        SITES = _sites(P)
        self.port = _free_tcp()
        policies = {"fast": {"customer": "Acme Mining", "levels": {"3": {"response": "1h"}}}}
        cfg = base_config(
            tmp / name,
            store={"backend": "postgresql", "dsn": pg_dsn(), "schema": pg_schema(location)},
            ha={"enabled": True, "lease": f"{LEASE}s", "name": name},
            forward={"mode": "central", "servers": [js_url], "partitions": P, "ack_wait": "2s",
                     "edge_interval": "60s"},
            api={"enabled": True, "host": "127.0.0.1", "port": self.port,
                 "tokens": [{"token": TOKEN, "role": "operator", "name": "noc-desk"}]},
            policies=sections.pop("policies", policies),
            inventory={"default_policy": "fast"},
            devices=[d for s in SITES for d in (
                {"id": f"edge-{s}", "class": "gateway.edge", "site": s, "policy": "fast"},
                {"id": f"sw-{s}", "class": "network.switch", "site": s, "policy": "fast"},
            )],
            **sections,
        )
        cfg["gateway"]["instance"] = "noc"
        self.cfg = write_config(tmp / f"{name}.toml", cfg)
        self.log = tmp / f"{name}.log"
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(self.cfg)],
                                         stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=20)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9 the supervisor and its children (its whole process group)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

        def gone() -> bool:  # the children too (a request in flight to a dying one is a 502)
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_until(gone, 10)

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.kill()


def _db(location: str) -> psycopg.Connection[Any]:
    return psycopg.connect(pg_dsn(), autocommit=True, options=f"-c search_path={pg_schema(location)}")


def _holders(location: str) -> dict[int, str]:
    """partition → the member whose child holds its unexpired lease."""
    try:
        with _db(location) as db:
            rows = db.execute("SELECT name, holder FROM gateway_lease WHERE name LIKE 'partition/%' "
                              "AND expires_at > EXTRACT(EPOCH FROM clock_timestamp())").fetchall()
    except psycopg.Error:
        return {}
    return {int(n.split("/")[1]): str(h).partition("#")[0] for n, h in rows}


def _rows(location: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with _db(location) as db:
        return list(db.execute(sql, args).fetchall())


async def _publish(url: str, P: int) -> None:
    """Each site's edge forwards one link-down of its switch."""
    await _forward(url, P, [(site, f"sw-{site}", "IF-MIB::linkDown", "network.switch") for site in _sites(P)])


async def _forward(url: str, P: int, events: list[tuple[str, str, str, str]]) -> None:
    """Each (site, device, event name, class): the site's edge forwards that trap once."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        for site, device, name, cls in events:
            body = {"ts": time.time(), "source": "snmp", "device": device, "name": name,
                    "attrs": {"ifIndex": 1, "ifDescr": "eth1"}, "peer": "127.0.0.1", "site": site,
                    "edge": f"edge-{site}", "class": cls}
            msg_id = f"edge-{site}/1" if name == "IF-MIB::linkDown" else f"edge-{site}/{device}/{name}"
            await js.publish(f"gw.ev.{partition_of(site, P)}.{site}", json.dumps(body).encode(), timeout=10,
                             headers={"Nats-Msg-Id": msg_id})
    finally:
        await nc.close()


async def _heartbeat(url: str, site: str, queued: int, P: int) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        body = {"edge": f"edge-{site}", "site": site, "ts": time.time(), "queued": queued, "dropped": 0}
        await nc.publish(f"gw.hb.{partition_of(site, P)}.{site}", json.dumps(body).encode())
        await nc.flush()
    finally:
        await nc.close()


def _stream_ready(url: str) -> bool:
    async def check() -> bool:
        import nats

        nc = await nats.connect(url)
        try:
            await nc.jetstream().stream_info("GATEWAY")
            return True
        except Exception:  # noqa: BLE001 - not created yet
            return False
        finally:
            await nc.close()

    return asyncio.run(check())


def _ids(c: Central) -> list[int]:
    r = c.http.get("/api/v1/tickets", headers=AUTH)
    return sorted(t["id"] for t in r.json()) if r.status_code == 200 else []


def _acks(location: str, tid: int) -> int:
    return len(_rows(location, "SELECT 1 FROM timeline WHERE ticket_id = %s AND kind = 'acknowledge'", tid))


@pytest.mark.parametrize("P", [2, 3])
def test_either_instance_reads_all_partitions_and_forwards_changes_to_the_owner(
    tmp_path: Path, jetstream: JetStreamServer, location: str, P: int
) -> None:
    SITES = _sites(P)
    a = Central(tmp_path, "A", location, jetstream.url, P)
    b = Central(tmp_path, "B", location, jetstream.url, P)
    try:
        wait_until(lambda: len(_holders(location)) == P and set(_holders(location).values()) == {"A", "B"}, 60)
        wait_until(lambda: _stream_ready(jetstream.url), 20)
        asyncio.run(_publish(jetstream.url, P))
        # Either instance lists the tickets of both partitions (one led by each instance).
        wait_until(lambda: len(_ids(a)) == P and len(_ids(b)) == P, 30)
        ids = _ids(a)
        assert _ids(b) == ids and sorted(i % P for i in ids) == list(range(P)), ids
        board = a.http.get("/api/v1/board", headers=AUTH)
        assert board.status_code == 200 and len(board.json()["tickets"]) == P, board.text
        assert b.http.get("/api/v1/tickets", headers={}).status_code == 401  # authentication as anywhere

        # An ack sent to A for the ticket of the partition B leads: B's child applies it, once;
        # A's change stream (the board's) shows it live, as a new ticket made there, on the
        # same stream (no second hello: no reconnect).
        owner = _holders(location)
        tid = next(i for i in ids if owner[i % P] == "B")
        site_b = next(s for s in SITES if owner[partition_of(s, P)] == "B")
        child = str(_rows(location, "SELECT url FROM gateway_lease WHERE name = %s",
                          f"partition/{partition_of(site_b, P)}")[0][0])
        # A's stream is live once its loop has heard the LISTEN (a stream opened before is ended).
        wait_until(lambda: "change feed: streams live" in a.text(), 30)
        with SseReader(f"http://127.0.0.1:{a.port}", AUTH) as events, SseReader(child, AUTH) as leader:
            r = a.http.post(f"/api/v1/tickets/{tid}/acknowledge", headers=AUTH, json={"note": "seen at the NOC"})
            assert r.status_code == 200, r.text
            made = a.http.post("/api/v1/tickets", headers=AUTH, json={
                "device": f"sw-{site_b}", "level": 3, "title": "fan noise", "reported_by": "caller", "channel": "phone"})
            assert made.status_code == 201 and made.headers["x-gateway-partition"] == str(partition_of(site_b, P))
            new = made.json()["id"]
            wait_until(lambda: {(tid, "acknowledged"), (new, "open")} <= events.tickets(), 15)
            assert [e for e, _ in events.got].count("hello") == 1, events.got
            assert events.ids == sorted(events.ids) and len(set(events.ids)) == len(events.ids), events.ids
            # rendered as the leader's own stream renders it
            wait_until(lambda: (new, "open") in leader.tickets(), 15)
            mine = next(d for e, d in events.got if e == "ticket" and d["id"] == new)
            theirs = next(d for e, d in leader.got if e == "ticket" and d["id"] == new)
            def fixed(t: dict[str, Any]) -> dict[str, Any]:  # without what depends on the moment of rendering
                return {**{k: v for k, v in t.items() if k != "snapshot_at"},
                        "clocks": [(c["kind"], c["target_seconds"], c["started_at"]) for c in t["clocks"]]}

            assert fixed(mine) == fixed(theirs) and mine["title"] == "fan noise" and mine["device"] == f"sw-{site_b}"
        ids.append(new)
        assert r.json()["status"] == "acknowledged" and r.headers["x-gateway-partition"] == str(tid % P)
        detail = a.http.get(f"/api/v1/tickets/{tid}", headers=AUTH).json()
        assert [e["kind"] for e in detail["timeline"]].count("acknowledge") == 1, detail["timeline"]
        assert _acks(location, tid) == 1
        r = a.http.post(f"/api/v1/tickets/{tid}/acknowledge", headers=AUTH, json={"note": "again"})
        assert r.status_code == 409 and _acks(location, tid) == 1, r.text

        # /sites: each site's link state; the backlog the edge's heartbeat reports.
        asyncio.run(_heartbeat(jetstream.url, SITES[0], 7, P))

        def site(c: Central, name: str) -> dict[str, Any]:
            got = c.http.get("/api/v1/sites", headers=AUTH, params={"customer": "Acme Mining"}).json()["sites"]
            return next(s for s in got if s["site"] == name)

        wait_until(lambda: site(a, SITES[0])["link"] == "up" and site(b, SITES[0])["link"] == "up", 10)
        s0, s1 = site(a, SITES[0]), site(a, SITES[1])
        assert s0["backlog"] == 7 and s0["edges"][0]["edge"] == f"edge-{SITES[0]}" and s0["partition"] == 0, s0
        assert s1["link"] == "unknown" and s1["backlog"] is None and s1["partition"] == 1, s1
        assert a.http.get("/api/v1/sites", headers=AUTH, params={"customer": "nobody"}).json()["sites"] == []

        # B dies (kill -9, children with it): its partition has no reachable leader until A
        # takes it over; a change for it is refused with Retry-After, and nothing is written.
        other = next(i for i in ids if owner[i % P] == "A")
        b.kill()
        r = a.http.post(f"/api/v1/tickets/{tid}/arrive", headers=AUTH, json={"note": "engineer on site"})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
        assert a.http.get(f"/api/v1/tickets/{tid}", headers=AUTH).json()["status"] == "acknowledged"
        # A's own partition still takes changes meanwhile.
        r = a.http.post(f"/api/v1/tickets/{other}/acknowledge", headers=AUTH, json={"note": "mine"})
        assert r.status_code == 200, r.text
        # Once A leads B's former partition the same change goes through.
        wait_until(lambda: _holders(location) == dict.fromkeys(range(P), "A"), 30)

        def arrived() -> bool:
            got = a.http.post(f"/api/v1/tickets/{tid}/arrive", headers=AUTH, json={"note": "engineer on site"})
            assert got.status_code in (200, 503), got.text
            return got.status_code == 200

        wait_until(arrived, 15, interval=0.3)
        assert a.http.get(f"/api/v1/tickets/{tid}", headers=AUTH).json()["status"] == "on_site"
        assert len(_rows(location, "SELECT 1 FROM timeline WHERE ticket_id = %s AND kind = 'arrive'", tid)) == 1
        assert a.http.get("/healthz").json()["leaders"] == {str(p): _lead(location, p) for p in range(P)}
    finally:
        b.stop()
        a.stop()


def _lead(location: str, p: int) -> str:
    return str(_rows(location, "SELECT holder FROM gateway_lease WHERE name = %s", f"partition/{p}")[0][0])


def test_a_window_made_through_the_api_suppresses_in_every_partition(
    tmp_path: Path, jetstream: JetStreamServer, location: str
) -> None:
    """A maintenance window made through the API is written by partition 0's leader; the
    leader of another partition follows it from the store, so a fault there is suppressed
    (no ticket), while a site outside the window gets its ticket."""
    P = 2
    s0, s1 = _sites(P)
    a = Central(tmp_path, "A", location, jetstream.url, P)
    try:
        wait_until(lambda: len(_holders(location)) == P, 60)
        wait_until(lambda: _stream_ready(jetstream.url), 20)
        end = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()
        r = a.http.post("/api/v1/maintenance", headers=AUTH, json={"sites": [s1], "end": end, "reason": "fibre works"})
        assert r.status_code == 201, r.text
        assert r.headers.get("x-gateway-partition") == "0"
        wait_until(lambda: "maintenance windows followed from the store: 1" in a.text(), 20)
        asyncio.run(_publish(jetstream.url, P))
        wait_until(lambda: len(_rows(location, "SELECT 1 FROM alarms")) == P, 30)
        wait_until(lambda: len(_ids(a)) == 1, 30)
        assert [t["site"] for t in a.http.get("/api/v1/tickets", headers=AUTH).json()] == [s0]
        states = dict(_rows(location, "SELECT device, state FROM alarms"))
        assert states == {f"sw-{s0}": "active", f"sw-{s1}": "suppressed"}, states
        # systemctl reload: the supervisor passes SIGHUP on, and every partition's child reloads.
        before = a.text().count("reloaded: ")
        a.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: a.text().count("reloaded: ") >= before + P, 30)
        assert "reload: passed to 2 partition children" in a.text()
        assert a.proc.poll() is None
    finally:
        a.stop()


_PROBE_PACK = """
[pack]
name = "probe"
version = "1"

[[rules]]
id = "probe-failed"
event = "TEST-MIB::probeFailed"
level = 3
key = "{device}/probe"
title = "Probe failed on {device}"
"""


def test_devices_and_rules_reloads_made_through_the_api_reach_every_partition(
    tmp_path: Path, jetstream: JetStreamServer, location: str
) -> None:
    """A device added through the supervisor's API is written by partition 0's leader; the
    supervisor's board and the leader of the other partition take it from the store within
    seconds, so a trap for it at a site of that partition is decided under the device's
    own contract. A rules reload through the API is carried out by every partition's
    leader: a bad pack is rejected by each (one line each, old rules kept), a good one
    classifies an event no rule classified before, at the sites of both partitions."""
    P = 2
    s0, s1 = _sites(P)
    packs = tmp_path / "packs"
    packs.mkdir()
    a = Central(tmp_path, "A", location, jetstream.url, P, rules={"packs": ["network"], "dirs": [str(packs)]},
                policies={"fast": {"customer": "Acme Mining", "levels": {"3": {"response": "1h"}}},
                          "gold": {"customer": "Gold Fields", "levels": {"3": {"response": "4h"}}}})
    try:
        wait_until(lambda: len(_holders(location)) == P, 60)
        wait_until(lambda: _stream_ready(jetstream.url), 20)
        new = f"rtr-{s1}"
        r = a.http.put(f"/api/v1/devices/{new}", headers=AUTH,
                       json={"class": "network.router", "site": s1, "policy": "gold"})
        assert r.status_code == 200 and r.headers.get("x-gateway-partition") == "0", r.text
        # The supervisor's own read model (its board, /devices) sees it within seconds ...
        wait_until(lambda: a.http.get(f"/api/v1/devices/{new}", headers=AUTH).status_code == 200, 15)
        # ... and so does the leader of the partition of its site: a trap for it there is
        # decided under its own contract (unknown to that leader, the default one).
        wait_until(lambda: "partition 1: devices followed from the store" in a.text(), 20)
        asyncio.run(_forward(jetstream.url, P, [(s1, new, "IF-MIB::linkDown", "network.router")]))
        wait_until(lambda: len(_rows(location, "SELECT 1 FROM alarms")) == 1, 30)  # its ticket in the same commit
        tickets = _rows(location, "SELECT device, policy, id %% 2 FROM tickets")
        assert tickets == [(new, "gold", 1)], tickets

        # A bad pack: partition 0's leader rejects it (422) and asks the others anyway; each
        # logs why in one line and keeps the rules it has.
        (packs / "probe.toml").write_text(_PROBE_PACK.replace("level = 3", "level = 9"))
        rejected = a.text().count("reload rejected")
        r = a.http.post("/api/v1/rules/reload", headers=AUTH)
        assert r.status_code == 422 and r.headers.get("x-gateway-partition") == "0", r.text
        wait_until(lambda: a.text().count("reload rejected") >= rejected + P, 20)
        # A good one: asked of every partition, carried out by every partition's leader.
        (packs / "probe.toml").write_text(_PROBE_PACK)
        reloaded = a.text().count("reloaded: ")
        r = a.http.post("/api/v1/rules/reload", headers=AUTH)
        assert r.status_code == 200, r.text
        asked = r.json()["result"]["partitions"]
        assert asked["requested"] == "all" and asked["count"] == P and asked["reloaded_here"] == 0, asked
        wait_until(lambda: a.text().count("reloaded: ") >= reloaded + P, 20)

        asyncio.run(_forward(jetstream.url, P, [(s0, f"sw-{s0}", "TEST-MIB::probeFailed", "network.switch"),
                                                (s1, new, "TEST-MIB::probeFailed", "network.router")]))
        probes = "SELECT device, id FROM alarms WHERE rule = 'probe-failed'"
        wait_until(lambda: len(_rows(location, probes)) == P, 30)
        assert {d: aid % P for d, aid in _rows(location, probes)} == {f"sw-{s0}": 0, new: 1}
        log = a.text()
        assert log.count("reload rejected") == rejected + P and "Traceback" not in log
        # What the supervisor set for each child (its data dir, API port) is not a change.
        assert "take effect after a restart" not in log
    finally:
        a.stop()
