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
from typing import TYPE_CHECKING, Any

from adapters import REGISTRY
from adapters.base import AdapterContext
from gateway.clock import Clock, SystemClock
from gateway.config import Config, build_policies, build_staffing, load_config
from gateway.core.alarms import AlarmBook
from gateway.core.calendars import default_calendars
from gateway.core.inventory import Inventory
from gateway.core.maintenance import (
    MaintenanceBook,
    MaintenanceError,
    Window,
    new_window,
    windows_from_config,
)
from gateway.core.tickets import TicketDesk
from gateway.errors import ConfigError
from gateway.rulebook import load_rules
from gateway.runtime.devices import DeviceRegistry, inventory_devices
from gateway.runtime.lock import CLI, DAEMON, DataDirLock, describe_os_error, write_private
from gateway.runtime.pipeline import Pipeline
from gateway.runtime.stores import describe_store, open_store
from gateway.store import INVENTORY_VERSION, RULES_RELOADS

if TYPE_CHECKING:
    from gateway.core.watchdog import Watchdog
    from gateway.delivery.outbox import OutboxWorker

__all__ = ["Gateway"]

log = logging.getLogger("gateway")

#: How often a partition's leader (not partition 0's) re-reads the maintenance windows.
MAINTENANCE_FOLLOW_S = 2.0
#: How often every partition's leader checks the store's counters of inventory changes and
#: of rules reloads asked through the API (two primary-key reads; the devices or the rules
#: are read only when a counter moved).
CHANGES_FOLLOW_S = 2.0

LIVENESS_FILE = "liveness.json"


