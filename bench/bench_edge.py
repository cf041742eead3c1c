"""Edge overhead and catch-up drain (BENCHMARKS.md "Sites and a central NOC").

1. CPU per trap: the same trap stream into a standalone gateway and into an edge gateway
   (forward queue + publisher to a real ``nats-server -js``), in process; CPU seconds of
   this process (``time.process_time``) from the first packet until every trap is committed
   (and, for the edge, published and deleted from the queue). Rounds alternate.
2. Catch-up drain: an edge buffers N events while JetStream is away, then the server starts;
   time until the queue is empty (every row acknowledged), and then until a central has
   committed them all. Counts are checked.

    .venv/bin/python -m bench.bench_edge --traps 20000 --rounds 3 --backlog 20000 [--batch 64]

``--batch``: queued events per JetStream message at the edge (``[forward] batch``; 1 = one
event per message, the form before batches). The machine's load average is printed before
and after: the figures are only comparable on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from adapters.snmp import ber
from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.fixtures.natsjs import JetStreamServer
from tests.fixtures.netsnmp import free_udp_port
from tests.helpers import base_config


def _packets(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        idx = i % 500 + 1
        oid = "1.3.6.1.6.3.1.1.5.3" if (i // 500) % 2 == 0 else "1.3.6.1.6.3.1.1.5.4"
        out.append(ber.encode_trap(ber.TrapMessage(ber.V2C, b"public", ber.PDU_TRAP_V2, i, [
            ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, i)),
            ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, oid)),
            ("1.3.6.1.2.1.2.2.1.1." + str(idx), idx),
        ])))
    return out


def _cfg(tmp: Path, port: int, forward: dict[str, Any] | None) -> Any:
    d = base_config(tmp / "var", port)
    d["gateway"]["log_level"] = "WARNING"
    if forward:
        d["forward"] = forward
    return config_from_dict(d, str(tmp / "c.toml"), str(tmp))


async def _send(pkts: list[bytes], port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    for k in range(0, len(pkts), 200):
        for p in pkts[k:k + 200]:
            sock.sendto(p, ("127.0.0.1", port))
        await asyncio.sleep(0.002)  # why: pace the sender so the receiver's socket buffer does not overflow
    sock.close()


async def _wait(cond: Any, limit: float = 60.0) -> None:
    t = time.monotonic()
    while not cond():
        if time.monotonic() - t > limit:
            raise TimeoutError("benchmark did not finish")
        await asyncio.sleep(0.01)  # why: polling the counts the benchmark waits for


async def cpu_round(pkts: list[bytes], url: str | None, batch: int = 64) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as d:
        port = free_udp_port()
        fw = {"mode": "edge", "servers": [url], "site": "s1", "batch": batch} if url else None
        async with Gateway(_cfg(Path(d), port, fw)) as gw:
            snmp = gw.adapters[0]
            c0 = time.process_time()
            before = gw.pipeline.stats.committed_events
            await _send(pkts, port)
            await _wait(lambda: gw.pipeline.stats.committed_events - before + snmp.counters.get("dropped", 0) >= len(pkts))
            if url:
                await _wait(lambda: gw.forwarder.published >= gw.pipeline.stats.committed_events - before
                            and gw.store.forward_stats()[0] == 0)
            cpu = time.process_time() - c0
            n = gw.pipeline.stats.committed_events - before
            return cpu, n


async def drain(n: int, js: JetStreamServer, batch: int = 64) -> dict[str, float]:
    from gateway.model import Event

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        fw = {"mode": "edge", "servers": [js.url], "site": "s1", "batch": batch}
        js.kill()
        async with Gateway(_cfg(tmp / "edge", free_udp_port(), fw)) as edge:
            t0 = time.time() - n  # one event a second: an outage of n seconds at that rate
            for i in range(n):
                edge.pipeline.offer(Event(t0 + i, "snmp", "sw-1", "IF-MIB::linkDown", {"ifIndex": i % 500 + 1}))
            await _wait(lambda: edge.store.forward_stats()[0] >= n)
            js.start()
            c = base_config(tmp / "central" / "var")
            c["gateway"]["log_level"] = "WARNING"
            c["forward"] = {"mode": "central", "servers": [js.url]}
            central_cfg = config_from_dict(c, str(tmp / "central.toml"), str(tmp))
            t = time.monotonic()
            async with Gateway(central_cfg) as central:
                await _wait(lambda: edge.store.forward_stats()[0] == 0)
                edge_s = time.monotonic() - t
                await _wait(lambda: central.forwarder.consumed >= n and central.pipeline.depth == 0)
                central_s = time.monotonic() - t
                return {"events": n, "edge_drain_s": edge_s, "edge_rate": n / edge_s,
                        "central_s": central_s, "central_rate": n / central_s,
                        "published": edge.forwarder.published, "consumed": central.forwarder.consumed}


async def _stream(url: str) -> None:
    """The stream the central would create (the CPU rounds run without a central)."""
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(url)
    await nc.jetstream().add_stream(StreamConfig(name="GATEWAY", subjects=["gw.ev.>"]))
    await nc.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traps", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backlog", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs; batch {a.batch}", flush=True)
    pkts = _packets(a.traps)
    with tempfile.TemporaryDirectory() as d:
        js = JetStreamServer(Path(d))
        js.start()
        try:
            await _stream(js.url)
            rows = []
            for r in range(a.rounds):
                s_cpu, s_n = await cpu_round(pkts, None)
                e_cpu, e_n = await cpu_round(pkts, js.url, a.batch)
                rows.append((s_cpu, s_n, e_cpu, e_n))
                print(f"round {r + 1}: standalone {s_cpu:.3f} s CPU for {s_n} traps ({1e6 * s_cpu / s_n:.1f} µs/trap); "
                      f"edge {e_cpu:.3f} s CPU for {e_n} traps ({1e6 * e_cpu / e_n:.1f} µs/trap); "
                      f"ratio {(e_cpu / e_n) / (s_cpu / s_n):.2f}", flush=True)
            best_s = min(r[0] / r[1] for r in rows)
            best_e = min(r[2] / r[3] for r in rows)
            print(f"best: standalone {1e6 * best_s:.1f} µs/trap, edge {1e6 * best_e:.1f} µs/trap, ratio {best_e / best_s:.2f}")
            med_s = statistics.median(r[0] / r[1] for r in rows)
            med_e = statistics.median(r[2] / r[3] for r in rows)
            paired = statistics.median((r[2] / r[3]) / (r[0] / r[1]) for r in rows)
            print(f"median: standalone {1e6 * med_s:.1f} µs/trap, edge {1e6 * med_e:.1f} µs/trap, ratio {med_e / med_s:.2f}; "
                  f"median of the rounds' ratios {paired:.2f}")
            js.kill()
        finally:
            js.kill()
    with tempfile.TemporaryDirectory() as d:
        js = JetStreamServer(Path(d))  # a fresh stream: only the backlog in it
        js.start()
        try:
            res = await drain(a.backlog, js, a.batch)
            print("drain:", {k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()})
        finally:
            js.kill()
    print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
