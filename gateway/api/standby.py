"""The API of an HA standby: it answers ``/healthz`` and ``/metrics`` itself and forwards
every other request (board, REST reads, operator actions, the SSE stream) to the leader.

The leader's address comes from the lease row (``[ha] advertise_url``, stored there by the
holder). A request is forwarded as it came, with the caller's credentials, and the leader
authenticates, validates and applies it once through its single writer: a standby keeps no
copy of the state that could disagree with the leader's, and an action is never replayed.
When no instance leads (during a failover, at most one lease long) or the leader cannot be
reached, the answer is 503 with ``Retry-After`` and nothing was sent; when the leader was
reached but did not answer, 502 says the action may or may not have been applied.

Reads do not wait for a leader: when none leads or the leader cannot be reached, a
``GET``/``HEAD`` is answered by ``reads`` (:mod:`gateway.api.readonly`, from the shared
PostgreSQL store), marked ``X-Gateway-Served-By: standby <name> (database)``; only changes
get the 503.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SERVED_BY", "LeaderLookup", "standby_app"]

log = logging.getLogger("gateway.api")

#: Answers for (holder, url) of the current leader, or None when nobody leads right now.
LeaderLookup = Callable[[], Awaitable[tuple[str, str] | None]]

_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                  "transfer-encoding", "upgrade", "host"})
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Marks a forwarded request: one that comes back to a standby went in a circle.
FORWARDED = "x-gateway-forwarded-by"
#: Marks an answer a standby made itself from the database (no leader reachable).
SERVED_BY = "x-gateway-served-by"
_SAFE = frozenset({"GET", "HEAD"})


class _Cached:
    """The leader lookup, at most one database round trip per ``ttl`` seconds."""

    def __init__(self, lookup: LeaderLookup, ttl: float) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._at = -1e9
        self._value: tuple[str, str] | None = None

    async def get(self, fresh: bool = False) -> tuple[str, str] | None:
        now = time.monotonic()
        if fresh or now - self._at > self._ttl:
            self._value = await self._lookup()
            self._at = now
        return self._value

    def forget(self) -> None:
        self._at = -1e9


def _unavailable(detail: str, retry: float) -> JSONResponse:
    return JSONResponse({"error": "no_leader", "detail": detail}, status_code=503,
                        headers={"Retry-After": str(max(1, round(retry)))})


class _Local(Response):
    """The answer of ``app`` (the read-only API) to this very request, marked as a standby's."""

    def __init__(self, app: ASGIApp, me: str) -> None:
        super().__init__()
        self.app = app
        self.mark = f"standby {me} (database)".encode("latin-1", "replace")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def marked(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                msg = {**msg, "headers": [*msg.get("headers", []), (SERVED_BY.encode(), self.mark)]}
            await send(msg)

        await self.app(dict(scope), receive, marked)


def standby_app(lookup: LeaderLookup, me: str, lease: float, reads: ASGIApp | None = None) -> Starlette:
    """The standby's whole API. ``me`` is this instance's name in the lease; ``lease`` its
    length in seconds (the longest a client may have to wait for a new leader); ``reads``
    answers reads while no leader can be reached (None: they get the 503 too)."""
    leader = _Cached(lookup, min(1.0, lease / 4))
    client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=min(5.0, lease)), follow_redirects=False)

    async def healthz(request: Request) -> Response:
        cur = await leader.get()
        body: dict[str, object] = {"status": "ok", "role": "standby", "leader": cur[0] if cur else None}
        if reads is not None:
            body["reads"] = "forwarded to the leader" if cur else "from the database"
        # ``/healthz?role=leader`` answers 200 only on the leader (a VRRP/keepalived check).
        code = 503 if request.query_params.get("role") == "leader" else 200
        return JSONResponse(body, status_code=code)

    async def metrics(_: Request) -> Response:
        text = ("# HELP gateway_ha_leader 1 on the instance holding the leader lease, 0 on a standby.\n"
                "# TYPE gateway_ha_leader gauge\ngateway_ha_leader 0\n")
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def forward(request: Request) -> Response:
        local = reads if request.method in _SAFE else None
        cur = await leader.get()
        if cur is None or not cur[1]:
            if local is not None:
                return _Local(local, me)
            return _unavailable("no instance leads right now (failover in progress); retry shortly", lease / 2)
        holder, base = cur
        if holder == me:  # just took over: this server is about to hand the socket to the real API
            if local is not None:
                return _Local(local, me)
            return _unavailable("this instance is taking over as the leader; retry shortly", 1)
        if FORWARDED in request.headers:
            log.error("standby: a request forwarded by %s reached this standby: the leader %s advertises %s, "
                      "which is not its API (set [ha] advertise_url)", request.headers[FORWARDED], holder, base)
            return JSONResponse({"error": "forwarding_loop", "detail": (
                f"the leader {holder} advertises {base}, which reaches a standby; set [ha] advertise_url")},
                status_code=508)
        url = base.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
        headers.append((FORWARDED, me))
        if request.client is not None:
            headers.append(("x-forwarded-for", request.client.host))
        body: AsyncIterator[bytes] | None = None
        if request.method not in _BODYLESS or "content-length" in request.headers:
            body = request.stream()
        sse = "text/event-stream" in request.headers.get("accept", "") or request.url.path.endswith("/events/stream")
        timeout = httpx.Timeout(None, connect=min(5.0, lease)) if sse else client.timeout
        req = client.build_request(request.method, url, headers=headers, content=body, timeout=timeout)
        try:
            resp = await client.send(req, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            leader.forget()
            log.warning("standby: the leader %s at %s cannot be reached: %s", holder, base, e)
            if local is not None:
                return _Local(local, me)
            return _unavailable(f"the leader {holder} cannot be reached; retry shortly", lease / 2)
        except httpx.HTTPError as e:
            leader.forget()
            log.warning("standby: %s %s forwarded to the leader %s got no answer: %s",
                        request.method, request.url.path, holder, e)
            return JSONResponse({"error": "leader_no_answer", "detail": (
                f"the leader {holder} did not answer; the action may or may not have been applied: "
                f"check before retrying")}, status_code=502)
        out = [(k, v) for k, v in resp.headers.multi_items() if k.lower() not in _HOP]
        return StreamingResponse(_relay(resp), status_code=resp.status_code, headers=dict(_merge(out)),
                                 background=BackgroundTask(resp.aclose))

    async def close() -> None:
        await client.aclose()

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    app = Starlette(routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/{path:path}", forward, methods=methods),
    ])
    app.state.close = close
    return app


def _merge(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Response headers for Starlette (a dict): repeated headers joined, except cookies, which
    cannot be joined and of which the leader sets at most one per answer."""
    seen: dict[str, str] = {}
    for k, v in items:
        key = k.lower()
        seen[key] = v if key == "set-cookie" or key not in seen else f"{seen[key]}, {v}"
    return list(seen.items())


async def _relay(resp: httpx.Response) -> AsyncIterator[bytes]:
    """The leader's body as it comes (an SSE stream ends when the leader's connection does,
    and the browser reconnects, to whichever instance leads then)."""
    try:
        async for chunk in resp.aiter_raw():
            yield chunk
    except httpx.HTTPError:
        return  # the leader went away mid-answer: the client sees the answer end

