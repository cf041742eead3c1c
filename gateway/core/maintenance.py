"""Maintenance windows: planned work during which alarms are recorded but open no tickets (pure).

A window has an id, a scope (device ids, sites and/or device classes, each a list of
globs), a start and an end (epoch seconds, UTC), an author and a reason. A device is in
scope when every scope list that is given matches it (``sites=["hq"], classes=["network.*"]``
means "network gear at hq"). Windows come from three places and end up here alike:

* the config file's ``[[maintenance]]`` tables (re-read on reload);
* the REST API and the ``gateway maintenance`` CLI, persisted in the store.

The alarm book asks :meth:`MaintenanceBook.active_for` when an alarm would become active;
a match makes the alarm *suppressed* with ``suppressed_by = "maintenance:<id>"``. When the
window ends (or is ended early) the book re-evaluates those alarms, and a fault that is
still there becomes active and may open its ticket then: work that overran is a fault.
Alarms already active when a window starts keep their tickets (the window hides new
faults, it does not rewrite history).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.model import Device
from rules.match import compile_glob

__all__ = [
    "MaintenanceBook",
    "MaintenanceError",
    "UnknownWindow",
    "Window",
    "new_window",
    "parse_when",
    "to_epoch",
    "windows_from_config",
]

PREFIX = "maintenance:"


class MaintenanceError(ValueError):
    """A window that cannot be created or ended (bad times, empty scope, already ended)."""


class UnknownWindow(MaintenanceError, KeyError):
    """No window with that id (a KeyError too, so lookups can treat it as "not found")."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown maintenance window"


