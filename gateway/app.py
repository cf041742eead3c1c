"""Composition root: builds everything from Config in one straight function; tears down in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

from adapters import REGISTRY
from gateway.alarms import AlarmBook
from gateway.calendars import default_calendars
from gateway.clock import Clock, SystemClock
from gateway.config import Config, build_devices, build_policies, load_config
from gateway.errors import ConfigError
from gateway.inventory import Inventory
from gateway.maintenance import MaintenanceBook, Window, new_window, windows_from_config
from gateway.pipeline import Pipeline
from gateway.rulebook import load_rules
from gateway.store.sqlite import SqliteStore
from gateway.tickets import TicketDesk

__all__ = ["Gateway"]

log = logging.getLogger("gateway")

LIVENESS_FILE = "liveness.json"


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

    async def __aexit__(self, *exc: object) -> None:
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
        self.maintenance = MaintenanceBook(self._maintenance_windows(cfg))
        self.maintenance_hooks = MaintenanceHooks(self)

        next_alarm, next_ticket = self.store.next_ids()
        self.book = AlarmBook(next_alarm, inventory=self.inventory, maintenance=self.maintenance)
        self.book.load(self.store.load_open_alarms())
        self.desk = TicketDesk(self.policies, self.calendars, next_ticket)
        self.desk.load(self.store.load_open_tickets(), next_ticket)
        self.desk.loader = self.store.load_ticket  # reopening a closed ticket reads it back

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
        self.recorder = None
        if cfg.pipeline.record:
            from gateway.recorder import JsonlRecorder

            self.recorder = JsonlRecorder(cfg.resolve_path(cfg.pipeline.record))
            self.pipeline.recorder = self.recorder
            self._stack.callback(self.recorder.close)  # runs after the pipeline drained
        self.timeseries = None
        if cfg.timeseries.enabled:
            from gateway.timeseries import TimeseriesSink

            self.timeseries = TimeseriesSink(cfg.timeseries, resolve=self.inventory.resolve)
            await self.timeseries.start()
            # Pushed before the pipeline's stop, so it runs after it: the last batches are written too.
            self._stack.push_async_callback(self.timeseries.stop)
            self.pipeline.telemetry = self.timeseries.offer_event
            self.pipeline.listeners.append(self.timeseries.on_commit)
        self._start_liveness()
        await self.pipeline.start()
        self._stack.push_async_callback(self.pipeline.stop)
        if self.recorder is not None:
            flusher = asyncio.create_task(_flush_every(self.recorder, 1.0), name="recorder-flush")
            self._stack.push_async_callback(_cancel, flusher)

        await self._start_helpdesk()

        # Adapters start last and stop first, so nothing arrives at a stopped pipeline.
        resolver = None
        if cfg.adapters.snmp:
            mib_dirs = sorted({str(cfg.resolve_path(d)) for s in cfg.adapters.snmp for d in s.mib_dirs})
            resolver = await asyncio.to_thread(_load_mibs, mib_dirs)
        for kind, configs in (("snmp", cfg.adapters.snmp), ("mqtt", cfg.adapters.mqtt)):
            for acfg in configs:
                adapter = REGISTRY[kind](acfg, clock=self.clock, resolver=resolver, state_dir=data_dir,
                                         instance=cfg.gateway.instance)
                if kind == "mqtt":
                    # Broker outages pause loss detection; reconnects re-arm deadlines (no false storm).
                    adapter.on_disconnected = self._broker_down
                    adapter.on_connected = self._broker_up
                await adapter.start(self.pipeline)
                self._stack.push_async_callback(adapter.stop)
                self.adapters.append(adapter)
        self.api = None
        if cfg.api.enabled:
            from gateway.api.server import start_api

            self.api = await start_api(self)
            self._stack.push_async_callback(self.api.stop)
        # Last: `gateway rules reload` signals this PID, so it must name a ready daemon.
        self._pid_file = data_dir / PID_FILE
        self._pid_file.write_text(f"{os.getpid()}\n", "utf-8")
        self._stack.callback(_remove_pid, self._pid_file)
        log.info(
            "gateway ready: %d rules, %d devices, %d policies, %d open alarms, %d open tickets, store %s",
            len(self.engine.rules), len(self.inventory), len(self.policies), len(self.book.open),
            len(self.desk.open), Path(self.store.path),
        )
        # Everything built so far (inventory, watchdog columns, rules) lives as long as the
        # process: move it out of the collector's sight. At a million devices a full
        # collection otherwise walks the whole inventory and holds the writer for 1-2 s.
        # (Finalizer warnings of garbage made before the gateway started, e.g. by an embedding
        # process, are not the gateway's to report.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        gc.freeze()


    def _start_liveness(self) -> None:
        """The liveness watchdog: inventory devices with an interval are watched from the
        start; after a restart everyone gets a grace period instead of a burst of losses."""
        from gateway.watchdog import Watchdog

        lv = self.cfg.liveness
        self.watchdog = Watchdog(lv.default_interval, lv.tolerance, grace=lv.grace, learn=lv.learn,
                                 class_intervals=dict(lv.class_intervals))
        now = self.clock.now()
        snap = self.cfg.data_path(LIVENESS_FILE)
        if snap.exists():
            try:
                self.watchdog.restore(json.loads(snap.read_text("utf-8")))
            except (ValueError, KeyError, TypeError) as e:
                log.warning("liveness state %s unreadable, starting fresh: %s", snap, e)
        for d in self.inventory:
            if d.heartbeat_interval is not None or d.device_class in lv.class_intervals:
                self.watchdog.track(d.id, interval=d.heartbeat_interval, device_class=d.device_class, now=now)
        self.watchdog.restart_grace(now)
        self.pipeline.watchdog = self.watchdog
        self.pipeline.liveness_events = frozenset(lv.events)
        self.pipeline.track_unknown = lv.unknown_devices == "track"
        self._stack.callback(self._save_liveness)  # after the pipeline has drained

    def _save_liveness(self) -> None:
        path = self.cfg.data_path(LIVENESS_FILE)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.watchdog.snapshot()), "utf-8")
        os.replace(tmp, path)

    def _broker_down(self, now: float) -> None:
        self.pipeline.command_nowait(lambda n: self.watchdog.broker_down(now))

    def _broker_up(self, now: float) -> None:
        self.pipeline.command_nowait(lambda n: self.watchdog.broker_up(now))

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

    # -- hot reload and maintenance windows -------------------------------------------------
    def _maintenance_windows(self, cfg: Config) -> list[Window]:
        """Windows from the config, overlaid by the store's (an API-ended config window is
        stored under its id, and the stored version wins). Raises ConfigError."""
        windows = {w.id: w for w in windows_from_config(cfg)}
        for d in self.store.list_maintenance():
            w = Window.from_dict(d)
            windows[w.id] = w
        return list(windows.values())

    def _load_for_reload(self) -> tuple[Config, Any, dict[str, Any], Inventory, list[Window]]:
        source = Path(self.cfg.source)
        cfg = load_config(source) if source.is_file() else self.cfg
        engine = load_rules(cfg)
        policies = build_policies(cfg)
        inventory = Inventory(build_devices(cfg), cfg.inventory.default_policy)
        return cfg, engine, policies, inventory, self._maintenance_windows(cfg)

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file and its rule packs (SIGHUP, ``gateway rules reload``, the
        API) and swap rules, policies, inventory and maintenance windows between two batches.

        A bad file is rejected whole: the error is logged with its file and key, the rules
        and policies that were live stay live, and a ConfigError is raised to a caller
        that awaits the result (the SIGHUP handler does not, so there it is only logged).
        Sections that need a restart (adapters, store, API, ...) are not touched; a change
        to them is logged.

        Returns:
            ``{"ok": True, "rules": n, "policies": n, "devices": n, "maintenance": n}``.
        """
        now = self.clock.now()
        try:
            cfg, engine, policies, inventory, windows = await asyncio.to_thread(self._load_for_reload)
        except ConfigError as e:
            for err in getattr(e, "errors", [e]):
                log.error("reload rejected, the previous rules and policies stay live: %s", err)
            self._reload_status({"at": now, "ok": False, "error": str(e)})
            task = asyncio.current_task()
            if task is not None and getattr(task.get_coro(), "cr_frame", None) is inspect.currentframe():
                return {"ok": False, "error": str(e)}  # a fire-and-forget task (SIGHUP): nobody awaits
            raise
        restart = [k for k in ("gateway", "pipeline", "store", "adapters", "api", "outbox", "helpdesk", "calendars")
                   if k in type(cfg).model_fields
                   and getattr(cfg, k) != getattr(self.cfg, k)]
        if restart:
            log.warning("reload: changes to [%s] take effect after a restart", "], [".join(restart))

        def swap(_now: float) -> None:
            # Tickets of a policy the new config dropped keep their contract until closed.
            merged = dict(policies)
            for t in self.desk.open.values():
                if t.policy not in merged and t.policy in self.policies:
                    merged[t.policy] = self.policies[t.policy]
            p = self.pipeline
            p.engine, p.policies, p.inventory = engine, merged, inventory
            self.desk.policies = merged
            self.book.inventory = inventory
            self.maintenance.replace_all(windows)
            self.book.recheck_suppressed()  # parents or windows may have changed
            self.engine, self.policies, self.inventory = engine, merged, inventory
            for section in ("rules", "policies", "devices", "inventory", "maintenance"):
                setattr(self.cfg, section, getattr(cfg, section))

        await self.pipeline.execute(swap)
        result = {"ok": True, "rules": len(engine.rules), "policies": len(policies), "devices": len(inventory),
                  "maintenance": len(windows)}
        log.info("reloaded: %d rules from packs %s, %d policies, %d devices, %d maintenance windows",
                 len(engine.rules), ", ".join(engine.packs) or "-", len(policies), len(inventory), len(windows))
        self._reload_status({"at": now, **result})
        return result

    def _reload_status(self, status: dict[str, Any]) -> None:
        """Leave the outcome where ``gateway rules reload`` looks for it."""
        try:
            (self.cfg.data_path() / RELOAD_STATUS_FILE).write_text(json.dumps(status), "utf-8")
        except OSError as e:
            log.warning("cannot write the reload status: %s", e)

    async def add_maintenance(
        self,
        *,
        end: float,
        start: float | None = None,
        devices: list[str] | tuple[str, ...] = (),
        sites: list[str] | tuple[str, ...] = (),
        classes: list[str] | tuple[str, ...] = (),
        author: str = "",
        reason: str = "",
        window_id: str | None = None,
        source: str = "api",
    ) -> Window:
        """Create a maintenance window (persisted first, then live). Raises MaintenanceError."""
        now = self.clock.now()
        w = new_window(
            window_id or f"mw-{uuid.uuid4().hex[:8]}", now if start is None else start, end, devices=devices,
            sites=sites, classes=classes, author=author, reason=reason, source=source, created_at=now,
        )
        await asyncio.to_thread(self.store.save_maintenance, w.to_dict())
        await self.pipeline.execute(lambda _now: self.maintenance.add(w))
        log.info("maintenance window %s added by %s: %s (%s)", w.id, author or "-", w.scope_text(), reason)
        return w

    async def end_maintenance(self, window_id: str, by: str = "") -> Window:
        """End a window now; alarms it suppressed become active at once if their fault is
        still there. Raises UnknownWindow or MaintenanceError (already ended)."""
        ended: Window = await self.pipeline.execute(lambda now: self.maintenance.end(window_id, now, by))
        await asyncio.to_thread(self.store.save_maintenance, ended.to_dict())
        log.info("maintenance window %s ended by %s", window_id, by or "-")
        return ended


