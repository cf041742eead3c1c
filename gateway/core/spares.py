"""Spare parts, loaners and returns of broken parts on a ticket; the replacement rule (pure).

What happens to parts is recorded as *service records* on a ticket (and its device), one
per action, in time order::

    spare_requested   the vendor is asked for a spare (starts the contract's spare clocks)
    spare_shipped     the spare (or the repaired part) left the vendor
    repaired          the part was repaired instead
    replacement_received  the customer has the replacement (starts the customer's return clock)
    part_replaced     a part was swapped in the device (its own warranty may restart)
    part_returned     the broken part went back to the vendor
    loaner_out / loaner_back  a loaner unit (备用机) lent and returned

A contract's spare clocks (:class:`SpareClock`) each name the action that starts them, the
actions that stop them, a target on a calendar (``48h``; ``2d`` on ``workdays-cn`` = two
working days, 调休 included) and optionally a reminder some time before the due instant.
:func:`clock_runs` folds the records into clock runs; :func:`notices_due` says which
reminders and overdue notices are due and not yet given (a given notice is itself a record,
so restarts never repeat one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "ACTIONS",
    "LABELS_ZH",
    "ReplacementRule",
    "SpareClock",
    "clock_runs",
    "notices_due",
    "replacement_reasons",
]

ACTIONS = (
    "spare_requested",
    "spare_shipped",
    "repaired",
    "replacement_received",
    "part_replaced",
    "part_returned",
    "part_failed",
    "loaner_out",
    "loaner_back",
)

LABELS_ZH = {
    "spare_requested": "申请备件",
    "spare_shipped": "备件已发出",
    "repaired": "已修复",
    "replacement_received": "已收到更换件",
    "part_replaced": "已更换部件",
    "part_returned": "坏件已返回",
    "part_failed": "部件故障",
    "loaner_out": "备用机借出",
    "loaner_back": "备用机归还",
}

#: Ticket statuses that count as repaired for the replacement rule.
_REPAIRED = ("restored", "closed")


class _Calendar(Protocol):
    def add(self, start: float, seconds: float) -> tuple[float, bool]: ...


@dataclass(frozen=True, slots=True)
class SpareClock:
    """One spare-part clock of a contract.

    Attributes:
        name: e.g. ``replacement``, ``provide``, ``ship``, ``return_broken``.
        starts: the action that starts it.
        stops: the actions that meet it.
        seconds: the target in business seconds of ``calendar``.
        calendar: the calendar's name.
        party: who must act: ``vendor`` or ``customer``.
        remind_before: business seconds before the due instant at which a reminder is
            due (0: none).
    """

    name: str
    starts: str
    stops: tuple[str, ...]
    seconds: float
    calendar: str = "24x7"
    party: str = "vendor"
    remind_before: float = 0.0


def clock_runs(
    records: Sequence[Mapping[str, Any]], clocks: Sequence[SpareClock], calendars: Mapping[str, _Calendar]
) -> list[dict[str, Any]]:
    """Every run of every spare clock on one ticket's records (oldest first).

    Each record of a clock's ``starts`` action starts a run; the first later record of
    one of its ``stops`` actions ends it. A run: ``clock``, ``party``, ``started_at``,
    ``due_at``, ``remind_at`` (or ``None``), ``stopped_at`` (or ``None``), ``met``
    (``None`` while running), ``provisional``.
    """
    ordered = sorted(records, key=lambda r: (float(r["ts"]), int(r.get("id") or 0)))
    runs: list[dict[str, Any]] = []
    for c in clocks:
        cal = calendars[c.calendar]
        for i, r in enumerate(ordered):
            if r["kind"] != c.starts:
                continue
            start = float(r["ts"])
            due, prov = cal.add(start, c.seconds)
            remind = None
            if c.remind_before > 0:
                remind = cal.add(start, max(c.seconds - c.remind_before, 0.0))[0]
            stop = next((float(s["ts"]) for s in ordered[i + 1:] if s["kind"] in c.stops), None)
            runs.append({
                "clock": c.name, "party": c.party, "started_at": start, "due_at": due, "remind_at": remind,
                "stopped_at": stop, "met": None if stop is None else stop <= due, "provisional": prov,
                "target": c.seconds, "calendar": c.calendar,
            })
    runs.sort(key=lambda x: (x["started_at"], x["clock"]))
    return runs


def run_state(run: Mapping[str, Any], now: float) -> str:
    """``met``, ``late`` (stopped after due), ``overdue``, ``reminder`` (reminder due) or ``running``."""
    if run["stopped_at"] is not None:
        return "met" if run["met"] else "late"
    if now >= run["due_at"]:
        return "overdue"
    if run["remind_at"] is not None and now >= run["remind_at"]:
        return "reminder"
    return "running"


def notices_due(
    runs: Iterable[Mapping[str, Any]], given: Iterable[Mapping[str, Any]], now: float
) -> list[dict[str, Any]]:
    """The reminders and overdue notices due by ``now`` and not given yet.

    Args:
        runs: :func:`clock_runs` of one ticket.
        given: the ``notice`` records already made (their ``data``: ``clock``,
            ``started_at``, ``what``).
        now: the time.

    Returns:
        ``{"clock", "started_at", "what", "due_at", "party"}`` per notice (``what``:
        ``reminder`` or ``overdue``).
    """
    done = {(g.get("clock"), float(g.get("started_at", 0)), g.get("what")) for g in given}
    out = []
    for r in runs:
        state = run_state(r, now)
        whats = ["overdue"] if state == "overdue" else ["reminder"] if state == "reminder" else []
        for what in whats:
            if (r["clock"], float(r["started_at"]), what) not in done:
                out.append({"clock": r["clock"], "started_at": r["started_at"], "what": what,
                            "due_at": r["due_at"], "party": r["party"]})
    return out


@dataclass(frozen=True, slots=True)
class ReplacementRule:
    """The contract's replacement rule: a unit unrepaired ``unrepaired_after`` seconds after
    the report, or whose same main part failed ``same_part_failures`` times, is replaced."""

    unrepaired_after: float | None = None
    same_part_failures: int | None = None


def replacement_reasons(
    rule: ReplacementRule,
    tickets: Iterable[Mapping[str, Any]],
    records: Iterable[Mapping[str, Any]],
    now: float,
) -> list[dict[str, Any]]:
    """Why a device is due for replacement under ``rule`` (empty: it is not).

    Args:
        rule: the contract's rule.
        tickets: the device's tickets (``Ticket.to_dict()``).
        records: the device's service records; a ``part`` in the data of a
            ``part_failed``, ``spare_requested`` or ``part_replaced`` record names the
            main part that failed on that ticket.
        now: the time.

    Returns:
        ``{"reason": "unrepaired"|"same_part", "key", "text", "tickets"}`` per reason;
        ``key`` is stable (one notice per key).
    """
    out: list[dict[str, Any]] = []
    if rule.unrepaired_after is not None:
        for t in tickets:
            if t.get("status") in _REPAIRED or t.get("kind", "fault") != "fault":
                continue
            age = now - float(t["opened_at"])
            if age >= rule.unrepaired_after:
                days = int(rule.unrepaired_after // 86400)
                out.append({"reason": "unrepaired", "key": f"unrepaired:t{t['id']}", "tickets": [t["id"]],
                            "text": f"ticket {t['id']} not repaired {days} days after the report"})
    if rule.same_part_failures:
        by_part: dict[str, list[int]] = {}
        for r in records:
            part = (r.get("data") or {}).get("part")
            tid = r.get("ticket_id")
            if not part or tid is None or r["kind"] not in ("part_failed", "spare_requested", "part_replaced"):
                continue
            ids = by_part.setdefault(str(part), [])
            if tid not in ids:
                ids.append(tid)
        for part, ids in sorted(by_part.items()):
            if len(ids) >= rule.same_part_failures:
                out.append({"reason": "same_part", "key": f"same_part:{part}", "tickets": ids,
                            "text": f"main part {part!r} failed {len(ids)} times (tickets {', '.join(map(str, ids))})"})
    return out
