"""Token buckets per source address with a shared total budget (pure: takes ``now``).

Used for what the listener sends to unauthenticated peers (SNMPv3 discovery Reports): a
sender with spoofed source addresses must not turn the listener into a reflector.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["SourceLimiter"]


class SourceLimiter:
    """``allow(source, now)``: at most ``rate``/s per source (``burst`` at once) and
    ``total``/s over all sources. The per-source table is bounded (least recently seen
    sources are forgotten first, which only ever gives a forgotten source a fresh burst)."""

    def __init__(self, rate: float, burst: int, total: float, max_sources: int = 4096) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.total = total
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._all = (max(total, 1.0), 0.0)  # (tokens, at): one second's worth to start

    def allow(self, source: str, now: float) -> bool:
        tokens, at = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        all_tokens, all_at = self._all
        all_tokens = min(max(self.total, 1.0), all_tokens + max(0.0, now - all_at) * self.total)
        ok = tokens >= 1.0 and all_tokens >= 1.0
        if ok:
            tokens -= 1.0
            all_tokens -= 1.0
        self._all = (all_tokens, now)
        self._buckets[source] = (tokens, now)
        if len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return ok
