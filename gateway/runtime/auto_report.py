"""Automatic incident reports: a restored ticket whose four report parts are written is
queued for the customer by itself, once, when a notifier of its contract says
``auto_report = true`` (the contract's 48 h count to the delivery, so nobody must remember
to press *send*). Once means once across restarts: a ``report_queued`` entry in the
ticket's timeline (committed with the queueing) marks it done."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway.clock import Clock
from gateway.core.tickets import REPORT_FIELDS, Ticket, TicketDesk, TicketError
from gateway.runtime.background import Background
from gateway.store import StoreReader

__all__ = ["AutoReporter", "auto_report_due"]

log = logging.getLogger("gateway.auto_report")

ACTOR = "auto-report"


def _matches(h: Any, policy: str) -> bool:
    return not h.policies or any(fnmatch.fnmatchcase(policy, g) for g in h.policies)


def auto_report_due(t: Ticket, helpdesks: Sequence[Any]) -> list[str]:
    """The report notifiers to queue ``t``'s report for now, or ``[]``: it is restored, its
    report parts are all written, and a notifier of its contract sends reports by itself."""
    if t.status != "restored" or not all((t.report.get(f) or "").strip() for f in REPORT_FIELDS):
        return []
    notifiers = [h for h in helpdesks if getattr(h, "type", "") == "notify" and getattr(h, "reports", False)
                 and _matches(h, t.policy)]
    if not any(getattr(h, "auto_report", False) for h in notifiers):
        return []
    return [h.name for h in notifiers]


class AutoReporter(Background):
    """Queues due reports when tickets change (:meth:`kick`) and every ``interval`` seconds."""

    task_name = "auto-report"

    def __init__(self, store: StoreReader, desk: TicketDesk, clock: Clock, helpdesks: Sequence[Any], tz: str,
                 execute: Callable[[Callable[[float], Any]], Awaitable[Any]], calendars: Any = None,
                 interval: float = 60.0) -> None:
        super().__init__()
        self.store, self.desk, self.clock, self.helpdesks, self.tz = store, desk, clock, list(helpdesks), tz
        self.execute, self.calendars, self.interval = execute, calendars, interval
        self._done: set[int] = set()
        self._wake = asyncio.Event()

    def kick(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as e:  # noqa: BLE001 - one bad ticket must not stop the reports of others
                log.error("automatic incident reports: %s: %s (retried at the next change)", type(e).__name__, e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()

    async def sweep(self) -> list[int]:
        """Queue every due report not queued yet; return the tickets queued."""
        from gateway.core.report import incident_report

        queued = []
        for t in [t for t in self.desk.open.values() if t.id not in self._done]:
            to = auto_report_due(t, self.helpdesks)
            if not to:
                continue
            timeline = await asyncio.to_thread(self.store.timeline, t.id)
            if any(e["kind"] == "report_queued" for e in timeline):
                self._done.add(t.id)  # sent already (by hand, or before a restart)
                continue
            stored = await asyncio.to_thread(self.store.load_ticket, t.id)
            if stored is None:
                continue
            alarm = await asyncio.to_thread(self.store.get_alarm, stored.alarm_id)
            text = incident_report(stored, timeline, tz=self.tz, now=self.clock.now(), alarm=alarm,
                                   calendars=self.calendars)
            tid = t.id
            try:
                await self.execute(lambda at: self.desk.queue_report(tid, at, ACTOR, to, text))  # noqa: B023 - awaited here
            except TicketError as e:
                log.info("ticket %d: automatic report not queued: %s", tid, e)
                continue
            self._done.add(tid)
            queued.append(tid)
            log.info("ticket %d: incident report queued for %s (automatic)", tid, ", ".join(to))
        return queued
