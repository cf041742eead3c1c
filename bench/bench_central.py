"""Central throughput from 100 simulated edges, and catch-up after a 1-hour outage of 20 sites
(BENCHMARKS.md "Sites and a central NOC").

One process plays the edges: for each site it builds the forward-queue rows an edge would
hold (``gateway.forward.select.to_payload`` of the event, stored as ``gateway.store.sql.to_json``
writes it) and publishes them with the edge's own ``EdgeForwarder._publish`` (same subject
``ForwardConfig.subject("ev", site)``, same ``Nats-Msg-Id`` / ``Gw-Count`` / ``Gw-Prev``
headers, same batch body), ``batch`` events per message, sites interleaved. Everything is
published into a real ``nats-server -js`` **before** the central starts, so the publisher is
never the limit. The events are SNMP traps as an edge decided them: linkDown, later linkUp,
over 24 interfaces of 5 switches per site (alarms fold, some tickets open).

1. **Throughput**: ``--sites`` edges × ``--per-site`` events; a central (PostgreSQL, a fresh
   schema, the 100 sites' devices in its inventory) consumes them. Timed from the central's
   start (stream already full) until every message is acknowledged (an ack goes out only after
   the batch holding its events committed). Checked: consumed = N, acks pending 0, nothing
   left in the consumer. Compared, the same N events, with a standalone gateway on SQLite
   (and on PostgreSQL) fed in process through ``pipeline.offer`` (no JetStream, no UDP), timed
   until ``committed_events`` grew by N.
2. **Catch-up**: ``--outage-sites`` sites × ``--outage-s`` seconds at ``--site-rate`` events/s
   each, pre-published the same way (the buffered edges are simulated; their timestamps are
   the hour of the outage), then the central starts. Drain rate ÷ produced rate = how many
   times faster than real time. Order per site: the central's recorder sees each site's events
   in strictly increasing time (= sequence) order, its gap counter is 0, and its last seq per
   edge is the last one published.

    GATEWAY_BENCH_PG_DSN="host=127.0.0.1 port=5432 user=postgres dbname=gateway_test" \\
        .venv/bin/python -m bench.bench_central --rounds 3 [--sites 100 --per-site 400] \\
        [--outage-sites 20 --outage-s 3600 --site-rate 1] [--batch 64] [--only throughput|catchup]

The machine's load average is printed before and after: the figures only compare on a quiet
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from gateway.app import Gateway
from gateway.clock import SystemClock
from gateway.config import config_from_dict
from gateway.forward.config import ForwardConfig
from gateway.forward.edge import EdgeForwarder
from gateway.forward.select import to_payload
from gateway.model import Device, Event
from gateway.store.sql import to_json
from tests.fixtures.natsjs import JetStreamServer
from tests.helpers import base_config

DSN = os.environ.get("GATEWAY_BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
DEVICES = 5  # switches per site
IFACES = 24
DOWN, UP = "IF-MIB::linkDown", "IF-MIB::linkUp"


def site_id(s: int) -> str:
    return f"s{s:03d}"


def devices(sites: int) -> list[dict[str, Any]]:
    return [{"id": f"{site_id(s)}-sw{d}", "class": "network.switch", "site": site_id(s), "region": "bench",
             "policy": "mine-monitoring", "addresses": [f"10.{s // 250}.{s % 250}.{d + 1}"]}
            for s in range(sites) for d in range(DEVICES)]


def site_events(s: int, n: int, t0: float, step: float) -> list[Event]:
    """``n`` traps of site ``s`` from ``t0``, ``step`` s apart: each interface of each switch
    goes down, and 120 events later (its next turn) up again, and so on."""
    out = []
    for k in range(n):
        d, ifx = k % DEVICES, (k // DEVICES) % IFACES + 1
        name = DOWN if (k // (DEVICES * IFACES)) % 2 == 0 else UP
        out.append(Event(t0 + k * step, "snmp", f"{site_id(s)}-sw{d}", name, {"ifIndex": ifx},
                         f"10.{s // 250}.{s % 250}.{d + 1}"))
    return out


def edge_rows(s: int, evs: list[Event]) -> list[tuple[int, str]]:
    """The forward-queue rows an edge of site ``s`` holds for these events (seq from 1)."""
    site = site_id(s)
    fw = ForwardConfig(mode="edge", site=site)
    return [(k + 1, to_json(to_payload(ev, Device(ev.device, "network.switch"), site, fw.edge_name)))
            for k, ev in enumerate(evs)]


async def prepublish(url: str, rows: dict[int, list[tuple[int, str]]], batch: int) -> tuple[int, float]:
    """Publishes every site's rows as its edge would (``EdgeForwarder._publish``), sites
    interleaved message by message, ``publish_window`` messages awaited together."""
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(url)
    js = nc.jetstream()
    fc = ForwardConfig(mode="central", servers=[url])
    await js.add_stream(StreamConfig(name=fc.stream, subjects=[f"{fc.subject_prefix}.ev.>"],
                                     duplicate_window=fc.dedup_window))
    edges = {}
    for s in rows:
        cfg = ForwardConfig(mode="edge", site=site_id(s), servers=[url], batch=batch)
        edges[s] = (EdgeForwarder(cfg, None, SystemClock(), lambda _e: True, str),  # type: ignore[arg-type]
                    cfg.subject("ev", cfg.site))
    msgs = {s: [r[k:k + batch] for k in range(0, len(r), batch)] for s, r in rows.items()}
    order = [(s, m) for i in range(max(len(v) for v in msgs.values()))
             for s, v in msgs.items() if i < len(v) for m in [v[i]]]
    prev: dict[int, int | None] = dict.fromkeys(rows)
    t = time.monotonic()
    window = ForwardConfig().publish_window
    for k in range(0, len(order), window):
        calls = []
        for s, m in order[k:k + window]:
            fw, subject = edges[s]
            calls.append(fw._publish(js, subject, m, prev[s]))
            prev[s] = m[-1][0]
        await asyncio.gather(*calls)
    dt = time.monotonic() - t
    info = await js.stream_info(fc.stream)
    await nc.close()
    return int(info.state.messages), dt


def central_cfg(tmp: Path, sites: int, url: str, schema: str) -> Any:
    c = base_config(tmp / "var")
    c["gateway"]["log_level"] = "WARNING"
    c["devices"] = devices(sites)
    c["store"] = {"backend": "postgresql", "dsn": DSN, "schema": schema}
    c["forward"] = {"mode": "central", "servers": [url]}
    return config_from_dict(c, str(tmp / "central.toml"), str(tmp))


async def _wait(cond: Any, limit: float = 300.0, every: float = 0.01) -> None:
    t = time.monotonic()
    while not cond():
        if time.monotonic() - t > limit:
            raise TimeoutError("benchmark did not finish")
        await asyncio.sleep(every)  # why: polling the counts the benchmark waits for


async def run_central(tmp: Path, url: str, sites: int, n: int) -> dict[str, Any]:
    """A central on a fresh PostgreSQL schema drains the stream; per-site order recorded."""
    import nats

    schema = f"bench_c_{uuid.uuid4().hex[:10]}"
    last_ts: dict[str, float] = {}
    seen: dict[str, int] = {}
    out_of_order = [0]

    def record(ev: Event) -> None:
        site = ev.attrs.get("site")
        if ev.source != "snmp" or not isinstance(site, str):
            return
        if ev.ts <= last_ts.get(site, float("-inf")):
            out_of_order[0] += 1
        last_ts[site] = ev.ts
        seen[site] = seen.get(site, 0) + 1

    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        t = time.monotonic()
        async with Gateway(central_cfg(tmp, sites, url, schema)) as central:
            t_up = time.monotonic() - t
            prev = central.pipeline.recorder

            def both(ev: Event) -> None:
                if prev is not None:
                    prev(ev)
                record(ev)

            central.pipeline.recorder = both
            t = time.monotonic()
            c0 = central.pipeline.stats.committed_events
            early = central.forwarder.consumed  # consumed before the clock started (should be 0)
            await _wait(lambda: central.forwarder.consumed >= n and central.pipeline.depth == 0)

            async def all_acked() -> bool:
                ci = await js.consumer_info(central.forwarder.cfg.stream, central.forwarder.cfg.durable)
                return bool(ci.num_ack_pending == 0 and ci.num_pending == 0)

            while not await all_acked():
                await asyncio.sleep(0.02)  # why: the last acks are tasks after the last commit
            dt = time.monotonic() - t
            st = central.pipeline.stats
            fwd = central.forwarder
            res = {"events": n, "seconds": dt, "rate": (n - early) / dt, "startup_s": t_up, "early": early,
                   "consumed": fwd.consumed, "committed": st.committed_events - c0, "gaps": fwd.gaps,
                   "out_of_order": out_of_order[0], "sites_seen": len(seen),
                   "last_seq": dict(fwd.last_seq), "per_site_seen": dict(seen),
                   "alarms_raised": st.alarms_raised, "tickets_opened": st.tickets_opened, "shed": st.shed}
    finally:
        await nc.close()
        with psycopg.connect(DSN, autocommit=True) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    if res["consumed"] != n or res["committed"] < n:
        raise AssertionError(f"central: {res['consumed']} consumed, {res['committed']} committed of {n}")
    return res


async def run_standalone(tmp: Path, sites: int, evs: list[Event], backend: str) -> dict[str, Any]:
    """A standalone gateway fed the same events in process (``pipeline.offer``)."""
    c = base_config(tmp / "var")
    c["gateway"]["log_level"] = "WARNING"
    c["devices"] = devices(sites)
    schema = ""
    if backend == "postgresql":
        schema = f"bench_s_{uuid.uuid4().hex[:10]}"
        c["store"] = {"backend": "postgresql", "dsn": DSN, "schema": schema}
    try:
        async with Gateway(config_from_dict(c, str(tmp / "standalone.toml"), str(tmp))) as gw:
            p = gw.pipeline
            c0 = p.stats.committed_events
            n = len(evs)
            t = time.monotonic()
            k = 0
            while k < n:
                room = p.queue_size - p.depth
                if room > 0:
                    k += p.offer_many(evs[k:k + room])
                await asyncio.sleep(0)  # why: let the pipeline run between chunks
            await _wait(lambda: p.stats.committed_events - c0 >= n)
            dt = time.monotonic() - t
            if p.stats.shed:
                raise AssertionError(f"standalone shed {p.stats.shed}")
            return {"events": n, "seconds": dt, "rate": n / dt, "committed": p.stats.committed_events - c0,
                    "alarms_raised": p.stats.alarms_raised, "tickets_opened": p.stats.tickets_opened}
    finally:
        if schema:
            with psycopg.connect(DSN, autocommit=True) as db:
                db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def throughput_round(sites: int, per_site: int, batch: int, pg_standalone: bool) -> dict[str, Any]:
    t0 = time.time() - per_site  # recent events, one a second per site
    evs = {s: site_events(s, per_site, t0, 1.0) for s in range(sites)}
    flat = [e for k in range(per_site) for s in range(sites) for e in [evs[s][k]]]  # arrival order
    rows = {s: edge_rows(s, v) for s, v in evs.items()}
    n = sites * per_site
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        js = JetStreamServer(tmp / "js")
        js.start()
        try:
            msgs, pub_s = await prepublish(js.url, rows, batch)
            c = await run_central(tmp / "central", js.url, sites, n)
        finally:
            js.kill()
        s = await run_standalone(tmp / "sqlite", sites, flat, "sqlite")
        p = await run_standalone(tmp / "pg", sites, flat, "postgresql") if pg_standalone else None
    return {"n": n, "messages": msgs, "publish_s": pub_s, "central": c, "sqlite": s, "pg": p}


async def catchup_round(sites: int, inventory_sites: int, outage_s: int, rate: float, batch: int) -> dict[str, Any]:
    per_site = int(outage_s * rate)
    t0 = time.time() - outage_s  # the hour of the outage
    evs = {s: site_events(s, per_site, t0, 1.0 / rate) for s in range(sites)}
    rows = {s: edge_rows(s, v) for s, v in evs.items()}
    n = sites * per_site
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        js = JetStreamServer(tmp / "js")
        js.start()
        try:
            msgs, pub_s = await prepublish(js.url, rows, batch)
            c = await run_central(tmp / "central", js.url, inventory_sites, n)
        finally:
            js.kill()
    produced = sites * rate
    for s in range(sites):
        edge = ForwardConfig(mode="edge", site=site_id(s)).edge_name
        if c["last_seq"].get(edge) != per_site or c["per_site_seen"].get(site_id(s)) != per_site:
            raise AssertionError(f"{edge}: last seq {c['last_seq'].get(edge)}, "
                                 f"{c['per_site_seen'].get(site_id(s))} events seen, {per_site} published")
    if c["gaps"] or c["out_of_order"]:
        raise AssertionError(f"order not kept: {c['gaps']} gaps, {c['out_of_order']} out of order")
    return {"n": n, "messages": msgs, "publish_s": pub_s, "central": c, "produced_rate": produced,
            "times_real_time": c["rate"] / produced}


def _short(c: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in c.items()
            if k not in ("last_seq", "per_site_seen")}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sites", type=int, default=100)
    ap.add_argument("--per-site", type=int, default=400)
    ap.add_argument("--outage-sites", type=int, default=20)
    ap.add_argument("--outage-s", type=int, default=3600)
    ap.add_argument("--site-rate", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-pg-standalone", action="store_true")
    ap.add_argument("--only", choices=["throughput", "catchup"], default="")
    a = ap.parse_args()
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs; batch {a.batch}; PostgreSQL {DSN}",
          flush=True)
    if a.only != "catchup":
        rates: list[tuple[float, float, float | None]] = []
        for r in range(a.rounds):
            res = await throughput_round(a.sites, a.per_site, a.batch, not a.no_pg_standalone)
            c, s, p = res["central"], res["sqlite"], res["pg"]
            rates.append((c["rate"], s["rate"], p["rate"] if p else None))
            print(f"throughput round {r + 1}: {res['n']} events in {res['messages']} messages from {a.sites} edges "
                  f"(pre-published in {res['publish_s']:.2f} s); central/PostgreSQL {c['rate']:.0f} ev/s "
                  f"({c['seconds']:.2f} s); standalone/SQLite {s['rate']:.0f} ev/s ({s['seconds']:.2f} s); "
                  + (f"standalone/PostgreSQL {p['rate']:.0f} ev/s ({p['seconds']:.2f} s); " if p else "")
                  + f"ratio central/SQLite {c['rate'] / s['rate']:.2f}", flush=True)
            print(f"  central: {_short(c)}\n  sqlite: {_short(s)}" + (f"\n  pg: {_short(p)}" if p else ""), flush=True)
        med_c = statistics.median(x[0] for x in rates)
        med_s = statistics.median(x[1] for x in rates)
        pgs = [x[2] for x in rates if x[2] is not None]
        print(f"throughput median: central/PostgreSQL {med_c:.0f} ev/s, standalone/SQLite {med_s:.0f} ev/s, "
              f"ratio {med_c / med_s:.2f}" + (f", standalone/PostgreSQL {statistics.median(pgs):.0f} ev/s" if pgs else ""),
              flush=True)
    if a.only != "throughput":
        times = []
        for r in range(a.rounds):
            res = await catchup_round(a.outage_sites, a.sites, a.outage_s, a.site_rate, a.batch)
            c = res["central"]
            times.append(res["times_real_time"])
            print(f"catch-up round {r + 1}: {res['n']} events ({a.outage_sites} sites × {a.outage_s} s × "
                  f"{a.site_rate:g}/s) in {res['messages']} messages; drained in {c['seconds']:.2f} s = "
                  f"{c['rate']:.0f} ev/s = {res['times_real_time']:.0f}× real time; gaps {c['gaps']}, "
                  f"out of order {c['out_of_order']}", flush=True)
            print(f"  central: {_short(c)}", flush=True)
        print(f"catch-up median: {statistics.median(times):.0f}× real time (target ≥ 20×)", flush=True)
    print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
