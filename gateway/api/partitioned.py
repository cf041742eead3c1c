"""The board and REST API of a partitioned central (``[forward] partitions`` > 1 with
``[ha]``), served by each instance's supervisor on ``[api]`` host and port.

* **Reads** (``GET``/``HEAD``: the board and its snapshot, tickets, a ticket with its
  timeline, alarms, devices, the change stream) are answered here, from the shared
  PostgreSQL store, for every site of every partition: the read-only API of an HA standby
  (:mod:`gateway.api.readonly`), with ``GET /api/v1/sites`` added (each site's edge link
  state and buffered backlog, from the edges' heartbeats, :mod:`gateway.forward.sites`).
  The change stream is live for every partition: each child notifies what it
  committed and the read-only app listens (see :mod:`gateway.api.readonly`).
* **Changes** go to the child that leads the partition they belong to, forwarded with the
  caller's credentials exactly as a standby forwards to its leader
  (:func:`gateway.api.standby.standby_app`): the child authenticates, validates and applies
  it once through its partition's single, fenced writer. The partition of a change
  (:func:`partition_of_request`): a ticket's (``/tickets/<id>/…``, ``/service/tickets/<id>/…``)
  and an alarm's (``/alarms/<id>/…``) is their id mod P (ids carry their partition); a new
  ticket's is its device's site's; everything else (sign-in, accounts, maintenance,
  inventory, rules, outbox) goes to partition 0's leader (the other partitions' leaders
  follow its maintenance windows, devices and rules reloads from the store within ~2 s,
  see :mod:`gateway.app`; this API's own devices follow the store's inventory version,
  checked every :data:`INVENTORY_REFRESH` seconds). The leader's address is the
  ``url`` of the lease row ``partition/<p>``, which the child writes (it runs its API on
  ``[api]`` host, an ephemeral port). No leader for that partition right now: 503 with
  ``Retry-After`` and nothing was sent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.standby import SERVED_BY, LeaderLookup, standby_app

__all__ = ["INVENTORY_REFRESH", "PARTITION_HEADER", "PartitionRouter", "partition_of_request", "partitioned_app"]

log = logging.getLogger("gateway.api")

#: Seconds between two checks of the store's inventory version by a supervisor's API; the
#: devices are read again only when it moved (devices changed through the API show on its
#: board and in /sites within this time).
INVENTORY_REFRESH = 2.0
#: On a forwarded change's answer: the partition it was sent to.
PARTITION_HEADER = "x-gateway-partition"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_BY_ID = re.compile(r"^/api/v1/(?:service/)?(tickets|alarms)/(\d+)(?:/|$)")
_NEW_TICKET = "/api/v1/tickets"
_BODY_MAX = 1024 * 1024


def partition_of_request(method: str, path: str, body: bytes, partitions: int,
                         site_partition: Callable[[str], int | None]) -> int:
    """The partition whose leader applies this change (see the module's docstring).
    ``site_partition(device)``: the partition of a device's site, or None (unknown)."""
    m = _BY_ID.match(path)
    if m is not None:
        return int(m.group(2)) % partitions
    if method == "POST" and path.rstrip("/") == _NEW_TICKET and body:
        try:
            device = json.loads(body).get("device")
        except (ValueError, AttributeError):
            return 0  # the child answers the invalid body with its 422
        if isinstance(device, str):
            p = site_partition(device)
            if p is not None:
                return p
    return 0


class PartitionRouter:
    """ASGI: reads to ``reads``, changes to ``writers[p]``, ``/healthz`` to ``own``."""

    def __init__(self, reads: ASGIApp, writers: Sequence[Starlette], own: ASGIApp, me: str,
                 site_partition: Callable[[str], int | None]) -> None:
        self.reads = reads
        self.writers = list(writers)
        self.own = own
        self.mark = f"partition member {me} (database)".encode("latin-1", "replace")
        self.site_partition = site_partition

    async def close(self) -> None:
        for w in self.writers:
            await w.state.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.reads(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == "/healthz":
            await self.own(scope, receive, send)
            return
        if method in _SAFE:
            await self.reads(scope, receive, send_marked(send, SERVED_BY.encode(), self.mark))
            return
        body = b""
        if method == "POST" and path.rstrip("/") == _NEW_TICKET:  # its partition is in its body
            body, receive = await _buffered(receive)
            if len(body) > _BODY_MAX:
                await JSONResponse({"error": "too_large", "message": f"request body larger than {_BODY_MAX} bytes"},
                                   status_code=413)(scope, receive, send)
                return
        p = partition_of_request(method, path, body, len(self.writers), self.site_partition)
        await self.writers[p](scope, receive, send_marked(send, PARTITION_HEADER.encode(), str(p).encode()))


def send_marked(send: Send, name: bytes, value: bytes) -> Send:
    async def marked(msg: Message) -> None:
        if msg["type"] == "http.response.start":
            msg = {**msg, "headers": [*msg.get("headers", []), (name, value)]}
        await send(msg)

    return marked


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body (at most a little over ``_BODY_MAX``), and a ``receive`` that
    replays it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            break
        chunks.append(msg.get("body", b""))
        size += len(chunks[-1])
        if not msg.get("more_body", False) or size > _BODY_MAX:
            break
    data = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        return await receive()

    return data, replay


def partitioned_app(reads: ASGIApp, lookups: Sequence[LeaderLookup], me: str, lease: float,
                    site_partition: Callable[[str], int | None],
                    about: Callable[[], Awaitable[dict[str, Any]]]) -> PartitionRouter:
    """The supervisor's whole API: ``reads`` (the read-only API on the store), one forwarder
    per partition (``lookups[p]``: the holder and url of partition ``p``'s lease), and
    ``/healthz`` (``about()`` adds who leads what)."""
    writers = [standby_app(lookup, me, lease, None) for lookup in lookups]

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "role": "partition-member", **await about()})

    own = Starlette(routes=[Route("/healthz", healthz, methods=["GET"])])
    return PartitionRouter(reads, writers, own, me, site_partition)


