"""People: signing in and out of the board (``/session``), accounts (``/users``, admins and
the CLI), personal API tokens (``/me/tokens``) and the teams with who is on call (``/teams``).

Secrets never leave in a listing: a new personal token or a reset password is shown once,
in the answer that made it; the store keeps only digests and scrypt hashes.
"""

# No ``from __future__ import annotations``: FastAPI reads the route annotations at run
# time, and the dependency aliases are local to the builder.

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.accounts import NAME_RE, digest, hash_password, new_password, new_secret, verify_password
from gateway.api.deps import ApiContext, ApiError, Principal
from gateway.api.proxies import TrustedProxies
from gateway.api.routes.auth import COOKIE, Auth, principal_of
from gateway.api.routes.common import ACT_ERRORS, ERRORS, log, now
from gateway.core.views import iso

__all__ = ["people_router"]

Role = Literal["viewer", "operator", "admin", "customer"]
UserName = Annotated[str, Path(pattern=NAME_RE.pattern, description="account name")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignIn(_In):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1000)


class UserIn(_In):
    name: str = Field(pattern=NAME_RE.pattern)
    role: Role = "viewer"
    display_name: str = Field(default="", max_length=200)
    #: Empty: a random one is made and shown once.
    password: str | None = Field(default=None, min_length=8, max_length=1000)
    #: A customer's sites and contracts.
    sites: list[str] = Field(default_factory=list, max_length=1000)
    policies: list[str] = Field(default_factory=list, max_length=1000)


class ResetIn(_In):
    password: str | None = Field(default=None, min_length=8, max_length=1000)


class TokenIn(_In):
    label: str = Field(default="", max_length=100)


def _public(u: dict[str, Any]) -> dict[str, Any]:
    scope = u.get("scope") or {}
    return {
        "name": u["name"],
        "role": u["role"],
        "display_name": u.get("display_name", ""),
        "disabled": bool(u.get("disabled")),
        "sites": list(scope.get("sites", [])),
        "policies": list(scope.get("policies", [])),
        "created_at": iso(u["created_at"]),
        "updated_at": iso(u.get("updated_at", u["created_at"])),
    }


def _store(ctx: ApiContext) -> Any:
    store: Any = ctx.store
    if not hasattr(store, "save_user"):
        raise ApiError(501, "not_available", "accounts are not available with this store")
    return store


def people_router(ctx: ApiContext, auth: Auth, local: bool = False) -> APIRouter:
    router = APIRouter()
    _add_session(router, ctx, auth, local)
    _add_users(router, ctx, auth)
    _add_tokens(router, ctx, auth)
    _add_teams(router, ctx, auth)
    return router


#: Failed sign-ins allowed per account name in _WINDOW seconds before the next is refused.
#: The failures are kept in the store: every gateway on it (HA) and a restart count them.
_MAX_FAILURES, _WINDOW = 5, 60.0


