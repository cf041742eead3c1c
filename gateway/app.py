"""Composition root: builds everything from Config in one straight function; tears down in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from adapters import REGISTRY
from gateway.alarms import AlarmBook
from gateway.calendars import default_calendars
from gateway.clock import Clock, SystemClock
from gateway.config import Config, build_devices, build_policies
from gateway.inventory import Inventory
from gateway.pipeline import Pipeline
from gateway.rulebook import load_rules
from gateway.store.sqlite import SqliteStore
from gateway.tickets import TicketDesk

__all__ = ["Gateway"]

log = logging.getLogger("gateway")


class Gateway:
    """The running daemon's parts. ``async with Gateway(cfg) as gw:`` starts them all
    (store, state, pipeline, then adapters last) and stops them in reverse (adapters first,
    then the queue is drained and committed, then the store closes)."""

    def __init__(self, cfg: Config, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.adapters: list[Any] = []
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Gateway:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        cfg = self.cfg
        data_dir = cfg.data_path()
        data_dir.mkdir(parents=True, exist_ok=True)

        self.store = SqliteStore(cfg.data_path(cfg.store.path), synchronous=cfg.store.synchronous)
        self._stack.callback(self.store.close)

        self.policies = build_policies(cfg)
        self.calendars = default_calendars([str(cfg.resolve_path(d)) for d in cfg.calendars.holiday_dirs])
        self.engine = load_rules(cfg)
        self.inventory = Inventory(build_devices(cfg), cfg.inventory.default_policy)

        next_alarm, next_ticket = self.store.next_ids()
        self.book = AlarmBook(next_alarm)
        self.book.load(self.store.load_open_alarms())
        self.desk = TicketDesk(self.policies, self.calendars, next_ticket)
        self.desk.load(self.store.load_open_tickets(), next_ticket)

        self.pipeline = Pipeline(
            engine=self.engine,
            inventory=self.inventory,
            book=self.book,
            desk=self.desk,
            policies=self.policies,
            store=self.store,
            clock=self.clock,
            queue_size=cfg.pipeline.queue_size,
            batch_max=cfg.pipeline.batch_max,
            instance=cfg.gateway.instance,
            connectors=[h.name for h in cfg.helpdesk],
        )
        await self.pipeline.start()
        self._stack.push_async_callback(self.pipeline.stop)

        await self._start_helpdesk()

        # Adapters start last and stop first, so nothing arrives at a stopped pipeline.
        resolver = None
        if cfg.adapters.snmp:
            mib_dirs = sorted({str(cfg.resolve_path(d)) for s in cfg.adapters.snmp for d in s.mib_dirs})
            resolver = await asyncio.to_thread(_load_mibs, mib_dirs)
        for kind, configs in (("snmp", cfg.adapters.snmp),):
            for acfg in configs:
                adapter = REGISTRY[kind](acfg, clock=self.clock, resolver=resolver, state_dir=data_dir)
                await adapter.start(self.pipeline)
                self._stack.push_async_callback(adapter.stop)
                self.adapters.append(adapter)
        log.info(
            "gateway ready: %d rules, %d devices, %d policies, %d open alarms, %d open tickets, store %s",
            len(self.engine.rules), len(self.inventory), len(self.policies), len(self.book.open),
            len(self.desk.open), Path(self.store.path),
        )


    async def _start_helpdesk(self) -> None:
        """Outbox worker and two-way sync for the configured help desks (none: nothing runs)."""
        cfg = self.cfg
        self.outbox = None
        if not cfg.helpdesk:
            return
        from gateway.helpdesk import CONNECTORS
        from gateway.outbox import OutboxWorker, SyncPoller

        connectors = {h.name: CONNECTORS[h.type][1](h) for h in cfg.helpdesk}
        self.outbox = OutboxWorker(
            self.store, connectors, self.clock,
            base_delay=cfg.outbox.retry_base, max_delay=cfg.outbox.retry_max,
            concurrency=cfg.outbox.concurrency, on_failed=self._delivery_failed,
        )
        await self.outbox.start()
        self._stack.push_async_callback(self.outbox.stop)
        self.pipeline.listeners.append(lambda alarms, tickets, changes: self.outbox.kick() if tickets else None)
        self.sync = SyncPoller(self.store, connectors, self.clock, self._apply_remote, interval=cfg.outbox.poll_interval)
        await self.sync.start()
        self._stack.push_async_callback(self.sync.stop)

    def _delivery_failed(self, connector: str, ticket_id: int, err: Any) -> None:
        from gateway.model import Event

        self.pipeline.offer(Event(
            self.clock.now(), "outbox", f"helpdesk:{connector}", "helpdesk.delivery_failed",
            {"reason": err.reason, "ticket": ticket_id, "detail": str(err)[:200]},
        ))

    async def _apply_remote(self, connector: str, ticket_id: int, change: Any) -> None:
        """A change made in the help desk moves the ticket (through the single writer).
        Closing there while the fault is still active here is a conflict: recorded and
        shown on the ticket, not silently applied."""
        from gateway.alarms import ACTIVE
        from gateway.outbox import SyncPoller
        from gateway.tickets import TicketError

        action = SyncPoller.action_for(change)
        if action is None:
            return
        actor = f"helpdesk:{connector}"

        def apply(now: float) -> None:
            t = self.desk.open.get(ticket_id)
            if t is None:
                return
            at = min(max(change.at, t.opened_at), now)
            alarm = self.book.open.get(t.alarm_key)
            if action in ("restore", "close") and alarm is not None and alarm.state == ACTIVE:
                self.desk.act(ticket_id, "comment", at, actor,
                              f"conflict: {change.status} in the help desk while the fault is still active here; "
                              f"not applied. {change.note}".strip())
                return
            try:
                self.desk.act(ticket_id, action, at, actor, change.note)
            except TicketError as e:
                log.info("help-desk change for ticket %d not applied: %s", ticket_id, e)

        await self.pipeline.execute(apply)


def _load_mibs(extra_dirs: list[str]) -> Any:
    from adapters.snmp.mibs import MibResolver

    return MibResolver(extra_dirs=extra_dirs)
