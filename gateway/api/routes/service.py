"""``/service``: after-sales — planned work (inspections, visits, preventive maintenance), warranty
status and expiring warranties, spare-part and loaner actions on tickets, a device's repair
history. Through the optional ``ctx.service`` desk (501 when the gateway has none)."""

# No ``from __future__ import annotations``: FastAPI reads the route annotations at run time.

import asyncio
from datetime import date, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.deps import ApiContext, ApiError, Principal
from gateway.api.routes.auth import Auth
from gateway.api.routes.common import HOOK_ERRORS, RowId, not_available

__all__ = ["service_router"]

PlannedState = Literal["upcoming", "due", "overdue", "done", "cancelled"]
Kind = Literal["inspection", "visit", "maintenance"]
SpareAction = Literal[
    "spare_requested", "spare_shipped", "repaired", "replacement_received", "part_replaced",
    "part_returned", "part_failed", "loaner_out", "loaner_back",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReportFile(_In):
    name: str = Field(min_length=1, max_length=200)
    #: The file's bytes, base64.
    content: str


class PlannedDoneIn(_In):
    """The report of planned work: what was done (text), the checklist, attached files."""

    text: str = Field(min_length=1, max_length=20000)
    checks: dict[str, bool] = Field(default_factory=dict)
    files: list[ReportFile] = Field(default_factory=list, max_length=20)


class SpareActionIn(_In):
    """A spare-part or loaner action on a ticket."""

    action: SpareAction
    #: The (main) part concerned, e.g. "psu" (the replacement rule counts failures per part).
    part: str = Field(default="", max_length=200)
    #: The loaner unit's name or serial number.
    unit: str = Field(default="", max_length=200)
    note: str = Field(default="", max_length=2000)
    #: When it happened (default: now); not before the ticket, not in the future.
    at: datetime | None = None


def service_router(ctx: ApiContext, auth: Auth) -> APIRouter:
    router = APIRouter()
    Viewer = Annotated[Principal, Depends(auth.viewer)]
    Operator = Annotated[Principal, Depends(auth.operator)]

    def desk() -> Any:
        if ctx.service is None:
            raise not_available("after-sales service")
        return ctx.service

    async def guarded(fn: Any, *args: Any, **kw: Any) -> Any:
        from gateway.runtime.service import NotFound, ServiceError

        try:
            result = fn(*args, **kw)
            if asyncio.iscoroutine(result):
                return await result
            return result
        except NotFound as e:
            raise ApiError(404, "not_found", str(e)) from None
        except ServiceError as e:
            raise ApiError(422, "invalid_input", str(e)) from None

    @router.get("/service/planned", responses=HOOK_ERRORS, tags=["service"])
    async def list_planned(
        _: Viewer,
        device: str | None = None,
        contract: str | None = None,
        state: PlannedState | None = None,
        kind: Kind | None = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> Any:
        """Planned work items by due date, each with its state (upcoming / due / overdue / done / cancelled)."""
        d = desk()
        return await asyncio.to_thread(d.planned, device=device, contract=contract, state=state, kind=kind, limit=limit)

    @router.post("/service/planned/generate", responses=HOOK_ERRORS, tags=["service"])
    async def generate(_: Operator) -> Any:
        """Generate planned work now and give the notices due (the gateway does it every minute)."""
        return await guarded(desk().tick)

    @router.get("/service/planned/{item_id:path}/report", responses=HOOK_ERRORS, tags=["service"])
    async def planned_report(_: Viewer, item_id: str) -> Any:
        """One item with its whole report, attached files included (base64)."""
        return await guarded(desk().planned_item, item_id, True)

    @router.post("/service/planned/{item_id:path}/done", responses=HOOK_ERRORS, tags=["service"])
    async def planned_done(p: Operator, item_id: str, body: PlannedDoneIn) -> Any:
        """Complete planned work with its report (its overdue alarm, if any, clears)."""
        report = {"text": body.text, "checks": body.checks, "files": [f.model_dump() for f in body.files]}
        return await guarded(desk().complete, item_id, report, p.name)

    @router.get("/service/planned/{item_id:path}", responses=HOOK_ERRORS, tags=["service"])
    async def planned_item(_: Viewer, item_id: str) -> Any:
        """One planned work item (report files listed by name and size)."""
        return await guarded(desk().planned_item, item_id)

    @router.get("/service/warranty/expiring", responses=HOOK_ERRORS, tags=["service"])
    async def expiring(_: Viewer, within: Annotated[int, Query(ge=1, le=3660)] = 90) -> Any:
        """Warranties ending within ``within`` days (30 / 60 / 90), soonest first."""
        return await asyncio.to_thread(desk().expiring, within)

    @router.get("/service/devices/{device_id}/warranty", responses=HOOK_ERRORS, tags=["service"])
    async def warranty(_: Viewer, device_id: str, on: date | None = None) -> Any:
        """A device's warranty status today (or ``on`` a local date), its periods, replaced parts."""
        at = None
        if on is not None:
            tz = ZoneInfo(ctx.config.gateway.timezone)
            at = datetime.combine(on, time(12), tzinfo=tz).timestamp()
        return await guarded(desk().warranty, device_id, at)

    @router.get("/service/devices/{device_id}/history", responses=HOOK_ERRORS, tags=["service"])
    async def history(_: Viewer, device_id: str) -> Any:
        """A device's repair history (tickets, planned work, spares, warranty events) and
        whether the contract's replacement rule applies."""
        return await guarded(desk().history, device_id)

    @router.get("/service/tickets/{ticket_id}", responses=HOOK_ERRORS, tags=["service"])
    async def ticket_service(_: Viewer, ticket_id: RowId) -> Any:
        """A ticket's warranty status as of its start, its spare-part clocks, loaner and records."""
        return await guarded(desk().ticket_service, ticket_id)

    @router.post("/service/tickets/{ticket_id}/actions", status_code=201, responses=HOOK_ERRORS, tags=["service"])
    async def ticket_action(p: Operator, ticket_id: RowId, body: SpareActionIn) -> Any:
        """Record a spare-part or loaner action (starts or stops the contract's spare clocks)."""
        at = None
        if body.at is not None:
            when = body.at
            if when.tzinfo is None:
                when = when.replace(tzinfo=ZoneInfo(ctx.config.gateway.timezone))
            at = when.timestamp()
        return await guarded(desk().ticket_action, ticket_id, body.action, p.name, part=body.part,
                             note=body.note, unit=body.unit, at=at)

    return router
