"""``/sites``: every site of the inventory with its edge's link state and buffered backlog
(a central's board), filtered by site, customer or contract. Served where ``ctx.sites``
says what the edges' heartbeats told this instance (a partitioned central's supervisor);
404 elsewhere (a gateway without edges has no sites to show: not a server fault)."""

# No ``from __future__ import annotations``: FastAPI reads the route annotations at run
# time, and the dependency aliases (Viewer) are local to the builders.

import asyncio
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from gateway.api.deps import ApiContext, ApiError, Principal
from gateway.api.routes.auth import Auth
from gateway.api.routes.common import ACT_ERRORS, now
from gateway.core.views import iso

__all__ = ["EDGE_CLASS", "site_rows", "sites_router"]

#: The device class of an edge gateway at the central (the parent of its site's devices).
EDGE_CLASS = "gateway.edge"


def site_rows(
    devices: Any, customers: Mapping[str, str], heard: Mapping[str, Mapping[str, Any]],
    down: set[str], open_by_device: Mapping[str, int], now: float, window: float,
    partition_of: Any,
) -> list[dict[str, Any]]:
    """One row per site of ``devices`` (an inventory): its edge(s), its link state and backlog.

    ``heard``: edge → its last heartbeat (``queued``, ``dropped``, ``received_at``);
    ``down``: edges with an open "site unreachable" (loss) alarm in the store; ``window``:
    seconds after its last heartbeat that an edge still counts as heard.

    The link is ``down`` while the partition's leader holds a loss alarm on the edge,
    ``up`` when its heartbeat came within ``window``, ``silent`` when it came earlier (the
    loss is not decided yet), ``unknown`` when this instance heard none since it started.
    """
    sites: dict[str, dict[str, Any]] = {}
    for d in devices:
        if not d.site:
            continue
        s = sites.setdefault(d.site, {"site": d.site, "partition": partition_of(d.site), "edges": [],
                                      "contracts": set(), "devices": 0, "open_alarms": 0})
        s["devices"] += 1
        s["open_alarms"] += open_by_device.get(d.id, 0)
        if d.policy:
            s["contracts"].add(d.policy)
        if d.device_class == EDGE_CLASS:
            s["edges"].append(d.id)
    out = []
    for site in sorted(sites):
        s = sites[site]
        edges = []
        for e in sorted(s["edges"]):
            hb = heard.get(e)
            age = None if hb is None else max(0.0, now - float(hb["received_at"]))
            link = ("down" if e in down else "unknown" if age is None else "up" if age <= window else "silent")
            edges.append({"edge": e, "link": link, "last_heartbeat": iso(hb["received_at"]) if hb else None,
                          "heartbeat_age_s": None if age is None else round(age, 1),
                          "backlog": hb.get("queued") if hb else None, "dropped": hb.get("dropped") if hb else None,
                          "rules_version": hb.get("rules_version") if hb else None})
        worst = _worst([e["link"] for e in edges]) if edges else "no_edge"
        contracts = sorted(s["contracts"])
        out.append({**s, "edges": edges, "contracts": contracts, "link": worst,
                    "backlog": sum(e["backlog"] or 0 for e in edges) if any(e["backlog"] is not None for e in edges)
                    else None,
                    "customers": sorted({customers[c] for c in contracts if customers.get(c)})})
    return out


def _worst(links: list[str]) -> str:
    for state in ("down", "silent", "unknown", "up"):
        if state in links:
            return state
    return "unknown"


def sites_router(ctx: ApiContext, auth: Auth) -> APIRouter:
    router = APIRouter()
    Viewer = Annotated[Principal, Depends(auth.viewer)]

    @router.get("/sites", responses=ACT_ERRORS, tags=["sites"])
    async def sites(
        p: Viewer,
        site: Annotated[str | None, Query(max_length=200)] = None,
        customer: Annotated[str | None, Query(max_length=200)] = None,
        contract: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        """Every site with its edge's link (``up``, ``silent``, ``down``, ``unknown``,
        ``no_edge``), its buffered backlog (events queued at the edge, from its heartbeat)
        and its open alarms; filtered by ``site``, ``customer`` or ``contract``."""
        if ctx.sites is None:
            raise ApiError(404, "not_found", "no sites' link states here: this is not a partitioned central")
        rows = await asyncio.to_thread(ctx.sites, now(ctx))
        rows = [r for r in rows if (site is None or r["site"] == site)
                and (customer is None or customer in r["customers"])
                and (contract is None or contract in r["contracts"])
                and (not p.scoped or any(p.sees(r["site"], c) for c in r["contracts"] or [""]))]
        return {"now": iso(now(ctx)), "sites": rows}

    return router
