"""Benchmark of the single writer without its store: ``Decider.step`` (the decision order) and
``Pipeline`` batches around it (queue unwrap, stats, the rows handed to a store that does
nothing), in process.

Run: ``python -m bench.bench_decider`` (defaults: 300,000 events, 10,000 fault keys, 1,000
rules, batches of 4,096, best of 3). Options: ``--events N``, ``--keys K``, ``--batch B``,
``--repeat R``. Two streams: ``mixed`` (bench_rules' stream: 95 % raises, 5 % clears over the
keys, every new alarm opening a ticket under the example's ``mine-monitoring`` contract)
and ``storm`` (one fault repeated: one row per batch).

Both wall and CPU time are reported: on a shared machine the CPU time of the process is the
steadier figure to compare before/after a change (a busy neighbour inflates wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.bench_rules import T0, make_packs, make_stream

ROOT = Path(__file__).resolve().parent.parent


class _NullStore:
    def commit(self, batch: Any) -> None:
        pass


def _parts() -> dict[str, Any]:
    from gateway.config import build_policies, load_config
    from gateway.core.alarms import AlarmBook
    from gateway.core.calendars import default_calendars
    from gateway.core.inventory import Inventory
    from gateway.core.tickets import TicketDesk
    from rules import RuleEngine

    policies = build_policies(load_config(ROOT / "config.example.toml"))
    inventory = Inventory((), "mine-monitoring")
    return {
        "engine": RuleEngine(make_packs(1000)[0]),
        "inventory": inventory,
        "book": AlarmBook(inventory=inventory),
        "desk": TicketDesk(policies, default_calendars([])),
        "policies": policies,
    }


def _stream(kind: str, n: int, keys: int) -> list[Any]:
    from gateway.model import Event

    names = make_packs(1000)[1]
    if kind == "storm":
        return [Event(T0, "bench", "dev-00001", names[0], {"ifIndex": 1, "severity": "critical"})] * n
    return make_stream(names[:4], n, keys)


def run_decider(stream: list[Any], batch: int) -> tuple[float, float]:
    from gateway.core.decider import Decider

    d = Decider(**_parts(), instance="bench", connectors=["hd"])
    d.unknown_tickets = True  # the stream's devices are invented: let their alarms ticket, as before
    gc.collect()
    w, c = time.perf_counter(), time.process_time()
    for s in range(0, len(stream), batch):
        d.step(stream[s : s + batch], T0)
    return time.perf_counter() - w, time.process_time() - c


def run_pipeline(stream: list[Any], batch: int) -> tuple[float, float]:
    from gateway.clock import ManualClock
    from gateway.runtime.pipeline import Pipeline

    async def go() -> tuple[float, float]:
        p = Pipeline(
            **_parts(),
            store=_NullStore(),  # type: ignore[arg-type]
            clock=ManualClock(start=T0),
            queue_size=10**8,
            batch_max=batch,
            instance="bench",
            connectors=["hd"],
        )
        p.decider.unknown_tickets = True
        gc.collect()
        w, c = time.perf_counter(), time.process_time()
        for s in range(0, len(stream), batch):
            p.offer_many(stream[s : s + batch])
            await p._batch()
        out = time.perf_counter() - w, time.process_time() - c
        p._exec.shutdown()
        return out

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    print(f"python {platform.python_version()} on {platform.machine()}; {args.events:,} events, batches of {args.batch}")
    print()
    print("| stream | path | events/s (wall, best) | µs per event (wall) | µs per event (CPU, best) |")
    print("|---|---|---:|---:|---:|")
    for kind in ("mixed", "storm"):
        stream = _stream(kind, args.events, args.keys)
        for name, fn in (("Decider.step", run_decider), ("Pipeline batch", run_pipeline)):
            runs = [fn(stream, args.batch) for _ in range(args.repeat)]
            wall = min(r[0] for r in runs)
            cpu = min(r[1] for r in runs)
            n = len(stream)
            print(f"| {kind} | {name} | {n / wall:,.0f} | {wall / n * 1e6:.2f} | {cpu / n * 1e6:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
