"""Heartbeat losses through the running pipeline on a manual clock: a mass loss is raised in
bounded chunks, each committed with its alarms and tickets, with heartbeats and commands
served between them; a heartbeat that waited in the queue past its device's deadline still
counts before the deadline is judged. Events are offered to the pipeline directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.config import config_from_dict
from gateway.core.alarms import RAISED
from gateway.core.watchdog import LOST
from gateway.model import Event
from tests.helpers import base_config, eventually

INTERVAL = 10.0
TOLERANCE = 3


def _config(tmp_path: Path, n: int) -> Any:
    devices = [{"id": f"gas-{k:02d}", "class": "mine.gas-sensor", "site": "north", "region": "shanxi",
                "policy": "mine-monitoring", "heartbeat_interval": INTERVAL} for k in range(n)]
    d = base_config(tmp_path / "var", devices=devices, rules={"packs": ["mine"]},
                    liveness={"default_interval": INTERVAL, "tolerance": TOLERANCE, "grace": 0})
    return config_from_dict(d, "t.toml", str(tmp_path))


class LossLog:
    """Change listener: the losses raised in each commit, in commit order."""

    def __init__(self) -> None:
        self.commits: list[list[str]] = []

    def __call__(self, alarms: list[Any], tickets: list[Any], changes: list[Any]) -> None:
        raised = [ch.alarm.device for ch in changes if getattr(ch, "kind", None) == RAISED and ch.alarm.event == LOST]
        if raised:
            self.commits.append(raised)

    @property
    def devices(self) -> list[str]:
        return [d for c in self.commits for d in c]


async def test_mass_loss_is_committed_in_chunks_with_work_between(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Gateway(_config(tmp_path, 30), clock=clock) as gw:
        log = LossLog()
        gw.pipeline.listeners.append(log)
        gw.pipeline.loss_chunk = 4
        await gw.pipeline.execute(lambda now: None)
        clock.advance(INTERVAL * TOLERANCE + 1)  # everyone is past the deadline
        served: list[int] = []
        gw.pipeline.command_nowait(lambda now: served.append(len(log.devices)))
        await gw.pipeline.execute(lambda now: None)
        gw.pipeline.command_nowait(lambda now: served.append(len(log.devices)))
        await eventually(lambda: len(log.devices) == 30, timeout=10)
        assert [len(c) for c in log.commits] == [4] * 7 + [2]
        assert sorted(log.devices) == [f"gas-{k:02d}" for k in range(30)]
        # The commands were served while the loss was still being raised, not after it.
        assert served[0] == 0 and served[1] < 30
        await gw.pipeline.execute(lambda now: None)
        tickets = gw.store.list_tickets()
        assert len(tickets) == 30 and {t["alarm_key"] for t in tickets} == {f"gas-{k:02d}/reachability" for k in range(30)}


async def test_a_queued_heartbeat_counts_before_its_deadline_is_judged(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Gateway(_config(tmp_path, 2), clock=clock) as gw:
        log = LossLog()
        gw.pipeline.listeners.append(log)
        await gw.pipeline.execute(lambda now: None)
        deadline = clock.now() + INTERVAL * TOLERANCE
        # gas-00's heartbeat arrived just before its deadline, but the writer sees it only
        # after the deadline has passed (it waited in the queue): no false loss.
        clock.advance(INTERVAL * TOLERANCE + 0.5)
        assert gw.pipeline.offer(Event(deadline - 0.1, "mqtt", "gas-00", "heartbeat", {}))
        await gw.pipeline.execute(lambda now: None)
        await gw.pipeline.execute(lambda now: None)
        assert log.devices == ["gas-01"]
        assert [a["key"] for a in gw.store.list_alarms()] == ["gas-01/reachability"]
