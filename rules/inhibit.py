"""Parent-down suppression: which devices are down, and which ancestor blocks a child (pure).

A device is *down* while it has at least one live fault that says so: a level-1 (critical)
fault, or a reachability fault (``heartbeat.lost``, or a rule labelled
``unreachable = "true"``). A child's new fault is then recorded but suppressed (no
ticket), because the parent's ticket already covers it: a switch that lost power makes
every host behind it look unreachable, and the contract pays for one incident, not fifty.

This module only keeps the "who is down" index and answers questions about it; the
suppression stage (``gateway.core.suppression.Suppressor``) asks it when an alarm would
become active, and the alarm book re-evaluates the children a parent suppressed when it
comes back. It knows nothing of the inventory: the caller passes the parent chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["UNREACHABLE_EVENTS", "ParentDown", "counts_as_down"]

#: Event names that mean "the device cannot be reached" whatever their level.
UNREACHABLE_EVENTS = frozenset({"heartbeat.lost"})


def counts_as_down(level: int, event: str, labels: Mapping[str, str]) -> bool:
    """Tell whether a live fault marks its device as down for its children.

    Args:
        level: the fault's current level (1 = critical).
        event: the name of the event that raised it.
        labels: the rule's labels; ``unreachable = "true"`` marks a reachability rule
            whose event is not ``heartbeat.lost`` (e.g. a vendor's "node unreachable" trap).

    Returns:
        True for a critical fault or a reachability fault.
    """
    return level == 1 or event in UNREACHABLE_EVENTS or labels.get("unreachable") == "true"


class ParentDown:
    """The set of devices that are down, with the fault keys that hold each one down."""

    __slots__ = ("_down",)

    def __init__(self) -> None:
        self._down: dict[str, set[str]] = {}

    def mark(self, device: str, key: str, down: bool) -> bool:
        """Record that fault ``key`` of ``device`` holds it down (or no longer does).

        Returns:
            True when the device's down/up status changed.
        """
        keys = self._down.get(device)
        if down:
            if keys is None:
                self._down[device] = {key}
                return True
            keys.add(key)
            return False
        if keys is None or key not in keys:
            return False
        keys.discard(key)
        if not keys:
            del self._down[device]
            return True
        return False

    def is_down(self, device: str) -> bool:
        return device in self._down

    def blocking(self, parents: Iterable[str]) -> str | None:
        """The nearest ancestor that is down (``parents`` nearest first), or None."""
        down = self._down
        if not down:
            return None
        for p in parents:
            if p in down:
                return p
        return None

    def devices(self) -> list[str]:
        return sorted(self._down)

    def __len__(self) -> int:
        return len(self._down)