class MaintenanceHooks:
    """Maintenance windows for the API (gateway.api.deps.MaintenanceHooks): dicts in and out."""

    def __init__(self, gw: Gateway) -> None:
        self._gw = gw

    def list(self, include_ended: bool = False) -> list[dict[str, Any]]:
        now = self._gw.clock.now()
        out = []
        for w in self._gw.maintenance.windows(now, include_past=include_ended):
            d = w.to_dict()
            d["active"] = w.active(now)
            out.append(d)
        return out

    async def create(self, window: dict[str, Any], actor: str) -> dict[str, Any]:
        w = await self._gw.add_maintenance(
            start=window.get("start"), end=float(window["end"]), devices=window.get("devices") or (),
            sites=window.get("sites") or (), classes=window.get("classes") or (),
            author=window.get("author") or actor, reason=window.get("reason", ""), window_id=window.get("id"),
        )
        return w.to_dict()

    async def end(self, window_id: str, actor: str) -> dict[str, Any]:
        return (await self._gw.end_maintenance(window_id, actor)).to_dict()


PID_FILE = "gateway.pid"
RELOAD_STATUS_FILE = "reload.json"


def _remove_pid(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.read_text("utf-8").strip() == str(os.getpid()):
            path.unlink()


async def _flush_every(recorder: Any, seconds: float) -> None:
    """The recorder buffers inside the writer task; this puts quiet-time tails on disk."""
    while True:
        await asyncio.sleep(seconds)
        recorder.flush()


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _load_mibs(extra_dirs: list[str]) -> Any:
    from adapters.snmp.mibs import MibResolver

    return MibResolver(extra_dirs=extra_dirs)
