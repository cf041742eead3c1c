"""Benchmark of the rule engine and alarm book: events over fault keys with 10, 100 and 1,000
rules loaded, in process (no network, no store).

Run: ``python -m bench.bench_rules`` (defaults: 1,000,000 events, 10,000 fault keys, rule sets
of 10, 100 and 1,000 rules run side by side a batch at a time, 3 times, best run reported). Options:
``--events N``, ``--keys K``, ``--rules 10,100,1000``, ``--batch 4096``, ``--repeat 3``.
Shared machines are noisy: the best of several runs is the figure that compares.

What one event costs here is what the pipeline's writer spends on it besides the store:
inventory lookup, ``RuleEngine.classify`` and ``AlarmBook.fold``, plus, once per batch,
``AlarmBook.take_dirty`` (the rows the store would write) and ``AlarmBook.tick``.

The rule sets grow the way real ones do: more event names, each with a conditional rule and a
fallback (same fault key, different level; a clear event per name), and one vendor wildcard
rule in ten (``VENDORn-MIB::*``) that the stream never matches. Every event of the stream is
drawn from the names the loaded set has rules for, so with 1,000 rules the engine sees 450
distinct names, with 10 rules 4. The cost per event must not grow with the rule count: rules
are indexed by event name, so an event only ever meets the rules written for its name.

A second run folds a storm: the same fault repeated; it must cost one row per batch.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import sys
import time
from typing import Any

T0 = 1_767_225_600.0


def make_packs(n_rules: int) -> tuple[list[Any], list[str]]:
    from rules import parse_pack

    n_glob = n_rules // 10
    n_names = max(1, (n_rules - n_glob) // 2)
    rules: list[dict[str, Any]] = []
    names = []
    for j in range(n_names):
        name = f"BENCH-MIB::trap{j}"
        names.append(name)
        rules.append(
            {
                "id": f"trap{j}-severe",
                "event": name,
                "level": 2,
                "priority": 10,
                "when": {"severity": {"in": ["critical", "major"]}, "ifIndex": {"exists": True}},
                "key": "{device}/if/{ifIndex}",
                "title": "trap {ifIndex} on {device}",
                "clear_on": [f"BENCH-MIB::clear{j}"],
            }
        )
        rules.append(
            {
                "id": f"trap{j}",
                "event": name,
                "level": 3,
                "priority": 20,
                "key": "{device}/if/{ifIndex}",
                "title": "trap {ifIndex} on {device}",
            }
        )
    for k in range(n_glob):
        rules.append({"id": f"vendor{k}", "event": f"VENDOR{k}-MIB::*", "level": 4, "priority": 500})
    while len(rules) < n_rules:  # pad odd sizes with rules for names the stream never sends
        i = len(rules)
        rules.append({"id": f"pad{i}", "event": f"PAD-MIB::trap{i}", "level": 4})
    rules = rules[:n_rules]
    return [parse_pack({"pack": {"name": f"bench{n_rules}"}, "rules": rules})], names


def make_stream(names: list[str], n_events: int, n_keys: int, seed: int = 1) -> list[Any]:
    """``n_events`` events drawn from a pool of distinct ones (so a million events do not need
    a million objects): 95 % raises, 5 % clears, keys uniform over ``n_keys``."""
    from gateway.model import Event

    rng = random.Random(seed)
    ports = 10
    devices = [f"dev-{i:05d}" for i in range(max(1, n_keys // ports))]
    pool = []
    for _ in range(min(n_events, 50_000)):
        j = rng.randrange(len(names))
        dev = rng.choice(devices)
        port = rng.randrange(ports)
        if rng.random() < 0.05:
            pool.append(Event(T0, "bench", dev, names[j].replace("trap", "clear"), {"ifIndex": port}))
        else:
            sev = rng.choice(("critical", "major", "minor", "warning"))
            pool.append(
                Event(
                    T0,
                    "bench",
                    dev,
                    names[j],
                    {"ifIndex": port, "severity": sev, "ifDescr": f"ge-0/0/{port}"},
                )
            )
    idx = [rng.randrange(len(pool)) for _ in range(n_events)]
    return [pool[i] for i in idx]


class Lane:
    """One rule set with its own engine, inventory, alarm book and event stream."""

    def __init__(self, n_rules: int, n_events: int, n_keys: int, base: int, spread: bool) -> None:
        from gateway.core.alarms import AlarmBook
        from gateway.core.inventory import Inventory
        from rules import RuleEngine

        packs, names = make_packs(n_rules)
        self.n_rules = n_rules
        # The same stream for every rule set (the names the smallest set has rules for), or
        # one spread over every name the set has rules for.
        used = names if spread else names[: len(make_packs(base)[1])]
        self.names = len(used)
        self.engine = RuleEngine(packs)
        self.stream = make_stream(used, n_events, n_keys)
        # What "flat" rests on: the rules an event is tested against, whatever the set's size.
        sample = self.stream[:100_000]
        self.candidates = sum(len(self.engine.candidates(ev.name)) for ev in sample) / len(sample)
        self.inventory = Inventory()
        self.book = AlarmBook(inventory=self.inventory)
        self.seconds = 0.0
        self.rows = 0
        self.batches = 0

    def batch(self, start: int, size: int) -> None:
        resolve, classify, fold, book = (
            self.inventory.resolve,
            self.engine.classify,
            self.book.fold,
            self.book,
        )
        t = time.perf_counter()
        for ev in self.stream[start : start + size]:
            dev = resolve(ev.device)
            for c in classify(ev, dev):
                fold(c, ev, dev, ev.ts)
        self.rows += len(book.take_dirty())
        book.tick(T0)
        self.seconds += time.perf_counter() - t
        self.batches += 1

    def result(self) -> dict[str, float]:
        n = len(self.stream)
        keys = set(self.book.open) | set(self.book._recent)
        return {
            "rules": float(self.n_rules),
            "compiled": float(len(self.engine.rules)),
            "names": float(self.names),
            "candidates": self.candidates,
            "events": float(n),
            "keys": float(len(keys)),
            "seconds": self.seconds,
            "eps": n / self.seconds,
            "us": self.seconds / n * 1e6,
            "rows_per_batch": self.rows / self.batches,
        }


def run_interleaved(
    sizes: list[int], n_events: int, n_keys: int, batch: int, spread: bool
) -> list[dict[str, float]]:
    """All rule sets side by side, one batch each in turn (rotating who goes first), so a
    noisy neighbour on the machine slows every set alike instead of whichever ran then."""
    lanes = [Lane(n, n_events, n_keys, min(sizes), spread) for n in sizes]
    gc.collect()
    for k, start in enumerate(range(0, n_events, batch)):
        size = min(batch, n_events - start)
        for i in range(len(lanes)):
            lanes[(k + i) % len(lanes)].batch(start, size)
    return [lane.result() for lane in lanes]


def run_storm(n_events: int, batch: int) -> dict[str, float]:
    from gateway.core.alarms import AlarmBook
    from gateway.core.inventory import Inventory
    from gateway.model import Event
    from rules import RuleEngine

    packs, names = make_packs(1000)
    engine = RuleEngine(packs)
    ev = Event(T0, "bench", "dev-00001", names[0], {"ifIndex": 1, "severity": "critical"})
    inventory = Inventory()
    book = AlarmBook(inventory=inventory)
    rows = 0
    batches = 0
    gc.collect()
    t = time.perf_counter()
    for start in range(0, n_events, batch):
        for _ in range(min(batch, n_events - start)):
            dev = inventory.resolve(ev.device)
            for c in engine.classify(ev, dev):
                book.fold(c, ev, dev, ev.ts)
        rows += len(book.take_dirty())
        batches += 1
    dt = time.perf_counter() - t
    [alarm] = book.open.values()
    assert alarm.count == n_events, "a storm's count must be exact"
    return {
        "events": float(n_events),
        "eps": n_events / dt,
        "us": dt / n_events * 1e6,
        "rows_per_batch": rows / batches,
        "count": float(alarm.count),
    }


def table(args: argparse.Namespace, sizes: list[int], spread: bool) -> float:
    """Run every size ``--repeat`` times, print a markdown table, return the cost ratio of
    the largest rule set to the smallest (best runs)."""
    runs: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
    for _ in range(args.repeat):
        for r in run_interleaved(sizes, args.events, args.keys, args.batch, spread):
            runs[int(r["rules"])].append(r)
    print(
        "stream spread over every event name the rule set has rules for:"
        if spread
        else f"the same stream for every rule set (the event names the {sizes[0]}-rule set has rules for):"
    )
    print()
    print(
        "| rules loaded (compiled) | event names in stream | candidate rules per event | fault keys | "
        "events/s (best) | µs per event (best) | µs per event (median) | alarm rows per batch |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    best = []
    for n in sizes:
        rs = sorted(runs[n], key=lambda r: r["us"])
        r, med = rs[0], rs[len(rs) // 2]
        best.append(r["us"])
        print(
            f"| {int(r['rules']):,} ({int(r['compiled']):,}) | {int(r['names']):,} | {r['candidates']:.2f} | "
            f"{int(r['keys']):,} | {r['eps']:,.0f} | {r['us']:.2f} | {med['us']:.2f} | "
            f"{r['rows_per_batch']:,.0f} |",
            flush=True,
        )
    print()
    return best[-1] / best[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--rules", default="10,100,1000")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.rules.split(",")]
    print(
        f"python {platform.python_version()} on {platform.machine()}; "
        f"{args.events:,} events over {args.keys:,} fault keys, batches of {args.batch}"
    )
    print()
    same = table(args, sizes, spread=False)
    spread = table(args, sizes, spread=True)
    s = run_storm(args.events, args.batch)
    print(
        f"storm: {int(s['events']):,} identical events (1,000 rules): {s['eps']:,.0f} events/s, "
        f"{s['us']:.2f} µs per event, {s['rows_per_batch']:.0f} alarm row per batch, count {int(s['count']):,}"
    )
    if len(sizes) > 1:
        print()
        print(
            f"cost per event, {sizes[-1]:,} rules vs {sizes[0]:,}: x{same:.2f} (same stream), "
            f"x{spread:.2f} (stream spread over every name)"
        )
        if same > 1.25:
            print("WARNING: cost per event grows with the number of rules", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
