"""The NOC's HTTP face: ``create_app(ctx)`` — REST API under /api/v1 (OpenAPI at
/api/v1/openapi.json), SSE change stream, the live board at /, the customer's read-only page at /customer,
/metrics and /healthz.

Errors are JSON ``{"error": code, "message": text}``; invalid input is 422 with a message
naming the field (``body.level: ...``); bodies over ``ctx.body_limit`` are 413.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import __version__
from gateway.api.deps import ApiContext, ApiError, MaintenanceHooks, OutboxHooks, Principal, TokenTable
from gateway.api.headers import DOCS_PATH, SecurityHeaders
from gateway.api.routes import build_router
from gateway.api.routes.inventory import IMPORT_BODY_LIMIT, IMPORT_PATH
from gateway.errors import StoreError
from gateway.runtime.metrics import CONTENT_TYPE, GatewayCollector, render

__all__ = ["ApiContext", "ApiError", "MaintenanceHooks", "OutboxHooks", "Principal", "create_app"]

log = logging.getLogger("gateway.api")

STATIC = Path(__file__).with_name("static")
_DRAIN_MAX = 1024 * 1024
_BOARD_HEADERS = {"Cache-Control": "no-cache"}  # the security headers: SecurityHeaders


def create_app(ctx: ApiContext, local: bool = False) -> FastAPI:
    """The ASGI application for ``ctx`` (no global state: several can live in one process).

    ``local=True`` builds the control API served on the data dir's Unix socket: no bearer
    tokens; every caller is an operator named by the ``X-Gateway-User`` header.
    """
    tokens = TokenTable(ctx.config.api.tokens)
    if not tokens and not local:
        log.warning("api: no [[api.tokens]] configured; only named accounts (gateway user add) can sign in")
    app = FastAPI(
        title="Device alarm gateway",
        version=__version__,
        description="Alarms, tickets with SLA clocks, devices and the live change stream.",
        openapi_url="/api/v1/openapi.json",
        docs_url=DOCS_PATH if ctx.config.api.docs else None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    _install_errors(app)
    app.include_router(build_router(ctx, tokens, local=local))

    @app.get("/healthz", tags=["ops"])
    async def healthz(role: str | None = None) -> JSONResponse:
        """200 ``{"status": "ok"}`` while the store commits; 503 with the reason otherwise.
        HA: ``"role"`` says which instance this is (standbys answer from gateway.api.standby);
        with ``?role=leader`` only the leader answers 200 (a keepalived/VRRP check)."""
        p = ctx.pipeline
        ha = ctx.components.get("ha")
        about = {"role": ha.role, "lease_age": ha.stats()["lease_age_seconds"]} if ha is not None else {}
        if role == "leader" and ha is not None and ha.role != "leader":
            return JSONResponse({"status": "ok", **about}, status_code=503)
        if p.healthy:
            return JSONResponse({"status": "ok", **about})
        reason = getattr(p, "last_error", "") or "store commits are failing"
        return JSONResponse({"status": "unhealthy", "reason": reason, **about}, status_code=503)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format, read from the components at scrape time."""
        outbox = None
        # While commits fail the store is not asked (a scrape would wait out its connect timeout).
        if hasattr(ctx.store, "outbox_counts") and ctx.pipeline.healthy:
            try:
                outbox = await asyncio.to_thread(ctx.store.outbox_counts)
            except StoreError:
                outbox = None
        collector = GatewayCollector(ctx.pipeline, ctx.adapters, ctx.bus, outbox, ctx.components)
        return Response(render(collector), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_BOARD_HEADERS)

    @app.get("/customer", include_in_schema=False)
    async def customer_page() -> FileResponse:
        """The customer's read-only page (its own tickets, incident and service reports)."""
        return FileResponse(STATIC / "customer.html", headers=_BOARD_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(
        BodyLimit, limit=ctx.body_limit, timeout=ctx.config.api.header_timeout,
        larger={IMPORT_PATH: max(ctx.body_limit, IMPORT_BODY_LIMIT)},
    )
    app.add_middleware(SecurityHeaders)  # outermost: also on 413s and on errors
    return app


def _loc(loc: Any) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse({"error": e.code, "message": e.message}, status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = []
        for err in e.errors():
            loc = list(err.get("loc", ()))
            if err.get("type") == "json_invalid":
                loc = loc[:1]
            field = _loc(loc)
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            if err.get("type") == "json_invalid":
                msg = f"invalid JSON ({(err.get('ctx') or {}).get('error', 'decode error')})"
            problems.append({"field": field, "message": msg})
        text = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "invalid input"
        return JSONResponse({"error": "invalid_input", "message": text, "detail": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        if e.status_code == 400:
            # FastAPI answers 400 for a body it cannot read at all (bytes that are not
            # UTF-8, say); like any other invalid input it is a 422 naming the field.
            msg = "not JSON text (the body must be UTF-8 JSON)"
            detail = [{"field": "body", "message": msg}]
            return JSONResponse(
                {"error": "invalid_input", "message": f"body: {msg}", "detail": detail}, status_code=422
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, f"http_{e.status_code}")
        return JSONResponse(
            {"error": code, "message": str(e.detail)},
            status_code=e.status_code,
            headers=getattr(e, "headers", None),
        )

    @app.exception_handler(StoreError)
    async def store_error(_: Request, e: StoreError) -> JSONResponse:
        return JSONResponse({"error": "store_unavailable", "message": str(e)}, status_code=503)


class BodyLimit:
    """ASGI middleware: a request body larger than ``limit`` bytes is answered 413 before the
    app sees it (by Content-Length, or by counting a chunked body while buffering it); one
    that has not arrived whole within ``timeout`` seconds (a client trickling it) is
    answered 408 and the connection closed.

    FastAPI has grown a body limit of its own in recent versions; this one works with every
    version the project allows and answers in the API's error format.
    """

    def __init__(
        self, app: ASGIApp, limit: int, timeout: float = 10.0, larger: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout
        #: Paths allowed a larger body (an inventory import), by exact path.
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope.get("path", ""), self.limit)
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    if int(v) > limit:
                        await self._too_large(receive, send, limit=limit)
                        return
                except ValueError:
                    pass
        chunks: list[bytes] = []
        size = 0
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    msg = await receive()
            except TimeoutError:
                await self._reply(send, 408, "timeout", f"request body not received within {self.timeout:g} s")
                return
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            size += len(body)
            if size > limit:
                await self._too_large(receive, send, more=msg.get("more_body", False), limit=limit)
                return
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        data = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, receive: Receive, send: Send, more: bool = True, limit: int | None = None) -> None:
        # Read (and discard) a moderately oversized body first: a client still sending when
        # the connection closes sees a reset instead of the 413. Beyond _DRAIN_MAX we close.
        drained = 0
        deadline = asyncio.get_running_loop().time() + self.timeout
        while more and drained <= _DRAIN_MAX:
            try:
                async with asyncio.timeout_at(deadline):
                    msg = await receive()
            except TimeoutError:
                break  # a trickling client gets its 413 now, and the connection closes
            if msg["type"] == "http.disconnect":
                return
            drained += len(msg.get("body", b""))
            more = msg.get("more_body", False)
        await self._reply(send, 413, "too_large", f"request body larger than {self.limit if limit is None else limit} bytes")

    @staticmethod
    async def _reply(send: Send, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": code, "message": message}, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
