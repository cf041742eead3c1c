"""The inventory as operators change it while the gateway runs: add, update, remove, import,
adopt — checked whole (:mod:`gateway.core.devicebook`), saved in ONE store transaction with
who and when, then swapped into the running pipeline (and so seen by the watchdog, the rules,
the poller and the API) between two batches.

The config file's ``[[devices]]`` win on conflict (see :mod:`gateway.core.devicebook`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from gateway.config import Config, build_devices
from gateway.core.devicebook import (
    Checked,
    RowError,
    check_rows,
    device_from_row,
    device_to_row,
    merge_devices,
    parse_csv,
    parse_json,
    to_csv,
)
from gateway.core.inventory import Inventory
from gateway.model import Device
from gateway.store import INVENTORY_VERSION, DeviceChange, Store, StoreReader

__all__ = ["DeviceRegistry", "InventoryRejected", "inventory_devices", "stored_devices"]

log = logging.getLogger("gateway.inventory")


class InventoryRejected(ValueError):
    """A change refused as a whole: ``errors`` holds one :class:`RowError` per problem."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors = list(errors)
        first = "; ".join(str(e) for e in self.errors[:3])
        more = f" (and {len(self.errors) - 3} more)" if len(self.errors) > 3 else ""
        super().__init__(f"{len(self.errors)} problem(s), nothing changed: {first}{more}")


def stored_devices(store: StoreReader, default_policy: str) -> list[Device]:
    """The store's devices (a row that no longer reads as a device is skipped with a warning)."""
    out = []
    for row in store.list_devices():
        dev, problems = device_from_row(row, default_policy)
        if dev is None:
            log.warning("stored device %r skipped: %s", row.get("id"), "; ".join(f"{c}: {m}" for c, m in problems))
            continue
        out.append(dev)
    return out


def inventory_devices(cfg: Config, store: StoreReader) -> list[Device]:
    """The config file's devices merged with the store's (the file wins)."""
    devices, shadowed = merge_devices(build_devices(cfg), stored_devices(store, cfg.inventory.default_policy))
    if shadowed:
        log.warning("%d stored device(s) are also in %s, whose entries win: %s", len(shadowed), cfg.source,
                    ", ".join(shadowed[:10]) + (" ..." if len(shadowed) > 10 else ""))
    return devices


