"""Liveness detection lateness through the real pipeline at 100k / 1M tracked devices.

A real :class:`~gateway.runtime.pipeline.Pipeline` (SQLite store in a temporary directory, the
default rule packs, the ``mine-monitoring`` policy, so a ``heartbeat.lost`` becomes a
critical alarm and a ticket) watches ``N`` inventory devices. A feeder task on the same
event loop offers each device's heartbeat once per ``--interval`` seconds, evenly spread
(``N / interval`` heartbeats/s, in ``offer_many`` batches every 50 ms, ``ts`` = the real
clock), as the MQTT adapter would. Before the clock starts every device counts as seen one
interval ago, so the fleet is in its steady state from the first second.

After a steady window (CPU and RSS measured there) disjoint random subsets stop: 100
devices, then 1 % and 10 % of the fleet, each one interval plus a margin after the last so
their deadline windows do not overlap. A device's deadline is its last offered heartbeat +
``interval * tolerance``; a subset that stops at one moment has its deadlines spread over
one interval (devices beat at different phases). For every ``heartbeat.lost`` alarm the
bench records:

* ``commit`` lateness: when the change listener saw the raised alarm, i.e. right after the
  store transaction holding the alarm and its ticket committed, minus the deadline;
* ``processed`` lateness: when the event entered classification in the writer task.

A loss of a device that was not stopped is counted as false.

    .venv/bin/python -m bench.bench_liveness --devices 100000 --interval 10
    .venv/bin/python -m bench.bench_liveness --devices 1000000 --interval 30

Each size runs in its own process so the resident set size is that size's own.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import tomllib
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.clock import SystemClock
from gateway.config import build_policies, config_from_dict
from gateway.core.alarms import RAISED, AlarmBook
from gateway.core.calendars import default_calendars
from gateway.core.inventory import Inventory
from gateway.core.tickets import TicketDesk
from gateway.core.watchdog import LOST, Watchdog
from gateway.model import Device, Event
from gateway.rulebook import load_rules
from gateway.runtime.pipeline import Pipeline
from gateway.store.sqlite import SqliteStore

TICK = 0.05
CLASS = "mine.gas-sensor"
POLICY = "mine-monitoring"


def rss_mib() -> float:
    """Current resident set size in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def cpu_s() -> float:
    """User + system CPU seconds of this process (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def device_id(k: int) -> str:
    return f"dev-{k:07d}"


def build(data_dir: Path, n: int, interval: float, tolerance: int) -> Pipeline:
    """The pipeline as ``gateway.app`` composes it, without adapters, API or help desk."""
    example = tomllib.loads((ROOT / "config.example.toml").read_text("utf-8"))
    cfg = config_from_dict({
        "gateway": {"instance": "bench", "data_dir": str(data_dir)},
        "policies": example["policies"],
        "inventory": {"default_policy": POLICY},
        "api": {"enabled": False},
        "liveness": {"default_interval": interval, "tolerance": tolerance},
    }, "bench.toml", str(data_dir))
    store = SqliteStore(cfg.data_path(cfg.store.path), synchronous=cfg.store.synchronous)
    policies = build_policies(cfg)
    sites = [f"site-{s:03d}" for s in range(997)]
    devices = [Device(id=device_id(k), device_class=CLASS, site=sites[k % 997], policy=POLICY,
                      heartbeat_interval=interval) for k in range(n)]
    inventory = Inventory(devices, POLICY)
    del devices
    next_alarm, next_ticket = store.next_ids()
    book = AlarmBook(next_alarm, inventory=inventory)
    desk = TicketDesk(policies, default_calendars([]), next_ticket)
    pipeline = Pipeline(engine=load_rules(cfg), inventory=inventory, book=book, desk=desk, policies=policies,
                        store=store, clock=SystemClock(), queue_size=cfg.pipeline.queue_size,
                        batch_max=cfg.pipeline.batch_max, instance="bench")
    pipeline.watchdog = Watchdog(interval, tolerance, grace=0.0)
    pipeline.liveness_events = frozenset(cfg.liveness.events)
    return pipeline


def track(wd: Watchdog, n: int, interval: float, start: float) -> None:
    """Watch every device as seen one interval before its first beat (heap keys spread out)."""
    step = interval / n
    for k in range(n):
        wd.track(device_id(k), interval=interval, now=start + k * step - interval)


class Bench:
    """Feeds heartbeats and measures when each loss is raised."""

    def __init__(self, n: int, interval: float, tolerance: int, start: float) -> None:
        self.n, self.interval, self.tol, self.start = n, interval, tolerance, start
        self.stopped = bytearray(n)
        step = interval / n
        # The time each device was last seen: as tracked until its first offered beat.
        self.last = array("d", (start + k * step - interval for k in range(n)))
        self.cursor = 0
        self.commit_late: dict[int, float] = {}
        self.processed_late: dict[int, float] = {}
        self.false_losses = 0
        self.max_depth = 0
        self.lag_max = 0.0  # how far the feeder fell behind its schedule (event loop busy)

    async def feed(self, pipeline: Pipeline, until: float) -> None:
        n, step = self.n, self.interval / self.n
        stopped, last = self.stopped, self.last
        while True:
            now = time.time()
            if now >= until:
                return
            target = int((now - self.start) / step)
            if target > self.cursor:
                self.lag_max = max(self.lag_max, now - (self.start + (self.cursor + 1) * step))
                evs = []
                for c in range(self.cursor, target):
                    k = c % n
                    if not stopped[k]:
                        last[k] = now
                        evs.append(Event(ts=now, source="mqtt", device=device_id(k), name="heartbeat", attrs={}))
                self.cursor = target
                pipeline.offer_many(evs)
                self.max_depth = max(self.max_depth, pipeline.depth)
            await asyncio.sleep(TICK)

    def deadline(self, k: int) -> float:
        return self.last[k] + self.interval * self.tol

    def on_commit(self, alarms: list[Any], tickets: list[Any], changes: list[Any]) -> None:
        now = time.time()
        for ch in changes:
            if getattr(ch, "kind", None) == RAISED and ch.alarm.event == LOST:
                k = int(ch.alarm.device[4:])
                if not self.stopped[k]:
                    self.false_losses += 1
                else:
                    self.commit_late[k] = now - self.deadline(k)

    def on_event(self, ev: Event) -> None:
        if ev.name == LOST:
            k = int(ev.device[4:])
            if self.stopped[k]:
                self.processed_late[k] = time.time() - self.deadline(k)

    def stop(self, ks: list[int]) -> None:
        for k in ks:
            self.stopped[k] = 1


class GcPauses:
    """Longest garbage-collector pause per generation (a full collection walks every object)."""

    def __init__(self) -> None:
        self.longest = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            g = info["generation"]
            self.count[g] += 1
            self.longest[g] = max(self.longest[g], time.perf_counter() - self._t)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def run(n: int, interval: float, tolerance: int, steady: float, margin: float, cases: list[str]) -> None:
    gc.collect()
    rss0 = rss_mib()
    t_build = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-liveness-") as tmp:
        pipeline = build(Path(tmp), n, interval, tolerance)
        start = time.time() + 1.0 + n * 8e-6  # tracking takes a few seconds at 1M
        track(pipeline.watchdog, n, interval, start)
        b = Bench(n, interval, tolerance, start)
        gc.collect()
        gc.freeze()  # as gateway.app does once it is ready
        pipeline.listeners.append(b.on_commit)
        pipeline.recorder = b.on_event
        built = time.time() - t_build
        rss_built = rss_mib()
        pauses = GcPauses()
        gc.callbacks.append(pauses)
        await pipeline.start()
        rng = random.Random(7)
        pool = list(range(n))
        rng.shuffle(pool)
        sizes = []
        for c in cases:
            m = int(c[:-1]) * n // 100 if c.endswith("%") else int(c)
            sizes.append((c, pool[:m]))
            del pool[:m]
        t_steady = start + 3.0
        stops = [t_steady + steady + i * (interval + margin) for i in range(len(sizes))]
        until = stops[-1] + interval * tolerance + margin
        feeder = asyncio.create_task(b.feed(pipeline, until))
        await asyncio.sleep(max(0.0, t_steady - time.time()))
        c0, w0 = cpu_s(), time.time()
        hb0 = pipeline.stats.received
        b.max_depth, b.lag_max = 0, 0.0  # the start-up catch-up is not the steady state
        await asyncio.sleep(steady)
        c1, w1 = cpu_s(), time.time()
        rss_steady = rss_mib()
        hb_rate = (pipeline.stats.received - hb0) / (w1 - w0)
        cpu_pct = 100 * (c1 - c0) / (w1 - w0)
        steady_depth, steady_lag = b.max_depth, b.lag_max
        b.max_depth, b.lag_max = 0, 0.0
        for (_, ks), at in zip(sizes, stops, strict=True):
            await asyncio.sleep(max(0.0, at - time.time()))
            b.stop(ks)
        await feeder
        await asyncio.sleep(2.0)
        await pipeline.stop()
        rss_end = rss_mib()
        pipeline.store.close()  # type: ignore[attr-defined]

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"devices {n:,}  interval {interval:g} s  tolerance {tolerance}  (deadline {interval * tolerance:g} s)"
          f"  build {built:.1f} s  load average at the end {load} ({os.cpu_count()} CPUs)")
    print(f"  steady {steady:g} s: {hb_rate:,.0f} heartbeats/s offered, CPU {cpu_pct:.1f} % of one core"
          f" (process, all threads), RSS {rss_steady:.0f} MiB (before build {rss0:.0f}, after build"
          f" {rss_built:.0f}), peak queue depth {steady_depth:,}, feeder lag max {steady_lag:.2f} s")
    print(f"  pipeline: {pipeline.stats.batches:,} batches, max batch {pipeline.stats.max_batch:,},"
          f" shed {pipeline.stats.shed:,}, false losses {b.false_losses}, RSS at end {rss_end:.0f} MiB,"
          f" peak queue depth over the losses {b.max_depth:,}, feeder lag max {b.lag_max:.2f} s")
    print(f"  gc: {pauses.count[2]} full collections, longest {pauses.longest[2]:.3f} s;"
          f" longest gen0/gen1 pause {max(pauses.longest[:2]):.3f} s")
    for name, ks in sizes:
        com = [b.commit_late[k] for k in ks if k in b.commit_late]
        pro = [b.processed_late[k] for k in ks if k in b.processed_late]
        missing = len(ks) - len(com)
        if not com:
            print(f"  stop {name:>4} ({len(ks):,}): none raised")
            continue
        over = sum(1 for x in com if x > 1.0)
        print(f"  stop {name:>4} ({len(ks):>7,}): commit lateness p50 {statistics.median(com):6.3f} s"
              f"  p99 {pct(com, 0.99):6.3f} s  max {max(com):6.3f} s  (> 1 s: {over:,});"
              f"  processed p50 {statistics.median(pro):6.3f}  max {max(pro):6.3f} s;  not raised {missing:,}")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--interval", type=float, default=10.0, help="heartbeat interval, seconds")
    ap.add_argument("--tolerance", type=int, default=3)
    ap.add_argument("--steady", type=float, default=15.0, help="steady-state window for CPU/RSS, seconds")
    ap.add_argument("--margin", type=float, default=3.0, help="seconds between two cases' deadline windows")
    ap.add_argument("--cases", default="100,1%,10%", help="subsets that stop, one after another")
    a = ap.parse_args(argv)
    asyncio.run(run(a.devices, a.interval, a.tolerance, a.steady, a.margin, a.cases.split(",")))


if __name__ == "__main__":
    main(sys.argv[1:])
