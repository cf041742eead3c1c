"""Suppression, the stage between an alarm and its ticket: whether a device's fault is held
back (a parent is down, a maintenance window covers it), why, and when that ends (pure).

The :class:`Suppressor` is the only part of the gateway that reads the inventory's parent
chains and the maintenance windows for alarms. It keeps two indexes:

* which devices are *down* for their children (:class:`rules.inhibit.ParentDown`: a live
  critical or reachability fault holds its device down);
* which alarm keys each reason holds back (``"parent:<device>"``,
  ``"maintenance:<window id>"``), so that when a reason ends exactly those alarms are
  looked at again.

The alarm book asks it at the moments that belong to an alarm's life (see
``gateway.core.alarms``): when an alarm becomes live (:meth:`Suppressor.reason`, then
:meth:`Suppressor.hold`), when a live fault starts or stops holding its device down
(:meth:`Suppressor.mark_down`), when an alarm ends (:meth:`Suppressor.let_go`), and at
each tick for the reasons that ended (:meth:`Suppressor.ended`). The book owns the alarms'
states and changes; this stage owns the answers. Pure: every question takes ``now``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.model import Device
from rules.inhibit import ParentDown

if TYPE_CHECKING:
    from gateway.core.inventory import Inventory
    from gateway.core.maintenance import MaintenanceBook

__all__ = ["MAINTENANCE", "PARENT", "Suppressor"]

#: Prefixes of a suppression reason (``Alarm.suppressed_by``).
PARENT = "parent:"
MAINTENANCE = "maintenance:"


class Suppressor:
    """Answers "is this device's fault held back now, and why?" and remembers what it held.

    Args:
        inventory: parent chains and device lookup (None: no parents, devices by id only).
        maintenance: maintenance windows (None: none).

    Attributes:
        inventory: swapped by a reload (parents may change; see :meth:`recheck`).
        maintenance: the windows (edited in place by the API, the CLI and reloads).
        down: the devices held down by a live fault of theirs.
    """

    __slots__ = ("_held", "_recheck", "down", "inventory", "maintenance")

    def __init__(
        self, inventory: Inventory | None = None, maintenance: MaintenanceBook | None = None
    ) -> None:
        self.inventory = inventory
        self.maintenance = maintenance
        self.down = ParentDown()
        self._held: dict[str, set[str]] = {}  # reason → alarm keys it holds back
        self._recheck = False

    # -- questions -------------------------------------------------------------------------
    def resolve(self, device: Device | str) -> Device:
        """The device a suppression question is about (an id is looked up in the inventory)."""
        if isinstance(device, Device):
            return device
        if self.inventory is not None:
            return self.inventory.resolve(device)
        return Device(id=device)

    def reason(self, dev: Device, now: float) -> str | None:
        """Why a fault of ``dev`` that becomes live at ``now`` is held back, or None.

        A down ancestor (nearest first) wins over a maintenance window: when the parent
        recovers, the window is asked again (reasons hand over, see :meth:`ended`).
        """
        inv = self.inventory
        if inv is not None and len(self.down):
            p = self.down.blocking(inv.parents(dev.id))
            if p is not None:
                return PARENT + p
        m = self.maintenance
        if m is not None and len(m):
            w = m.active_for(dev, now)
            if w is not None:
                return MAINTENANCE + w.id
        return None

    def held(self) -> bool:
        """Whether any alarm is held back."""
        return bool(self._held)

    # -- what the book tells it ------------------------------------------------------------
    def hold(self, reason: str, key: str) -> None:
        """Alarm ``key`` is held back for ``reason``."""
        self._held.setdefault(reason, set()).add(key)

    def let_go(self, reason: str, key: str) -> None:
        """Alarm ``key`` ended while held back for ``reason``."""
        keys = self._held.get(reason)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._held[reason]

    def take(self, reason: str) -> set[str] | None:
        """Forget ``reason`` and return the keys it held back (to be looked at again)."""
        return self._held.pop(reason, None)

    def mark_down(self, device: str, key: str, down: bool) -> bool:
        """Fault ``key`` of ``device`` holds it down (or no longer does); True when the
        device's down/up status changed (when it came back up, the book releases
        ``PARENT + device``)."""
        return self.down.mark(device, key, down)

    # -- time ------------------------------------------------------------------------------
    def recheck(self) -> None:
        """Look at every held alarm again at the next tick (a reload changed the parents or
        the windows; a restart may have missed a parent's recovery)."""
        self._recheck = True

    def loaded(self) -> None:
        """After alarms were loaded from the store: re-check once if any is held back."""
        self._recheck = bool(self._held)

    def ended(self, now: float) -> list[str]:
        """The reasons to look at again at a tick by ``now``, in order: every reason (sorted)
        once after :meth:`recheck`, otherwise the maintenance windows no longer active."""
        if self._recheck:
            self._recheck = False
            return sorted(self._held)
        if not self._held:
            return []
        m = self.maintenance
        return [
            r
            for r in self._held
            if r.startswith(MAINTENANCE) and (m is None or not m.is_active(r[len(MAINTENANCE) :], now))
        ]

    def next_end(self) -> float | None:
        """When :meth:`ended` next has something (0.0: at once; None: nothing scheduled)."""
        if self._recheck:
            return 0.0
        best: float | None = None
        m = self.maintenance
        for reason in self._held:
            if reason.startswith(MAINTENANCE):
                w = m.get(reason[len(MAINTENANCE) :]) if m is not None else None
                end = w.end if w is not None else 0.0
                best = end if best is None else min(best, end)
        return best
