"""What the route modules share: error tables for the OpenAPI document, path and query
types, and small helpers bound to an :class:`ApiContext` (clock, writer, ticket view)."""

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, TypeAdapter

from gateway.api.deps import ApiContext, ApiError
from gateway.api.render import ticket_out
from gateway.api.schemas import ErrorOut

__all__ = [
    "ACT_ERRORS",
    "ERRORS",
    "HOOK_ERRORS",
    "OPEN_ALARM",
    "Cursor",
    "Level",
    "RowId",
    "call",
    "json_list",
    "list_response",
    "log",
    "next_cursor",
    "not_available",
    "now",
    "run",
    "ticket_dict",
]

log = logging.getLogger("gateway.api")

Level = Annotated[int, Field(ge=1, le=4)]
#: Store row ids are SQLite INTEGERs: a larger number can name no row and must not reach the store.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="row id")]
OPEN_ALARM = ["active", "pending", "suppressed"]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no or unknown bearer token"},
    413: {"model": ErrorOut, "description": "request body larger than the configured limit"},
    422: {"model": ErrorOut, "description": "invalid input; the message names the field"},
}
ACT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"model": ErrorOut, "description": "the token's role may not act (viewer)"},
    404: {"model": ErrorOut, "description": "no such object"},
    409: {"model": ErrorOut, "description": "the action does not apply in the object's state"},
    503: {"model": ErrorOut, "description": "the change was not committed in time (store unhealthy)"},
}
HOOK_ERRORS: dict[int | str, dict[str, Any]] = {
    **ACT_ERRORS,
    501: {"model": ErrorOut, "description": "the feature is not available in this gateway"},
}


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a hook on the event loop: plain functions must not block; coroutines are awaited."""
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def not_available(what: str) -> ApiError:
    return ApiError(501, "not_available", f"{what} is not available in this gateway")


def now(ctx: ApiContext) -> float:
    return float(ctx.clock.now())


async def run(ctx: ApiContext, fn: Callable[[float], Any]) -> Any:
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


def ticket_dict(ctx: ApiContext, t: dict[str, Any]) -> dict[str, Any]:
    return ticket_out(t, ctx.calendars, now(ctx))


@functools.cache
def _list_adapter(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def json_list(model: type[BaseModel], rows: list[dict[str, Any]]) -> bytes:
    """``rows`` checked against ``model`` and encoded as FastAPI would (by alias)."""
    adapter = _list_adapter(model)
    return adapter.dump_json(adapter.validate_python(rows), by_alias=True)


#: ``cursor`` of the alarm and ticket lists: the id of the last row of the previous page.
Cursor = Annotated[
    int | None, Query(ge=1, le=2**63 - 1, description="the X-Next-Cursor of the previous page")
]


async def list_response(request: Request, build: Callable[[], tuple[bytes, str | None]]) -> Response:
    """A JSON list built (fetched, rendered, encoded) in a worker thread: a large one must
    not hold up the event loop that SNMP, MQTT and the store writer share. ``build``
    returns the body and the next page's cursor (``None`` on the last page), which goes
    out as ``X-Next-Cursor`` and ``Link: <...>; rel="next"``."""
    body, nxt = await asyncio.to_thread(build)
    headers = {}
    if nxt is not None:
        headers["X-Next-Cursor"] = nxt
        headers["Link"] = f'<{request.url.include_query_params(cursor=nxt)}>; rel="next"'
    return Response(body, media_type="application/json", headers=headers)


def next_cursor(rows: list[dict[str, Any]], limit: int) -> str | None:
    """The cursor after a full page of rows (newest first, by id), or ``None``."""
    return str(rows[-1]["id"]) if rows and len(rows) >= limit else None
