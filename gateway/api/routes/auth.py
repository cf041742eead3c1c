"""Who is calling: the ``viewer``, ``operator`` and ``admin`` dependencies, and ``/whoami``.

On the TCP API a caller is one of:

* the holder of a shared bearer token from ``[[api.tokens]]`` (a *service account*, named
  by the config, as before);
* a person with a personal API token (``Authorization: Bearer gwu_...``), or signed in on
  the board (a session cookie, ``HttpOnly``, ``SameSite=Strict``; a write made with the
  cookie must also carry ``X-Requested-With: gateway-board``, which no other site can send).

On the control socket (``local``) every caller is the data dir's owner, an operator (and
account administrator) named by the ``X-Gateway-User`` header.
"""

# No ``from __future__ import annotations``: FastAPI reads the annotations at run time,
# and they name dependencies local to the builders.

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.api.accounts import digest
from gateway.api.deps import ApiContext, ApiError, Principal, TokenTable
from gateway.api.routes.common import ERRORS, now
from gateway.api.schemas import WhoAmI

__all__ = ["COOKIE", "CSRF_HEADER", "Auth", "build_auth", "principal_of", "whoami_router"]

Dependency = Callable[..., Awaitable[Principal]]

#: The board's session cookie.
COOKIE = "gw_session"
#: Header (and value) a cookie-authenticated write must carry.
CSRF_HEADER = ("x-requested-with", "gateway-board")
_SAFE = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True, slots=True)
class Auth:
    """The dependencies routes declare: ``viewer`` (any caller), ``operator``, ``admin``."""

    viewer: Dependency
    operator: Dependency
    admin: Dependency


async def _owner(request: Request) -> Principal:
    name = request.headers.get("x-gateway-user", "").strip()[:100]
    return Principal(name or "local", "operator", kind="local")


def principal_of(user: dict[str, Any]) -> Principal | None:
    """The principal of a stored account (``None`` when it is disabled)."""
    if user.get("disabled"):
        return None
    scope = user.get("scope") or {}
    return Principal(
        user["name"],
        user["role"],
        kind="user",
        display_name=user.get("display_name", ""),
        sites=tuple(scope.get("sites", ())),
        policies=tuple(scope.get("policies", ())),
    )


def _lookup(ctx: ApiContext, what: str, secret: str) -> Principal | None:
    """The account behind a personal token (``what="token"``) or a session id (blocking)."""
    store: Any = ctx.store
    if not hasattr(store, "user_token"):
        return None
    d = digest(secret)
    if what == "token":
        row = store.user_token(d)
    else:
        row = store.get_session(d, now(ctx))
    if row is None:
        return None
    user = store.get_user(row["user"])
    return principal_of(user) if user is not None else None


def _caller(tokens: TokenTable, ctx: ApiContext | None) -> Dependency:
    bearer = HTTPBearer(
        auto_error=False, description="a token from [[api.tokens]] or a personal token (gateway user token)"
    )

    async def caller(
        request: Request,
        cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        challenge = {"WWW-Authenticate": "Bearer"}
        if cred is not None:
            p = tokens.lookup(cred.credentials)
            if p is None and ctx is not None:
                p = await asyncio.to_thread(_lookup, ctx, "token", cred.credentials)
            if p is None:
                raise ApiError(401, "unauthorized", "unknown or revoked token", challenge)
            return p
        sid = request.cookies.get(COOKIE)
        if sid and ctx is not None:
            p = await asyncio.to_thread(_lookup, ctx, "session", sid)
            if p is None:
                raise ApiError(401, "unauthorized", "the session ended or expired: sign in again", challenge)
            if request.method not in _SAFE and request.headers.get(CSRF_HEADER[0]) != CSRF_HEADER[1]:
                raise ApiError(403, "forbidden", f"a write with the board's session needs the header "
                               f"{CSRF_HEADER[0]}: {CSRF_HEADER[1]}")
            return p
        raise ApiError(
            401, "unauthorized", "missing bearer token (send 'Authorization: Bearer <token>') or sign in", challenge
        )

    return caller


def build_auth(tokens: TokenTable, local: bool = False, ctx: ApiContext | None = None) -> Auth:
    """The dependencies for the TCP API (bearer ``tokens``, accounts in ``ctx.store``) or the
    control socket (``local``)."""
    viewer = _owner if local else _caller(tokens, ctx)

    async def operator(p: Annotated[Principal, Depends(viewer)]) -> Principal:
        if not p.can_act:
            what = "token" if p.kind == "service" else "account"
            raise ApiError(
                403, "forbidden", f"{what} {p.name!r} has role {p.role}; acting needs an operator"
            )
        return p

    async def admin(p: Annotated[Principal, Depends(viewer)]) -> Principal:
        if not p.is_admin:
            raise ApiError(403, "forbidden", f"{p.name!r} has role {p.role}; managing accounts needs an admin")
        return p

    return Auth(viewer, operator, admin)


def whoami_router(auth: Auth) -> APIRouter:
    router = APIRouter()
    Viewer = Annotated[Principal, Depends(auth.viewer)]

    @router.get("/whoami", response_model=WhoAmI, responses=ERRORS, tags=["auth"])
    async def whoami(p: Viewer) -> dict[str, Any]:
        """The caller: name, role, kind (service, user, local) and, for a customer, its scope."""
        return {
            "name": p.name,
            "role": p.role,
            "kind": p.kind,
            "display_name": p.display_name,
            "sites": list(p.sites),
            "policies": list(p.policies),
        }

    return router
