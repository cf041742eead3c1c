"""(d) A partitioned central (P = 4) with real processes: instances join, leave (SIGTERM) and
die (kill -9); the partitions move and every forwarded event is committed once, every SLA
warning and breach fired once.

Real ``nats-server -js`` (free port, temp store), real PostgreSQL (a schema of its own), real
central processes (``python -m gateway run``: a supervisor per instance, a child per
partition it leads). The edges are simulated by the test speaking their protocol (subject
``gw.ev.<p>.<site>``, ``Nats-Msg-Id = <edge>/<seq>``, the JSON body of
:func:`gateway.forward.select.to_payload`): the edge side has its own tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.forward.config import partition_of
from tests.fixtures.natsjs import JetStreamServer
from tests.helpers import ROOT, base_config, wait_until, write_config
from tests.store_contract.backends import POSTGRESQL, pg_dsn, pg_schema

P = 4
LEASE = 2.0
PER_BATCH = 2  # link-down events per site per batch


def _sites() -> list[str]:
    """Two sites per partition (found by the hash itself, so every partition has work)."""
    out: dict[int, list[str]] = {p: [] for p in range(P)}
    i = 0
    while any(len(v) < 2 for v in out.values()):
        site = f"site-{i}"
        p = partition_of(site, P)
        if len(out[p]) < 2:
            out[p].append(site)
        i += 1
    return sorted(s for v in out.values() for s in v)


SITES = _sites()


@pytest.fixture
def location(tmp_path: Path) -> Iterator[str]:
    loc = POSTGRESQL.location(tmp_path)
    yield loc
    POSTGRESQL.drop(loc)


def _config(tmp: Path, name: str, location: str, js_url: str) -> Path:
    cfg = base_config(
        tmp / name,
        store={"backend": "postgresql", "dsn": pg_dsn(), "schema": pg_schema(location)},
        ha={"enabled": True, "lease": f"{LEASE}s", "name": name},
        forward={"mode": "central", "servers": [js_url], "partitions": P, "ack_wait": "2s",
                 "edge_interval": "300s"},
        policies={"fast": {"warn_at": [0.5], "levels": {"3": {"response": "3s"}}}},
        inventory={"default_policy": "fast"},
        devices=[d for s in SITES for d in (
            {"id": f"edge-{s}", "class": "gateway.edge", "site": s, "policy": "fast"},
            {"id": f"sw-{s}", "class": "network.switch", "site": s, "policy": "fast"},
        )],
    )
    cfg["gateway"]["instance"] = "noc"
    return write_config(tmp / f"{name}.toml", cfg)


class Central:
    """One central instance: ``python -m gateway run`` (the partition supervisor)."""

    def __init__(self, tmp: Path, name: str, location: str, js_url: str) -> None:
        self.name = name
        self.cfg = _config(tmp, name, location, js_url)
        self.log = tmp / f"{name}.log"
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(self.cfg)],
                                         stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


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


def _shape(location: str) -> list[int]:
    return sorted(Counter(_holders(location).values()).values()) if len(_holders(location)) == P else []


def _alarms(location: str) -> list[tuple[int, str, int, str]]:
    try:
        with _db(location) as db:
            return [(int(i), str(k), int(c), str(d)) for i, k, c, d in
                    db.execute("SELECT id, key, count, device FROM alarms WHERE device LIKE 'sw-%'").fetchall()]
    except psycopg.Error:
        return []


def _sla(location: str) -> dict[tuple[int, str], int]:
    with _db(location) as db:
        rows = db.execute("SELECT ticket_id, kind, count(*) FROM timeline WHERE kind IN ('sla_warning', 'sla_breach') "
                          "GROUP BY ticket_id, kind").fetchall()
    return {(int(t), str(k)): int(c) for t, k, c in rows}


def _tickets(location: str) -> list[tuple[int, str]]:
    with _db(location) as db:
        return [(int(i), str(d).removeprefix("sw-")) for i, d in db.execute("SELECT id, device FROM tickets").fetchall()]


async def _publish(url: str, batch: int, seqs: dict[str, int]) -> int:
    """Each site's edge publishes PER_BATCH link-downs (its next sequence numbers)."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    n = 0
    try:
        for site in SITES:
            for k in range(PER_BATCH):
                seq = seqs[site] = seqs.get(site, 0) + 1
                idx = batch * 10 + k
                body = {"ts": time.time(), "source": "snmp", "device": f"sw-{site}", "name": "IF-MIB::linkDown",
                        "attrs": {"ifIndex": idx, "ifDescr": f"eth{idx}"}, "peer": "127.0.0.1", "site": site,
                        "edge": f"edge-{site}", "class": "network.switch"}
                subject = f"gw.ev.{partition_of(site, P)}.{site}"
                await js.publish(subject, json.dumps(body).encode(), timeout=10,
                                 headers={"Nats-Msg-Id": f"edge-{site}/{seq}"})
                n += 1
    finally:
        await nc.close()
    return n


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