class Gateway:
    """The running daemon's parts. ``async with Gateway(cfg) as gw:`` takes the data dir's
    lock, starts them all (store, state, pipeline, then adapters last) and stops them in
    reverse (adapters first, then the queue is drained and committed, then the store
    closes, then the lock is released).

    ``mode="offline"`` builds only the writer's core (lock, store, alarm book, ticket desk,
    pipeline) and the control API as an in-process app, ``gw.control_app``: no adapters,
    help-desk delivery, liveness or listening sockets. The CLI uses it to act when no daemon
    runs, through the same API requests and the same pipeline as a daemon would.
    """

    def __init__(self, cfg: Config, clock: Clock | None = None, mode: str = "daemon",
                 partition: int | None = None) -> None:
        if mode not in ("daemon", "offline"):
            raise ValueError(f"mode must be 'daemon' or 'offline', not {mode!r}")
        self.cfg = cfg
        #: A partitioned central's child (docs/scaling.md): the partition it leads, with the
        #: lease ``partition/<p>``; it owns that partition's sites, alarms, tickets and outbox.
        self.partition = partition
        self.clock = clock or SystemClock()
        self.mode = mode
        self.adapters: list[Any] = []
        self.api: Any = None
        self.control: Any = None
        self.control_app: Any = None
        self.watchdog: Watchdog | None = None
        self.outbox: OutboxWorker | None = None
        self._stack = contextlib.AsyncExitStack()
        self._standby_wait: asyncio.Future[None] | None = None
        self._standby_stop = False
        #: A partition's child: the store's inventory version its inventory was read at, and
        #: the rules-reload requests it has carried out (see :meth:`_follow_changes`).
        self._inventory_seen = 0
        self._reloads_seen = 0

    def stop_standing_by(self) -> None:
        """HA: a stop asked for while this instance waits as a standby ends the wait (the
        start then raises :class:`~gateway.runtime.ha.StoppedWhileStandby`); once it leads,
        this does nothing (the daemon stops as usual)."""
        ha = getattr(self, "ha", None)
        if ha is not None and ha.token:  # leading (or led): the daemon stops as usual
            return
        self._standby_stop = True  # also when the wait has not begun yet (a stop early in the start)
        wait = self._standby_wait
        if wait is not None and not wait.done():
            wait.cancel()

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
        daemon = self.mode == "daemon"
        data_dir = cfg.data_path()
        # One writer per store: the lock comes before the store is opened, and is released
        # last (the callback pushed first runs last).
        self._lock = DataDirLock(data_dir, DAEMON if daemon else CLI)
        try:
            self._lock.acquire(wait_for_cli=10.0 if daemon else 30.0)
        except OSError as e:
            raise ConfigError(cfg.source, "gateway.data_dir", f"{data_dir} {describe_os_error(e)}") from None
        self._stack.callback(self._lock.release)
        api_sock = None
        if daemon and cfg.api.enabled:
            from gateway.api.server import bind_api

            api_sock = bind_api(cfg)  # a taken port stops the start here, before anything began
            self._stack.callback(api_sock.close)
            if cfg.api.port == 0 and self.partition is not None:
                # A partition's child: an ephemeral port, advertised in its lease row for the
                # supervisors to forward changes to (on [ha] advertise_url's host, if set).
                cfg.api.port = int(api_sock.getsockname()[1])
                if cfg.ha.advertise_url:
                    from urllib.parse import urlsplit

                    u = urlsplit(cfg.ha.advertise_url)
                    host = f"[{u.hostname}]" if u.hostname and ":" in u.hostname else (u.hostname or "")
                    cfg.ha.advertise_url = f"{u.scheme}://{host}:{cfg.api.port}"

        self.store = open_store(cfg)
        self._stack.callback(self.store.close)
        start_checkpointer = getattr(self.store, "start_checkpointer", None)
        if daemon and start_checkpointer is not None:  # SQLite: WAL checkpoints off the commit path
            self._stack.callback(start_checkpointer().stop)
        self.ha: Any = None

        if cfg.forward.mode == "edge":
            cfg = self.cfg = _central_rules(cfg)
        self.policies = build_policies(cfg)
        self.calendars = default_calendars([str(cfg.resolve_path(d)) for d in cfg.calendars.holiday_dirs])
        if self.partition is not None:  # read before what they count: a later change is seen
            self._reloads_seen = self.store.counter(RULES_RELOADS)
            self._inventory_seen = self.store.counter(INVENTORY_VERSION)
        self.engine = load_rules(cfg)
        self.inventory = Inventory(inventory_devices(cfg, self.store), cfg.inventory.default_policy)
        if daemon and cfg.ha.enabled:
            # A standby prepares what the config alone gives, then waits; the state (stored
            # maintenance windows, alarms, tickets, keys) is read only once it leads.
            await self._become_leader(api_sock)
        self.maintenance = MaintenanceBook(self._maintenance_windows(cfg))
        self.maintenance_hooks = MaintenanceHooks(self)

        next_alarm, next_ticket = self.store.next_ids()
        self.book = AlarmBook(next_alarm, inventory=self.inventory, maintenance=self.maintenance)
        self.book.load([a for a in self.store.load_open_alarms() if self._owns_id(a.id)])
        self.desk = TicketDesk(self.policies, self.calendars, next_ticket, staffing=build_staffing(cfg))
        self.desk.load([t for t in self.store.load_open_tickets() if self._owns_id(t.id)], next_ticket)
        if self.partition is not None:  # a partition's ids: never another partition's number
            self.book.id_step = self.desk.id_step = cfg.forward.partitions
            self.book.id_offset = self.desk.id_offset = self.partition
        self.desk.loader = self.store.load_ticket  # reopening a closed ticket reads it back
        if self.partition is not None:
            # A partition's leader never adopts another partition's ticket (that one's leader
            # holds it): an action misdirected here is refused, nothing written.
            self.desk.loader = self._own_ticket

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
        from gateway.runtime.service import ServiceDesk
        from gateway.service_config import build_aftersales

        # After-sales: planned work, spare clocks, warranty and replacement notices.
        self.service = ServiceDesk(
            store=self.store, pipeline=self.pipeline, clock=self.clock, calendars=self.calendars,
            aftersales=build_aftersales(cfg), contract_of={d.id: d.policy for d in self.inventory},
            default_policy=cfg.inventory.default_policy, tz=cfg.gateway.timezone,
        )
        self.pipeline.decider.notify_connector = cfg.people.notify_connector
        self._harden(cfg)
        self.device_registry = DeviceRegistry(lambda: self.cfg, self.store, lambda: self.pipeline.inventory,
                                              self._swap_inventory, self.clock)
        if not daemon:
            await self._start_offline()
            return
        self.recorder = None
        if cfg.pipeline.record:
            from gateway.runtime.recorder import JsonlRecorder

            self.recorder = JsonlRecorder(cfg.resolve_path(cfg.pipeline.record))
            self.pipeline.recorder = self.recorder
            self._stack.callback(self.recorder.close)  # runs after the pipeline drained
        self.timeseries = None
        if cfg.timeseries.enabled:
            from gateway.timeseries.sink import TimeseriesSink

            self.timeseries = TimeseriesSink(cfg.timeseries, resolve=self.inventory.resolve)
            await self.timeseries.start()
            # Pushed before the pipeline's stop, so it runs after it: the last batches are written too.
            self._stack.push_async_callback(self.timeseries.stop)
            self.pipeline.telemetry = self.timeseries.offer_event
            self.pipeline.listeners.append(self.timeseries.on_commit)
        self._start_liveness()
        self._start_notifier()
        await self.pipeline.start()
        self._stack.push_async_callback(self.pipeline.stop)
        if self.partition in (None, 0):  # store-wide duties: partition 0's leader only
            await self.service.start()
            self._stack.push_async_callback(self.service.stop)  # stops before the pipeline drains
        if self.recorder is not None:
            flusher = asyncio.create_task(_flush_every(self.recorder, 1.0), name="recorder-flush")
            self._stack.push_async_callback(_cancel, flusher)

        await self._start_helpdesk()
        await self._start_forward()

        # Adapters start last and stop first, so nothing arrives at a stopped pipeline.
        ctx = AdapterContext(clock=self.clock, state_dir=data_dir, resolve_path=cfg.resolve_path,
                             broker_down=self._broker_down, broker_up=self._broker_up,
                             instance=cfg.gateway.instance, devices=lambda: self.pipeline.inventory,
                             watch=self._watch, unwatch=self._unwatch)
        for kind, configs in cfg.adapters.by_kind():
            if not configs:
                continue
            for adapter in await REGISTRY[kind].load_factory()(configs, ctx):
                await adapter.start(self.pipeline)
                self._stack.push_async_callback(adapter.stop)
                self.adapters.append(adapter)
        from gateway.api.server import start_api, start_control

        if cfg.api.enabled:
            self.api = await start_api(self, api_sock)
            self._stack.push_async_callback(self.api.stop)
        # The CLI's way in: the same API on a socket only this data dir's owner can open.
        self.control = await start_control(self, data_dir / CONTROL_SOCKET, self.api.ctx if self.api else None)
        self._stack.push_async_callback(self.control.stop)
        # Last: it names a ready daemon (the lock file names it from the start).
        self._pid_file = data_dir / PID_FILE
        write_private(self._pid_file, f"{os.getpid()}\n")
        self._stack.callback(_remove_pid, self._pid_file)
        log.info(
            "gateway ready: %d rules, %d devices, %d policies, %d open alarms, %d open tickets, store %s",
            len(self.engine.rules), len(self.inventory), len(self.policies), len(self.book.open),
            len(self.desk.open), describe_store(cfg),
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


    def _owns(self, site: str) -> bool:
        """Whether this gateway decides for a site (every site unless it leads one partition)."""
        from gateway.forward.config import partition_of

        return self.partition is None or partition_of(site, self.cfg.forward.partitions) == self.partition

    def _own_ticket(self, ticket_id: int) -> Any:
        from gateway.core.tickets import TicketError

        if not self._owns_id(ticket_id):
            raise TicketError(f"ticket {ticket_id} belongs to partition {ticket_id % self.cfg.forward.partitions}, "
                              f"not to partition {self.partition} led here; send it to that partition's leader")
        return self.store.load_ticket(ticket_id)

    def _owns_id(self, ident: int) -> bool:
        """Whether an alarm or ticket id is of this gateway's partition (ids carry it)."""
        return self.partition is None or ident % self.cfg.forward.partitions == self.partition

    def _harden(self, cfg: Config) -> None:
        """Unknown devices (ticket switch, cap, new ids per source) and the ticket circuit breaker."""
        from gateway.core.admission import UnknownAdmission
        from gateway.core.breaker import TicketBreaker

        d, inv, tb = self.pipeline.decider, cfg.inventory, cfg.ticket_breaker
        d.unknown_tickets = inv.unknown_tickets
        d.admission = UnknownAdmission(inv.unknown_max, inv.unknown_new_per_minute, inv.unknown_burst)
        d.breaker = TicketBreaker(tb.limit, tb.window) if tb.enabled else None

    async def _start_offline(self) -> None:
        """The writer's core only, for one CLI action: its API is called in-process."""
        from gateway.api.server import close_context, control_app

        self.watchdog = None
        self.outbox = None
        await self.pipeline.start()
        self._stack.push_async_callback(self.pipeline.stop)
        self.control_app, ctx = control_app(self)
        self._stack.callback(close_context, ctx)

    async def _start_forward(self) -> None:
        """``[forward]``: an edge forwards what matters to JetStream; a central consumes it."""
        fw = self.cfg.forward
        self.forwarder: Any = None
        self.central_side: Any = None
        self.edge_control: Any = None
        if not fw.mode:
            return
        if fw.mode == "edge":
            from gateway.forward.edge import EdgeForwarder
            from gateway.forward.select import ForwardTap

            engine = self.pipeline.decider
            tap = ForwardTap(fw, self.inventory.resolve, lambda ev, dev: bool(engine.engine.classify(ev, dev)),
                             self.pipeline.liveness_events)
            prev = self.pipeline.recorder
            self.pipeline.recorder = tap if prev is None else _chain(prev, tap)
            self.pipeline.forward = tap
            self.forwarder = EdgeForwarder(fw, self.store, self.clock, self.pipeline.offer,  # type: ignore[arg-type]
                                           self.cfg.resolve_path)
            tap.on_commit = self.forwarder.kick
            if fw.control:
                from gateway.forward.control import EdgeControl
                from gateway.runtime.sitecontrol import EdgeSide

                # Started after the publisher (below), so it stops before the connection closes.
                self.edge_control = EdgeControl(fw, self.forwarder.connection, EdgeSide(self))
                self.forwarder.status = self.edge_control.status
        else:
            from gateway.forward.central import CentralConsumer

            # Only the edges' own heartbeats feed the central's watchdog: forwarded status
            # messages are not heartbeats here (the edge watches its devices itself).
            self.pipeline.liveness_events = frozenset({"heartbeat"})
            wd = self.watchdog
            if wd is not None:
                now = self.clock.now()
                for d in self.inventory:
                    if d.device_class == "gateway.edge" and d.id not in wd and self._owns(d.site):
                        wd.track(d.id, interval=d.heartbeat_interval or fw.edge_interval,
                                 device_class=d.device_class, now=now)
            self.forwarder = CentralConsumer(fw, self.pipeline, self.clock, self.cfg.resolve_path,
                                             name=self.cfg.gateway.instance, partition=self.partition)
            if fw.control:
                from gateway.forward.control import ControlPublisher
                from gateway.runtime.sitecontrol import CentralSide

                publisher = ControlPublisher(fw, self.cfg.resolve_path, self.cfg.gateway.instance)
                self.central_side = CentralSide(self, publisher)
                self.pipeline.timeline_tap = self.central_side.on_timeline
                self.central_side.resend()
                self.central_side.resend_ticket_actions(self.clock.now())  # those a crash left unsent
                await publisher.start()
                self._stack.push_async_callback(publisher.stop)
        await self.forwarder.start()
        self._stack.push_async_callback(self.forwarder.stop)
        if self.partition not in (None, 0):
            # Windows made or ended through the API are written by partition 0's leader:
            # the other partitions' leaders follow them from the store.
            follow = asyncio.create_task(self._follow_maintenance(), name="maintenance-follow")
            self._stack.push_async_callback(_cancel_task, follow)
        if self.partition is not None:
            # Devices changed and rules reloads asked through the API at one partition's
            # leader (partition 0's, where the supervisors send them): every leader follows.
            changes = asyncio.create_task(self._follow_changes(), name="changes-follow")
            self._stack.push_async_callback(_cancel_task, changes)
        if self.edge_control is not None:
            await self.edge_control.start()
            self._stack.push_async_callback(self.edge_control.stop)

    def edge_status(self) -> dict[str, Any]:
        """``GET /api/v1/edges``: at a central, each edge as its last heartbeat told it (its
        backlog, the rule-set version it runs); at an edge, itself."""
        from gateway.core.views import iso

        now = self.clock.now()
        fw = self.forwarder
        if self.cfg.forward.mode == "central":
            side = self.central_side
            edges = []
            for name, hb in sorted(fw.edges.items()):
                at = float(hb.get("received_at", 0.0))
                edges.append({"edge": name, "site": hb.get("site", ""), "last_heartbeat": iso(at),
                              "age_s": round(now - at, 3), "queued": hb.get("queued", 0), "dropped": hb.get("dropped", 0),
                              "rules_version": hb.get("rules_version", 0), "rules_error": hb.get("rules_error"),
                              "control_seq": hb.get("control_seq", 0)})
            return {"mode": "central", "rules_version": side.publisher.rules_version if side else 0,
                    "control_pending": side.publisher.pending if side else 0, "edges": edges}
        ctl = self.edge_control
        me = {"edge": self.cfg.forward.edge_name, "site": self.cfg.forward.site, "queued": fw.queued,
              "dropped": fw.dropped, "connected": fw.connected, **(ctl.status() if ctl is not None else {})}
        return {"mode": "edge", "rules_version": me.get("rules_version", 0), "edges": [me]}

    def _start_liveness(self) -> None:
        """The liveness watchdog: inventory devices with an interval are watched from the
        start; after a restart everyone gets a grace period instead of a burst of losses."""
        from gateway.core.watchdog import Watchdog

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
        adm = self.pipeline.decider.admission
        if adm is not None:  # unknown devices watched before the restart count against the cap
            unknown = [st.id for st in self.watchdog.devices() if self.inventory.lookup(st.id) is None]
            over = [dev for dev in unknown if not adm.admit(dev, "restart", now, known_before=True)]
            for dev in over:
                self.watchdog.untrack(dev)
            if over:
                log.warning("liveness: %d unknown devices from %s not watched (over inventory.unknown_max = %d)",
                            len(over), snap, adm.cap)
        for d in self.inventory:
            if (d.heartbeat_interval is not None or d.device_class in lv.class_intervals) and self._owns(d.site):
                self.watchdog.track(d.id, interval=d.heartbeat_interval, device_class=d.device_class, now=now)
        self.watchdog.restart_grace(now)
        self.pipeline.watchdog = self.watchdog
        self.pipeline.liveness_events = frozenset(lv.events)
        self.pipeline.track_unknown = lv.unknown_devices == "track"
        self._stack.callback(self._save_liveness)  # after the pipeline has drained

    def _save_liveness(self) -> None:
        if self.watchdog is None:
            return
        path = self.cfg.data_path(LIVENESS_FILE)
        tmp = path.with_suffix(".tmp")
        write_private(tmp, json.dumps(self.watchdog.snapshot()))
        os.replace(tmp, path)

    def _broker_down(self, now: float) -> None:
        wd = self.watchdog
        if wd is not None:
            self.pipeline.command_nowait(lambda n: wd.broker_down(now))

    def _broker_up(self, now: float) -> None:
        wd = self.watchdog
        if wd is not None:
            self.pipeline.command_nowait(lambda n: wd.broker_up(now))

    async def _become_leader(self, api_sock: Any = None) -> None:
        """HA: wait as a standby until this instance holds the leader lease, then fence
        the store (every write proves the lease) and keep renewing it. While it waits, the
        API port answers as a standby (gateway.api.standby: its own /healthz, the rest
        forwarded to the leader, reads answered from the store while no leader can be reached)."""
        from gateway.runtime.ha import LeaderElection, advertise_url, default_holder
        from gateway.store.lease import Lease
        from gateway.store.postgresql import PostgresStore

        assert isinstance(self.store, PostgresStore)  # config check: [ha] needs backend = "postgresql"

        cfg = self.cfg
        extra: dict[str, Any] = {}
        if self.partition is not None:
            from gateway.runtime.partitions import partition_lease

            extra["name"] = partition_lease(self.partition)
        lease = Lease(self.store.conninfo, cfg.ha.name or default_holder(cfg.gateway.instance), cfg.ha.lease, **extra,
                      url=advertise_url(cfg.ha.advertise_url, cfg.api.host, cfg.api.port) if cfg.api.enabled else "")
        if cfg.api.enabled and not cfg.ha.advertise_url and cfg.api.host in ("127.0.0.1", "::1", "localhost"):
            log.warning("%s: [ha] advertise_url is not set and the API listens on %s: standbys on other "
                        "machines cannot forward to this instance", cfg.source, cfg.api.host)
        self.ha = LeaderElection(lease, _lease_lost)
        self._stack.push_async_callback(self.ha.stop)
        # Fenced from now on: a standby writes nothing (its lease is not held), it only reads.
        self.store.fence = lease
        standby = None
        if api_sock is not None:
            from gateway.api.readonly import readonly_app
            from gateway.api.server import serve
            from gateway.api.standby import standby_app

            reads = readonly_app(cfg, self.store, self.inventory, self.policies, self.calendars, self.clock,
                                 retry_after=lease.ttl / 2)
            app = standby_app(lambda: asyncio.to_thread(lease.leader), lease.holder, lease.ttl, reads)
            # A duplicate of the listening socket: stopping this server leaves the port
            # bound and listening for the leader's API (connections wait in its backlog).
            standby = (app, *await serve(app, cfg.api.host, cfg.api.port, sock=api_sock.dup(), limits=cfg.api))
        self._standby_wait = asyncio.ensure_future(self.ha.wait_for_lease())
        if self._standby_stop:
            self._standby_wait.cancel()
        try:
            await self._standby_wait
        except asyncio.CancelledError:
            if self._standby_stop:
                from gateway.runtime.ha import StoppedWhileStandby

                raise StoppedWhileStandby() from None
            raise
        finally:
            if standby is not None:
                app, server, task = standby
                reads.state.feed.close()  # its live streams end (they would hold the server up)
                await asyncio.to_thread(reads.state.feed.stop_listening)
                server.should_exit = True
                await task
                await app.state.close()
        await self.ha.start()

    def _start_notifier(self) -> None:
        """On PostgreSQL, each commit is told to the store's readers (a standby's or a
        partitioned central's board): :class:`gateway.store.notify.ChangeNotifier`."""
        from gateway.store.postgresql import PostgresStore

        if not isinstance(self.store, PostgresStore):
            return
        from gateway.store.notify import ChangeNotifier, channel_of

        notifier = self.notifier = ChangeNotifier(self.store.conninfo, channel_of(self.store.schema))
        notifier.start()
        self._stack.callback(notifier.stop)  # runs after the pipeline drained: the last batches are told too
        self.pipeline.listeners.append(notifier.on_commit)

    async def _swap_inventory(self, inventory: Inventory, version: int | None = None) -> None:
        """Install an inventory changed through the API between two batches: unknown senders
        seen so far stay (unless now known), new devices with an interval are watched.
        ``version``: the store's inventory version it was read at, if known."""

        def swap(now: float) -> None:
            if version is not None:  # set with the inventory it goes with, in the writer's order
                self._inventory_seen = version
            old = self.pipeline.inventory
            for key, dev in old.unknown.items():
                if inventory.lookup(key) is None:
                    inventory.unknown[key] = dev
            wd = self.watchdog
            if wd is not None:
                classes = self.cfg.liveness.class_intervals
                for d in inventory:
                    if d.id not in wd and (d.heartbeat_interval is not None or d.device_class in classes):
                        wd.track(d.id, interval=d.heartbeat_interval, device_class=d.device_class, now=now)
            self.pipeline.inventory = self.book.inventory = self.inventory = inventory
            self.book.recheck_suppressed()  # parents may have changed

        await self.pipeline.execute(swap)

    def _watch(self, pairs: Any) -> None:
        """Devices an adapter checks actively are watched at the interval it names (an adapter hook)."""
        wd, pairs = self.watchdog, list(pairs)
        if wd is None or not pairs:
            return

        def track(now: float) -> None:
            for dev, interval in pairs:
                wd.track(dev, interval=interval, now=now)

        self.pipeline.command_nowait(track)

    def _unwatch(self, ids: Any) -> None:
        """Devices no longer checked actively: back to their inventory interval, or not watched."""
        wd, ids = self.watchdog, list(ids)
        if wd is None or not ids:
            return
        classes = self.cfg.liveness.class_intervals

        def untrack(now: float) -> None:
            inv = self.pipeline.inventory
            for d in ids:
                dev = inv.get(d)
                if dev is not None and (dev.heartbeat_interval is not None or dev.device_class in classes):
                    wd.track(d, interval=dev.heartbeat_interval, device_class=dev.device_class, now=now)
                else:
                    wd.untrack(d)

        self.pipeline.command_nowait(untrack)

    async def _start_helpdesk(self) -> None:
        """Outbox worker and two-way sync for the configured help desks (none: nothing runs)."""
        cfg = self.cfg
        self.outbox = None
        if not cfg.helpdesk:
            return
        from gateway.delivery.helpdesk import CONNECTORS
        from gateway.delivery.outbox import OutboxWorker, SyncPoller

        connectors = {h.name: CONNECTORS[h.type].load_factory()(h) for h in cfg.helpdesk}
        outbox = self.outbox = OutboxWorker(
            self.store, connectors, self.clock,
            base_delay=cfg.outbox.retry_base, max_delay=cfg.outbox.retry_max,
            concurrency=cfg.outbox.concurrency, on_failed=self._delivery_failed,
            may_send=self.ha.lease.held if self.ha is not None else None,
            on_delivered=self._delivered,
            shard=None if self.partition is None else (cfg.forward.partitions, self.partition),
        )
        await self._close_delivered_reports()
        await outbox.start()
        self._stack.push_async_callback(outbox.stop)
        self.pipeline.listeners.append(lambda alarms, tickets, changes: outbox.kick() if tickets else None)
        if any(getattr(h, "auto_report", False) for h in cfg.helpdesk):  # reports sent by themselves
            from gateway.runtime.auto_report import AutoReporter
            auto = AutoReporter(self.store, self.desk, self.clock, cfg.helpdesk, cfg.gateway.timezone,
                                self.pipeline.execute, self.calendars)
            await auto.start()
            self._stack.push_async_callback(auto.stop)
            self.pipeline.listeners.append(lambda alarms, tickets, changes: auto.kick() if tickets else None)
        if self.partition not in (None, 0):  # store-wide duties (scheduled service reports, the help desk's sync): partition 0's leader only
            return
        await self._start_service_reports(outbox)
        self.sync = SyncPoller(self.store, connectors, self.clock, self._apply_remote,
                               interval=cfg.outbox.poll_interval, adopt=self._adopt_remote,
                               save=self._save_meta)
        await self.sync.start()
        self._stack.push_async_callback(self.sync.stop)

    async def _start_service_reports(self, outbox: Any) -> None:
        """Scheduled service reports ([[service.<contract>.reports]]): queued in the outbox
        once per contract, period and notifier (none configured: nothing runs)."""
        from gateway.runtime.service_reports import ServiceReportScheduler, schedules_of

        schedules = schedules_of(self.cfg)
        if not schedules:
            return

        def customer(contract: str) -> str:
            pol = self.cfg.policies.get(contract)
            return pol.customer if pol is not None else ""

        # A reload swaps self.policies: the scheduler reads the current one each time.
        sched = ServiceReportScheduler(self.store, self.clock, schedules, self.cfg.gateway.timezone,
                                       lambda name: self.policies.get(name), self.calendars, customer,
                                       on_queued=outbox.kick)
        await sched.start()
        self._stack.push_async_callback(sched.stop)

    def _delivered(self, connector: str, ticket_id: int, kind: str) -> None:
        """A connector delivered a ticket's incident report: the report clock stops now (the
        contract counts delivery, not writing), by closing the ticket."""
        if kind != "report":
            return
        self.pipeline.command_nowait(lambda now: self._close_reported(connector, ticket_id, now))

    def _close_reported(self, connector: str, ticket_id: int, at: float) -> None:
        from gateway.core.tickets import TicketError

        try:
            self.desk.act(ticket_id, "close", at, f"delivery:{connector}", "incident report delivered")
        except TicketError as e:
            log.info("ticket %d: report delivered; not closed: %s", ticket_id, e)

    async def _close_delivered_reports(self) -> None:
        """A report delivered just before a crash (its close not yet written): the ticket
        closes now, at the delivery's time, so its report clock stops where it did."""
        for t in [t for t in self.desk.open.values() if t.status == "restored"]:
            if (found := await asyncio.to_thread(self.store.outbox_report_delivered, t.id)) is not None:
                conn, tid, at = found[0], t.id, found[1]
                await self.pipeline.execute(lambda now: self._close_reported(conn, tid, min(at, now)))  # noqa: B023 - awaited here

    def _delivery_failed(self, connector: str, ticket_id: int, err: Any) -> None:
        from gateway.model import Event

        self.pipeline.offer(Event(
            self.clock.now(), "outbox", f"helpdesk:{connector}", "helpdesk.delivery_failed",
            {"reason": err.reason, "ticket": ticket_id, "detail": str(err)[:200]},
        ))

    async def _save_meta(self, values: dict[str, str]) -> None:
        """Key/value pairs committed by the single writer, after what it was given before."""
        await self.pipeline.execute(lambda _now: self.pipeline.meta.update(values))

    async def _apply_remote(self, connector: str, ticket_id: int, change: Any) -> None:
        """A change made in the help desk moves the ticket (through the single writer).
        Closing there while the fault is still active here is a conflict: recorded and
        shown on the ticket, not silently applied."""
        from gateway.core.alarms import ACTIVE
        from gateway.core.tickets import TicketError
        from gateway.delivery.outbox import SyncPoller

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

    async def _adopt_remote(self, connector: str, rt: Any) -> None:
        """A ticket a person created in the help desk becomes a gateway ticket (through the
        single writer); its clocks start when it was created there."""
        from gateway.core.tickets import TicketError
        from gateway.model import FaultLevel

        dev_id = self.inventory.lookup(rt.device)
        if dev_id is None:
            log.warning("%s: help-desk ticket %s names device %r, not in the inventory: not picked up",
                        connector, rt.remote_id, rt.device)
            return
        actor = f"helpdesk:{connector}"

        def adopt(now: float) -> None:
            dev = self.inventory.get(dev_id)
            if dev is None:  # removed by a reload meanwhile
                return
            policy = self.policies.get(dev.policy) or self.policies.get(self.inventory.default_policy)
            if policy is None:
                return
            try:
                self.desk.open_reported(
                    device=dev, policy=policy, level=FaultLevel(rt.level), title=rt.title,
                    reported_by=rt.reported_by, channel="helpdesk", now=now, actor=actor,
                    reported_at=min(rt.reported_at, now),
                    reason=f"created in help desk {connector} as ticket {rt.remote_id}",
                    remote=(connector, rt.remote_id),
                )
            except TicketError as e:
                log.warning("%s: help-desk ticket %s not picked up: %s", connector, rt.remote_id, e)

        await self.pipeline.execute(adopt)

    # -- hot reload and maintenance windows -------------------------------------------------
    async def _follow_changes(self, every: float = CHANGES_FOLLOW_S) -> None:
        """A partition's leader: every ``every`` seconds, carry out the rules reloads asked
        through the API at any partition's leader (:meth:`api_reload` bumps the store's
        counter :data:`~gateway.store.RULES_RELOADS`), and take the devices changed through
        the API there (:data:`~gateway.store.INVENTORY_VERSION` moved). Nothing changed: two
        counter reads, nothing else."""
        while True:
            await asyncio.sleep(every)
            try:
                await self._follow_changes_once()
            except Exception as e:  # noqa: BLE001 - a database hiccup: the next round tries again
                log.warning("inventory and rules not followed from the store: %s", e)

    async def _follow_changes_once(self) -> None:
        reloads = await asyncio.to_thread(self.store.counter, RULES_RELOADS)
        if reloads != self._reloads_seen:
            self._reloads_seen = reloads  # a rejected request is not tried again: one log line
            log.info("rules reload asked through the API (request %d): reloading partition %s", reloads,
                     self.partition)
            try:
                await self.reload()  # re-reads the devices too
            except ConfigError:
                pass  # reload() logged why, and the rules that were live stay live
            return
        version = await asyncio.to_thread(self.store.counter, INVENTORY_VERSION)
        if version == self._inventory_seen:
            return
        version, devices = await asyncio.to_thread(self._stored_inventory)
        await self._swap_inventory(Inventory(devices, self.cfg.inventory.default_policy), version)
        log.info("partition %s: devices followed from the store: %d devices (inventory version %d)",
                 self.partition, len(devices), version)

    def _stored_inventory(self) -> tuple[int, list[Any]]:
        """The store's inventory version, then the devices (config and store) at least that new."""
        version = self.store.counter(INVENTORY_VERSION)
        return version, inventory_devices(self.cfg, self.store)

    async def _follow_maintenance(self, every: float = MAINTENANCE_FOLLOW_S) -> None:
        """A partition's leader other than partition 0's: take the store's maintenance windows
        (created or ended through the API, by partition 0's leader) every ``every`` seconds."""
        while True:
            await asyncio.sleep(every)
            try:
                windows = await asyncio.to_thread(self._maintenance_windows, self.cfg)
            except Exception as e:  # noqa: BLE001 - a database hiccup: the next round tries again
                log.warning("maintenance windows not followed from the store: %s", e)
                continue
            if {w.id: w for w in windows} == {w.id: w for w in self.maintenance.windows()}:
                continue

            def swap(_now: float, windows: list[Window] = windows) -> None:
                self.maintenance.replace_all(windows)
                self.book.recheck_suppressed()

            await self.pipeline.execute(swap)
            log.info("maintenance windows followed from the store: %d", len(windows))

    def _maintenance_windows(self, cfg: Config) -> list[Window]:
        """Windows from the config, overlaid by the store's (an API-ended config window is
        stored under its id, and the stored version wins). Raises ConfigError."""
        windows = {w.id: w for w in windows_from_config(cfg)}
        for d in self.store.list_maintenance():
            w = Window.from_dict(d)
            windows[w.id] = w
        return list(windows.values())

    def _load_for_reload(self) -> tuple[Config, Any, dict[str, Any], Inventory, list[Window], int]:
        source = Path(self.cfg.source)
        cfg = load_config(source) if source.is_file() else self.cfg
        if self.partition is not None and cfg is not self.cfg:
            # What the supervisor set for this child (gateway.cli.main._partition_child) is
            # not in the file: keep it, so a reload does not read it as a change.
            cfg.gateway.data_dir = self.cfg.gateway.data_dir
            cfg.api.port = self.cfg.api.port
            cfg.adapters = self.cfg.adapters
            cfg.ha.name = self.cfg.ha.name
        if cfg.forward.mode == "edge":
            from gateway.rulebook import with_central_rules

            cfg = with_central_rules(cfg)  # the central's rule set this edge runs, if any
        engine = load_rules(cfg)
        policies = build_policies(cfg)
        version = self.store.counter(INVENTORY_VERSION)  # before the devices it counts
        inventory = Inventory(inventory_devices(cfg, self.store), cfg.inventory.default_policy)
        self._staffing = build_staffing(cfg)
        return cfg, engine, policies, inventory, self._maintenance_windows(cfg), version

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
            cfg, engine, policies, inventory, windows, version = await asyncio.to_thread(self._load_for_reload)
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
            self.desk.set_staffing(self._staffing)  # teams, rota and escalation steps
            self.book.inventory = inventory
            self.maintenance.replace_all(windows)
            self.book.recheck_suppressed()  # parents or windows may have changed
            self.engine, self.policies, self.inventory = engine, merged, inventory
            self._inventory_seen = version
            from gateway.service_config import build_aftersales

            self.service.reconfigure(build_aftersales(cfg), {d.id: d.policy for d in inventory},
                                     cfg.inventory.default_policy)
            d, inv, tb = p.decider, cfg.inventory, cfg.ticket_breaker
            d.unknown_tickets = inv.unknown_tickets
            adm = d.admission
            if adm is not None:
                adm.cap, adm.rate, adm.burst = inv.unknown_max, inv.unknown_new_per_minute / 60.0, float(inv.unknown_burst)
                for dev_id in [i for i in adm.admitted if inventory.lookup(i) is not None]:
                    adm.forget(dev_id)  # adopted into the inventory: no longer unknown
            if not tb.enabled:
                d.breaker = None
            elif d.breaker is None:
                from gateway.core.breaker import TicketBreaker

                d.breaker = TicketBreaker(tb.limit, tb.window)
            else:
                d.breaker.limit, d.breaker.window = tb.limit, tb.window
            for section in ("rules", "policies", "devices", "inventory", "maintenance", "service", "teams", "people", "escalation", "ticket_breaker"):
                setattr(self.cfg, section, getattr(cfg, section))

        await self.pipeline.execute(swap)
        result = {"ok": True, "rules": len(engine.rules), "policies": len(policies), "devices": len(inventory),
                  "maintenance": len(windows)}
        log.info("reloaded: %d rules from packs %s, %d policies, %d devices, %d maintenance windows",
                 len(engine.rules), ", ".join(engine.packs) or "-", len(policies), len(inventory), len(windows))
        self._reload_status({"at": now, **result})
        if getattr(self, "central_side", None) is not None:
            self.central_side.resend()  # the new rule set (next version) and windows to the edges
        return result

    async def api_reload(self) -> dict[str, Any]:
        """``POST /api/v1/rules/reload`` (and ``gateway rules reload``, which calls it): a
        :meth:`reload` here. On a partitioned central's child it is also asked of every other
        partition's leader, on this instance or another: the store's counter
        :data:`~gateway.store.RULES_RELOADS` goes up, and each leader reloads its own config
        within :data:`CHANGES_FOLLOW_S` (:meth:`_follow_changes`; one that finds a bad file
        logs it and keeps its rules). Asked even when the reload here is rejected: another
        instance reads its own files. Raises ConfigError (rejected here)."""
        if self.partition is None:
            return await self.reload()
        try:
            result = await self.reload()
        finally:
            request = await self._ask_every_partition()
        parts = self.cfg.forward.partitions
        result["partitions"] = {
            "requested": "all" if request else "this one only (the store did not take the request)",
            "count": parts, "reloaded_here": self.partition, "request": request,
            "others_within_s": CHANGES_FOLLOW_S,
        }
        return result

    async def _ask_every_partition(self) -> int | None:
        """Bump the store's rules-reload counter; the number of this request (None: failed)."""
        from gateway.errors import StoreError

        try:
            request = await asyncio.to_thread(self.store.bump_counter, RULES_RELOADS)
        except StoreError as e:
            log.error("rules reload not asked of the other partitions' leaders: %s", e)
            return None
        if self._reloads_seen == request - 1:  # no other request in between: done here already
            self._reloads_seen = request
        log.info("rules reload asked of every partition's leader (request %d)", request)
        return request

    def _reload_status(self, status: dict[str, Any]) -> None:
        """Leave the outcome where ``gateway rules reload`` looks for it."""
        try:
            write_private(self.cfg.data_path() / RELOAD_STATUS_FILE, json.dumps(status))
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
        if getattr(self, "central_side", None) is not None:
            self.central_side.window(w)  # the sites it covers suppress their local tickets too
        return w

    async def end_maintenance(self, window_id: str, by: str = "") -> Window:
        """End a window now; alarms it suppressed become active at once if their fault is
        still there. Raises UnknownWindow or MaintenanceError (already ended)."""
        ended: Window = await self.pipeline.execute(lambda now: self.maintenance.end(window_id, now, by))
        await asyncio.to_thread(self.store.save_maintenance, ended.to_dict())
        log.info("maintenance window %s ended by %s", window_id, by or "-")
        if getattr(self, "central_side", None) is not None:
            self.central_side.window(ended)
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
        wid = window.get("id")
        if wid and self._gw.maintenance.get(wid) is not None:  # a named window is never replaced
            raise MaintenanceError(f"a maintenance window {wid!r} exists already")
        w = await self._gw.add_maintenance(
            start=window.get("start"), end=float(window["end"]), devices=window.get("devices") or (),
            sites=window.get("sites") or (), classes=window.get("classes") or (),
            author=window.get("author") or actor, reason=window.get("reason", ""), window_id=window.get("id"),
            source=window.get("source") or "api",
        )
        return w.to_dict()

    async def end(self, window_id: str, actor: str) -> dict[str, Any]:
        return (await self._gw.end_maintenance(window_id, actor)).to_dict()


PID_FILE = "gateway.pid"
#: The control API's Unix socket in the data dir (mode 0600: the data dir's owner only).
CONTROL_SOCKET = "gateway.sock"
RELOAD_STATUS_FILE = "reload.json"


async def _cancel_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _lease_lost(reason: str) -> None:
    """HA: another instance leads now. Stop at once, before another write or request: this
    process's state is stale (its supervisor restarts it as a standby)."""
    from gateway.runtime.ha import LOST_EXIT

    log.critical("lost the leader lease: %s; stopping now (exit %d)", reason, LOST_EXIT)
    logging.shutdown()
    os._exit(LOST_EXIT)


def _remove_pid(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.read_text("utf-8").strip() == str(os.getpid()):
            path.unlink()


async def _flush_every(recorder: Any, seconds: float) -> None:
    """The recorder buffers inside the writer task; this puts quiet-time tails on disk."""
    while True:
        await asyncio.sleep(seconds)
        recorder.flush()


def _central_rules(cfg: Config) -> Config:
    """An edge starts with the central's rule set it stored, if any (a broken one: its own)."""
    from gateway.rulebook import with_central_rules

    try:
        return with_central_rules(cfg)
    except ConfigError as e:
        log.error("the central's stored rule set is unusable, running this config's own: %s", e)
        return cfg


def _chain(a: Any, b: Any) -> Any:
    def both(ev: Any) -> None:
        a(ev)
        b(ev)

    return both


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