def _add_session(router: APIRouter, ctx: ApiContext, auth: Auth, local: bool) -> None:
    proxies = TrustedProxies(getattr(ctx.config.api, "trusted_proxies", ()))
    cookie_secure = getattr(ctx.config.api, "cookie_secure", "auto")

    @router.post("/session", responses=ERRORS, tags=["auth"])
    async def sign_in(request: Request, response: Response, body: Annotated[SignIn, Body()]) -> dict[str, Any]:
        """Sign in to the board with a name and password: sets the session cookie. After
        five failures for a name within a minute (counted by every gateway on the store),
        the next tries are refused (429) until it has passed."""
        store = _store(ctx)
        at = now(ctx)
        if await asyncio.to_thread(store.sign_in_failures, body.name, at - _WINDOW) >= _MAX_FAILURES:
            raise ApiError(429, "too_many_attempts", "too many failed sign-ins for this name: wait a minute")
        user = await asyncio.to_thread(store.get_user, body.name)
        ok = await asyncio.to_thread(verify_password, body.password, (user or {}).get("password_hash", ""))
        p = principal_of(user) if user is not None and ok else None
        if p is None:
            log.info("sign-in refused for %r", body.name[:64])
            await asyncio.to_thread(store.add_sign_in_failure, body.name, at, at - _WINDOW)
            raise ApiError(401, "unauthorized", "wrong name or password, or the account is disabled")
        await asyncio.to_thread(store.clear_sign_in_failures, body.name)
        sid = new_secret()
        ttl = float(ctx.config.people.session_ttl) if hasattr(ctx.config, "people") else 12 * 3600.0
        await asyncio.to_thread(store.add_session, digest(sid), p.name, at, at + ttl)
        peer = request.client.host if request.client is not None else None
        secure = cookie_secure == "always" or (
            cookie_secure == "auto" and proxies.is_https(request.url.scheme, peer, request.headers))
        response.set_cookie(
            COOKIE, sid, max_age=int(ttl), httponly=True, samesite="strict", path="/", secure=secure,
        )
        log.info("%s signed in", p.name)
        return {"name": p.name, "role": p.role, "kind": p.kind, "display_name": p.display_name,
                "sites": list(p.sites), "policies": list(p.policies)}

    @router.delete("/session", status_code=204, responses=ERRORS, tags=["auth"])
    async def sign_out(request: Request) -> Response:
        """Sign out: the session ends here and in the store."""
        sid = request.cookies.get(COOKIE)
        if sid and hasattr(ctx.store, "drop_session"):
            await asyncio.to_thread(_store(ctx).drop_session, digest(sid))
        out = Response(status_code=204)
        out.delete_cookie(COOKIE, path="/")
        return out


def _add_users(router: APIRouter, ctx: ApiContext, auth: Auth) -> None:
    Admin = Annotated[Principal, Depends(auth.admin)]

    @router.get("/users", responses=ACT_ERRORS, tags=["people"])
    async def list_users(_: Admin) -> list[dict[str, Any]]:
        """Every account (no secrets)."""
        return [_public(u) for u in await asyncio.to_thread(_store(ctx).list_users)]

    @router.post("/users", status_code=201, responses=ACT_ERRORS, tags=["people"])
    async def add_user(p: Admin, body: Annotated[UserIn, Body()]) -> dict[str, Any]:
        """Create an account; without a password a random one is made and shown once."""
        store = _store(ctx)
        if await asyncio.to_thread(store.get_user, body.name) is not None:
            raise ApiError(409, "conflict", f"an account named {body.name!r} exists (use reset or enable)")
        if body.role == "customer" and not (body.sites or body.policies):
            raise ApiError(422, "invalid_input", "body.sites: a customer needs at least one site or contract (policies)")
        password = body.password or new_password()
        at = now(ctx)
        user = {
            "name": body.name, "role": body.role, "display_name": body.display_name,
            "password_hash": await asyncio.to_thread(hash_password, password), "disabled": False,
            "scope": {"sites": body.sites, "policies": body.policies} if body.role == "customer" else {},
            "created_at": at, "updated_at": at,
        }
        await asyncio.to_thread(store.save_user, user)
        log.info("account %s (%s) added by %s", body.name, body.role, p.name)
        out = _public(user)
        if body.password is None:
            out["password"] = password
        return out

    async def _get(name: str) -> dict[str, Any]:
        user = await asyncio.to_thread(_store(ctx).get_user, name)
        if user is None:
            raise ApiError(404, "not_found", f"no account named {name!r}")
        return dict(user)

    @router.post("/users/{name}/disable", responses=ACT_ERRORS, tags=["people"])
    async def disable_user(p: Admin, name: UserName) -> dict[str, Any]:
        """Disable an account: its sessions end; its tokens stop working (kept for an enable)."""
        user = await _get(name)
        user.update(disabled=True, updated_at=now(ctx))
        store = _store(ctx)
        await asyncio.to_thread(store.save_user, user)
        await asyncio.to_thread(store.drop_sessions, name)
        log.info("account %s disabled by %s", name, p.name)
        return _public(user)

    @router.post("/users/{name}/enable", responses=ACT_ERRORS, tags=["people"])
    async def enable_user(p: Admin, name: UserName) -> dict[str, Any]:
        user = await _get(name)
        user.update(disabled=False, updated_at=now(ctx))
        await asyncio.to_thread(_store(ctx).save_user, user)
        log.info("account %s enabled by %s", name, p.name)
        return _public(user)

    @router.post("/users/{name}/reset", responses=ACT_ERRORS, tags=["people"])
    async def reset_user(
        p: Admin, name: UserName, body: Annotated[ResetIn | None, Body()] = None
    ) -> dict[str, Any]:
        """A new password (random unless given, shown once); every session of the account ends."""
        user = await _get(name)
        password = (body.password if body else None) or new_password()
        user.update(password_hash=await asyncio.to_thread(hash_password, password), updated_at=now(ctx))
        store = _store(ctx)
        await asyncio.to_thread(store.save_user, user)
        await asyncio.to_thread(store.drop_sessions, name)
        log.info("password of %s reset by %s", name, p.name)
        out = _public(user)
        if not (body and body.password):
            out["password"] = password
        return out

    @router.post("/users/{name}/tokens", status_code=201, responses=ACT_ERRORS, tags=["people"])
    async def add_user_token(p: Admin, name: UserName, body: Annotated[TokenIn | None, Body()] = None) -> dict[str, Any]:
        """A personal API token for the account (shown once)."""
        await _get(name)
        return await _new_token(ctx, name, body.label if body else "")


