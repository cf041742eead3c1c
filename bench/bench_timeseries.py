"""Benchmark of the time-series sink: cost of ``offer_event`` on the hot path, and of building
line protocol off it (ours and influxdb-client's ``Point``, for comparison).

Run: ``python -m bench.bench_timeseries [N]`` (default 1000000 events). No server needed:
``offer_event`` never touches the network, and line building is pure. Each figure is the
best of three runs.
"""

from __future__ import annotations

import sys
import time

from gateway.model import Device, Event
from gateway.timeseries import LineBuilder, TimeseriesConfig, TimeseriesSink

T0 = 1_767_225_600.0


def _events(n: int, devices: list[Device]) -> list[tuple[Event, Device]]:
    out = []
    for i in range(n):
        d = devices[i % len(devices)]
        attrs = {"ch4": 0.3 + (i % 7) / 100, "co": 3 + i % 5, "battery": 87.5, "door_open": i % 2 == 0, "state": "ok"}
        out.append((Event(T0 + i * 0.001, "mqtt", d.id, "heartbeat", attrs), d))
    return out


REPEATS = 3  # best of: the figures are per-call costs, not averages over a noisy machine


def _per_call_us(make, items) -> float:  # type: ignore[no-untyped-def]
    """Best per-call time in microseconds of ``make()(ev, dev)`` over ``items``."""
    best = float("inf")
    for _ in range(REPEATS):
        fn = make()
        t = time.perf_counter()
        for ev, dev in items:
            fn(ev, dev)
        best = min(best, (time.perf_counter() - t) / len(items) * 1e6)
    return best


def _steady_us(items) -> float:  # type: ignore[no-untyped-def]
    """``offer_event`` while the writer keeps up: a batch of 1000 is taken whenever one is full."""
    best = float("inf")
    for _ in range(REPEATS):
        sink = TimeseriesSink(TimeseriesConfig(enabled=True, buffer_size=100_000, batch_size=1000))
        offer, q = sink.offer_event, sink._events
        t = time.perf_counter()
        for k, (ev, dev) in enumerate(items):
            offer(ev, dev)
            if k % 1000 == 999:
                q.clear()
        best = min(best, (time.perf_counter() - t) / len(items) * 1e6)
    return best


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 1_000_000
    devices = [Device(id=f"gs-{k:05d}", device_class="mine.gas-sensor", site=f"pit {k % 12}", region="shanxi")
               for k in range(1000)]
    items = _events(n, devices)
    noop = _per_call_us(lambda: (lambda ev, dev: None), items)
    steady = _steady_us(items)
    # Server gone: the buffer grows to hold every event (allocation and GC of a growing deque).
    accept = _per_call_us(lambda: TimeseriesSink(TimeseriesConfig(enabled=True, buffer_size=n)).offer_event, items)
    full = TimeseriesSink(TimeseriesConfig(enabled=True, buffer_size=1000, batch_size=1000))
    overflow = _per_call_us(lambda: full.offer_event, items)
    sink = TimeseriesSink(TimeseriesConfig(enabled=True))
    other = [(Event(T0, "snmp", "gs-1", "IF-MIB::linkDown", {"ifIndex": 1}), devices[0])] * n
    skip = _per_call_us(lambda: sink.offer_event, other)
    print(f"offer_event, {n:,} events (call overhead of an empty function: {noop:.3f} us)")
    print(f"  buffered, drained   {steady:6.3f} us/event  (writer keeping up)")
    print(f"  buffered, growing   {accept:6.3f} us/event  (server gone, buffer filling to {n:,})")
    print(f"  buffer full (drop)  {overflow:6.3f} us/event  (oldest dropped and counted)")
    print(f"  not telemetry       {skip:6.3f} us/event")

    m = min(n, 200_000)
    builder = LineBuilder(TimeseriesConfig())
    ours = _per_call_us(lambda: builder.event_line, items[:m])

    from influxdb_client import Point, WritePrecision

    def point(ev: Event, dev: Device) -> str:
        p = Point(ev.name).tag("device", dev.id).tag("site", dev.site).tag("region", dev.region)
        p = p.tag("class", dev.device_class).time(int(ev.ts * 1000), WritePrecision.MS)
        for k, v in ev.attrs.items():
            if isinstance(v, (int, float)):
                p = p.field(k, float(v))
        return str(p.to_line_protocol())

    theirs = _per_call_us(lambda: point, items[:m])
    print(f"line protocol off the hot path, {m:,} events (4 numeric fields each, 1000 devices)")
    print(f"  LineBuilder         {ours:6.3f} us/event")
    print(f"  influxdb_client.Point {theirs:4.3f} us/event")


if __name__ == "__main__":
    main(sys.argv[1:])
