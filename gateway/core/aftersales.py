"""The after-sales side of the contracts, tied together per device (pure).

:class:`AfterSales` holds, per contract, its warranty terms, its schedules of planned work,
its spare-part clocks and its replacement rule (:class:`ContractService`), and the dates
each device carries. It answers, all with the time passed in:

* the warranty status of a device on a day (a ticket asks as of its start), with what
  changes out of warranty and the own warranties of replaced parts;
* which warranties expire within N days;
* the planned work every schedule wants up to a horizon (:func:`gateway.core.schedules.plan`);
* a device's repair history: tickets, planned work, spares and warranty events in time order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.schedules import Schedule, plan
from gateway.core.spares import ReplacementRule, SpareClock
from gateway.core.warranty import (
    LABELS_ZH,
    Coverage,
    DeviceDates,
    WarrantyError,
    WarrantyTerms,
    coverage,
    expiring,
    part_warranties,
    status_on,
)
from gateway.model import Device
from rules.match import compile_glob

__all__ = ["AfterSales", "ContractService", "working_days"]

HISTORY_KINDS = ("ticket", "planned", "spare", "warranty", "notice")


@dataclass(frozen=True, slots=True)
class ContractService:
    """One contract's after-sales terms (``[service.<contract>]``)."""

    name: str
    terms: WarrantyTerms = field(default_factory=WarrantyTerms)
    schedules: tuple[Schedule, ...] = ()
    spares: tuple[SpareClock, ...] = ()
    replacement: ReplacementRule | None = None


def working_days(cal: Any) -> Callable[[date], tuple[bool, bool]]:
    """``(working, provisional)`` of a local date on ``cal``: its workday rule's answer for a
    calendar of working days (``workdays-cn``, ``business-cn``, ...), every day for 24x7."""
    rule = getattr(cal, "workdays", None)
    if rule is None:
        return lambda d: (True, False)
    is_workday: Callable[[date], tuple[bool, bool]] = rule.is_workday
    return is_workday


