"""``/devices`` and ``/board``: inventory with liveness and open alarms, and the NOC
board's one-call snapshot (with the gateway's health)."""

# No ``from __future__ import annotations``: FastAPI reads the route annotations at run
# time, and the dependency alias (Viewer) is local to the builder.

import asyncio
import base64
import binascii
import itertools
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from gateway.api.deps import ApiContext, ApiError, Principal
from gateway.api.render import alarm_out, device_out
from gateway.api.routes.auth import Auth
from gateway.api.routes.common import ACT_ERRORS, ERRORS, OPEN_ALARM, json_list, now, ticket_dict
from gateway.api.schemas import BoardOut, DeviceDetailOut, DeviceOut
from gateway.core.tickets import STATUSES
from gateway.core.views import iso

__all__ = ["MAX_PAGE", "devices_router", "health"]

_BOARD_DEVICES = 300
#: Most devices one ``GET /devices`` returns; the ``X-Next-Cursor`` header leads on.
MAX_PAGE = 1000


def encode_cursor(device_id: str) -> str:
    """The opaque page cursor after ``device_id`` (URL- and header-safe)."""
    return base64.urlsafe_b64encode(device_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(422, "invalid_input", "cursor: not a cursor this API handed out") from None


def _device_page(
    devices: Sequence[Any],
    by_dev: dict[str, list[Any]],
    watchdog: Any,
    site: list[str] | None,
    liveness: list[str] | None,
    limit: int,
    after: str | None,
) -> tuple[bytes, str | None]:
    """One page of devices, by id, as JSON bytes, and the id to continue after (or ``None``).

    Runs in a worker thread: sorting, rendering and encoding a large inventory must not
    hold up the event loop that SNMP, MQTT and the store writer share.
    """
    picked = sorted(
        (d for d in devices if (not site or d.site in site) and (after is None or d.id > after)),
        key=lambda d: d.id,
    )
    rows: list[dict[str, Any]] = []
    more = None
    for d in picked:
        row = device_out(d, by_dev.get(d.id, []), watchdog)
        if liveness and row["liveness"] not in liveness:
            continue
        if len(rows) == limit:
            more = rows[-1]["id"]
            break
        rows.append(row)
    return json_list(DeviceOut, rows), more


def _open_alarms_by_device(ctx: ApiContext) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for a in list(ctx.book.open.values()):
        out.setdefault(a.device, []).append(a)
    return out


def _all_devices(ctx: ApiContext) -> list[Any]:
    return list(ctx.inventory) + list(getattr(ctx.inventory, "unknown", {}).values())


def _board_devices(ctx: ApiContext) -> list[dict[str, Any]]:
    """Devices with open alarms (worst first), then the others, up to _BOARD_DEVICES: a
    gateway may watch a million devices, the board shows those that need eyes."""
    by_dev = _open_alarms_by_device(ctx)
    picked: list[Any] = []
    for dev_id in sorted(by_dev, key=lambda k: min(int(a.level) for a in by_dev[k])):
        dev = ctx.inventory.get(dev_id) or getattr(ctx.inventory, "unknown", {}).get(dev_id)
        if dev is not None:
            picked.append(dev)
    seen = {d.id for d in picked}
    for dev in itertools.chain(ctx.inventory, getattr(ctx.inventory, "unknown", {}).values()):
        if len(picked) >= _BOARD_DEVICES:
            break
        if dev.id not in seen:
            picked.append(dev)
    return [device_out(d, by_dev.get(d.id, []), ctx.watchdog) for d in picked[:_BOARD_DEVICES]]


def _adapter_stats(ctx: ApiContext) -> dict[str, dict[str, Any]]:
    adapters = {}
    for ad in ctx.adapters:
        try:
            s = ad.stats()
        except Exception:  # noqa: BLE001
            continue
        adapters[getattr(ad, "name", type(ad).__name__)] = {
            "received": s.get("received", 0),
            "rejected": sum(v for k, v in s.items() if k.startswith("rejected.")),
            "shed": sum(v for k, v in s.items() if k == "shed" or k.startswith("shed.")),
        }
    return adapters


def health(ctx: ApiContext) -> dict[str, Any]:
    """The board's health panel: store, queue, SLA counters, stream, adapters, devices."""
    p = ctx.pipeline
    adapters = _adapter_stats(ctx)
    bus = ctx.bus.stats
    return {
        "store_healthy": bool(p.healthy),
        "last_error": getattr(p, "last_error", ""),
        "queue_depth": p.depth,
        "queue_capacity": p.queue_size,
        "shed": p.stats.shed,
        "sla_warnings": p.stats.sla_warnings,
        "sla_breaches": p.stats.sla_breaches,
        "stream_subscribers": ctx.bus.subscribers,
        "stream_dropped_subscribers": bus.dropped_subscribers,
        "adapters": adapters,
        "devices": {
            "total": len(ctx.inventory) + len(getattr(ctx.inventory, "unknown", {})),
            **(
                {k: v for k, v in ctx.watchdog.stats().items() if k in ("tracked", "lost")}
                if ctx.watchdog
                else {}
            ),
        },
    }


def devices_router(ctx: ApiContext, auth: Auth) -> APIRouter:
    router = APIRouter()
    Viewer = Annotated[Principal, Depends(auth.viewer)]

    @router.get("/devices", response_model=list[DeviceOut], responses=ERRORS, tags=["devices"])
    async def list_devices(
        p: Viewer,
        request: Request,
        site: Annotated[list[str] | None, Query()] = None,
        liveness: Annotated[list[Literal["alive", "lost", "unmonitored"]] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
        cursor: Annotated[
            str | None, Query(max_length=1024, description="the X-Next-Cursor of the previous page")
        ] = None,
    ) -> Response:
        """Inventory devices and the unknown senders seen so far, with liveness and open
        alarms, ordered by id, a page at a time: when more follow, the ``X-Next-Cursor``
        header (and a ``Link: rel="next"``) gives the ``cursor`` of the next page."""
        after = decode_cursor(cursor) if cursor is not None else None
        # Snapshots taken here, on the loop that changes them; the rest runs in a thread.
        devices = _all_devices(ctx)
        by_dev = _open_alarms_by_device(ctx)
        body, more = await asyncio.to_thread(
            _device_page, [d for d in devices if p.sees(d.site, d.policy)], by_dev, ctx.watchdog, site, list(liveness or []), limit, after
        )
        headers = {}
        if more is not None:
            nxt = encode_cursor(more)
            headers["X-Next-Cursor"] = nxt
            headers["Link"] = f'<{request.url.include_query_params(cursor=nxt)}>; rel="next"'
        return Response(body, media_type="application/json", headers=headers)

    @router.get(
        "/devices/{device_id}", response_model=DeviceDetailOut, responses=ACT_ERRORS, tags=["devices"]
    )
    async def get_device(p: Viewer, device_id: str) -> dict[str, Any]:
        """One device with its recent alarms."""
        dev = ctx.inventory.get(device_id) or getattr(ctx.inventory, "unknown", {}).get(device_id)
        if dev is None or not p.sees(dev.site, dev.policy):
            raise ApiError(404, "not_found", f"no device {device_id!r}")
        out = device_out(dev, _open_alarms_by_device(ctx).get(dev.id, []), ctx.watchdog)
        rows = await asyncio.to_thread(ctx.store.find_alarms, devices=[dev.id], limit=100)
        out["alarms"] = [alarm_out(a, ctx.inventory) for a in rows]
        return out

    @router.get("/board", response_model=BoardOut, responses=ERRORS, tags=["board"])
    async def board(p: Viewer) -> dict[str, Any]:
        """Everything the NOC board shows, in one snapshot (a customer's: its own sites and
        contracts only, without the gateway's health)."""
        alarms = await asyncio.to_thread(ctx.store.find_alarms, states=OPEN_ALARM, limit=5000)
        tickets = await asyncio.to_thread(
            ctx.store.find_tickets,
            statuses=[s for s in STATUSES if s != "closed"],
            limit=5000,
        )
        out = {
            "now": iso(now(ctx)),
            "instance": ctx.config.gateway.instance,
            "timezone": ctx.config.gateway.timezone,
            "alarms": [alarm_out(a, ctx.inventory) for a in alarms],
            "tickets": [ticket_dict(ctx, t) for t in tickets],
            "devices": _board_devices(ctx),
            "health": health(ctx),
            "customers": {name: pol.customer for name, pol in ctx.config.policies.items() if pol.customer},
        }
        if p.scoped:
            for k in ("alarms", "tickets", "devices"):
                out[k] = [r for r in out[k] if p.sees(r.get("site", ""), r.get("policy", ""))]
            out["health"] = None
        return out

    return router
