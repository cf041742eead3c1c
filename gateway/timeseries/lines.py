"""Line protocol: events, alarm changes and tickets as InfluxDB points (pure, no I/O).

What becomes a field, a tag or nothing, and how names and values are escaped, is
described in the package docstring (:mod:`gateway.timeseries`).
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any

from gateway.core.alarms import CLEARED, CLEARED_CHANGE, RAISED, AlarmChange
from gateway.core.tickets import Ticket
from gateway.model import Device, Event
from gateway.timeseries.config import TimeseriesConfig

__all__ = ["LineBuilder", "escape_key", "escape_measurement", "escape_string", "format_number", "timestamp"]

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})
_MULT = {"s": 1, "ms": 1_000, "us": 1_000_000}


def escape_measurement(name: str) -> str:
    """Escape a measurement name (commas, spaces, control characters).

    Leading ``#`` are dropped (a line starting with one is a comment) and so is a trailing
    backslash (line protocol would read it as escaping the delimiter).
    """
    return name.lstrip("#").rstrip("\\").translate(_ESCAPE_MEASUREMENT)


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key (commas, equals signs, spaces, control
    characters); a trailing backslash is dropped."""
    return text.rstrip("\\").translate(_ESCAPE_KEY)


def escape_string(text: str) -> str:
    """Escape a string field value (double quotes and backslashes); the caller quotes it."""
    return text.translate(_ESCAPE_STRING)


def format_number(value: Any) -> str | None:
    """A field value written as a float, or ``None`` for anything that is not a finite number.

    ``bool`` is ``1``/``0``; ``int`` keeps its digits (the server reads it as a float).
    """
    t = type(value)
    if t is float:  # the common cases first: this runs per attribute
        if not math.isfinite(value):
            return None
        return repr(value).removesuffix(".0")
    if t is int:
        return str(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):  # IntEnum and other int subclasses
        return str(int(value))
    if isinstance(value, float):
        return format_number(float(value))
    return None


def timestamp(ts: float, precision: str) -> int:
    """Epoch seconds as an integer in ``precision`` units."""
    if precision == "ns":
        # Past microseconds a float has no digits left; scale in two steps.
        return round(ts * 1_000_000) * 1_000
    return round(ts * _MULT[precision])


_SKIP, _FIELD, _TAG = 0, 1, 2
# Alarm change kinds by name: the alarm book may grow new ones, which are written as they come.
_NOT_ACTIVE = frozenset({CLEARED_CHANGE, "pending"})  # no fault (yet, or any more)
_STATE_AFTER = {CLEARED_CHANGE: CLEARED, "pending": "pending", "suppressed": "suppressed"}
_CACHE_MAX = 10_000


