"""Politeness at scale, against the benchmark's simulated agents (real UDP): the in-flight cap
holds, devices that do not answer are polled less and less (backoff), answering ones keep
their interval, and nothing answered is counted as lost."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.base import AdapterContext
from adapters.poll.adapter import PollAdapter
from adapters.poll.config import PollConfig
from bench.poll_responder import Responder
from gateway.clock import SystemClock
from gateway.model import Device, Event
from tests.fixtures.netsnmp import free_udp_port
from tests.helpers import eventually


class Sink:
    def __init__(self) -> None:
        self.beats: Counter[str] = Counter()

    def offer(self, e: Event) -> bool:
        if e.name == "heartbeat":
            self.beats[e.device] += 1
        return True


@pytest.fixture
def responder() -> Iterator[Responder]:
    r = Responder(free_udp_port(), ports=1, communities=1)  # answers community "c0" only
    t = threading.Thread(target=r.serve, daemon=True)
    t.start()
    yield r
    r.stop()
    t.join(5)
    r.close()


async def test_cap_backoff_and_steady_answers(responder: Responder, tmp_path: Path) -> None:
    port = responder.socks[0].getsockname()[1]
    good = [Device(f"good-{i}", addresses=(f"127.0.0.1:{port}",), poll="snmp:c0") for i in range(50)]
    bad = [Device(f"bad-{i}", addresses=(f"127.0.0.1:{port}",), poll="snmp:wrong") for i in range(50)]
    devices = good + bad
    cfg = PollConfig.model_validate({
        "interval": 0.5, "jitter": 0.1, "timeout": 0.3, "retries": 0, "max_in_flight": 10,
        "backoff_after": 2, "backoff_max": 4.0,
        "credentials": [{"name": "c0", "community": "c0"}, {"name": "wrong", "community": "nope"}],
    })
    watched: list[tuple[str, float]] = []
    ctx = AdapterContext(clock=SystemClock(), state_dir=tmp_path, resolve_path=Path, broker_down=lambda n: None,
                         broker_up=lambda n: None, devices=lambda: devices, watch=watched.extend)
    poller, sink = PollAdapter(cfg, ctx), Sink()
    await poller.start(sink)  # type: ignore[arg-type]
    try:
        assert sorted(watched) == sorted((d.id, 0.5) for d in devices)  # handed to the watchdog
        await eventually(lambda: poller.stats().get("unanswered", 0) >= 300, timeout=30,
                         what=lambda: str(poller.stats()))
        await asyncio.sleep(2.0)  # why: let backoff settle (bad devices now wait up to 4 s)
        st = poller.stats()
    finally:
        await poller.stop()
    assert st["in_flight.max"] <= 10 and st["waited.in_flight_cap"] > 0
    assert all(sink.beats[d.id] >= 3 for d in good), sink.beats
    assert not any(sink.beats[d.id] for d in bad)
    bad_polls = st["snmp.sent"] - sum(sink.beats.values())  # retries = 0: one request per poll
    good_polls = sum(sink.beats.values())
    # Backed-off devices are polled markedly less often than answering ones.
    assert bad_polls < 0.7 * good_polls, (bad_polls, good_polls)
    assert max(poller.plan.failures(d.id) for d in bad) >= 3
    assert all(poller.plan.failures(d.id) == 0 for d in good)
