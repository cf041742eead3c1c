"""Per-sender storm control: above a rate, traps are counted and summarised, not dropped silently."""

from __future__ import annotations

from adapters.snmp.config import StormConfig
from gateway.model import Event

__all__ = ["StormGuard"]

_MAX_SOURCES = 100_000


class StormGuard:
    """Fixed windows per sender. While a sender is above ``rate`` traps/s its traps are
    suppressed and counted; at the end of each storm window one ``snmp.storm`` event says
    how many. The storm ends (re-arms) once a window's rate falls below ``rearm_rate``.

    ``check`` returns ``(passes, summary)``: whether this trap goes on, and a summary
    event to emit (or ``None``).
    """

    def __init__(self, cfg: StormConfig, source: str) -> None:
        self.cfg = cfg
        self.source = source
        # sender -> [window start, count in window, storming, suppressed in window]
        self._s: dict[str, list[float]] = {}

    def check(self, sender: str, now: float) -> tuple[bool, Event | None]:
        st = self._s.get(sender)
        if st is None:
            if len(self._s) >= _MAX_SOURCES:
                self._s.clear()
            st = [now, 0.0, 0.0, 0.0]
            self._s[sender] = st
        window = self.cfg.window
        summary: Event | None = None
        if now - st[0] >= window:
            rate = st[1] / max(now - st[0], window)
            if st[2]:
                summary = Event(
                    now, self.source, sender, "snmp.storm",
                    {"suppressed": int(st[3]), "received": int(st[1]), "rate": round(rate, 1), "window": window,
                     "state": "ongoing" if rate >= self.cfg.rearm_rate else "ended"},
                    None,
                )
                if rate < self.cfg.rearm_rate:
                    st[2] = 0.0
            st[0], st[1], st[3] = now, 0.0, 0.0
        st[1] += 1
        if not st[2] and st[1] > self.cfg.rate * window:
            st[2] = 1.0
        if st[2]:
            st[3] += 1
            return False, summary
        return True, summary
