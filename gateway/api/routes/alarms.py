"""``/alarms``: list, one alarm, acknowledge."""

# No ``from __future__ import annotations``: FastAPI reads the route annotations at run
# time, and the dependency aliases (Viewer, Operator) are local to the builder.

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from gateway.api.deps import ApiContext, ApiError, Principal
from gateway.api.render import alarm_out
from gateway.api.routes.auth import Auth
from gateway.api.routes.common import (
    ACT_ERRORS,
    ERRORS,
    OPEN_ALARM,
    Cursor,
    Level,
    RowId,
    json_list,
    list_response,
    log,
    next_cursor,
    run,
)
from gateway.api.schemas import AlarmOut

__all__ = ["alarms_router"]

AlarmState = Literal["open", "active", "pending", "suppressed", "cleared"]


def _site_devices(ctx: ApiContext, sites: list[str]) -> list[str]:
    wanted = set(sites)
    return [d.id for d in ctx.inventory if d.site in wanted]


def alarms_router(ctx: ApiContext, auth: Auth) -> APIRouter:
    router = APIRouter()
    Viewer = Annotated[Principal, Depends(auth.viewer)]
    Operator = Annotated[Principal, Depends(auth.operator)]

    @router.get("/alarms", response_model=list[AlarmOut], responses=ERRORS, tags=["alarms"])
    async def list_alarms(
        p: Viewer,
        request: Request,
        level: Annotated[list[Level] | None, Query(description="1-4; repeat for several")] = None,
        state: Annotated[
            list[AlarmState] | None, Query(description="'open' = active, pending or suppressed")
        ] = None,
        site: Annotated[list[str] | None, Query()] = None,
        device: Annotated[list[str] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
        cursor: Cursor = None,
    ) -> Response:
        """Alarms, newest first, a page at a time (``X-Next-Cursor``), filtered by level, state, site and device."""
        states = None
        if state:
            states = sorted({s for st in state for s in (OPEN_ALARM if st == "open" else [st])})
        devices = list(device) if device else None
        if site:
            in_sites = _site_devices(ctx, site)
            devices = [d for d in devices if d in in_sites] if devices is not None else in_sites

        def build() -> tuple[bytes, str | None]:
            rows = ctx.store.find_alarms(states=states, levels=level, devices=devices, limit=limit, before=cursor)
            more = next_cursor(rows, limit)
            out = [alarm_out(a, ctx.inventory) for a in rows]
            if p.scoped:
                out = [a for a in out if p.sees(a["site"], a["policy"])]
            return json_list(AlarmOut, out), more

        return await list_response(request, build)

    @router.get("/alarms/{alarm_id}", response_model=AlarmOut, responses=ACT_ERRORS, tags=["alarms"])
    async def get_alarm(p: Viewer, alarm_id: RowId) -> dict[str, Any]:
        """One alarm."""
        a = await asyncio.to_thread(ctx.store.get_alarm, alarm_id)
        out = alarm_out(a, ctx.inventory) if a is not None else None
        if out is None or not p.sees(out["site"], out["policy"]):
            raise ApiError(404, "not_found", f"no alarm {alarm_id}")
        return out

    @router.post("/alarms/{alarm_id}/ack", response_model=AlarmOut, responses=ACT_ERRORS, tags=["alarms"])
    async def ack_alarm(p: Operator, alarm_id: RowId) -> dict[str, Any]:
        """Acknowledge an open alarm (the board lists unacknowledged alarms first)."""

        def ack(_now: float) -> dict[str, Any] | None:
            for a in ctx.book.open.values():
                if a.id == alarm_id:
                    if not a.acked:
                        a.acked = True
                        ctx.book.touch(a)
                    return a.to_dict()  # type: ignore[no-any-return]
            return None

        a = await run(ctx, ack)
        if a is None:
            row = await asyncio.to_thread(ctx.store.get_alarm, alarm_id)
            if row is None:
                raise ApiError(404, "not_found", f"no alarm {alarm_id}")
            raise ApiError(
                409, "conflict", f"alarm {alarm_id} is {row['state']}; only open alarms can be acknowledged"
            )
        log.info("alarm %d acknowledged by %s", alarm_id, p.name)
        return alarm_out(a, ctx.inventory)

    return router
