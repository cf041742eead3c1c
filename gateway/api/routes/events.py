"""``/events/stream``: committed changes as Server-Sent Events."""

# No ``from __future__ import annotations``: FastAPI reads the route annotations at run
# time, and the dependency alias (Viewer) is local to the builder.

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from gateway.api.deps import ApiContext, ApiError, Principal
from gateway.api.routes.auth import Auth
from gateway.api.routes.common import ERRORS, now
from gateway.core.views import iso

__all__ = ["events_router"]

_STREAM_TYPES = frozenset({"alarm", "ticket", "sla.warning", "sla.breach"})
_KEEPALIVE = 15.0


def events_router(ctx: ApiContext, auth: Auth) -> APIRouter:
    router = APIRouter()
    Viewer = Annotated[Principal, Depends(auth.viewer)]

    @router.get(
        "/events/stream",
        responses={
            **ERRORS,
            200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
        },
        response_class=StreamingResponse,
        tags=["stream"],
    )
    async def stream(
        request: Request,
        p: Viewer,
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
            _sse(sub, now(ctx), p if p.scoped else None),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router


def _visible(p: Principal, msg: dict[str, Any]) -> bool:
    """A customer sees alarms and tickets of its sites and contracts; nothing else."""
    data = msg["data"]
    if msg["type"] in ("overflow", "closed"):
        return True
    if msg["type"] not in ("alarm", "ticket") or not isinstance(data, dict):
        return False
    return p.sees(str(data.get("site", "")), str(data.get("policy", "")))


async def _sse(sub: Any, at: float, scope: Principal | None = None) -> AsyncIterator[str]:
    try:
        yield f"retry: 2000\nevent: hello\ndata: {json.dumps({'subscriber': sub.id, 'at': iso(at)})}\n\n"
        while True:
            msg = await sub.get(timeout=_KEEPALIVE)
            if msg is None:
                if sub.closed:
                    return
                yield ": keepalive\n\n"
                continue
            if scope is not None and not _visible(scope, msg):
                continue
            data = json.dumps(msg["data"], ensure_ascii=False, separators=(",", ":"), default=str)
            head = f"id: {msg['id']}\n" if msg["id"] else ""
            yield f"{head}event: {msg['type']}\ndata: {data}\n\n"
            if msg["type"] in ("overflow", "closed"):
                return
    finally:
        sub.close()
