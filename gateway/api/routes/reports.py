"""``/tickets/{id}/report/send``: deliver a ticket's post-incident report to the customer."""

# No ``from __future__ import annotations``: FastAPI reads the route annotations at run time.

import asyncio
import fnmatch
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from gateway.api.deps import ApiContext, ApiError, Principal
from gateway.api.routes.auth import Auth
from gateway.api.routes.common import ACT_ERRORS, RowId, log, now, run, ticket_dict
from gateway.api.schemas import ActionIn, TicketOut
from gateway.core.tickets import TicketError

__all__ = ["report_notifiers", "reports_router"]


def report_notifiers(cfg: Any, policy: str) -> list[str]:
    """Names of the notifiers that deliver this contract's reports (``reports = true``)."""
    return [h.name for h in cfg.helpdesk
            if getattr(h, "type", "") == "notify" and getattr(h, "reports", False)
            and (not h.policies or any(fnmatch.fnmatchcase(policy, g) for g in h.policies))]


def reports_router(ctx: ApiContext, auth: Auth) -> APIRouter:
    router = APIRouter()
    Operator = Annotated[Principal, Depends(auth.operator)]

    @router.post("/tickets/{ticket_id}/report/send", response_model=TicketOut, responses=ACT_ERRORS, tags=["tickets"])
    async def send_report(p: Operator, ticket_id: RowId, body: Annotated[ActionIn | None, Body()] = None) -> dict[str, Any]:
        """Queue the six-part incident report (text and PDF) for the contract's report
        notifiers; the report clock stops when it is delivered."""
        from gateway.core.report import incident_report

        body = body or ActionIn()
        actor = p.actor if p.kind == "user" else (body.actor or p.name)
        t = await asyncio.to_thread(ctx.store.load_ticket, ticket_id)
        if t is None:
            raise ApiError(404, "not_found", f"no ticket {ticket_id}")
        timeline = await asyncio.to_thread(ctx.store.timeline, ticket_id)
        alarm = await asyncio.to_thread(ctx.store.get_alarm, t.alarm_id)
        text = incident_report(t, timeline, tz=ctx.config.gateway.timezone, now=now(ctx), alarm=alarm,
                               calendars=ctx.calendars)
        to = report_notifiers(ctx.config, t.policy)
        desk = ctx.desk

        def command(at: float) -> dict[str, Any]:
            return desk.queue_report(ticket_id, at, actor, to, text).to_dict()  # type: ignore[no-any-return]

        try:
            out = await run(ctx, command)
        except TicketError as e:
            raise ApiError(409, "conflict", str(e)) from None
        log.info("ticket %d: report queued for %s by %s", ticket_id, ", ".join(to), actor)
        return ticket_dict(ctx, out)

    return router