class AfterSales:
    """Contracts' after-sales terms and devices' dates.

    Args:
        contracts: by contract (policy) name.
        dates: per device id, the dates its inventory entry carries.
        tz: the local time zone (dates are local dates).
    """

    def __init__(
        self, contracts: Mapping[str, ContractService], dates: Mapping[str, DeviceDates], tz: str = "Asia/Shanghai"
    ) -> None:
        self.contracts = dict(contracts)
        self.dates = dict(dates)
        self.tz = ZoneInfo(tz)

    def day(self, ts: float) -> date:
        return datetime.fromtimestamp(ts, self.tz).date()

    def coverage(self, device: Device) -> Coverage | None:
        """The device's periods under its contract (``None``: the contract has no terms).

        Raises:
            WarrantyError: its dates contradict each other.
        """
        c = self.contracts.get(device.policy)
        if c is None:
            return None
        return coverage(self.dates.get(device.id, DeviceDates()), c.terms)

    def warranty(
        self, device: Device, at: float, replacements: Iterable[Mapping[str, Any]] = ()
    ) -> dict[str, Any]:
        """The warranty view of a device at an instant (a ticket: its start).

        Returns:
            ``device``, ``contract``, ``as_of`` (local date), ``status``, ``status_zh``,
            ``coverage``, ``out_of_warranty`` (what changes, when out of warranty or the
            service ended; else ``None``), ``parts`` (own warranties of replaced parts).
        """
        day = self.day(at)
        c = self.contracts.get(device.policy)
        out: dict[str, Any] = {"device": device.id, "contract": device.policy, "as_of": day.isoformat()}
        if c is None:
            return {**out, "status": "unknown", "status_zh": LABELS_ZH["unknown"], "coverage": None,
                    "out_of_warranty": None, "parts": []}
        try:
            cov = coverage(self.dates.get(device.id, DeviceDates()), c.terms)
        except WarrantyError as e:
            return {**out, "status": "unknown", "status_zh": LABELS_ZH["unknown"], "coverage": None,
                    "out_of_warranty": None, "parts": [], "error": str(e)}
        status = status_on(cov, day)
        oow = c.terms.out_of_warranty
        effect = oow.to_dict() if oow is not None and status in ("out_of_warranty", "service_ended") else None
        parts = [
            {"part": (r.get("data") or {}).get("part", ""), "date": self.day(float(r["ts"]))}
            for r in replacements if r.get("kind") == "part_replaced" and (r.get("data") or {}).get("part")
        ]
        return {**out, "status": status, "status_zh": LABELS_ZH[status], "coverage": cov.to_dict(),
                "out_of_warranty": effect, "parts": part_warranties(parts, c.terms, day)}

    def out_of_warranty(self, device_id: str, contract: str, at: float) -> tuple[str, bool, bool] | None:
        """What applies to a device's new tickets at ``at`` when it is out of warranty (or
        its service period ended) and its contract names changes: ``(policy, penalties,
        paid_service)``; ``None`` when nothing changes."""
        c = self.contracts.get(contract)
        oow = c.terms.out_of_warranty if c is not None else None
        if c is None or oow is None:
            return None
        try:
            cov = coverage(self.dates.get(device_id, DeviceDates()), c.terms)
        except WarrantyError:
            return None
        if status_on(cov, self.day(at)) not in ("out_of_warranty", "service_ended"):
            return None
        return (oow.policy or contract, oow.penalties, oow.paid_service)

    def expiring(self, devices: Iterable[Device], now: float, within_days: int) -> list[dict[str, Any]]:
        """Warranties ending within ``within_days`` days (see :func:`gateway.core.warranty.expiring`),
        each with its ``contract`` and ``notice_days``."""
        covs: dict[str, Coverage] = {}
        contract: dict[str, str] = {}
        for d in devices:
            try:
                cov = self.coverage(d)
            except WarrantyError:
                continue
            if cov is not None:
                covs[d.id] = cov
                contract[d.id] = d.policy
        rows = expiring(covs, self.day(now), within_days)
        for r in rows:
            r["contract"] = contract[r["device"]]
            r["notice_days"] = self.contracts[r["contract"]].terms.notice_days
        return rows

    def planned(
        self, devices: Iterable[Device], now: float, horizon_days: int,
        working: Callable[[str], Callable[[date], tuple[bool, bool]]],
    ) -> tuple[list[dict[str, Any]], date, set[str]]:
        """Every planned work item the schedules want up to ``horizon_days`` after today.

        Args:
            devices: the inventory.
            now: the time.
            horizon_days: how far ahead items are generated.
            working: calendar name → its working-day test.

        Returns:
            ``(items, limit, schedules)``: the items, the last date generated, and the
            schedule keys that were planned (items of other schedules are no longer wanted).
        """
        limit = self.day(now) + timedelta(days=horizon_days)
        items: list[dict[str, Any]] = []
        keys: set[str] = set()
        for d in devices:
            c = self.contracts.get(d.policy)
            if c is None or not c.schedules:
                continue
            dates = self.dates.get(d.id, DeviceDates()).over(c.terms.defaults)
            try:
                cov = coverage(dates, c.terms)
            except WarrantyError:
                continue
            for s in c.schedules:
                keys.add(s.key)
                pred = compile_glob(list(s.devices)) if s.devices else None
                if pred is not None and not pred(d.id):
                    continue
                anchor = dates.get(s.basis)
                if anchor is None:
                    continue
                until = cov.service_end if s.rule.until == "service_period" else cov.warranty_end
                if s.rule.until == "service_period" and until is None:
                    until = cov.warranty_end
                items.extend(plan(s, d.id, anchor, until, limit, self.tz, working(s.calendar)))
        return items, limit, keys

    def history(
        self,
        device: Device,
        tickets: Sequence[Mapping[str, Any]],
        planned: Sequence[Mapping[str, Any]],
        records: Sequence[Mapping[str, Any]],
        now: float,
    ) -> dict[str, Any]:
        """A device's repair history (维修档案), oldest first, with its warranty now.

        Each entry: ``ts``, ``kind`` (``ticket``, ``planned``, ``spare``, ``warranty``,
        ``notice``), ``ref`` (ticket id or planned item id), ``what`` and ``text``.
        """
        entries: list[dict[str, Any]] = []
        for t in tickets:
            entries.append({"ts": float(t["opened_at"]), "kind": "ticket", "ref": t["id"], "what": "opened",
                            "text": f"level {t['level']} {t.get('title', '')}".strip()})
            restored = (t.get("milestones") or {}).get("restore")
            if restored is not None:
                entries.append({"ts": float(restored), "kind": "ticket", "ref": t["id"], "what": "restored",
                                "text": f"ticket {t['id']} restored"})
        for p in planned:
            ts = float(p.get("done_at") or p["due"])
            entries.append({"ts": ts, "kind": "planned", "ref": p["id"], "what": p.get("status", "planned"),
                            "text": f"{p['kind']} {p.get('title', '')} due {p.get('due_date', '')}".strip()})
        for r in records:
            kind = r["kind"]
            cat = "notice" if kind == "notice" else "warranty" if kind == "part_replaced" else "spare"
            data = r.get("data") or {}
            text = data.get("note") or data.get("text") or ""
            if data.get("part"):
                text = f"part {data['part']}" + (f": {text}" if text else "")
            entries.append({"ts": float(r["ts"]), "kind": cat, "ref": r.get("ticket_id"), "what": kind, "text": text})
        entries.sort(key=lambda e: (e["ts"], HISTORY_KINDS.index(e["kind"])))
        return {"device": device.id, "contract": device.policy,
                "warranty": self.warranty(device, now, [r for r in records if r["kind"] == "part_replaced"]),
                "entries": entries}


