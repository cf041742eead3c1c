"""The /api/v1 routes: alarms, tickets and their actions, devices, board snapshot, maintenance,
rules reload, failed outbox messages and the SSE change stream.

Reads come from the store (committed state) or, for what only lives in memory (open
alarms per device, liveness), from the components on the event loop's thread. Every
change goes through ``pipeline.execute`` so the single writer applies it and commits it
before the answer is sent.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route annotations at
# run time, and the dependency aliases (Viewer, Operator) are local to build_router.

import asyncio
import inspect
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field

from gateway.api.deps import ApiContext, ApiError, Principal, TokenTable
from gateway.api.render import alarm_out, device_out, ticket_out
from gateway.api.schemas import (
    ACTION_MAP,
    ActionIn,
    ActionName,
    AlarmOut,
    BoardOut,
    DeviceDetailOut,
    DeviceOut,
    ErrorOut,
    MaintenanceIn,
    TicketDetailOut,
    TicketOut,
    WhoAmI,
)
from gateway.core.tickets import STATUSES, TicketError
from gateway.core.views import iso
from gateway.errors import ConfigError

__all__ = ["build_router"]

log = logging.getLogger("gateway.api")

AlarmState = Literal["open", "active", "pending", "suppressed", "cleared"]
TicketStatus = Literal["open", "acknowledged", "solution_proposed", "on_site", "restored", "closed"]
Level = Annotated[int, Field(ge=1, le=4)]
#: Store row ids are SQLite INTEGERs: a larger number can name no row and must not reach the store.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="row id")]
_OPEN_ALARM = ["active", "pending", "suppressed"]
_STREAM_TYPES = frozenset({"alarm", "ticket", "sla.warning", "sla.breach"})
_KEEPALIVE = 15.0
_BOARD_DEVICES = 300

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no or unknown bearer token"},
    413: {"model": ErrorOut, "description": "request body larger than the configured limit"},
    422: {"model": ErrorOut, "description": "invalid input; the message names the field"},
}
_ACT_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    403: {"model": ErrorOut, "description": "the token's role may not act (viewer)"},
    404: {"model": ErrorOut, "description": "no such object"},
    409: {"model": ErrorOut, "description": "the action does not apply in the object's state"},
    503: {"model": ErrorOut, "description": "the change was not committed in time (store unhealthy)"},
}
_HOOK_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ACT_ERRORS,
    501: {"model": ErrorOut, "description": "the feature is not available in this gateway"},
}


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a hook on the event loop: plain functions must not block; coroutines are awaited."""
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def _window_out(w: Any) -> Any:
    """A maintenance window with ISO times, like every other time the API shows."""
    if not isinstance(w, dict):
        return w
    out = dict(w)
    for k in ("start", "end", "created_at", "ended_at"):
        if isinstance(out.get(k), (int, float)) and not isinstance(out.get(k), bool):
            out[k] = iso(float(out[k]))
    return out


def _not_available(what: str) -> ApiError:
    return ApiError(501, "not_available", f"{what} is not available in this gateway")


