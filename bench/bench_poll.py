"""Benchmark of the liveness poller: 10,000 simulated agents polled for sysUpTime.0 — CPU per
poll and how evenly the polls are spread over the interval; pysnmp's asyncio command generator
polling the same agents is the reference.

Run (about a minute): ``python -m bench.bench_poll`` (``--devices 10000 --interval 10 --rounds 3
--reference 2000 --v3 300``). The agents are ``bench.poll_responder`` in a child process pinned
to CPU 1; the poller runs here, pinned to CPU 0, with a counting sink (no pipeline, no store).
``--v3 N`` also polls a real net-snmp ``snmpd`` N times with SNMPv3 authPriv (SHA/AES).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from adapters.base import AdapterContext
from adapters.poll.adapter import PollAdapter
from adapters.poll.config import PollConfig
from gateway.clock import SystemClock
from gateway.model import Device, Event

PER_PORT = 100


class Sink:
    def __init__(self) -> None:
        self.beats: list[float] = []
        self.per_device: Counter[str] = Counter()
        self.restarts = 0

    def offer(self, e: Event) -> bool:
        if e.name == "heartbeat":
            self.beats.append(e.ts)
            self.per_device[e.device] += 1
        else:
            self.restarts += 1
        return True


def _pin(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})
    except (AttributeError, OSError):
        pass


def start_responder(devices: int) -> tuple[subprocess.Popen[str], int]:
    ports = (devices + PER_PORT - 1) // PER_PORT
    for _ in range(20):
        base = random.randrange(20_000, 50_000)
        p = subprocess.Popen([sys.executable, "-m", "bench.poll_responder", "--base-port", str(base),
                              "--ports", str(ports), "--communities", str(PER_PORT), "--cpu", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout is not None
        line = p.stdout.readline()
        if line.strip() == "ready":
            return p, base
        p.wait()
    raise RuntimeError("could not start the responder (ports taken?)")


def _ctx(devices: list[Device]) -> AdapterContext:
    return AdapterContext(clock=SystemClock(), state_dir=Path(tempfile.gettempdir()), resolve_path=Path,
                          broker_down=lambda n: None, broker_up=lambda n: None, devices=lambda: devices)


async def run_poller(n: int, base: int, interval: float, rounds: int) -> dict[str, Any]:
    devices = [Device(f"agent-{i}", "network.switch", addresses=(f"127.0.0.1:{base + i // PER_PORT}",),
                      poll=f"snmp:c{i % PER_PORT}") for i in range(n)]
    cfg = PollConfig.model_validate({
        "interval": interval, "jitter": 0.1, "timeout": 2.0, "retries": 1, "max_in_flight": 256,
        "credentials": [{"name": f"c{c}", "community": f"c{c}"} for c in range(PER_PORT)],
    })
    poller, sink = PollAdapter(cfg, _ctx(devices)), Sink()
    t_sync = time.perf_counter()
    await poller.start(sink)  # type: ignore[arg-type]
    sync_s = time.perf_counter() - t_sync  # reading the inventory: once, then on changes
    t0 = time.time()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(interval * rounds)  # why: let the poller run its rounds
    await poller.stop()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    cpu = user + system
    wall = time.time() - t0
    st = poller.stats()
    # Spread: answers per one-second bucket over the whole rounds (the first round included:
    # polls are spread from the start, not burst).
    buckets = Counter(int(ts - t0) for ts in sink.beats if ts - t0 < interval * rounds)
    per_s = [buckets.get(s, 0) for s in range(int(interval * rounds))]
    polls = st.get("polls", 0)
    return {
        "devices": n, "sync_s": sync_s, "interval": interval, "rounds": rounds, "wall_s": wall, "cpu_s": cpu,
        "polls": polls, "answered": st.get("answered", 0), "unanswered": st.get("unanswered", 0),
        "open_at_stop": st.get("in_flight", 0),
        "sent": st.get("snmp.sent", 0), "restarts": sink.restarts, "in_flight_max": st.get("in_flight.max", 0),
        "cpu_us_per_poll": cpu / max(1, polls) * 1e6, "user_us_per_poll": user / max(1, polls) * 1e6,
        "sys_us_per_poll": system / max(1, polls) * 1e6,
        "per_s_mean": statistics.mean(per_s), "per_s_stdev": statistics.pstdev(per_s),
        "per_s_min": min(per_s), "per_s_max": max(per_s),
        "devices_polled": len(sink.per_device), "min_polls_per_device": min(sink.per_device.values(), default=0),
        "max_polls_per_device": max(sink.per_device.values(), default=0),
    }


async def run_pysnmp(k: int, base: int, concurrency: int = 10) -> dict[str, Any]:
    from pysnmp.hlapi.v3arch import asyncio as hl

    engine = hl.SnmpEngine()
    ok = 0
    sem = asyncio.Semaphore(concurrency)
    targets: dict[int, Any] = {}

    async def one(i: int) -> None:
        nonlocal ok
        port = base + (i // PER_PORT) % 100
        async with sem:
            t = targets.get(port)
            if t is None:
                t = targets[port] = await hl.UdpTransportTarget.create(("127.0.0.1", port), timeout=2, retries=1)
            # One community for all: pysnmp's best case (each community is an entry in its
            # engine's configuration, and more of them make every request slower).
            err, status, _, vbs = await hl.get_cmd(engine, hl.CommunityData("c0", mpModel=1), t,
                                                   hl.ContextData(), hl.ObjectType(hl.ObjectIdentity("1.3.6.1.2.1.1.3.0")),
                                                   lookupMib=False)
            if not err and not status and vbs:
                ok += 1

    for port in range(min(100, k // PER_PORT + 1)):  # engine and transports set up outside the measurement
        await one(port * PER_PORT)
    ok = 0
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
    await asyncio.gather(*(one(i) for i in range(k)))
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.time() - t0
    user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    engine.close_dispatcher()
    return {"polls": k, "answered": ok, "cpu_s": user + system, "wall_s": wall,
            "cpu_us_per_poll": (user + system) / k * 1e6, "user_us_per_poll": user / k * 1e6,
            "sys_us_per_poll": system / k * 1e6}


async def run_v3(k: int) -> dict[str, Any] | None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        from tests.fixtures.snmpd import V3_AUTH, V3_PRIV, V3_USER, Snmpd
    except ImportError:
        return None
    import shutil

    if not (shutil.which("snmpd") or os.path.exists("/usr/sbin/snmpd")):
        return None
    from adapters.poll.config import PollCredential
    from adapters.poll.usm import V3Getter

    with tempfile.TemporaryDirectory() as tmp:
        agent = Snmpd(Path(tmp)).start()
        try:
            cred = PollCredential(name="v3", version="3", user=V3_USER, auth_protocol="SHA", auth_key=V3_AUTH,  # type: ignore[arg-type]
                                  priv_protocol="AES", priv_key=V3_PRIV)  # type: ignore[arg-type]
            g = V3Getter()
            await g.uptime("127.0.0.1", agent.port, cred, 2.0, 1)  # discovery outside the measurement
            ok = 0
            sem = asyncio.Semaphore(20)

            async def one() -> None:
                nonlocal ok
                async with sem:
                    answered, uptime, _ = await g.uptime("127.0.0.1", agent.port, cred, 2.0, 1)
                    ok += answered and uptime is not None

            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
            await asyncio.gather(*(one() for _ in range(k)))
            r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.time() - t0
            cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            g.close()
        finally:
            agent.stop()
    return {"polls": k, "answered": ok, "cpu_s": cpu, "wall_s": wall, "cpu_us_per_poll": cpu / k * 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reference", type=int, default=2_000, help="polls made with pysnmp's get_cmd (0: skip)")
    ap.add_argument("--v3", type=int, default=300, help="SNMPv3 polls of a real snmpd (0: skip)")
    a = ap.parse_args()
    _pin(0)
    proc, base = start_responder(a.devices)
    try:
        ours = asyncio.run(run_poller(a.devices, base, a.interval, a.rounds))
        ref = asyncio.run(run_pysnmp(a.reference, base)) if a.reference else None
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    v3 = asyncio.run(run_v3(a.v3)) if a.v3 else None
    print(f"poller: {ours['devices']} devices, interval {ours['interval']:g} s, {ours['rounds']} rounds, "
          f"wall {ours['wall_s']:.1f} s")
    print(f"  start (inventory read, {ours['devices']} devices scheduled): {ours['sync_s'] * 1000:.0f} ms")
    print(f"  polls {ours['polls']}  answered {ours['answered']}  unanswered {ours['unanswered']}  "
          f"still open at stop {ours['open_at_stop']}  "
          f"requests sent {ours['sent']}  restarts {ours['restarts']}  in flight max {ours['in_flight_max']}")
    print(f"  CPU {ours['cpu_s']:.2f} s = {ours['cpu_us_per_poll']:.1f} µs per poll (user {ours['user_us_per_poll']:.1f}, "
          f"kernel {ours['sys_us_per_poll']:.1f}); {ours['cpu_s'] / ours['wall_s'] * 100:.1f} % of one core")
    print(f"  answers per second: mean {ours['per_s_mean']:.1f}  stdev {ours['per_s_stdev']:.1f}  "
          f"min {ours['per_s_min']}  max {ours['per_s_max']} (ideal {ours['devices'] / ours['interval']:.0f})")
    print(f"  devices answered {ours['devices_polled']}  polls per device {ours['min_polls_per_device']}"
          f"..{ours['max_polls_per_device']}")
    if ref:
        print(f"pysnmp get_cmd v2c (reference): {ref['polls']} polls, answered {ref['answered']}, "
              f"CPU {ref['cpu_s']:.2f} s = {ref['cpu_us_per_poll']:.1f} µs per poll (user {ref['user_us_per_poll']:.1f}, "
              f"kernel {ref['sys_us_per_poll']:.1f}); "
              f"ratio ours/pysnmp = {ours['cpu_us_per_poll'] / ref['cpu_us_per_poll']:.3f}")
    if v3:
        print(f"SNMPv3 authPriv SHA/AES via pysnmp against snmpd: {v3['polls']} polls, answered {v3['answered']}, "
              f"CPU {v3['cpu_s']:.2f} s = {v3['cpu_us_per_poll']:.0f} µs per poll")
    print(f"responder: {out.strip()}")
    checks = [
        ours["answered"] + ours["open_at_stop"] == ours["polls"] and ours["unanswered"] == 0,
        ours["devices_polled"] == ours["devices"],
        ours["restarts"] == 0,
        ref is None or ref["answered"] == ref["polls"],
    ]
    if not all(checks):
        print("COUNT CHECK FAILED", checks)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