def planned_summary(items: Iterable[Mapping[str, Any]], start: float, end: float, now: float) -> dict[str, Any]:
    """Planned work of one contract due in ``[start, end)`` for the SLA report: per kind the
    items due, done in their window, done late, missed (overdue, not done) and still open;
    and the missed and late items themselves."""
    from gateway.core.schedules import item_state

    kinds: dict[str, dict[str, int]] = {}
    problems: list[dict[str, Any]] = []
    for it in items:
        if not start <= float(it["due"]) < end or it.get("status") == "cancelled":
            continue
        k = kinds.setdefault(it["kind"], {"due": 0, "on_time": 0, "late": 0, "missed": 0, "open": 0})
        k["due"] += 1
        state = item_state(it, now)
        if state == "done":
            on_time = bool(it.get("on_time", True))
            k["on_time" if on_time else "late"] += 1
            if not on_time:
                problems.append({"id": it["id"], "device": it["device"], "kind": it["kind"],
                                 "due_date": it.get("due_date"), "result": "late"})
        elif state == "overdue":
            k["missed"] += 1
            problems.append({"id": it["id"], "device": it["device"], "kind": it["kind"],
                             "due_date": it.get("due_date"), "result": "missed"})
        else:
            k["open"] += 1
    return {"kinds": [{"kind": name, **v} for name, v in sorted(kinds.items())], "problems": problems}


def render_planned_summary(p: Mapping[str, Any]) -> str:
    """The planned-work section of the SLA report (Markdown)."""
    out = ["## Planned work (巡检 / 回访 / 预防性维护)", ""]
    if not p["kinds"]:
        return "\n".join([*out, "No planned work was due this month.", ""])
    out += ["| Kind | Due | Done in window | Done late | Missed | Open |", "|---|---|---|---|---|---|"]
    out += [f"| {k['kind']} | {k['due']} | {k['on_time']} | {k['late']} | {k['missed']} | {k['open']} |" for k in p["kinds"]]
    if p["problems"]:
        out += ["", "| Item | Device | Kind | Due | Result |", "|---|---|---|---|---|"]
        out += [f"| {r['id']} | {r['device']} | {r['kind']} | {r['due_date']} | {r['result']} |" for r in p["problems"]]
    return "\n".join(out) + "\n"