async def _new_token(ctx: ApiContext, user: str, label: str) -> dict[str, Any]:
    secret = new_secret("gwu_")
    at = now(ctx)
    tid = await asyncio.to_thread(_store(ctx).add_user_token, user, label, digest(secret), at)
    log.info("personal token %d (%s) made for %s", tid, label or "-", user)
    return {"id": tid, "user": user, "label": label, "created_at": iso(at), "token": secret}


def _add_tokens(router: APIRouter, ctx: ApiContext, auth: Auth) -> None:
    Viewer = Annotated[Principal, Depends(auth.viewer)]

    def _person(p: Principal) -> str:
        if p.kind != "user":
            raise ApiError(403, "forbidden", "personal tokens belong to named accounts (sign in as yourself)")
        return p.name

    @router.get("/me/tokens", responses=ACT_ERRORS, tags=["people"])
    async def my_tokens(p: Viewer) -> list[dict[str, Any]]:
        """My personal API tokens (labels and dates, never the tokens)."""
        rows = await asyncio.to_thread(_store(ctx).list_user_tokens, _person(p))
        return [{**r, "created_at": iso(r["created_at"])} for r in rows]

    @router.post("/me/tokens", status_code=201, responses=ACT_ERRORS, tags=["people"])
    async def make_token(p: Viewer, body: Annotated[TokenIn | None, Body()] = None) -> dict[str, Any]:
        """A new personal API token for scripts (shown once): ``Authorization: Bearer <token>``."""
        return await _new_token(ctx, _person(p), body.label if body else "")

    @router.delete("/me/tokens/{token_id}", status_code=204, responses=ACT_ERRORS, tags=["people"])
    async def revoke_token(p: Viewer, token_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Response:
        if not await asyncio.to_thread(_store(ctx).revoke_user_token, _person(p), token_id):
            raise ApiError(404, "not_found", f"you have no token {token_id}")
        return Response(status_code=204)


def _add_teams(router: APIRouter, ctx: ApiContext, auth: Auth) -> None:
    Viewer = Annotated[Principal, Depends(auth.viewer)]

    @router.get("/teams", responses=ERRORS, tags=["people"])
    async def teams(p: Viewer) -> list[dict[str, Any]]:
        """The teams with their lead, members and who is on call now."""
        staffing = getattr(ctx.desk, "staffing", None)
        if staffing is None or p.scoped:
            return []
        at = now(ctx)
        return [
            {"name": t.name, "lead": t.lead, "members": list(t.members), "on_call": t.on_call(at)}
            for t in staffing.teams
        ]