def build_router(ctx: ApiContext, tokens: TokenTable, local: bool = False) -> APIRouter:
    """All /api/v1 routes bound to ``ctx``; ``tokens`` authenticates the callers.

    ``local``: the control API on the data dir's Unix socket (mode 0600), which only the
    data dir's owner can open: callers are operators named by ``X-Gateway-User``.
    """
    router = APIRouter(prefix="/api/v1")
    bearer = HTTPBearer(auto_error=False, description="a token from [[api.tokens]] in the config")

    async def owner(request: Request) -> Principal:
        name = request.headers.get("x-gateway-user", "").strip()[:100]
        return Principal(name or "local", "operator")

    async def token_holder(
        cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        challenge = {"WWW-Authenticate": "Bearer"}
        if cred is None:
            raise ApiError(
                401, "unauthorized", "missing bearer token (send 'Authorization: Bearer <token>')", challenge
            )
        p = tokens.lookup(cred.credentials)
        if p is None:
            raise ApiError(401, "unauthorized", "unknown or revoked token", challenge)
        return p

    viewer = owner if local else token_holder

    async def operator(p: Annotated[Principal, Depends(viewer)]) -> Principal:
        if not p.can_act:
            raise ApiError(
                403, "forbidden", f"token {p.name!r} has role viewer; acting needs an operator token"
            )
        return p

    Viewer = Annotated[Principal, Depends(viewer)]
    Operator = Annotated[Principal, Depends(operator)]

    def now() -> float:
        return float(ctx.clock.now())

    async def run(fn: Callable[[float], Any]) -> Any:
        """Execute ``fn(now)`` in the writer; 503 if its commit does not come in time."""
        try:
            return await asyncio.wait_for(ctx.pipeline.execute(fn), ctx.command_timeout)
        except TimeoutError:
            reason = getattr(ctx.pipeline, "last_error", "") or "the pipeline is busy or stopping"
            raise ApiError(
                503,
                "not_committed",
                f"the change was not committed within {ctx.command_timeout:g} s (it stays queued and "
                f"takes effect once committed): {reason}",
            ) from None

    def ticket_dict(t: dict[str, Any]) -> dict[str, Any]:
        return ticket_out(t, ctx.calendars, now())

    def site_devices(sites: list[str]) -> list[str]:
        wanted = set(sites)
        return [d.id for d in ctx.inventory if d.site in wanted]

    def open_alarms_by_device() -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for a in list(ctx.book.open.values()):
            out.setdefault(a.device, []).append(a)
        return out

    def all_devices() -> list[Any]:
        return list(ctx.inventory) + list(getattr(ctx.inventory, "unknown", {}).values())

    def board_devices() -> list[dict[str, Any]]:
        """Devices with open alarms (worst first), then the others, up to _BOARD_DEVICES: a
        gateway may watch a million devices, the board shows those that need eyes."""
        by_dev = open_alarms_by_device()
        picked: list[Any] = []
        for dev_id in sorted(by_dev, key=lambda k: min(int(a.level) for a in by_dev[k])):
            dev = ctx.inventory.get(dev_id) or getattr(ctx.inventory, "unknown", {}).get(dev_id)
            if dev is not None:
                picked.append(dev)
        seen = {d.id for d in picked}
        for dev in itertools.chain(ctx.inventory, getattr(ctx.inventory, "unknown", {}).values()):
            if len(picked) >= _BOARD_DEVICES:
                break
            if dev.id not in seen:
                picked.append(dev)
        return [device_out(d, by_dev.get(d.id, []), ctx.watchdog) for d in picked[:_BOARD_DEVICES]]

    def health() -> dict[str, Any]:
        p = ctx.pipeline
        adapters = {}
        for ad in ctx.adapters:
            try:
                s = ad.stats()
            except Exception:  # noqa: BLE001
                continue
            adapters[getattr(ad, "name", type(ad).__name__)] = {
                "received": s.get("received", 0),
                "rejected": sum(v for k, v in s.items() if k.startswith("rejected.")),
                "shed": sum(v for k, v in s.items() if k == "shed" or k.startswith("shed.")),
            }
        bus = ctx.bus.stats
        return {
            "store_healthy": bool(p.healthy),
            "last_error": getattr(p, "last_error", ""),
            "queue_depth": p.depth,
            "queue_capacity": p.queue_size,
            "shed": p.stats.shed,
            "sla_warnings": p.stats.sla_warnings,
            "sla_breaches": p.stats.sla_breaches,
            "stream_subscribers": ctx.bus.subscribers,
            "stream_dropped_subscribers": bus.dropped_subscribers,
            "adapters": adapters,
            "devices": {
                "total": len(ctx.inventory) + len(getattr(ctx.inventory, "unknown", {})),
                **(
                    {k: v for k, v in ctx.watchdog.stats().items() if k in ("tracked", "lost")}
                    if ctx.watchdog
                    else {}
                ),
            },
        }

    # -- identity ----------------------------------------------------------------------------
    @router.get("/whoami", response_model=WhoAmI, responses=_ERRORS, tags=["auth"])
    async def whoami(p: Viewer) -> dict[str, Any]:
        """The caller's token name and role."""
        return {"name": p.name, "role": p.role}

    # -- alarms ------------------------------------------------------------------------------
    @router.get("/alarms", response_model=list[AlarmOut], responses=_ERRORS, tags=["alarms"])
    async def list_alarms(
        _: Viewer,
        level: Annotated[list[Level] | None, Query(description="1-4; repeat for several")] = None,
        state: Annotated[
            list[AlarmState] | None, Query(description="'open' = active, pending or suppressed")
        ] = None,
        site: Annotated[list[str] | None, Query()] = None,
        device: Annotated[list[str] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ) -> list[dict[str, Any]]:
        """Alarms, newest first, filtered by level, state, site and device."""
        states = None
        if state:
            states = sorted({s for st in state for s in (_OPEN_ALARM if st == "open" else [st])})
        devices = list(device) if device else None
        if site:
            in_sites = site_devices(site)
            devices = [d for d in devices if d in in_sites] if devices is not None else in_sites
        rows = await asyncio.to_thread(
            ctx.store.find_alarms, states=states, levels=level, devices=devices, limit=limit
        )
        return [alarm_out(a, ctx.inventory) for a in rows]

    @router.get("/alarms/{alarm_id}", response_model=AlarmOut, responses=_ACT_ERRORS, tags=["alarms"])
    async def get_alarm(_: Viewer, alarm_id: RowId) -> dict[str, Any]:
        """One alarm."""
        a = await asyncio.to_thread(ctx.store.get_alarm, alarm_id)
        if a is None:
            raise ApiError(404, "not_found", f"no alarm {alarm_id}")
        return alarm_out(a, ctx.inventory)

    @router.post("/alarms/{alarm_id}/ack", response_model=AlarmOut, responses=_ACT_ERRORS, tags=["alarms"])
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

        a = await run(ack)
        if a is None:
            row = await asyncio.to_thread(ctx.store.get_alarm, alarm_id)
            if row is None:
                raise ApiError(404, "not_found", f"no alarm {alarm_id}")
            raise ApiError(
                409, "conflict", f"alarm {alarm_id} is {row['state']}; only open alarms can be acknowledged"
            )
        log.info("alarm %d acknowledged by %s", alarm_id, p.name)
        return alarm_out(a, ctx.inventory)

    # -- tickets -----------------------------------------------------------------------------
    @router.get("/tickets", response_model=list[TicketOut], responses=_ERRORS, tags=["tickets"])
    async def list_tickets(
        _: Viewer,
        status: Annotated[list[TicketStatus] | None, Query()] = None,
        closed: Annotated[bool | None, Query(description="false = every ticket not closed")] = None,
        level: Annotated[list[Level] | None, Query()] = None,
        site: Annotated[list[str] | None, Query()] = None,
        device: Annotated[list[str] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    ) -> list[dict[str, Any]]:
        """Tickets, newest first, each clock with its remaining business time."""
        statuses: list[str] | None = list(status) if status else None
        if closed is not None:
            allowed = ["closed"] if closed else [s for s in STATUSES if s != "closed"]
            statuses = [s for s in statuses if s in allowed] if statuses is not None else allowed
        rows = await asyncio.to_thread(
            ctx.store.find_tickets,
            statuses=statuses,
            levels=level,
            devices=device,
            sites=site,
            limit=limit,
        )
        return [ticket_dict(t) for t in rows]

    @router.get(
        "/tickets/{ticket_id}", response_model=TicketDetailOut, responses=_ACT_ERRORS, tags=["tickets"]
    )
    async def get_ticket(_: Viewer, ticket_id: RowId) -> dict[str, Any]:
        """One ticket with its timeline."""
        t = await asyncio.to_thread(ctx.store.get_ticket, ticket_id)
        if t is None:
            raise ApiError(404, "not_found", f"no ticket {ticket_id}")
        out = ticket_dict(t)
        timeline = await asyncio.to_thread(ctx.store.timeline, ticket_id)
        out["timeline"] = [{**e, "ts": iso(e["ts"])} for e in timeline]
        return out

    @router.post(
        "/tickets/{ticket_id}/{action}", response_model=TicketOut, responses=_ACT_ERRORS, tags=["tickets"]
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
        kw: dict[str, Any] = {}
        if name == "set_level":
            if body.level is None:
                raise ApiError(422, "invalid_input", "body.level: required for the level action (1-4)")
            kw["level"] = body.level
        elif name == "set_report":
            if body.fields is None:
                raise ApiError(422, "invalid_input", "body.fields: required for the report action")
            kw["fields"] = body.fields.model_dump(exclude_none=True)
        actor = body.actor or p.name
        desk, book = ctx.desk, ctx.book

        def command(at: float) -> dict[str, Any]:
            t = desk.act(ticket_id, name, at, actor, body.note, **kw)
            if name == "acknowledge":
                alarm = book.open.get(t.alarm_key)
                if alarm is not None and alarm.ticket_id == t.id and not alarm.acked:
                    alarm.acked = True
                    book.touch(alarm)
            return t.to_dict()  # type: ignore[no-any-return]

        try:
            t = await run(command)
        except TicketError as e:
            row = await asyncio.to_thread(ctx.store.get_ticket, ticket_id)
            if row is None:
                raise ApiError(404, "not_found", f"no ticket {ticket_id}") from None
            raise ApiError(409, "conflict", str(e)) from None
        except (KeyError, ValueError) as e:
            raise ApiError(422, "invalid_input", f"body: {e}") from None
        log.info("ticket %d: %s by %s", ticket_id, action.value, actor)
        return ticket_dict(t)

    # -- devices -----------------------------------------------------------------------------
    @router.get("/devices", response_model=list[DeviceOut], responses=_ERRORS, tags=["devices"])
    async def list_devices(
        _: Viewer,
        site: Annotated[list[str] | None, Query()] = None,
        liveness: Annotated[list[Literal["alive", "lost", "unmonitored"]] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> list[dict[str, Any]]:
        """Inventory devices and the unknown senders seen so far, with liveness and open alarms."""
        by_dev = open_alarms_by_device()
        out = []
        for d in all_devices():
            if site and d.site not in site:
                continue
            row = device_out(d, by_dev.get(d.id, []), ctx.watchdog)
            if liveness and row["liveness"] not in liveness:
                continue
            out.append(row)
            if len(out) >= limit:
                break
        return out

    @router.get(
        "/devices/{device_id}", response_model=DeviceDetailOut, responses=_ACT_ERRORS, tags=["devices"]
    )
    async def get_device(_: Viewer, device_id: str) -> dict[str, Any]:
        """One device with its recent alarms."""
        dev = ctx.inventory.get(device_id) or getattr(ctx.inventory, "unknown", {}).get(device_id)
        if dev is None:
            raise ApiError(404, "not_found", f"no device {device_id!r}")
        out = device_out(dev, open_alarms_by_device().get(dev.id, []), ctx.watchdog)
        rows = await asyncio.to_thread(ctx.store.find_alarms, devices=[dev.id], limit=100)
        out["alarms"] = [alarm_out(a, ctx.inventory) for a in rows]
        return out

    # -- board -------------------------------------------------------------------------------
    @router.get("/board", response_model=BoardOut, responses=_ERRORS, tags=["board"])
    async def board(_: Viewer) -> dict[str, Any]:
        """Everything the NOC board shows, in one snapshot."""
        alarms = await asyncio.to_thread(ctx.store.find_alarms, states=_OPEN_ALARM, limit=5000)
        tickets = await asyncio.to_thread(
            ctx.store.find_tickets,
            statuses=[s for s in STATUSES if s != "closed"],
            limit=5000,
        )
        return {
            "now": iso(now()),
            "instance": ctx.config.gateway.instance,
            "timezone": ctx.config.gateway.timezone,
            "alarms": [alarm_out(a, ctx.inventory) for a in alarms],
            "tickets": [ticket_dict(t) for t in tickets],
            "devices": board_devices(),
            "health": health(),
        }

    # -- maintenance windows (optional hook) ---------------------------------------------------
    @router.get("/maintenance", responses=_HOOK_ERRORS, tags=["maintenance"])
    async def list_maintenance(_: Viewer, include_ended: bool = False) -> Any:
        """Maintenance windows (current and future; ended ones too with include_ended)."""
        if ctx.maintenance is None:
            raise _not_available("maintenance windows")
        return [_window_out(w) for w in await _call(ctx.maintenance.list, include_ended)]

    @router.post("/maintenance", status_code=201, responses=_HOOK_ERRORS, tags=["maintenance"])
    async def create_maintenance(p: Operator, body: MaintenanceIn) -> Any:
        """Open a maintenance window: alarms of its devices and sites are suppressed."""
        if ctx.maintenance is None:
            raise _not_available("maintenance windows")
        start = body.start.timestamp() if body.start is not None else now()
        if body.end.timestamp() <= start:
            raise ApiError(422, "invalid_input", "body.end: must be in the future")
        spec = {
            "devices": body.devices,
            "sites": body.sites,
            "classes": body.classes,
            "start": start,
            "end": body.end.timestamp(),
            "reason": body.reason,
            "id": body.id,
            "source": "cli" if local else "api",
        }
        try:
            return _window_out(await _call(ctx.maintenance.create, spec, p.name))
        except ValueError as e:
            raise ApiError(422, "invalid_input", f"body: {e}") from None

    @router.post("/maintenance/{window_id}/end", responses=_HOOK_ERRORS, tags=["maintenance"])
    async def end_maintenance(p: Operator, window_id: str) -> Any:
        """End a maintenance window now."""
        if ctx.maintenance is None:
            raise _not_available("maintenance windows")
        try:
            return _window_out(await _call(ctx.maintenance.end, window_id, p.name))
        except KeyError:
            raise ApiError(404, "not_found", f"no maintenance window {window_id!r}") from None
        except ValueError as e:
            raise ApiError(409, "conflict", str(e)) from None

    # -- rules -------------------------------------------------------------------------------
    @router.post("/rules/reload", responses=_HOOK_ERRORS, tags=["rules"])
    async def reload_rules(p: Operator) -> dict[str, Any]:
        """Reload the rule packs (as SIGHUP does); the old rules stay if the new ones are invalid."""
        if ctx.reload is None:
            raise _not_available("rules reload")
        try:
            result = await ctx.reload()
        except ConfigError as e:
            raise ApiError(422, "invalid_rules", str(e)) from None
        log.info("rules reloaded by %s", p.name)
        return {
            "status": "reloaded",
            "result": result if isinstance(result, (dict, list, str, int)) else None,
        }

    # -- failed outbox messages (optional hook) ----------------------------------------------
    @router.get("/outbox/failed", responses=_HOOK_ERRORS, tags=["outbox"])
    async def failed_outbox(_: Viewer, limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> Any:
        """Help-desk messages that failed permanently and wait for an operator."""
        if ctx.outbox is None:
            raise _not_available("the help-desk outbox")
        return await _call(ctx.outbox.list_failed, limit)

    async def _outbox_op(op: str, message_id: int, p: Principal) -> dict[str, Any]:
        if ctx.outbox is None:
            raise _not_available("the help-desk outbox")
        ok = await _call(getattr(ctx.outbox, op), message_id)
        if not ok:
            raise ApiError(409, "conflict", f"outbox message {message_id} is not a failed message")
        log.info("outbox message %d: %s by %s", message_id, op, p.name)
        return {"id": message_id, "status": "requeued" if op == "retry" else "discarded"}

    @router.post("/outbox/{message_id}/retry", responses=_HOOK_ERRORS, tags=["outbox"])
    async def retry_outbox(p: Operator, message_id: RowId) -> dict[str, Any]:
        """Queue a failed message for delivery again."""
        return await _outbox_op("retry", message_id, p)

    @router.post("/outbox/{message_id}/discard", responses=_HOOK_ERRORS, tags=["outbox"])
    async def discard_outbox(p: Operator, message_id: RowId) -> dict[str, Any]:
        """Give up on a failed message (it stays in the store, marked discarded)."""
        return await _outbox_op("discard", message_id, p)

    # -- live stream -------------------------------------------------------------------------
    @router.get(
        "/events/stream",
        responses={
            **_ERRORS,
            200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
        },
        response_class=StreamingResponse,
        tags=["stream"],
    )
    async def stream(
        request: Request,
        _: Viewer,
        types: Annotated[
            str | None, Query(description="comma-separated: alarm,ticket,sla.warning,sla.breach")
        ] = None,
    ) -> StreamingResponse:
        """Server-Sent Events: ``alarm``, ``ticket``, ``sla.warning`` and ``sla.breach`` as they
        are committed. A subscriber that falls behind gets ``overflow`` and the stream ends
        (reconnect and reload a snapshot)."""
        wanted = None
        if types:
            wanted = {t.strip() for t in types.split(",") if t.strip()}
            bad = wanted - _STREAM_TYPES
            if bad:
                raise ApiError(422, "invalid_input", f"query.types: unknown type(s) {', '.join(sorted(bad))}")
        sub = ctx.bus.subscribe(types=(wanted | {"overflow", "closed"}) if wanted else None)
        return StreamingResponse(
            _sse(sub, now()),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router


async def _sse(sub: Any, at: float) -> AsyncIterator[str]:
    try:
        yield f"retry: 2000\nevent: hello\ndata: {json.dumps({'subscriber': sub.id, 'at': iso(at)})}\n\n"
        while True:
            msg = await sub.get(timeout=_KEEPALIVE)
            if msg is None:
                if sub.closed:
                    return
                yield ": keepalive\n\n"
                continue
            data = json.dumps(msg["data"], ensure_ascii=False, separators=(",", ":"), default=str)
            head = f"id: {msg['id']}\n" if msg["id"] else ""
            yield f"{head}event: {msg['type']}\ndata: {data}\n\n"
            if msg["type"] in ("overflow", "closed"):
                return
    finally:
        sub.close()
