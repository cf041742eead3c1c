"""Who is calling: the ``viewer`` and ``operator`` dependencies, and ``/whoami``.

On the TCP API a caller is the holder of a bearer token from ``[[api.tokens]]``; on the
control socket (``local``) every caller is the data dir's owner, an operator named by the
``X-Gateway-User`` header.
"""

# No ``from __future__ import annotations``: FastAPI reads the annotations at run time,
# and they name dependencies local to the builders.

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.api.deps import ApiError, Principal, TokenTable
from gateway.api.routes.common import ERRORS
from gateway.api.schemas import WhoAmI

__all__ = ["Auth", "build_auth", "whoami_router"]

Dependency = Callable[..., Awaitable[Principal]]


@dataclass(frozen=True, slots=True)
class Auth:
    """The two dependencies routes declare: ``viewer`` (any caller) and ``operator``."""

    viewer: Dependency
    operator: Dependency


async def _owner(request: Request) -> Principal:
    name = request.headers.get("x-gateway-user", "").strip()[:100]
    return Principal(name or "local", "operator")


def _token_holder(tokens: TokenTable) -> Dependency:
    bearer = HTTPBearer(auto_error=False, description="a token from [[api.tokens]] in the config")

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

    return token_holder


def build_auth(tokens: TokenTable, local: bool = False) -> Auth:
    """The dependencies for the TCP API (bearer ``tokens``) or the control socket (``local``)."""
    viewer = _owner if local else _token_holder(tokens)

    async def operator(p: Annotated[Principal, Depends(viewer)]) -> Principal:
        if not p.can_act:
            raise ApiError(
                403, "forbidden", f"token {p.name!r} has role viewer; acting needs an operator token"
            )
        return p

    return Auth(viewer, operator)


def whoami_router(auth: Auth) -> APIRouter:
    router = APIRouter()
    Viewer = Annotated[Principal, Depends(auth.viewer)]

    @router.get("/whoami", response_model=WhoAmI, responses=ERRORS, tags=["auth"])
    async def whoami(p: Viewer) -> dict[str, Any]:
        """The caller's token name and role."""
        return {"name": p.name, "role": p.role}

    return router
