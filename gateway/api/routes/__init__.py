"""The /api/v1 routes: alarms, tickets and their actions, devices, board snapshot, maintenance,
rules reload, failed outbox messages and the SSE change stream — one module per resource,
each with its own router, included here in a fixed order (the OpenAPI document follows it).

Reads come from the store (committed state) or, for what only lives in memory (open
alarms per device, liveness), from the components on the event loop's thread. Every
change goes through ``pipeline.execute`` so the single writer applies it and commits it
before the answer is sent.

* :mod:`.service`: after-sales (planned work, warranty, spares, repair history)
* :mod:`.auth`: the ``viewer`` / ``operator`` / ``admin`` dependencies and ``/whoami``
* :mod:`.people`: board sign-in, accounts, personal tokens, teams and who is on call
* :mod:`.common`: error tables, path types and helpers the others share
* :mod:`.alarms`, :mod:`.tickets`, :mod:`.devices` (with the board), :mod:`.inventory`
  (import/export, device writes, adoption), :mod:`.maintenance`,
  :mod:`.ops` (rules reload, outbox), :mod:`.events` (the SSE stream), :mod:`.sites` (a
  partitioned central's sites with their link state)
"""

from __future__ import annotations

from fastapi import APIRouter

from gateway.api.deps import ApiContext, TokenTable
from gateway.api.routes.alarms import alarms_router
from gateway.api.routes.auth import build_auth, whoami_router
from gateway.api.routes.devices import devices_router
from gateway.api.routes.events import events_router
from gateway.api.routes.inventory import inventory_router
from gateway.api.routes.maintenance import maintenance_router
from gateway.api.routes.ops import ops_router
from gateway.api.routes.people import people_router
from gateway.api.routes.reports import reports_router
from gateway.api.routes.service import service_router
from gateway.api.routes.sites import sites_router
from gateway.api.routes.tickets import tickets_router
from gateway.api.routes.titles import titles_router

__all__ = ["build_router"]


def build_router(ctx: ApiContext, tokens: TokenTable, local: bool = False) -> APIRouter:
    """All /api/v1 routes bound to ``ctx``; ``tokens`` authenticates the callers.

    ``local``: the control API on the data dir's Unix socket (mode 0600), which only the
    data dir's owner can open: callers are operators named by ``X-Gateway-User``.
    """
    auth = build_auth(tokens, local, ctx)
    router = APIRouter(prefix="/api/v1")
    router.include_router(whoami_router(auth))
    router.include_router(people_router(ctx, auth, local))
    router.include_router(alarms_router(ctx, auth))
    router.include_router(reports_router(ctx, auth))
    router.include_router(tickets_router(ctx, auth))
    router.include_router(devices_router(ctx, auth))
    router.include_router(sites_router(ctx, auth))
    router.include_router(inventory_router(ctx, auth))
    router.include_router(maintenance_router(ctx, auth, local))
    router.include_router(ops_router(ctx, auth))
    router.include_router(service_router(ctx, auth))
    router.include_router(events_router(ctx, auth))
    router.include_router(titles_router(ctx, auth))
    return router