class LineBuilder:
    """Turns events, alarm changes and tickets into line protocol (pure, no I/O).

    Args:
        cfg: the sink's configuration (filters, measurement mode, precision).
    """

    def __init__(self, cfg: TimeseriesConfig) -> None:
        self.cfg = cfg
        self.precision = cfg.precision
        self._by_class = cfg.measurement == "class"
        self._reserved = {"device", "site", "region", "class"} | ({"event"} if self._by_class else set())
        self._include = tuple(cfg.include)
        self._exclude = tuple(cfg.exclude)
        self._tag_globs = tuple(cfg.tag_attributes)
        self._attr: dict[str, tuple[int, str]] = {}
        self._prefix: dict[tuple[str, str], tuple[Device, str, list[tuple[str, str]], str]] = {}
        self._alarm_m = escape_measurement(cfg.alarm_measurement)
        self._ticket_m = escape_measurement(cfg.ticket_measurement)

    # -- attribute decisions -----------------------------------------------------------
    def attr_kind(self, name: str) -> tuple[int, str]:
        """``(kind, escaped key)`` for an attribute name: skipped, field or tag (cached)."""
        hit = self._attr.get(name)
        if hit is not None:
            return hit
        kind = _SKIP
        if name and name != "time" and not name.startswith("_") and name not in self._reserved:
            if any(fnmatch.fnmatchcase(name, g) for g in self._tag_globs):
                kind = _TAG
            elif any(fnmatch.fnmatchcase(name, g) for g in self._include) and not any(
                fnmatch.fnmatchcase(name, g) for g in self._exclude
            ):
                kind = _FIELD
        key = escape_key(name)
        if not key:
            kind = _SKIP
        if len(self._attr) >= _CACHE_MAX:
            self._attr.clear()
        out = self._attr[name] = (kind, key)
        return out

    @staticmethod
    def _device_tags(dev: Device | None, device_id: str) -> list[tuple[str, str]]:
        """Unescaped ``(key, value)`` tags that describe a device."""
        tags = [("device", device_id)]
        if dev is not None:
            tags += [("site", dev.site), ("region", dev.region), ("class", dev.device_class)]
        return tags

    def _series(self, ev: Event, dev: Device) -> tuple[str, list[tuple[str, str]], str]:
        """Measurement, sorted escaped base tags and the point's head (measurement + tags),
        cached per device id and event name while the device object stays the same."""
        ck = (dev.id, ev.name)
        hit = self._prefix.get(ck)
        if hit is not None and hit[0] is dev:
            return hit[1], hit[2], hit[3]
        raw = self._device_tags(dev, dev.id or ev.device)
        if self._by_class:
            meas = escape_measurement(dev.device_class) or "unknown"
            raw.append(("event", ev.name))
        else:
            meas = escape_measurement(ev.name) or "event"
        tags = sorted((k, escape_key(v)) for k, v in raw if v and escape_key(v))
        head = meas + "".join(f",{k}={v}" for k, v in tags)
        if len(self._prefix) >= _CACHE_MAX:
            self._prefix.clear()
        self._prefix[ck] = (dev, meas, tags, head)
        return meas, tags, head

    # -- points ---------------------------------------------------------------------------
    def event_line(self, ev: Event, dev: Device) -> str | None:
        """The point for one telemetry event, or ``None`` when it has no numeric field."""
        fields: list[str] = []
        extra: list[tuple[str, str]] | None = None
        cache = self._attr
        for name, value in ev.attrs.items():
            kind, key = cache.get(name) or self.attr_kind(name)
            if kind == _FIELD:
                t = type(value)
                if t is float and math.isfinite(value):
                    num: str | None = repr(value).removesuffix(".0")
                elif t is int:
                    num = str(value)
                else:
                    num = format_number(value)
                if num is not None:
                    fields.append(f"{key}={num}")
            elif kind == _TAG and isinstance(value, (str, int, float)):
                tv = escape_key(str(value))
                if tv:
                    if extra is None:
                        extra = []
                    extra.append((key, tv))
        if not fields:
            return None
        meas, tags, head = self._series(ev, dev)
        if extra:
            head = meas + "".join(f",{k}={v}" for k, v in sorted(tags + extra))
        if len(fields) > 1:
            fields.sort()
        return f"{head} {','.join(fields)} {timestamp(ev.ts, self.precision)}"

    def alarm_line(self, change: AlarmChange, dev: Device | None = None) -> str:
        """The point for one alarm change (any kind but a repeat).

        Tags: ``change`` (the kind: raised, pending, escalated, cleared, suppressed, …),
        ``device`` (+ ``site``, ``region``, ``class`` when ``dev`` is known), ``key``
        (unless ``alarm_key_tag`` is off), ``level``, ``rule``, ``state``. Fields:
        ``active`` (1 while the fault is real: raised, escalated, suppressed, …; 0 when
        pending or cleared), ``count``, ``id``, ``level``, and ``title`` / ``note`` / ``key``
        as strings when configured. Time: when the change happened.
        """
        a = change.alarm
        kind = change.kind
        state = _STATE_AFTER.get(kind) or (a.state if a.state != CLEARED else "active")
        active = "0" if kind in _NOT_ACTIVE else "1"
        ts = getattr(change, "at", 0.0) or (
            (a.cleared_at if a.cleared_at is not None else a.last_seen) if kind == CLEARED_CHANGE
            else a.first_seen if kind == RAISED else a.last_seen
        )
        tags = self._device_tags(dev, a.device)
        tags += [("change", kind), ("level", str(int(a.level))), ("rule", a.rule_id), ("state", state)]
        if self.cfg.alarm_key_tag:
            tags.append(("key", a.key))
        fields = [f"active={active}", f"count={a.count}", f"id={a.id}", f"level={int(a.level)}"]
        if not self.cfg.alarm_key_tag:
            fields.append(f'key="{escape_string(a.key)}"')
        if self.cfg.titles:
            if a.title:
                fields.append(f'title="{escape_string(a.title)}"')
            note = getattr(change, "note", "")
            if note:
                fields.append(f'note="{escape_string(note)}"')
        return self._line(self._alarm_m, tags, fields, ts)

    def ticket_line(self, t: Ticket, dev: Device | None = None) -> str:
        """The point for a ticket as it stands after a change.

        Tags: ``device``, ``site``, ``region`` (+ ``class`` when ``dev`` is known),
        ``level``, ``policy``, ``status``. Fields: ``breached`` (clocks past their
        deadline), ``id``, ``level``, ``open`` (0 once closed), ``paused``, ``title``.
        Time: the ticket's last update.
        """
        tags = [("device", t.device), ("site", t.site), ("region", t.region)]
        if dev is not None:
            tags.append(("class", dev.device_class))
        tags += [("level", str(int(t.level))), ("policy", t.policy), ("status", t.status)]
        breached = sum(1 for c in t.clocks if c.breached_at is not None)
        fields = [
            f"breached={breached}",
            f"id={t.id}",
            f"level={int(t.level)}",
            f"open={0 if t.status == 'closed' else 1}",
            f"paused={1 if t.paused else 0}",
        ]
        if self.cfg.titles and t.title:
            fields.append(f'title="{escape_string(t.title)}"')
        return self._line(self._ticket_m, tags, fields, t.updated_at)

    def _line(self, meas: str, tags: list[tuple[str, str]], fields: list[str], ts: float) -> str:
        """Assemble a point from unescaped tags and formatted fields (tags sorted, empty ones left out)."""
        escaped = sorted((k, escape_key(v)) for k, v in tags)
        head = meas + "".join(f",{k}={v}" for k, v in escaped if v)
        return f"{head} {','.join(sorted(fields))} {timestamp(ts, self.precision)}"
