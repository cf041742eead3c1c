"""Presentation of alarms and tickets for people and programs: ISO-8601 UTC times for programs,
the gateway's local time (with its offset) for people, tables.

A view made with a time zone (``alarm_view(a, tz)``) keeps every UTC field unchanged and adds
``<field>_local`` beside each time (``last_seen_local = "2026-12-02 14:03:07+08:00"``);
:func:`table`, :func:`clock_line` and :func:`shown` print the local one when it is there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from gateway.model import FaultLevel

__all__ = [
    "alarm_view",
    "clock_line",
    "clock_view",
    "iso",
    "local",
    "shown",
    "table",
    "ticket_view",
    "timeline_view",
]


def iso(ts: float | None) -> str | None:
    """``ts`` as ISO-8601 UTC with milliseconds, for programs: ``2026-12-02T06:03:07.000Z``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=32)
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def local(ts: float | None, tz: str) -> str | None:
    """``ts`` in the time zone ``tz`` with its offset, to the second, for people:
    ``2026-12-02 14:03:07+08:00`` (``+00:00`` for UTC)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, _zone(tz)).isoformat(sep=" ", timespec="seconds")


def shown(view: Mapping[str, Any], field: str) -> Any:
    """What a person reads for ``field`` of a view: its ``_local`` rendering when the view has
    one, else the field itself."""
    value = view.get(f"{field}_local")
    return value if value is not None else view.get(field)


def _add_local(out: dict[str, Any], raw: Mapping[str, Any], fields: Iterable[str], tz: str | None) -> None:
    if tz is None:
        return
    for name in fields:
        out[f"{name}_local"] = local(raw.get(name), tz)


def alarm_view(a: Mapping[str, Any], tz: str | None = None) -> dict[str, Any]:
    """One alarm for people and programs (times ISO-8601 UTC; with ``tz`` also ``*_local``)."""
    out = {
        "id": a["id"],
        "key": a["key"],
        "level": a["level"],
        "level_name": FaultLevel(a["level"]).label,
        "state": a["state"],
        "count": a["count"],
        "device": a["device"],
        "rule": a.get("rule", ""),
        "title": a.get("title", ""),
        "first_seen": iso(a["first_seen"]),
        "last_seen": iso(a["last_seen"]),
        "cleared_at": iso(a.get("cleared_at")),
        "ticket_id": a.get("ticket_id"),
        "acked": a.get("acked", False),
    }
    _add_local(out, a, ("first_seen", "last_seen", "cleared_at"), tz)
    return out


def clock_view(c: Mapping[str, Any], tz: str | None = None) -> dict[str, Any]:
    """One SLA clock for people and programs (with ``tz`` also ``*_local`` times).

    ``state`` is one of ``waiting``, ``running``, ``paused``, ``met``, ``breached``,
    ``not_needed``; ``breached`` stays true once the deadline passed (also while the
    clock is paused or after it stopped). ``provisional`` marks a due time computed
    without holiday data for its dates: show it, it may move.
    """
    deferred = bool(c.get("deferred"))
    stopped = c.get("stopped_at") is not None
    out = {
        "kind": c["kind"],
        "target_seconds": c["target"],
        "calendar": c["calendar"],
        "started_at": iso(c.get("started_at")) if not deferred else None,
        "due_at": iso(c.get("due_at")) if not deferred else None,
        "state": c["state"],
        "paused": not deferred and not stopped and c.get("run_since") is None,
        "breached": c.get("breached_at") is not None,
        "provisional": c.get("provisional", False),
        "stopped_at": iso(c.get("stopped_at")),
        "stopped_by": c.get("stopped_by", ""),
        "breached_at": iso(c.get("breached_at")),
        "business_seconds": c.get("business_elapsed"),
    }
    if tz is not None:
        for name in ("started_at", "due_at", "stopped_at", "breached_at"):
            out[f"{name}_local"] = local(c.get(name), tz) if out[name] is not None else None
    return out


def ticket_view(t: Mapping[str, Any], tz: str | None = None) -> dict[str, Any]:
    """One ticket for people and programs (times ISO-8601 UTC; with ``tz`` also ``*_local``)."""
    clocks = [clock_view(c, tz) for c in t.get("clocks", [])]
    out = {
        "id": t["id"],
        "level": t["level"],
        "level_name": FaultLevel(t["level"]).label,
        "urgent": t.get("urgent", False),
        "status": t["status"],
        "device": t["device"],
        "site": t.get("site", ""),
        "region": t.get("region", ""),
        "alarm_key": t["alarm_key"],
        "alarm_id": t["alarm_id"],
        "policy": t["policy"],
        "title": t.get("title", ""),
        "opened_at": iso(t["opened_at"]),
        "updated_at": iso(t["updated_at"]),
        "closed_at": iso(t.get("closed_at")),
        "paused": t.get("paused", False),
        "provisional": any(c["provisional"] for c in clocks),
        "clocks": clocks,
        "milestones": {k: iso(v) for k, v in t.get("milestones", {}).items()},
        "pauses": [[iso(a), iso(b)] for a, b in t.get("pauses", [])],
        "report": t.get("report", {}),
        "remote": t.get("remote", {}),
        # Who told the vendor: "alarm", or the channel of a person's report.
        "origin": t.get("origin", "alarm"),
        "reported_by": t.get("reported_by", ""),
        # Set when the clocks start earlier than the entry (a back-dated report).
        "entered_at": iso(t.get("entered_at")),
        "backdate_reason": t.get("backdate_reason", ""),
        "alarm_ids": list(t.get("alarm_ids", [])),
        "owner": t.get("owner", ""),
        "team": t.get("team", ""),
        "escalations": {k: iso(v) for k, v in (t.get("escalations") or {}).items()},
        "late_s": t.get("late_s"),
    }
    _add_local(out, t, ("opened_at", "updated_at", "closed_at", "entered_at"), tz)
    return out


def timeline_view(e: Mapping[str, Any], tz: str | None = None) -> dict[str, Any]:
    """One timeline entry: ``ts`` ISO-8601 UTC; with ``tz`` also ``ts_local``."""
    out = {**e, "ts": iso(e["ts"])}
    _add_local(out, e, ("ts",), tz)
    return out


def clock_line(c: Mapping[str, Any]) -> str:
    """A one-line summary of a :func:`clock_view`, e.g. ``on_site due 2026-… running (provisional)``;
    the due time is the local one when the view has it."""
    flags = [c["state"].replace("_", " ")]
    if c["paused"] and c["state"] != "paused":
        flags.append("paused")
    if c["provisional"]:
        flags.append("PROVISIONAL")
    return f"{c['kind']:<9} due {shown(c, 'due_at') or '-':<25} {', '.join(flags)}"


def table(rows: Iterable[Mapping[str, Any]], columns: list[str]) -> str:
    """A text table for people; a column whose row has a ``<column>_local`` shows that."""
    rows = list(rows)
    cells = [[str(v) if (v := shown(r, c)) is not None else "" for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=False))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) for row in cells]
    return "\n".join(lines)