def test_d_partitions_move_on_join_leave_and_death_nothing_twice(
    tmp_path: Path, jetstream: JetStreamServer, location: str
) -> None:
    seqs: dict[str, int] = {}
    started = time.monotonic()
    a = Central(tmp_path, "A", location, jetstream.url)
    b = Central(tmp_path, "B", location, jetstream.url)
    c: Central | None = None
    sent = 0
    try:
        # Two instances: both hold partitions, a fair share each.
        wait_until(lambda: _shape(location) == [2, 2], 60)
        wait_until(lambda: _stream_ready(jetstream.url), 20)
        sent += asyncio.run(_publish(jetstream.url, 1, seqs))
        wait_until(lambda: len(_alarms(location)) == sent, 30)

        # A third joins: partitions move to it (2, 1, 1) while events keep arriving.
        c = Central(tmp_path, "C", location, jetstream.url)
        sent += asyncio.run(_publish(jetstream.url, 2, seqs))
        wait_until(lambda: _shape(location) == [1, 1, 2] and "C" in _holders(location).values(), 60)
        sent += asyncio.run(_publish(jetstream.url, 3, seqs))
        wait_until(lambda: len(_alarms(location)) == sent, 30)

        # One leaves (SIGTERM), one dies (kill -9): every partition moves to A within seconds.
        b.proc.terminate()
        os.kill(c.proc.pid, signal.SIGKILL)
        gone = time.monotonic()
        sent += asyncio.run(_publish(jetstream.url, 4, seqs))
        wait_until(lambda: _holders(location) == dict.fromkeys(range(P), "A"), 30)
        moved = time.monotonic() - gone
        assert b.proc.wait(40) == 0, b.text()
        c.proc.wait(10)
        wait_until(lambda: len(_alarms(location)) == sent, 30)

        # Nothing committed twice: one alarm per event (count 1), one ticket per alarm, each
        # ticket numbered in its site's partition.
        alarms = _alarms(location)
        assert len(alarms) == sent == len(SITES) * PER_BATCH * 4
        assert len({k for _i, k, _c, _d in alarms}) == sent
        assert all(cnt == 1 for _i, _k, cnt, _d in alarms), [x for x in alarms if x[2] != 1]
        wait_until(lambda: len(_tickets(location)) == sent, 20)
        tickets = _tickets(location)
        assert all(tid % P == partition_of(site, P) for tid, site in tickets), tickets
        # Every ticket's breach fired once, and no warning or breach twice, across all the moves
        # (a warning whose breach was also past when a new leader took the partition over is
        # not recorded late: the breach says more; the scheduler's rule, not the partitions').
        wait_until(lambda: sum(1 for _t, k in _sla(location) if k == "sla_breach") == sent, 30)
        sla = _sla(location)
        assert set(sla.values()) == {1}, {k: v for k, v in sla.items() if v != 1}
        assert sum(1 for _t, k in sla if k == "sla_warning") >= sent // 2
        assert a.stop() == 0, a.text()
        print(f"partitions moved {moved:.1f} s after the leave and the kill; test {time.monotonic() - started:.1f} s")
        assert moved < 4 * LEASE + 8
    finally:
        for inst in (a, b, c):
            if inst is not None:
                inst.stop()


def test_a_partitions_child_waiting_for_the_lease_stops_on_sigterm(tmp_path: Path, location: str) -> None:
    """A child whose partition moved away before it got the lease must end on SIGTERM
    (its supervisor's hand-over), not wait on for a lease that is no longer its to take."""
    from gateway.store.lease import Lease
    from gateway.store.postgresql import PostgresStore

    store = PostgresStore(pg_dsn(), schema=pg_schema(location))
    other = Lease(store.conninfo, "elsewhere#p0:1", ttl=60.0, name="partition/0")
    log = tmp_path / "child.log"
    try:
        assert other.try_acquire()
        cfg = _config(tmp_path, "Z", location, "nats://127.0.0.1:9")
        with log.open("ab") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(cfg), "--partition", "0",
                                     "--member", "Z"], stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            wait_until(lambda: "standby: elsewhere#p0:1 holds" in log.read_text(), 30)
            proc.terminate()
            assert proc.wait(15) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        assert "gateway ready" not in log.read_text()
    finally:
        other.close()
        store.close()
