"""``/inventory`` and device writes: export and import (CSV, JSON), add/update/remove one device,
adopt an unknown sender, the change log — through the optional ``ctx.devices`` hooks (501
without). Writes need the operator role and are recorded with the caller's name and the time;
an import with any bad row changes nothing and answers 422 with one line per problem."""

# No ``from __future__ import annotations``: FastAPI reads the route annotations at run
# time, and the dependency aliases (Viewer, Operator) are local to the builder.

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.deps import ApiContext, ApiError, Principal
from gateway.api.routes.auth import Auth
from gateway.api.routes.common import HOOK_ERRORS, call, not_available
from gateway.core.views import iso

__all__ = ["IMPORT_BODY_LIMIT", "IMPORT_PATH", "inventory_router"]

IMPORT_PATH = "/api/v1/inventory/import"
#: An import carries a whole inventory (10,000 devices are ~1 MB of CSV): its own body limit.
IMPORT_BODY_LIMIT = 64 * 1024 * 1024


class DeviceIn(BaseModel):
    """One device (every field but the id, which is in the path)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = ""
    device_class: str = Field(default="", alias="class")
    site: str = ""
    region: str = ""
    policy: str = ""
    parent: str = ""
    addresses: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    #: Seconds, or a duration such as "30s"; none = the class's or the default.
    heartbeat_interval: float | str | None = None
    #: "", "none", or e.g. "snmp:core-v3", "icmp", "snmp+icmp".
    poll: str = ""

    def row(self) -> dict[str, Any]:
        d = self.model_dump(by_alias=True)
        return d


class AdoptIn(DeviceIn):
    """Adopt an unknown sender: its inventory id (default: the key it was seen under), class, site, policy."""

    id: str = ""


class ImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["csv", "json"]
    #: The file's text.
    text: str
    #: "merge": rows are added or updated, other devices stay; "replace": the rows are the whole
    #: stored inventory (stored devices not in them are removed). Config-file devices never change.
    mode: Literal["merge", "replace"] = "merge"
    #: Check only: report what would change, change nothing.
    dry_run: bool = False


def _rejected(e: ValueError) -> JSONResponse:
    errors = getattr(e, "errors", None) or []
    detail = [x.to_dict() if hasattr(x, "to_dict") else {"row": 0, "column": "", "message": str(x)} for x in errors]
    return JSONResponse({"error": "invalid_input", "message": str(e), "detail": detail}, status_code=422)


def inventory_router(ctx: ApiContext, auth: Auth) -> APIRouter:
    router = APIRouter()
    Viewer = Annotated[Principal, Depends(auth.viewer)]
    Operator = Annotated[Principal, Depends(auth.operator)]

    def hooks() -> Any:
        if ctx.devices is None:
            raise not_available("the inventory API")
        return ctx.devices

    @router.get("/inventory", tags=["devices"], responses={
        **HOOK_ERRORS,
        200: {"description": "the devices (JSON rows, or CSV text with format=csv)",
              "content": {"text/csv": {"schema": {"type": "string"}}}},
    })
    async def export_inventory(_: Viewer, format: Literal["json", "csv"] = "json") -> Any:
        """Every device, config file and store (``source`` says which); CSV with ``format=csv``."""
        out = await call(hooks().export, format)
        if format == "csv":
            return Response(out, media_type="text/csv; charset=utf-8")
        return out

    @router.post("/inventory/import", responses=HOOK_ERRORS, tags=["devices"])
    async def import_inventory(p: Operator, body: ImportIn) -> Any:
        """Import devices from CSV or JSON: all rows or, with any bad row, none (422 lists them)."""
        try:
            return await call(hooks().import_text, body.text, body.format, p.name, body.mode == "replace", body.dry_run)
        except ValueError as e:
            return _rejected(e)

    @router.get("/inventory/changes", responses=HOOK_ERRORS, tags=["devices"])
    async def inventory_changes(
        _: Viewer, device: str | None = None, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000
    ) -> Any:
        """Who changed which device when (newest first)."""
        rows = await call(hooks().changes, device, limit)
        return [{**r, "at": iso(r["at"])} for r in rows]

    @router.get("/inventory/unknown", responses=HOOK_ERRORS, tags=["devices"])
    async def unknown_devices(_: Viewer, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> Any:
        """Senders seen in traffic that are not in the inventory (candidates for adoption)."""
        return await call(hooks().unknown, limit)

    @router.put("/devices/{device_id}", responses=HOOK_ERRORS, tags=["devices"])
    async def put_device(p: Operator, device_id: str, body: DeviceIn) -> Any:
        """Add or update a device (kept in the store; devices of the config file cannot be changed here)."""
        try:
            return await call(hooks().put, device_id, body.row(), p.name)
        except ValueError as e:
            return _rejected(e)

    @router.delete("/devices/{device_id}", responses=HOOK_ERRORS, tags=["devices"])
    async def delete_device(p: Operator, device_id: str) -> Any:
        """Remove a stored device."""
        try:
            await call(hooks().remove, device_id, p.name)
        except KeyError:
            raise ApiError(404, "not_found", f"no stored device {device_id!r}") from None
        except ValueError as e:
            return _rejected(e)
        return {"removed": device_id}

    @router.post("/devices/{key}/adopt", status_code=201, responses=HOOK_ERRORS, tags=["devices"])
    async def adopt_device(p: Operator, key: str, body: AdoptIn) -> Any:
        """Adopt a sender seen in traffic: it becomes an inventory device with this class, site and policy."""
        row = body.row()
        try:
            return await call(hooks().adopt, key, row, p.name)
        except KeyError:
            raise ApiError(409, "conflict", f"{key!r} is in the inventory already") from None
        except ValueError as e:
            return _rejected(e)

    return router
