"""Admission of unknown devices: a hard cap on how many are tracked and a rate limit on new
ids per source (adapter), so invented device ids cannot exhaust memory or the watchdog (pure).

An event from a device that is neither in the inventory nor admitted yet asks
:meth:`UnknownAdmission.admit`. Refused ones are counted (``overflow``: the cap is reached;
``rate_limited``: its source sent too many new ids lately) and the event is not decided; the
decision core reports refusals as one ``gateway.unknown_devices`` alarm. Takes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REFUSED_EVENT", "UnknownAdmission"]

#: The event the decision core decides when unknown devices were refused.
REFUSED_EVENT = "gateway.unknown_devices"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class UnknownAdmission:
    """Unknown device ids admitted so far, at most ``cap``; at most ``per_minute`` new ones
    per source (``burst`` at once).

    Attributes:
        overflow, rate_limited: events refused for either reason (since start).
        refused: ids refused since the last :meth:`take_report` (bounded sample).
    """

    SAMPLE = 10

    def __init__(self, cap: int = 10_000, per_minute: float = 600.0, burst: int = 1000) -> None:
        self.cap = cap
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.admitted: set[str] = set()
        self._buckets: dict[str, _Bucket] = {}
        self.overflow = 0
        self.rate_limited = 0
        self._new_refusals = 0
        self.sample: list[str] = []

    def __contains__(self, device_id: str) -> bool:
        return device_id in self.admitted

    def __len__(self) -> int:
        return len(self.admitted)

    def admit(self, device_id: str, source: str, now: float, *, known_before: bool = False) -> bool:
        """Admit a new unknown device id seen from ``source``? ``known_before``: it was
        tracked before a restart (exempt from the rate limit, not from the cap)."""
        if device_id in self.admitted:
            return True
        if len(self.admitted) >= self.cap:
            self.overflow += 1
            return self._refuse(device_id)
        if not known_before:
            b = self._buckets.get(source)
            if b is None:
                if len(self._buckets) >= 1024:  # sources are adapters: a handful
                    self._buckets.clear()
                b = self._buckets[source] = _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + max(0.0, now - b.at) * self.rate)
            b.at = now
            if b.tokens < 1.0:
                self.rate_limited += 1
                return self._refuse(device_id)
            b.tokens -= 1.0
        self.admitted.add(device_id)
        return True

    def forget(self, device_id: str) -> None:
        """The device left the unknown set (adopted into the inventory, or removed)."""
        self.admitted.discard(device_id)

    def _refuse(self, device_id: str) -> bool:
        self._new_refusals += 1
        if len(self.sample) < self.SAMPLE:
            self.sample.append(device_id[:80])
        return False

    def take_report(self) -> dict[str, object] | None:
        """The attributes of a ``gateway.unknown_devices`` event if any were refused since
        the last call, else None."""
        if not self._new_refusals:
            return None
        out: dict[str, object] = {
            "refused": self._new_refusals,
            "overflow": self.overflow,
            "rate_limited": self.rate_limited,
            "admitted": len(self.admitted),
            "cap": self.cap,
            "sample": ", ".join(self.sample),
        }
        self._new_refusals = 0
        self.sample = []
        return out