class PartitionedApi:
    """The running supervisor's API: the read-only API on its own store connection, the
    edges' heartbeats, one lease reader per partition, the HTTP server. ``stop()`` undoes."""

    def __init__(self) -> None:
        self._closers: list[Callable[[], Awaitable[None]]] = []

    async def start(self, cfg: Any, me: str, mine: Callable[[], list[int]]) -> None:
        """Serve on ``[api]`` host and port; ``mine()``: the partitions this instance leads."""
        import asyncio

        from gateway.api.readonly import readonly_app
        from gateway.api.routes.common import OPEN_ALARM
        from gateway.api.routes.sites import EDGE_CLASS, site_rows
        from gateway.api.server import LiveRef, bind_api, serve
        from gateway.clock import SystemClock
        from gateway.config import build_policies
        from gateway.core.calendars import default_calendars
        from gateway.core.inventory import Inventory
        from gateway.forward.config import partition_of
        from gateway.forward.sites import EdgeHeartbeats
        from gateway.runtime.devices import inventory_devices
        from gateway.runtime.partitions import partition_lease
        from gateway.runtime.stores import open_store
        from gateway.store.lease import Lease
        from rules.inhibit import UNREACHABLE_EVENTS

        sock = bind_api(cfg)  # a taken port stops the start here
        try:
            store = await asyncio.to_thread(open_store, cfg)
        except BaseException:
            sock.close()
            raise
        self._closers.append(lambda: asyncio.to_thread(store.close))
        from gateway.store.postgresql import PostgresStore

        assert isinstance(store, PostgresStore)  # config check: [ha] needs backend = "postgresql"
        clock = SystemClock()
        policies = build_policies(cfg)
        calendars = default_calendars([str(cfg.resolve_path(d)) for d in cfg.calendars.holiday_dirs])
        # The devices (the config's and the store's, which partition 0's leader changes
        # through the API) read again, off the event loop, when the store's inventory version
        # moved (checked every INVENTORY_REFRESH seconds; read before the devices it counts).
        from gateway.store import INVENTORY_VERSION

        def read() -> tuple[int, Inventory]:
            version = store.counter(INVENTORY_VERSION)
            return version, Inventory(inventory_devices(cfg, store), cfg.inventory.default_policy)

        seen, first = read()
        current = [first]
        inventory = LiveRef(lambda: current[0])

        async def refresh() -> None:
            nonlocal seen
            while True:
                await asyncio.sleep(INVENTORY_REFRESH)  # why: the refresh period
                try:
                    if await asyncio.to_thread(store.counter, INVENTORY_VERSION) != seen:
                        seen, current[0] = await asyncio.to_thread(read)
                except Exception as e:  # noqa: BLE001 - the database may be away: keep the last one
                    log.warning("partitioned API: devices not re-read: %s", e)

        refresher = asyncio.create_task(refresh(), name="inventory-refresh")

        async def stop_refresh() -> None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher

        self._closers.append(stop_refresh)
        fw = cfg.forward
        parts = fw.partitions
        heard = EdgeHeartbeats(fw, cfg.resolve_path, clock.now, f"{cfg.gateway.instance}-board")
        await heard.start()
        self._closers.append(heard.stop)
        customers = {name: pol.customer for name, pol in cfg.policies.items() if pol.customer}
        window = fw.edge_interval * cfg.liveness.tolerance

        def sites(now: float) -> list[dict[str, Any]]:
            edges = {d.id for d in inventory if d.device_class == EDGE_CLASS}
            open_by_device: dict[str, int] = {}
            down: set[str] = set()
            for a in store.find_alarms(states=OPEN_ALARM, limit=100_000):
                open_by_device[a["device"]] = open_by_device.get(a["device"], 0) + 1
                if a["device"] in edges and (a.get("event") in UNREACHABLE_EVENTS
                                             or (a.get("labels") or {}).get("unreachable") == "true"):
                    down.add(a["device"])
            return site_rows(inventory, customers, dict(heard.seen), down, open_by_device, now, window,
                             lambda s: partition_of(s, parts))

        reads = readonly_app(cfg, store, inventory, policies, calendars, clock, retry_after=cfg.ha.lease / 2,
                             sites=sites)
        feed = reads.state.feed  # the board's live stream: the children's commits, heard from the store
        self._closers.append(lambda: asyncio.to_thread(feed.stop_listening))
        leases = [Lease(store.conninfo, me, cfg.ha.lease, name=partition_lease(p)) for p in range(parts)]
        for lease in leases:
            self._closers.append(lambda lease=lease: asyncio.to_thread(lease.close))  # type: ignore[misc]

        def lookup(lease: Lease) -> LeaderLookup:
            return lambda: asyncio.to_thread(lease.leader)

        def site_partition(device: str) -> int | None:
            dev = inventory.get(device)
            return partition_of(dev.site, parts) if dev is not None and dev.site else None

        async def about() -> dict[str, Any]:
            held = await asyncio.gather(*(asyncio.to_thread(lease.leader) for lease in leases))
            return {"member": me, "partitions": mine(),
                    "leaders": {str(p): (h[0] if h else None) for p, h in enumerate(held)}}

        app = partitioned_app(reads, [lookup(lease) for lease in leases], me, cfg.ha.lease, site_partition, about)
        self._closers.append(app.close)
        server, task = await serve(app, cfg.api.host, cfg.api.port, sock=sock, limits=cfg.api)  # type: ignore[arg-type]

        async def stop_server() -> None:
            feed.close()  # the live streams end (else the server would wait for them)
            server.should_exit = True
            await task

        self._closers.append(stop_server)

    async def stop(self) -> None:
        while self._closers:
            await self._closers.pop()()
