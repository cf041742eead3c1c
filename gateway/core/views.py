"""Presentation of alarms and tickets for people and programs: ISO-8601 UTC times, tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from gateway.model import FaultLevel

__all__ = ["iso", "alarm_view", "clock_view", "ticket_view", "clock_line", "table"]


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alarm_view(a: Mapping[str, Any]) -> dict[str, Any]:
    return {
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


def clock_view(c: Mapping[str, Any]) -> dict[str, Any]:
    """One SLA clock for people and programs.

    ``state`` is one of ``waiting``, ``running``, ``paused``, ``met``, ``breached``,
    ``not_needed``; ``breached`` stays true once the deadline passed (also while the
    clock is paused or after it stopped). ``provisional`` marks a due time computed
    without holiday data for its dates: show it, it may move.
    """
    deferred = bool(c.get("deferred"))
    stopped = c.get("stopped_at") is not None
    return {
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


def ticket_view(t: Mapping[str, Any]) -> dict[str, Any]:
    """One ticket for people and programs (times ISO-8601 UTC)."""
    clocks = [clock_view(c) for c in t.get("clocks", [])]
    return {
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
    }


def clock_line(c: Mapping[str, Any]) -> str:
    """A one-line summary of a :func:`clock_view`, e.g. ``on_site due 2026-…Z running (provisional)``."""
    flags = [c["state"].replace("_", " ")]
    if c["paused"] and c["state"] != "paused":
        flags.append("paused")
    if c["provisional"]:
        flags.append("PROVISIONAL")
    return f"{c['kind']:<9} due {c['due_at'] or '-':<25} {', '.join(flags)}"


def table(rows: Iterable[Mapping[str, Any]], columns: list[str]) -> str:
    rows = list(rows)
    cells = [[str(r.get(c, "") if r.get(c) is not None else "") for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