@functools.lru_cache(maxsize=4096)
def _glob(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    pred = compile_glob(list(patterns))
    assert pred is not None
    return pred


@dataclass(frozen=True, slots=True)
class Window:
    """One maintenance window.

    Attributes:
        id: unique id; alarms name it in ``suppressed_by``.
        start: epoch seconds (inclusive).
        end: epoch seconds (exclusive).
        devices: device-id globs; empty = any device.
        sites: site globs; empty = any site.
        classes: device-class globs; empty = any class.
        author: who planned it.
        reason: why (change ticket, vendor visit, ...).
        source: ``config``, ``api`` or ``cli``.
        created_at: when it was created.
        ended_by: who ended it early, if someone did.
    """

    id: str
    start: float
    end: float
    devices: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    author: str = ""
    reason: str = ""
    source: str = "api"
    created_at: float = 0.0
    ended_by: str = ""

    @property
    def reason_key(self) -> str:
        """What a suppressed alarm's ``suppressed_by`` says for this window."""
        return PREFIX + self.id

    def active(self, now: float) -> bool:
        return self.start <= now < self.end

    def covers(self, device: Device) -> bool:
        if self.devices and not _glob(self.devices)(device.id):
            return False
        if self.sites and not _glob(self.sites)(device.site):
            return False
        return not (self.classes and not _glob(self.classes)(device.device_class))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "start": self.start,
            "end": self.end,
            "devices": list(self.devices),
            "sites": list(self.sites),
            "classes": list(self.classes),
            "author": self.author,
            "reason": self.reason,
            "source": self.source,
            "created_at": self.created_at,
            "ended_by": self.ended_by,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Window:
        return cls(
            id=str(d["id"]),
            start=float(d["start"]),
            end=float(d["end"]),
            devices=tuple(d.get("devices", ())),
            sites=tuple(d.get("sites", ())),
            classes=tuple(d.get("classes", ())),
            author=str(d.get("author", "")),
            reason=str(d.get("reason", "")),
            source=str(d.get("source", "api")),
            created_at=float(d.get("created_at", 0.0)),
            ended_by=str(d.get("ended_by", "")),
        )

    def scope_text(self) -> str:
        parts = []
        for name, vals in (("device", self.devices), ("site", self.sites), ("class", self.classes)):
            if vals:
                parts.append(f"{name} {','.join(vals)}")
        return " and ".join(parts)


def new_window(
    id: str,
    start: float,
    end: float,
    *,
    devices: Iterable[str] = (),
    sites: Iterable[str] = (),
    classes: Iterable[str] = (),
    author: str = "",
    reason: str = "",
    source: str = "api",
    created_at: float = 0.0,
) -> Window:
    """Validate and build a window.

    Raises:
        MaintenanceError: no id, end not after start, or an empty scope (a window over
            everything must say so with ``devices=["*"]``, never by accident).
    """
    w = Window(
        id=id.strip(),
        start=float(start),
        end=float(end),
        devices=tuple(d for d in devices if d),
        sites=tuple(s for s in sites if s),
        classes=tuple(c for c in classes if c),
        author=author,
        reason=reason,
        source=source,
        created_at=created_at,
    )
    if not w.id:
        raise MaintenanceError("a maintenance window needs an id")
    if w.end <= w.start:
        raise MaintenanceError(f"window {w.id}: end must be after start")
    if not (w.devices or w.sites or w.classes):
        raise MaintenanceError(
            f"window {w.id}: give at least one of devices, sites, classes (use devices=['*'] for all)"
        )
    return w


_REL = re.compile(r"^([+-])\s*(\d+(?:\.\d+)?)\s*(w|d|h|m|s)$", re.IGNORECASE)
_UNIT = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_when(text: str, now: float, tz: str = "Asia/Shanghai") -> float:
    """``now``, ``+2h`` / ``-30m`` (relative to ``now``), epoch seconds, or ISO-8601
    (a time without an offset is local time in ``tz``).

    Raises:
        MaintenanceError: anything else.
    """
    s = text.strip()
    if s.lower() == "now":
        return now
    m = _REL.match(s)
    if m:
        delta = float(m.group(2)) * _UNIT[m.group(3).lower()]
        return now + delta if m.group(1) == "+" else now - delta
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise MaintenanceError(
            f"not a time: {text!r} (use 'now', '+2h', ISO-8601 or epoch seconds)"
        ) from None
    return to_epoch(dt, tz)


def to_epoch(dt: datetime, tz: str) -> float:
    """A datetime as epoch seconds; a naive one is local time in ``tz``."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(tz))
    return dt.astimezone(UTC).timestamp()


class MaintenanceBook:
    """The windows the gateway knows, by id. Pure: every question takes ``now``."""

    def __init__(self, windows: Iterable[Window] = ()) -> None:
        self._w: dict[str, Window] = {}
        for w in windows:
            self._w[w.id] = w

    def __len__(self) -> int:
        return len(self._w)

    def get(self, window_id: str) -> Window | None:
        return self._w.get(window_id)

    def add(self, w: Window) -> Window:
        """Add a window, or replace the one with the same id."""
        self._w[w.id] = w
        return w

    def replace_all(self, windows: Iterable[Window]) -> None:
        """Swap in a new set (reload): windows that disappeared stop suppressing at the
        alarm book's next tick."""
        self._w = {w.id: w for w in windows}

    def end(self, window_id: str, now: float, by: str = "") -> Window:
        """End a window now (a future one is cancelled: it will never be active).

        Raises:
            UnknownWindow: no such window.
            MaintenanceError: it has already ended.
        """
        w = self._w.get(window_id)
        if w is None:
            raise UnknownWindow(f"no maintenance window {window_id!r}")
        if w.end <= now:
            raise MaintenanceError(f"maintenance window {window_id!r} has already ended")
        ended = replace(w, end=max(w.start, now), ended_by=by)
        self._w[window_id] = ended
        return ended

    def active_for(self, device: Device, now: float) -> Window | None:
        """The window covering ``device`` at ``now`` (the earliest-started one), or None."""
        best: Window | None = None
        for w in self._w.values():
            if w.start <= now < w.end and w.covers(device) and (best is None or w.start < best.start):
                best = w
        return best

    def is_active(self, window_id: str, now: float) -> bool:
        w = self._w.get(window_id)
        return w is not None and w.active(now)

    def windows(self, now: float | None = None, include_past: bool = True) -> list[Window]:
        """All windows by start time; with ``include_past=False`` only current and future ones."""
        out = sorted(self._w.values(), key=lambda w: (w.start, w.id))
        if not include_past and now is not None:
            out = [w for w in out if w.end > now]
        return out


def windows_from_config(cfg: Any) -> list[Window]:
    """The ``[[maintenance]]`` tables of a Config as windows (ids default to ``cfg-<n>``).

    Raises:
        ConfigError: two windows with the same id (names the file and key).
    """
    from gateway.errors import ConfigError

    out: list[Window] = []
    seen: set[str] = set()
    tz = cfg.gateway.timezone
    for i, m in enumerate(getattr(cfg, "maintenance", ())):
        wid = m.id or f"cfg-{i + 1}"
        if wid in seen:
            raise ConfigError(cfg.source, f"maintenance[{i}].id", f"duplicate maintenance window id {wid!r}")
        seen.add(wid)
        try:
            out.append(
                new_window(
                    wid,
                    to_epoch(m.start, tz),
                    to_epoch(m.end, tz),
                    devices=m.devices,
                    sites=m.sites,
                    classes=m.classes,
                    author=m.author,
                    reason=m.reason,
                    source="config",
                )
            )
        except MaintenanceError as e:
            raise ConfigError(cfg.source, f"maintenance[{i}]", str(e)) from None
    return out
