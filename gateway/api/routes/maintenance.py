"""``/maintenance``: maintenance windows, through the optional ``ctx.maintenance`` hooks
(501 when the gateway has none)."""

# No ``from __future__ import annotations``: FastAPI reads the route annotations at run
# time, and the dependency aliases (Viewer, Operator) are local to the builder.

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from gateway.api.deps import ApiContext, ApiError, Principal
from gateway.api.routes.auth import Auth
from gateway.api.routes.common import HOOK_ERRORS, call, not_available, now
from gateway.api.schemas import MaintenanceIn
from gateway.core.views import iso

__all__ = ["maintenance_router"]


def _window_out(w: Any) -> Any:
    """A maintenance window with ISO times, like every other time the API shows."""
    if not isinstance(w, dict):
        return w
    out = dict(w)
    for k in ("start", "end", "created_at", "ended_at"):
        if isinstance(out.get(k), (int, float)) and not isinstance(out.get(k), bool):
            out[k] = iso(float(out[k]))
    return out


def maintenance_router(ctx: ApiContext, auth: Auth, local: bool = False) -> APIRouter:
    """``local``: windows opened here are recorded with source ``cli`` (else ``api``)."""
    router = APIRouter()
    Viewer = Annotated[Principal, Depends(auth.viewer)]
    Operator = Annotated[Principal, Depends(auth.operator)]

    @router.get("/maintenance", responses=HOOK_ERRORS, tags=["maintenance"])
    async def list_maintenance(_: Viewer, include_ended: bool = False) -> Any:
        """Maintenance windows (current and future; ended ones too with include_ended)."""
        if ctx.maintenance is None:
            raise not_available("maintenance windows")
        return [_window_out(w) for w in await call(ctx.maintenance.list, include_ended)]

    @router.post("/maintenance", status_code=201, responses=HOOK_ERRORS, tags=["maintenance"])
    async def create_maintenance(p: Operator, body: MaintenanceIn) -> Any:
        """Open a maintenance window: alarms of its devices and sites are suppressed."""
        if ctx.maintenance is None:
            raise not_available("maintenance windows")
        start = body.start.timestamp() if body.start is not None else now(ctx)
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
            return _window_out(await call(ctx.maintenance.create, spec, p.name))
        except ValueError as e:
            raise ApiError(422, "invalid_input", f"body: {e}") from None

    @router.post("/maintenance/{window_id}/end", responses=HOOK_ERRORS, tags=["maintenance"])
    async def end_maintenance(p: Operator, window_id: str) -> Any:
        """End a maintenance window now."""
        if ctx.maintenance is None:
            raise not_available("maintenance windows")
        try:
            return _window_out(await call(ctx.maintenance.end, window_id, p.name))
        except KeyError:
            raise ApiError(404, "not_found", f"no maintenance window {window_id!r}") from None
        except ValueError as e:
            raise ApiError(409, "conflict", str(e)) from None

    return router
