"""Benchmark of the liveness watchdog: memory and CPU per device at 100k / 1M devices.

Run: ``python -m bench.bench_watchdog [N ...]`` (default 100000 1000000). Each size runs in
a fresh interpreter so the resident set size is the watchdog's own.
"""

from __future__ import annotations

import gc
import random
import subprocess
import sys
import time

T0 = 1_767_225_600.0


def rss_mib() -> float:
    """Current resident set size in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * 4096 / 2**20


def run(n: int) -> None:
    from gateway.core.watchdog import Watchdog

    gc.collect()
    base = rss_mib()
    # The id strings count: the watchdog's index and the event ids hold them.
    ids = [f"site-{i % 997:03d}/dev-{i:07d}" for i in range(n)]
    wd = Watchdog(default_interval=60.0, tolerance=3)
    t = time.perf_counter()
    for d in ids:
        wd.track(d, now=T0)
    track_s = time.perf_counter() - t
    after_track = rss_mib()

    # One heartbeat round, then a second one: heartbeats do no heap work.
    rng = random.Random(1)
    order = ids[:]
    rng.shuffle(order)
    t = time.perf_counter()
    for k, d in enumerate(order):
        wd.heartbeat(d, T0 + 30 + k * 30 / n)
    hb_s = time.perf_counter() - t
    t = time.perf_counter()
    for k, d in enumerate(order):
        wd.heartbeat(d, T0 + 60 + k * 30 / n)
    hb2_s = time.perf_counter() - t
    after_hb = rss_mib()

    # The first deadlines (T0+180) are stale lower bounds: due() re-arms every device once.
    t = time.perf_counter()
    assert wd.due(T0 + 181) == []
    rearm_s = time.perf_counter() - t

    # Everyone goes silent: all lost in one due() call.
    t = time.perf_counter()
    lost = wd.due(T0 + 10_000)
    due_s = time.perf_counter() - t
    assert wd.next_deadline() is None
    assert len(lost) == n
    peak = rss_mib()
    del lost
    gc.collect()

    t = time.perf_counter()
    snap = wd.snapshot()
    snap_s = time.perf_counter() - t
    del snap

    print(
        f"n={n:>9,}  ids+state {after_track - base:7.1f} MiB ({(after_track - base) * 2**20 / n:5.0f} B/device)"
        f"  after heartbeats {after_hb - base:7.1f} MiB  peak with {n:,} events {peak - base:7.1f} MiB"
        f"  (process RSS {peak:7.1f} MiB)\n"
        f"             track {track_s / n * 1e6:5.2f} us  heartbeat {hb_s / n * 1e6:5.2f} us"
        f" / {hb2_s / n * 1e6:5.2f} us (2nd round)  re-arm in due() {rearm_s / n * 1e6:5.2f} us"
        f"  lost in due() {due_s / n * 1e6:5.2f} us  snapshot {snap_s:5.2f} s",
        flush=True,
    )


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [100_000, 1_000_000]
    if len(sizes) == 1:
        run(sizes[0])
        return
    for n in sizes:
        subprocess.run([sys.executable, "-m", "bench.bench_watchdog", str(n)], check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
