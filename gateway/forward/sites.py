"""What a central's board shows of each site's link: the edges' own heartbeats (core NATS,
``<prefix>.hb.…``, every partition's), as last heard by this process.

An edge's heartbeat carries its buffered backlog (``queued``: events in its forward queue
not yet acknowledged by JetStream), the readings its queue bound dropped (``dropped``) and,
with the way back, the rule-set version it runs (``rules_version``).
Nothing here is stored or decided: the "site unreachable" alarm is the partition leader's
decision (its watchdog); this only says what this instance last heard, for the board.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from gateway.forward.config import ForwardConfig
from gateway.forward.connect import connect, shut_down

__all__ = ["EdgeHeartbeats"]

log = logging.getLogger("gateway.forward")


class EdgeHeartbeats:
    """Listens to every edge's heartbeat; ``seen[edge]`` is its last one with
    ``received_at`` (``clock()`` when it arrived)."""

    def __init__(self, cfg: ForwardConfig, resolve: Callable[[str], Any], clock: Callable[[], float], name: str) -> None:
        self.cfg = cfg
        self.resolve = resolve
        self.clock = clock
        self.name = name
        self.seen: dict[str, dict[str, Any]] = {}
        self._nc: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="edge-heartbeats")]

    async def stop(self) -> None:
        await shut_down(self._tasks, self._nc)

    async def _run(self) -> None:
        delay = 0.5
        while self._nc is None:
            try:
                self._nc = await connect(self.cfg, self.resolve, self.name)
            except Exception as e:  # noqa: BLE001 - any failure to connect: try again later
                log.warning("%s: cannot listen to the edges' heartbeats yet: %s", self.name, e)
                await asyncio.sleep(delay)  # why: reconnect backoff
                delay = min(delay * 2, 10.0)
        await self._nc.subscribe(self.cfg.filter_subject("hb", None), cb=self._on_heartbeat)

    async def _on_heartbeat(self, m: Any) -> None:
        try:
            d = json.loads(m.data)
            edge = str(d["edge"])
        except (ValueError, KeyError, TypeError):
            return
        self.seen[edge] = {"site": str(d.get("site", "")), "queued": _int(d.get("queued")),
                           "dropped": _int(d.get("dropped")), "rules_version": _int(d.get("rules_version")),
                           "received_at": self.clock()}


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None
