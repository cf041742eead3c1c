"""Time sources: the Clock protocol, the system clock and a manual clock for tests (leaf)."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Where loops get the time. Pure logic never reads a clock: it takes ``now``."""

    def now(self) -> float:
        """Wall-clock time, epoch seconds UTC."""
        ...

    def monotonic(self) -> float:
        """A monotonic reading for measuring intervals."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to, so a week of SLA time runs in milliseconds."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = float(start)
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a manual clock cannot go backwards")
        self._now += seconds
        self._mono += seconds
        return self._now

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError("a manual clock cannot go backwards")
        self._mono += when - self._now
        self._now = float(when)
