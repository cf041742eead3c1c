"""When each device is polled next (pure: takes ``now``, holds no task or socket).

Polls are spread over the interval: a device's first slot is ``now + u × interval`` where
``u`` in [0, 1) comes from a hash of its key, so 10,000 devices at 60 s are ~167 polls a
second from the start, not 10,000 at once, and the spread survives restarts. Each poll then
lands within ± ``jitter × interval`` of its slot; slots advance by whole intervals, so jitter
never accumulates into drift. A device that failed ``backoff_after`` polls in a row is polled
at twice its interval per further failure, up to ``backoff_max``; one answer resets it.

One heap of ``(due, generation, key)`` serves every device; an entry whose generation is
not the device's current one is stale and skipped (lazy invalidation, as in the watchdog).
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass

__all__ = ["Plan", "restarted", "spread_fraction"]

_TICKS_WRAP = 2**32


def spread_fraction(key: str) -> float:
    """A stable number in [0, 1) for ``key`` (its slot within the interval)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


@dataclass(slots=True)
class _Entry:
    interval: float
    slot: float
    failures: int = 0
    gen: int = 0
    busy: bool = False


class Plan:
    """Poll times of many devices.

    Args:
        jitter: fraction of the interval a poll may land before or after its slot.
        backoff_after: failed polls in a row before the interval starts doubling.
        backoff_max: the longest time between two polls of a failing device.
        rng: random source of the jitter (tests pass a seeded one).
    """

    def __init__(self, jitter: float, backoff_after: int, backoff_max: float, rng: random.Random | None = None) -> None:
        self.jitter = jitter
        self.backoff_after = backoff_after
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._heap: list[tuple[float, int, str]] = []
        self._entries: dict[str, _Entry] = {}
        self._gen = 0
        #: Slots skipped because the poll before was still running or the loop fell behind.
        self.skipped = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def keys(self) -> list[str]:
        return list(self._entries)

    def set(self, key: str, interval: float, now: float) -> None:
        """Poll ``key`` every ``interval`` seconds (a new key gets its spread slot; a known
        key keeps its phase and takes the new interval from its next slot)."""
        e = self._entries.get(key)
        if e is None:
            e = self._entries[key] = _Entry(interval, now + spread_fraction(key) * interval)
            self._push(key, e)
        elif e.interval != interval:
            e.interval = interval
            if not e.busy:
                e.slot = min(e.slot, now + interval)
                self._push(key, e)

    def remove(self, key: str) -> bool:
        return self._entries.pop(key, None) is not None

    def next_time(self) -> float | None:
        """When the earliest poll is due (``None``: nothing to poll)."""
        h = self._heap
        while h:
            due, gen, key = h[0]
            e = self._entries.get(key)
            if e is None or e.gen != gen or e.busy:
                heapq.heappop(h)
                continue
            return due
        return None

    def due(self, now: float, limit: int | None = None) -> list[str]:
        """Keys due by ``now`` (earliest first), marked busy until :meth:`done`."""
        out: list[str] = []
        h = self._heap
        while h and h[0][0] <= now and (limit is None or len(out) < limit):
            _, gen, key = heapq.heappop(h)
            e = self._entries.get(key)
            if e is None or e.gen != gen or e.busy:
                continue
            e.busy = True
            out.append(key)
        return out

    def done(self, key: str, ok: bool, now: float) -> None:
        """A poll of ``key`` ended (answered or not); schedule its next one."""
        e = self._entries.get(key)
        if e is None:
            return
        e.busy = False
        e.failures = 0 if ok else e.failures + 1
        step = e.interval
        extra = e.failures - self.backoff_after
        if extra >= 0:
            step = min(max(e.interval, self.backoff_max), e.interval * 2.0 ** (extra + 1))
        e.slot += step
        if e.slot <= now:  # the poll ran late (a full in-flight cap, a slow loop): keep the phase
            missed = int((now - e.slot) // step) + 1
            self.skipped += missed
            e.slot += missed * step
        self._push(key, e)

    def failures(self, key: str) -> int:
        e = self._entries.get(key)
        return e.failures if e is not None else 0

    def _push(self, key: str, e: _Entry) -> None:
        self._gen += 1
        e.gen = self._gen
        j = self.jitter * e.interval
        due = e.slot + (self._rng.uniform(-j, j) if j > 0 else 0.0)
        heapq.heappush(self._heap, (due, e.gen, key))


def restarted(before: int, before_at: float, after: int, after_at: float, slack: float) -> bool:
    """Whether an agent restarted between two sysUpTime answers.

    ``before`` and ``after`` are sysUpTime in hundredths of a second, answered at
    ``before_at`` and ``after_at`` (epoch seconds). A restart is an uptime that went back
    (not explained by TimeTicks wrapping at 2**32, every ~497 days), or a boot time
    (answer time − uptime) that moved later by more than ``slack`` plus 1 % of the time
    between the answers: an agent that restarted long ago and has run longer since than it
    had before still shows its new, later boot time.
    """
    elapsed = max(0.0, after_at - before_at)
    allowed = slack + 0.01 * elapsed
    expected = before + elapsed * 100.0
    if expected >= _TICKS_WRAP and abs(after - (expected - _TICKS_WRAP)) <= allowed * 100.0:
        return False  # the counter wrapped
    if after < before:
        return True
    return (after_at - after / 100.0) - (before_at - before / 100.0) > allowed
