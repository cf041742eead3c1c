"""``/tickets``: list, one ticket with its timeline, tickets people report, links between
alarms and tickets, and the actions on a ticket."""

# No ``from __future__ import annotations``: FastAPI reads the route annotations at run
# time, and the dependency aliases (Viewer, Operator) are local to the builders.

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import Response

from gateway.api.deps import ApiContext, ApiError, Principal
from gateway.api.routes.auth import Auth
from gateway.api.routes.common import (
    ACT_ERRORS,
    ERRORS,
    Cursor,
    Level,
    RowId,
    json_list,
    list_response,
    log,
    next_cursor,
    run,
    ticket_dict,
)
from gateway.api.schemas import ACTION_MAP, ActionIn, ActionName, LinkIn, TicketDetailOut, TicketIn, TicketOut
from gateway.core.tickets import STATUSES, TicketError
from gateway.core.views import iso
from gateway.model import FaultLevel

__all__ = ["tickets_router"]

TicketStatus = Literal["open", "acknowledged", "solution_proposed", "on_site", "restored", "closed"]


def tickets_router(ctx: ApiContext, auth: Auth) -> APIRouter:
    router = APIRouter()
    _add_reads(router, ctx, auth)
    _add_open(router, ctx, auth)
    _add_link(router, ctx, auth)
    _add_act(router, ctx, auth)
    return router


