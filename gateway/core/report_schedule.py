"""Which periodic service reports are due (pure: ``now`` is passed in, never read).

A period is a calendar month (``2026-03``), quarter (``2026-Q1``) or year (``2026``) in the
gateway's time zone (the names :func:`gateway.core.service_report.period_bounds` reads). Its
report is due once the period has ended and the schedule's ``delay`` has passed::

    quarterly, delay 2 days, Asia/Shanghai: 2026-Q1 is due from 2026-04-03 00:00 +08:00

Without ``since`` only the latest due period is returned (a schedule set up today does not
mail the history); with ``since`` every due period that starts on or after that instant,
oldest first (at most ``limit`` of them: the latest).
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.core.service_report import period_bounds

__all__ = ["EVERY", "due_periods", "period_containing", "previous_period"]

#: Schedule kinds and the period-name form each uses.
EVERY = ("monthly", "quarterly", "yearly")

_NAME = re.compile(r"^(\d{4})(?:-(?:(\d{2})|Q([1-4])))?$")


def period_containing(ts: float, tz: str, every: str) -> str:
    """The name of the ``every`` period that holds instant ``ts`` in zone ``tz``."""
    d = datetime.fromtimestamp(ts, ZoneInfo(tz))
    if every == "monthly":
        return f"{d.year:04d}-{d.month:02d}"
    if every == "quarterly":
        return f"{d.year:04d}-Q{(d.month - 1) // 3 + 1}"
    if every == "yearly":
        return f"{d.year:04d}"
    raise ValueError(f"every {every!r}: use one of {', '.join(EVERY)}")


def previous_period(period: str) -> str:
    """The period just before ``period`` (same kind): 2026-01 → 2025-12, 2026-Q1 → 2025-Q4."""
    m = _NAME.match(period)
    if not m:
        raise ValueError(f"period {period!r}: use YYYY-MM, YYYY-Qn or YYYY")
    year = int(m[1])
    if m[2]:
        month = int(m[2])
        return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"
    if m[3]:
        q = int(m[3])
        return f"{year - 1:04d}-Q4" if q == 1 else f"{year:04d}-Q{q - 1}"
    return f"{year - 1:04d}"


def due_periods(now: float, tz: str, every: str, delay: float = 0.0, since: float | None = None,
                limit: int = 24) -> list[str]:
    """The ``every`` periods whose report is due at ``now`` (ended at least ``delay`` seconds
    ago), oldest first: the latest one only, or all starting at or after ``since``."""
    latest = previous_period(period_containing(now - delay, tz, every))
    if since is None:
        return [latest]
    out: list[str] = []
    p = latest
    while len(out) < limit and period_bounds(p, tz)[0] >= since:
        out.append(p)
        p = previous_period(p)
    return out[::-1]
