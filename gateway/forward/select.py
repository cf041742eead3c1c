"""Which decided events cross the WAN, as forward-queue rows (pure: no I/O).

Crosses: traps and every other event except raw heartbeats; heartbeat **transitions**
(``heartbeat.lost`` / ``heartbeat.restored``, at the time the edge's watchdog decided them);
status messages a rule classifies (a fault or its clearing); the gateway's own alarms.
Stays: raw heartbeats (the edge's watchdog sees them in real time; the central only needs
the transitions), and status messages no rule classifies (readings) unless ``readings`` is
on, then at most one per device per ``reading_every`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.forward.config import ForwardConfig
from gateway.model import Device, Event
from gateway.store import ForwardRow

__all__ = ["ForwardTap", "to_payload"]


_SCALARS = (str, int, float, bool, type(None))


def to_payload(ev: Event, dev: Device, site: str, edge: str) -> dict[str, Any]:
    """The message body: the event as decided at the edge, with its original time."""
    return {
        "ts": ev.ts, "source": ev.source, "device": dev.id, "name": ev.name,
        "attrs": {k: v for k, v in ev.attrs.items() if isinstance(v, _SCALARS)},
        "peer": ev.peer, "site": site, "edge": edge, "class": dev.device_class,
    }


class ForwardTap:
    """Called with every event the edge's decision core decided (its ``recorder`` hook);
    :meth:`take` hands the rows of the step to the pipeline, which commits them with it.

    Args:
        cfg: the ``[forward]`` section.
        resolve: device lookup (the inventory's ``resolve``).
        is_fault: whether rules classify an event of a device (status messages only).
        heartbeats: the event names that count as heartbeats.
    """

    def __init__(
        self, cfg: ForwardConfig, resolve: Callable[[str], Device], is_fault: Callable[[Event, Device], bool],
        heartbeats: frozenset[str],
    ) -> None:
        self.cfg = cfg
        self.resolve = resolve
        self.is_fault = is_fault
        self.heartbeats = heartbeats
        self.limit = cfg.queue_size
        self._site, self._edge = cfg.site, cfg.edge_name
        self._rows: list[ForwardRow] = []
        self._last_reading: dict[str, float] = {}
        self.on_commit: Callable[[], object] | None = None

    def __call__(self, ev: Event) -> None:
        if ev.name == "heartbeat":
            return
        dev = self.resolve(ev.device)
        fault = True
        if ev.name in self.heartbeats:
            if self.is_fault(ev, dev):
                pass
            elif not self.cfg.readings:
                return
            else:
                last = self._last_reading.get(dev.id)
                if last is not None and ev.ts - last < self.cfg.reading_every:
                    return
                self._last_reading[dev.id] = ev.ts
                fault = False
        self._rows.append(ForwardRow(ev.ts, fault, to_payload(ev, dev, self._site, self._edge)))

    def committed(self) -> None:
        """Rows were committed (the publisher sets this to wake itself)."""
        cb = self.on_commit
        if cb is not None:
            cb()

    def take(self) -> list[ForwardRow]:
        rows, self._rows = self._rows, []
        return rows
