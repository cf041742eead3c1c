"""``/tickets/{id}/report/send``: deliver a ticket's post-incident report to the customer;
``/tickets/{id}/report``: read it (text, HTML, PDF); ``/reports/service``: a contract's monthly,
quarterly or yearly service report (HTML, PDF, JSON); ``/reports``: the contracts and recent
periods the caller may open, and the scheduled reports sent (a customer: its own only)."""

# No ``from __future__ import annotations``: FastAPI reads the route annotations at run time.

import asyncio
import fnmatch
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gateway.api.deps import ApiContext, ApiError, Principal
from gateway.api.routes.auth import Auth
from gateway.api.routes.common import ACT_ERRORS, ERRORS, RowId, log, now, run, ticket_dict
from gateway.api.schemas import ActionIn, TicketOut
from gateway.core.tickets import TicketError
from gateway.core.views import iso

__all__ = ["REPORT_CSP", "report_notifiers", "reports_router"]

#: A report page is self-contained (inline styles and SVG charts), and nothing else: no
#: scripts, no requests.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'"
_REPORT_HEADERS = {"Content-Security-Policy": REPORT_CSP, "Cache-Control": "no-store"}



#: What the report endpoints answer, by ``format``.
_REPORT_200: dict[str, Any] = {"description": "the report (format: text, html or pdf)", "content": {
    "text/markdown": {"schema": {"type": "string"}}, "text/html": {"schema": {"type": "string"}},
    "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}
_SERVICE_200: dict[str, Any] = {"description": "the report (format: html, pdf or json)", "content": {
    "text/html": {"schema": {"type": "string"}}, "application/pdf": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": {"type": "object"}}}}

def recent_periods(now: float, tz: str) -> dict[str, list[str]]:
    """The periods a reader picks from, newest first: this month and the 12 before, this
    quarter and the 4 before, this year and the 2 before."""
    from gateway.core.report_schedule import period_containing, previous_period

    out: dict[str, list[str]] = {}
    for every, n in (("monthly", 13), ("quarterly", 5), ("yearly", 3)):
        p = period_containing(now, tz, every)
        out[every] = [p]
        for _ in range(n - 1):
            p = previous_period(p)
            out[every].append(p)
    return out


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

    Viewer = Annotated[Principal, Depends(auth.viewer)]

    @router.get("/tickets/{ticket_id}/report", responses={**ACT_ERRORS, 200: _REPORT_200}, tags=["tickets"],
                response_model=None)
    async def incident_report_(
        p: Viewer, ticket_id: RowId, format: Annotated[Literal["text", "html", "pdf"], Query()] = "html",
    ) -> Response:
        """A ticket's six-part incident report as it stands now (Markdown text, HTML or PDF);
        a customer reads its own tickets' only."""
        from gateway.core.report import incident_report
        from gateway.delivery.helpdesk.notify.pdf import report_html, report_pdf

        t = await asyncio.to_thread(ctx.store.load_ticket, ticket_id)
        row = await asyncio.to_thread(ctx.store.get_ticket, ticket_id) if t is not None else None
        if t is None or row is None or not p.sees(row.get("site", ""), row["policy"]):
            raise ApiError(404, "not_found", f"no ticket {ticket_id}")
        timeline = await asyncio.to_thread(ctx.store.timeline, ticket_id)
        alarm = await asyncio.to_thread(ctx.store.get_alarm, t.alarm_id)
        text = incident_report(t, timeline, tz=ctx.config.gateway.timezone, now=now(ctx), alarm=alarm,
                               calendars=ctx.calendars)
        title = f"Incident report #{ticket_id}"
        if format == "text":
            return Response(text, media_type="text/markdown; charset=utf-8", headers=_REPORT_HEADERS)
        if format == "html":
            return HTMLResponse(report_html(text, title), headers=_REPORT_HEADERS)
        pdf = await asyncio.to_thread(report_pdf, text, title)
        return Response(pdf, media_type="application/pdf", headers={
            **_REPORT_HEADERS, "Content-Disposition": f'inline; filename="incident-report-{ticket_id}.pdf"'})

    @router.get("/reports", responses=ERRORS, tags=["reports"])
    async def reports_index(p: Viewer) -> dict[str, Any]:
        """The contracts whose service reports the caller may open (a customer: its own
        contracts), the recent periods to pick from, and the scheduled reports sent."""
        tz = ctx.config.gateway.timezone
        contracts = [
            {"name": name, "customer": getattr(ctx.config.policies.get(name), "customer", "") or ""}
            for name in sorted(ctx.policies) if p.sees("", name)
        ]
        names = {c["name"] for c in contracts}
        sent: list[dict[str, Any]] = []
        if hasattr(ctx.store, "service_reports_sent"):
            rows = await asyncio.to_thread(ctx.store.service_reports_sent)
            sent = [{**r, "queued_at": iso(r["queued_at"])} for r in rows if r["contract"] in names]
        return {"timezone": tz, "contracts": contracts, "periods": recent_periods(now(ctx), tz), "sent": sent}

    @router.get("/reports/service", responses={**ACT_ERRORS, 200: _SERVICE_200}, tags=["reports"], response_model=None)
    async def service_report_(
        p: Viewer,
        contract: Annotated[str, Query(description="policy (contract) name")],
        period: Annotated[str, Query(description="YYYY-MM, YYYY-Qn or YYYY")],
        format: Annotated[Literal["html", "pdf", "json"], Query()] = "html",
    ) -> Response:
        """A contract's service report: SLA attainment, MTTA/MTTR, causes, breaches,
        penalties, repeated faults, with charts."""
        from gateway.core.service_report import period_bounds, render_html, service_report

        policy = ctx.policies.get(contract)
        if policy is None or not p.sees("", contract):
            raise ApiError(404, "not_found", f"no contract {contract!r}")
        tz = ctx.config.gateway.timezone
        try:
            start, end, _ = period_bounds(period, tz)
        except ValueError as e:
            raise ApiError(422, "invalid_input", f"period: {e}") from None
        tickets = await asyncio.to_thread(ctx.store.tickets_opened, contract, start, end)
        sec = ctx.config.policies.get(contract)
        rep = service_report(tickets, policy, ctx.calendars, period=period, tz=tz, now=now(ctx),
                             customer=getattr(sec, "customer", "") or "")
        if format == "json":
            return JSONResponse(rep)
        html = render_html(rep)
        if format == "html":
            return HTMLResponse(html, headers=_REPORT_HEADERS)
        from gateway.delivery.helpdesk.notify.pdf import html_pdf

        pdf = await asyncio.to_thread(html_pdf, html)
        return Response(pdf, media_type="application/pdf",
                        headers={**_REPORT_HEADERS,
                                 "Content-Disposition": f'inline; filename="service-{contract}-{period}.pdf"'})

    return router