class DeviceRegistry:
    """The API's inventory hooks (``gateway.api.deps.InventoryHooks``).

    Args:
        cfg: returns the live config (a reload replaces it).
        store: where devices are kept.
        live: returns the live inventory.
        swap: installs a new inventory in the running gateway (through its single writer),
            with the store's inventory version it was read at.
        clock: time of the changes.
    """

    def __init__(
        self,
        cfg: Callable[[], Config],
        store: Store,
        live: Callable[[], Inventory],
        swap: Callable[[Inventory, int], Awaitable[None]],
        clock: Any,
    ) -> None:
        self._cfg = cfg
        self._store = store
        self._live = live
        self._swap = swap
        self._clock = clock
        self._lock = asyncio.Lock()

    # -- reads -----------------------------------------------------------------------------
    def export(self, fmt: str = "json") -> Any:
        """Every device (config file and store), with ``source``; ``fmt="csv"``: CSV text."""
        config_ids = {d.id for d in self._cfg().devices}
        rows = [{**device_to_row(d), "source": "config" if d.id in config_ids else "store"} for d in self._live()]
        if fmt == "csv":
            return to_csv(rows)
        return rows

    def unknown(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Senders seen in traffic that are not in the inventory (to adopt)."""
        inv = self._live()
        return [{"id": k} for k in list(inv.unknown)[:limit] if inv.lookup(k) is None]

    async def changes(self, device: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._store.device_changes, device, limit)

    # -- writes ----------------------------------------------------------------------------
    async def import_text(self, text: str, fmt: str, actor: str, replace: bool = False,
                          dry_run: bool = False) -> dict[str, int]:
        """Import a CSV or JSON inventory: all of it, or (any problem) nothing.

        Raises:
            InventoryRejected: the problems, one per row and column.
        """
        rows, errors = parse_csv(text) if fmt == "csv" else parse_json(text)
        return await self._apply(rows, errors, actor, replace=replace, dry_run=dry_run, action=None)

    async def put(self, device_id: str, body: Mapping[str, Any], actor: str, action: str | None = None) -> dict[str, Any]:
        """Add or update one device. Raises InventoryRejected."""
        row = {**body, "id": device_id}
        await self._apply([(1, row)], [], actor, action=action)
        dev = self._live().get(device_id)
        return device_to_row(dev) if dev is not None else row

    async def adopt(self, key: str, body: Mapping[str, Any], actor: str) -> dict[str, Any]:
        """Make an unknown sender an inventory device: its id is ``body["id"]`` or the key,
        and the key (the address or id it was seen under) becomes an address or an alias.
        Raises InventoryRejected; KeyError when it is known already."""
        inv = self._live()
        if inv.lookup(key) is not None:
            raise KeyError(key)
        row = dict(body)
        dev_id = str(row.pop("id", "") or key)
        addresses = list(row.get("addresses") or [])
        aliases = list(row.get("aliases") or [])
        if key != dev_id:
            (addresses if _looks_like_address(key) else aliases).append(key)
        elif _looks_like_address(key) and key not in addresses:
            addresses.append(key)
        row["addresses"], row["aliases"] = addresses, aliases
        return await self.put(dev_id, row, actor, action="adopt")

    async def remove(self, device_id: str, actor: str) -> None:
        """Remove a stored device. Raises KeyError (not stored), InventoryRejected (defined
        in the config file, or the parent of others)."""
        async with self._lock:
            cfg = self._cfg()
            if any(d.id == device_id for d in cfg.devices):
                raise InventoryRejected([RowError(0, "id", f"{device_id!r} is defined in the config file, which wins; "
                                                  "remove it there")])
            stored = {d.id: d for d in stored_devices(self._store, cfg.inventory.default_policy)}
            if device_id not in stored:
                raise KeyError(device_id)
            children = sorted(d.id for d in self._live() if d.parent == device_id)
            if children:
                raise InventoryRejected([RowError(0, "id", f"{device_id!r} is the parent of "
                                                  f"{', '.join(repr(c) for c in children[:5])}; change them first")])
            change: DeviceChange = {"device": device_id, "action": "remove", "data": None}
            await asyncio.to_thread(self._store.save_devices, [change], actor, self._clock.now())
            await self._rebuild()
        log.info("device %s removed by %s", device_id, actor)

    async def _apply(self, rows: Sequence[tuple[int, Mapping[str, Any]]], errors: Sequence[RowError], actor: str, *,
                     replace: bool = False, dry_run: bool = False, action: str | None) -> dict[str, int]:
        async with self._lock:
            cfg = self._cfg()
            stored = {d.id: d for d in await asyncio.to_thread(stored_devices, self._store, cfg.inventory.default_policy)}
            checked: Checked = check_rows(
                rows, config={d.id: d for d in build_devices(cfg)}, stored=stored, policies=cfg.policies,
                default_policy=cfg.inventory.default_policy, replace=replace, errors=errors,
            )
            if not checked.ok:
                raise InventoryRejected(checked.errors)
            summary = checked.summary()
            if dry_run:
                return summary
            changes = [DeviceChange(device=d.id, action=action or "add", data=device_to_row(d)) for d in checked.added]
            changes += [DeviceChange(device=d.id, action=action or "update", data=device_to_row(d))
                        for d in checked.updated]
            changes += [DeviceChange(device=d, action="remove", data=None) for d in checked.removed]
            if changes:
                await asyncio.to_thread(self._store.save_devices, changes, actor, self._clock.now())
                await self._rebuild()
        if changes:
            log.info("inventory changed by %s: %s", actor, summary)
        return summary

    async def _rebuild(self) -> None:
        cfg = self._cfg()

        def read() -> tuple[int, list[Device]]:
            version = self._store.counter(INVENTORY_VERSION)  # before the devices it counts
            return version, inventory_devices(cfg, self._store)

        version, devices = await asyncio.to_thread(read)
        await self._swap(Inventory(devices, cfg.inventory.default_policy), version)


def _looks_like_address(key: str) -> bool:
    import ipaddress

    host = key.rsplit(":", 1)[0] if key.count(":") == 1 else key
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
