"""Durations written by people: ``"45s"``, ``"10m"``, ``"1h30m"``, ``"2d"`` or seconds (leaf, stdlib only).

Shared by the config file and rule packs, so both accept the same syntax.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["parse_duration"]

_DUR = re.compile(r"(\d+(?:\.\d+)?)(w|d|h|m|s)", re.IGNORECASE)
_UNIT = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(v: Any) -> float:
    """Seconds from a number (``90``), a numeric string (``"90"``) or units (``"1h30m"``).

    Raises:
        ValueError: negative, not finite (TOML's ``nan`` and ``inf``), a bool, or not a duration.
    """
    if isinstance(v, bool):
        raise ValueError("a duration must be a number of seconds or a string like '1h30m'")
    if isinstance(v, (int, float)):
        if v < 0:
            raise ValueError("a duration cannot be negative")
        return _finite(float(v), v)
    if not isinstance(v, str):
        raise ValueError("a duration must be a number of seconds or a string like '1h30m'")
    s = v.strip().replace(" ", "")
    if s.replace(".", "", 1).isdigit():
        return _finite(float(s), v)  # "90" means seconds, as a bare number does
    pos, total = 0, 0.0
    for m in _DUR.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2).lower()]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"not a duration: {v!r} (use e.g. '30s', '10m', '1h30m', '2d' or seconds)")
    return _finite(total, v)


def _finite(seconds: float, v: Any) -> float:
    # nan compares false with everything and inf never expires: both would silently
    # disable the timer they configure.
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number of seconds, not {v!r}")
    return seconds
