"""The device inventory: lookup by id, address or alias; parent chains; unknown devices."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gateway.model import UNKNOWN_CLASS, Device

__all__ = ["Inventory"]

_UNKNOWN_MAX = 100_000


class Inventory:
    """Known devices plus the unknown ones seen so far (visible, with the default policy).

    ``version`` is unique per inventory made in this process: a change of inventory is a new
    one (those that follow it, e.g. a poller, compare versions).
    """

    _made = 0

    def __init__(self, devices: Iterable[Device] = (), default_policy: str = "") -> None:
        Inventory._made += 1
        self.version = Inventory._made
        self.default_policy = default_policy
        self._by_id: dict[str, Device] = {}
        self._by_key: dict[str, Device] = {}
        self.unknown: dict[str, Device] = {}
        for d in devices:
            self._by_id[d.id] = d
            for k in (d.id, *d.addresses, *d.aliases):
                self._by_key.setdefault(k, d)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Device]:
        return iter(self._by_id.values())

    def get(self, device_id: str) -> Device | None:
        return self._by_id.get(device_id)

    def lookup(self, key: str) -> str | None:
        """Inventory id for an id, address or alias; ``None`` when unknown."""
        d = self._by_key.get(key)
        return d.id if d is not None else None

    def resolve(self, key: str) -> Device:
        """The device an event came from; unknown senders become visible unknown devices."""
        d = self._by_key.get(key)
        if d is not None:
            return d
        d = self.unknown.get(key)
        if d is None:
            d = Device(id=key, device_class=UNKNOWN_CLASS, policy=self.default_policy, known=False)
            if len(self.unknown) < _UNKNOWN_MAX:
                self.unknown[key] = d
        return d

    def parents(self, device_id: str) -> list[str]:
        """Parent chain, nearest first (config validation rules out loops)."""
        out: list[str] = []
        cur = self._by_id.get(device_id)
        while cur is not None and cur.parent is not None and cur.parent not in out:
            out.append(cur.parent)
            cur = self._by_id.get(cur.parent)
        return out
