"""Wire dicts for the API and the live feed: views plus inventory facts and remaining SLA time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.core.sla import SlaClock
from gateway.core.views import alarm_view, iso, ticket_view

__all__ = ["alarm_out", "device_out", "ticket_out"]

_OPEN_ALARM_STATES = ("active", "pending", "suppressed")


def alarm_out(a: Mapping[str, Any], inventory: Any = None) -> dict[str, Any]:
    """An alarm row as the API shows it (ISO times, site and device name from the inventory)."""
    out = alarm_view(a)
    dev = inventory.get(a["device"]) if inventory is not None else None
    out["site"] = dev.site if dev is not None else ""
    out["device_name"] = dev.name if dev is not None else ""
    out["policy"] = dev.policy if dev is not None else ""
    out["event"] = a.get("event", "")
    late = (a.get("attrs") or {}).get("late_s")
    out["late_s"] = float(late) if isinstance(late, (int, float)) else None
    return out


def ticket_out(t: Mapping[str, Any], calendars: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A ticket as the API shows it, each clock with the business time left at ``now``.

    ``remaining_seconds`` is business time still available (negative once overdue;
    ``None`` for a stopped or not yet started clock); ``ticking`` says whether that
    number is going down right now (the clock runs and its calendar is in business
    time), so a page can count down between snapshots.
    """
    out = ticket_view(t)
    out["snapshot_at"] = iso(now)
    for view, raw in zip(out["clocks"], t.get("clocks", []), strict=True):
        remaining: float | None = None
        ticking = False
        warned = list(raw.get("warned") or [])
        if not raw.get("deferred") and raw.get("stopped_at") is None:
            cal = calendars.get(raw["calendar"])
            if cal is not None:
                c = SlaClock.from_dict(raw)
                remaining = c.remaining(now, cal)
                ticking = c.running and cal.elapsed(now, now + 60.0) > 0.0
        view["remaining_seconds"] = None if remaining is None else round(remaining, 3)
        view["ticking"] = ticking
        view["warned"] = warned
        view["warning"] = bool(warned) and raw.get("state") in ("running", "paused")
        view["breached"] = raw.get("state") == "breached" or raw.get("breached_at") is not None
    return out


def device_out(dev: Any, alarms: list[Any], watchdog: Any = None) -> dict[str, Any]:
    """A device with its liveness and its open alarms' summary.

    ``liveness`` is ``lost`` (the watchdog declared it lost, or a ``heartbeat.lost``
    alarm is open), ``alive`` (watched and on time) or ``unmonitored``.
    """
    live = watchdog.status(dev.id) if watchdog is not None and hasattr(watchdog, "status") else None
    lost_alarm = any(a.event == "heartbeat.lost" and a.state in _OPEN_ALARM_STATES for a in alarms)
    if live is not None:
        liveness = "lost" if live.lost else "alive"
    else:
        liveness = "lost" if lost_alarm else "unmonitored"
    levels = [int(a.level) for a in alarms if a.state in _OPEN_ALARM_STATES]
    return {
        "id": dev.id,
        "name": dev.name,
        "class": dev.device_class,
        "site": dev.site,
        "region": dev.region,
        "policy": dev.policy,
        "parent": dev.parent,
        "known": dev.known,
        "liveness": liveness,
        "last_seen": iso(live.last_seen) if live is not None else None,
        "deadline": iso(live.deadline) if live is not None else None,
        "heartbeat_interval": (live.interval if live is not None else dev.heartbeat_interval),
        "open_alarms": len(levels),
        "worst_level": min(levels) if levels else None,
    }
