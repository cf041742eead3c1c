"""Operations: ``/rules/reload``, the failed help-desk messages under ``/outbox`` and the
edges a central hears from (``/edges``), through the optional ``ctx.reload``, ``ctx.outbox``
and ``ctx.edges`` hooks (501 when absent)."""

# No ``from __future__ import annotations``: FastAPI reads the route annotations at run
# time, and the dependency aliases (Viewer, Operator) are local to the builders.

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from gateway.api.deps import ApiContext, ApiError, Principal
from gateway.api.routes.auth import Auth
from gateway.api.routes.common import ACT_ERRORS, HOOK_ERRORS, RowId, call, log, not_available
from gateway.errors import ConfigError

__all__ = ["ops_router"]


def ops_router(ctx: ApiContext, auth: Auth) -> APIRouter:
    router = APIRouter()
    _add_rules(router, ctx, auth)
    _add_outbox(router, ctx, auth)
    _add_edges(router, ctx, auth)
    return router


def _add_edges(router: APIRouter, ctx: ApiContext, auth: Auth) -> None:
    Viewer = Annotated[Principal, Depends(auth.viewer)]

    @router.get("/edges", responses=ACT_ERRORS, tags=["forward"])
    async def list_edges(p: Viewer) -> dict[str, Any]:
        """Sites and a central NOC: each edge's last heartbeat, backlog and the rule-set
        version it runs, beside the version this central distributes."""
        if ctx.edges is None:  # a standalone gateway has no edges: nothing here, not a server fault
            raise ApiError(404, "not_found", "no edges: this gateway is neither a central nor an edge")
        out: dict[str, Any] = ctx.edges()
        if p.scoped:
            out["edges"] = [e for e in out["edges"] if p.sees(e.get("site", ""), "")]
        return out


def _add_rules(router: APIRouter, ctx: ApiContext, auth: Auth) -> None:
    Operator = Annotated[Principal, Depends(auth.operator)]

    @router.post("/rules/reload", responses=HOOK_ERRORS, tags=["rules"])
    async def reload_rules(p: Operator) -> dict[str, Any]:
        """Reload the rule packs (as SIGHUP does); the old rules stay if the new ones are invalid.
        On a partitioned central it is asked of every partition's leader (``result.partitions``)."""
        if ctx.reload is None:
            raise not_available("rules reload")
        try:
            result = await ctx.reload()
        except ConfigError as e:
            raise ApiError(422, "invalid_rules", str(e)) from None
        log.info("rules reloaded by %s", p.name)
        return {
            "status": "reloaded",
            "result": result if isinstance(result, (dict, list, str, int)) else None,
        }


async def _outbox_op(ctx: ApiContext, op: str, message_id: int, p: Principal) -> dict[str, Any]:
    if ctx.outbox is None:
        raise not_available("the help-desk outbox")
    ok = await call(getattr(ctx.outbox, op), message_id)
    if not ok:
        raise ApiError(409, "conflict", f"outbox message {message_id} is not a failed message")
    log.info("outbox message %d: %s by %s", message_id, op, p.name)
    return {"id": message_id, "status": "requeued" if op == "retry" else "discarded"}


def _add_outbox(router: APIRouter, ctx: ApiContext, auth: Auth) -> None:
    Viewer = Annotated[Principal, Depends(auth.viewer)]
    Operator = Annotated[Principal, Depends(auth.operator)]

    @router.get("/outbox/failed", responses=HOOK_ERRORS, tags=["outbox"])
    async def failed_outbox(_: Viewer, limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> Any:
        """Help-desk messages that failed permanently and wait for an operator."""
        if ctx.outbox is None:
            raise not_available("the help-desk outbox")
        return await call(ctx.outbox.list_failed, limit)

    @router.post("/outbox/{message_id}/retry", responses=HOOK_ERRORS, tags=["outbox"])
    async def retry_outbox(p: Operator, message_id: RowId) -> dict[str, Any]:
        """Queue a failed message for delivery again."""
        return await _outbox_op(ctx, "retry", message_id, p)

    @router.post("/outbox/{message_id}/discard", responses=HOOK_ERRORS, tags=["outbox"])
    async def discard_outbox(p: Operator, message_id: RowId) -> dict[str, Any]:
        """Give up on a failed message (it stays in the store, marked discarded)."""
        return await _outbox_op(ctx, "discard", message_id, p)
