"""``/rules/titles``: each rule's title template in English and Chinese, so the board can show
an alarm's or ticket's title in the reader's language (the English title it carries is
matched against the English template; the fields found fill the Chinese one)."""

# No ``from __future__ import annotations``: FastAPI reads the route annotations at run
# time, and the dependency alias (Viewer) is local to the builder.

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from gateway.api.deps import ApiContext, Principal
from gateway.api.routes.auth import Auth
from gateway.api.routes.common import ERRORS

__all__ = ["titles_router"]


def titles_router(ctx: ApiContext, auth: Auth) -> APIRouter:
    router = APIRouter()
    Viewer = Annotated[Principal, Depends(auth.viewer)]

    @router.get("/rules/titles", responses=ERRORS, tags=["rules"])
    async def titles(_: Viewer) -> list[dict[str, Any]]:
        """``[{"id", "title", "title_zh"}]`` for the live rules that have a Chinese title."""
        engine = getattr(ctx.pipeline, "engine", None)
        out: dict[str, dict[str, Any]] = {}
        for r in getattr(engine, "rules", ()):
            src: Any = getattr(r, "source", None)
            zh = getattr(src, "title_zh", "")
            if zh and r.id not in out:
                out[r.id] = {"id": r.id, "title": src.title or r.id, "title_zh": zh}
        return list(out.values())

    return router