def _epoch(ctx: ApiContext, when: datetime) -> float:
    """A request time as epoch seconds; one without a UTC offset is in gateway.timezone."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(ctx.config.gateway.timezone))
    return when.timestamp()


def _add_open(router: APIRouter, ctx: ApiContext, auth: Auth) -> None:
    Operator = Annotated[Principal, Depends(auth.operator)]

    @router.post("/tickets", response_model=TicketOut, status_code=201, responses=ACT_ERRORS, tags=["tickets"])
    async def open_ticket(p: Operator, body: TicketIn) -> dict[str, Any]:
        """Open a ticket a person reported (phone, e-mail, help desk); its clocks start at
        ``reported_at``. If the device raises a fault while it is open, the alarm attaches
        to it instead of opening a second ticket."""
        dev_id = ctx.inventory.lookup(body.device)
        if dev_id is None:
            raise ApiError(422, "invalid_input", f"body.device: no device {body.device!r} in the inventory")
        reported_at = _epoch(ctx, body.reported_at) if body.reported_at is not None else None
        actor = p.actor  # the authenticated caller; a name in the body is only noted
        behalf = body.actor if p.kind != "user" and body.actor and body.actor != actor else ""
        desk, inventory = ctx.desk, ctx.inventory

        def command(at: float) -> dict[str, Any]:
            dev = inventory.get(dev_id)
            policy = ctx.policies.get(dev.policy) or ctx.policies.get(inventory.default_policy)
            if policy is None:
                raise TicketError(f"device {dev.id}: no policy {dev.policy!r} and no default policy")
            t = desk.open_reported(
                device=dev, policy=policy, level=FaultLevel(body.level), title=body.title,
                reported_by=body.reported_by, channel=body.channel, now=at, actor=actor,
                on_behalf_of=behalf,
                reported_at=reported_at, reason=body.reason,
            )
            return t.to_dict()  # type: ignore[no-any-return]

        try:
            t = await run(ctx, command)
        except TicketError as e:
            raise ApiError(422, "invalid_input", str(e)) from None
        log.info("ticket %d opened by %s (reported by %s via %s)", t["id"], actor, body.reported_by, body.channel)
        return ticket_dict(ctx, t)


def _add_link(router: APIRouter, ctx: ApiContext, auth: Auth) -> None:
    Operator = Annotated[Principal, Depends(auth.operator)]

    async def link(p: Principal, ticket_id: int, alarm_id: int, body: LinkIn) -> dict[str, Any]:
        actor = p.actor  # the authenticated caller; a name in the body is only noted
        behalf = body.actor if p.kind != "user" and body.actor and body.actor != actor else ""
        desk, book = ctx.desk, ctx.book

        def command(at: float) -> dict[str, Any]:
            alarm = next((a for a in book.open.values() if a.id == alarm_id), None)
            if alarm is None:
                raise LookupError(f"no open alarm {alarm_id}")
            t = desk.attach_alarm(ticket_id, alarm, at, actor, body.note, on_behalf_of=behalf)
            book.touch(alarm)
            return t.to_dict()  # type: ignore[no-any-return]

        try:
            t = await run(ctx, command)
        except LookupError as e:
            raise ApiError(404, "not_found", str(e)) from None
        except TicketError as e:
            row = await asyncio.to_thread(ctx.store.get_ticket, ticket_id)
            if row is None:
                raise ApiError(404, "not_found", f"no ticket {ticket_id}") from None
            raise ApiError(409, "conflict", str(e)) from None
        log.info("ticket %d: alarm %d linked by %s", ticket_id, alarm_id, actor)
        return ticket_dict(ctx, t)

    @router.post("/tickets/{ticket_id}/link", response_model=TicketOut, responses=ACT_ERRORS, tags=["tickets"])
    async def link_alarm(p: Operator, ticket_id: RowId, body: LinkIn) -> dict[str, Any]:
        """Link an open alarm (``alarm``) to this ticket: its clear and escalations act on it."""
        if body.alarm is None:
            raise ApiError(422, "invalid_input", "body.alarm: required (the alarm id)")
        return await link(p, ticket_id, body.alarm, body)

    @router.post("/alarms/{alarm_id}/link", response_model=TicketOut, responses=ACT_ERRORS, tags=["alarms"])
    async def link_ticket(p: Operator, alarm_id: RowId, body: LinkIn) -> dict[str, Any]:
        """Link this open alarm to a ticket (``ticket``), e.g. one a customer reported."""
        if body.ticket is None:
            raise ApiError(422, "invalid_input", "body.ticket: required (the ticket id)")
        return await link(p, body.ticket, alarm_id, body)


def _add_reads(router: APIRouter, ctx: ApiContext, auth: Auth) -> None:
    Viewer = Annotated[Principal, Depends(auth.viewer)]

    @router.get("/tickets", response_model=list[TicketOut], responses=ERRORS, tags=["tickets"])
    async def list_tickets(
        p: Viewer,
        request: Request,
        status: Annotated[list[TicketStatus] | None, Query()] = None,
        closed: Annotated[bool | None, Query(description="false = every ticket not closed")] = None,
        level: Annotated[list[Level] | None, Query()] = None,
        site: Annotated[list[str] | None, Query()] = None,
        device: Annotated[list[str] | None, Query()] = None,
        owner: Annotated[list[str] | None, Query(description="owner's account; '' = nobody owns it")] = None,
        team: Annotated[list[str] | None, Query()] = None,
        policy: Annotated[list[str] | None, Query(description="contract (policy) name")] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
        cursor: Cursor = None,
    ) -> Response:
        """Tickets, newest first, each clock with its remaining business time, a page at a
        time (``X-Next-Cursor``)."""
        statuses: list[str] | None = list(status) if status else None
        if closed is not None:
            allowed = ["closed"] if closed else [s for s in STATUSES if s != "closed"]
            statuses = [s for s in statuses if s in allowed] if statuses is not None else allowed

        def build() -> tuple[bytes, str | None]:
            rows = ctx.store.find_tickets(
                statuses=statuses, levels=level, devices=device, sites=site, owners=owner, teams=team,
                policies=policy, limit=limit, before=cursor,
            )
            more = next_cursor(rows, limit)
            out = [ticket_dict(ctx, t) for t in rows if p.sees(t.get("site", ""), t["policy"])]
            return json_list(TicketOut, out), more

        return await list_response(request, build)

    @router.get(
        "/tickets/{ticket_id}", response_model=TicketDetailOut, responses=ACT_ERRORS, tags=["tickets"]
    )
    async def get_ticket(p: Viewer, ticket_id: RowId) -> dict[str, Any]:
        """One ticket with its timeline."""
        t = await asyncio.to_thread(ctx.store.get_ticket, ticket_id)
        if t is None or not p.sees(t.get("site", ""), t["policy"]):
            raise ApiError(404, "not_found", f"no ticket {ticket_id}")
        out = ticket_dict(ctx, t)
        timeline = await asyncio.to_thread(ctx.store.timeline, ticket_id)
        out["timeline"] = [{**e, "ts": iso(e["ts"])} for e in timeline]
        return out


def _action_kwargs(name: str, body: ActionIn) -> dict[str, Any]:
    """The extra arguments of desk action ``name``, from the request body (422 if missing)."""
    kw: dict[str, Any] = {}
    if name == "set_level":
        if body.level is None:
            raise ApiError(422, "invalid_input", "body.level: required for the level action (1-4)")
        kw["level"] = body.level
    elif name == "set_report":
        if body.fields is None:
            raise ApiError(422, "invalid_input", "body.fields: required for the report action")
        kw["fields"] = body.fields.model_dump(exclude_none=True)
    elif name in ("assign", "hand_over"):
        if body.to is None and (name == "hand_over" or body.team is None):
            raise ApiError(422, "invalid_input", f"body.to: required for {name} (the account taking over)")
        if body.to is not None:
            kw["to"] = body.to
        if body.team is not None:
            kw["team"] = body.team
    return kw


async def _check_person(ctx: ApiContext, name: str) -> None:
    """An owner must be an enabled account that may act (when accounts exist at all)."""
    store: Any = ctx.store
    if not hasattr(store, "list_users"):
        return
    users = await asyncio.to_thread(store.list_users)
    if not users:
        return  # no accounts yet: owners are free names (service accounts, CLI logins)
    user = next((u for u in users if u["name"] == name), None)
    if user is None:
        raise ApiError(422, "invalid_input", f"body.to: no account named {name!r} (see gateway user list)")
    if user["disabled"] or user["role"] not in ("operator", "admin"):
        raise ApiError(422, "invalid_input", f"body.to: {name!r} cannot own tickets (disabled or not an operator)")


def _add_act(router: APIRouter, ctx: ApiContext, auth: Auth) -> None:
    Operator = Annotated[Principal, Depends(auth.operator)]

    @router.post(
        "/tickets/{ticket_id}/{action}", response_model=TicketOut, responses=ACT_ERRORS, tags=["tickets"]
    )
    async def act(
        p: Operator,
        ticket_id: RowId,
        action: Annotated[
            ActionName, Path(description="resolve = restore; level needs 'level', report needs 'fields'")
        ],
        body: Annotated[ActionIn | None, Body()] = None,
    ) -> dict[str, Any]:
        """Act on a ticket; the change is committed before the answer."""
        body = body or ActionIn()
        name = ACTION_MAP[action.value]
        kw = _action_kwargs(name, body)
        # The authenticated caller acts; a name a service account or the CLI gives in the body is
        # kept beside it as "on behalf of" (a person always acts as themselves).
        actor = p.actor
        behalf = body.actor if p.kind != "user" and body.actor and body.actor != actor else ""
        if name == "take":
            kw["owner"] = p.name if p.kind == "user" else (body.actor or p.name).removeprefix("user:")
        if kw.get("to"):
            await _check_person(ctx, kw["to"])
        desk, book = ctx.desk, ctx.book

        def command(at: float) -> dict[str, Any]:
            t = desk.act(ticket_id, name, at, actor, body.note, on_behalf_of=behalf, **kw)
            if name == "acknowledge":
                alarm = book.open.get(t.alarm_key)
                if alarm is not None and alarm.ticket_id == t.id and not alarm.acked:
                    alarm.acked = True
                    book.touch(alarm)
            return t.to_dict()  # type: ignore[no-any-return]

        try:
            t = await run(ctx, command)
        except TicketError as e:
            row = await asyncio.to_thread(ctx.store.get_ticket, ticket_id)
            if row is None:
                raise ApiError(404, "not_found", f"no ticket {ticket_id}") from None
            raise ApiError(409, "conflict", str(e)) from None
        except (KeyError, ValueError) as e:
            raise ApiError(422, "invalid_input", f"body: {e}") from None
        log.info("ticket %d: %s by %s%s", ticket_id, action.value, actor, f" on behalf of {behalf}" if behalf else "")
        return ticket_dict(ctx, t)
