"""After-sales in the running gateway: planned work generated and watched, spare-part clocks,
warranty notices, the replacement rule, and the reads the API and the CLI show.

One :class:`ServiceDesk` per gateway. Every ``interval`` seconds (and on demand) its tick:

1. generates the planned work every schedule wants up to ``horizon_days`` ahead and
   reconciles it with the store (:func:`gateway.core.schedules.reconcile`: ids are stable,
   so a restart or a second run inserts nothing twice; a changed rule re-dates the items
   not done yet and cancels the ones no longer wanted);
2. finds the notices due — planned work overdue, a warranty ending within the contract's
   ``warranty_notice_days``, spare-part reminders and overdue clocks, the replacement rule —
   that were not given yet, and offers them to the pipeline as events (``service.*``,
   classified by the built-in ``service`` rule pack into alarms);
3. once those events are committed, records each notice as given (a service record, or
   ``notified_at`` on a planned item), so a restart never repeats one — at worst, after a
   crash between the two, an event is offered again and folds into its open alarm;
4. applies what changes out of warranty: a device whose warranty is over gets the policy
   its contract names (``out_of_warranty.policy``; with ``penalties = false`` a copy of it
   without penalty terms, named ``<policy>~no-penalties``) for the tickets it opens from then on.

Service records (spare requested, loaner out, part replaced, ...) are written by
:meth:`ServiceDesk.ticket_action`, which also puts a comment on the ticket's timeline
through the single writer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from gateway.core.aftersales import AfterSales, working_days
from gateway.core.inventory import Inventory
from gateway.core.schedules import item_state, reconcile
from gateway.core.spares import ACTIONS, LABELS_ZH, clock_runs, notices_due, replacement_reasons, run_state
from gateway.core.views import iso, local
from gateway.model import Device, Event

__all__ = ["ServiceDesk", "ServiceError"]

log = logging.getLogger("gateway.service")

#: Largest attached file of a planned-work report, and of all its files together (bytes).
MAX_FILE = 512 * 1024
MAX_FILES = 2 * 1024 * 1024


class ServiceError(ValueError):
    """A request that cannot be done (unknown item or ticket, bad action, bad file)."""


class NotFound(ServiceError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class ServiceDesk:
    """After-sales for a gateway (see the module docstring).

    Args:
        store: the store (planned work and service records are written here directly;
            alarms only through the pipeline).
        pipeline: the single writer (events offered, commands executed).
        clock: the gateway's clock.
        calendars: calendars by name.
        aftersales: the contracts' terms and the devices' dates.
        contract_of: device id → contract (policy) from the config.
        default_policy: the inventory's default policy.
        tz: local time zone name.
        horizon_days: planned work is generated this far ahead.
        interval: seconds between ticks.
    """

    def __init__(
        self,
        *,
        store: Any,
        pipeline: Any,
        clock: Any,
        calendars: Mapping[str, Any],
        aftersales: AfterSales,
        contract_of: Mapping[str, str],
        default_policy: str,
        tz: str,
        horizon_days: int = 100,
        interval: float = 60.0,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.clock = clock
        self.calendars = calendars
        self.after = aftersales
        self.contract_of = dict(contract_of)
        self.default_policy = default_policy
        self.tz = tz
        self.horizon_days = horizon_days
        self.interval = interval
        self.last_tick: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def reconfigure(self, aftersales: AfterSales, contract_of: Mapping[str, str], default_policy: str) -> None:
        """New terms after a config reload (the next tick applies them)."""
        self.after = aftersales
        self.contract_of = dict(contract_of)
        self.default_policy = default_policy

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="service-desk")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad tick must not end the after-sales work
                log.exception("after-sales tick failed; trying again in %.0f s", self.interval)
            await asyncio.sleep(self.interval)  # why: the schedule is in days; a minute is fine grain

    # -- devices -------------------------------------------------------------------------
    def devices(self) -> list[Device]:
        """The inventory's devices, each with its contract (as configured) as its policy."""
        out = []
        for d in self.pipeline.inventory:
            contract = self.contract_of.get(d.id)
            out.append(d if contract is None or contract == d.policy else dataclasses.replace(d, policy=contract))
        return out

    def device(self, device_id: str) -> Device:
        d: Device | None = self.pipeline.inventory.get(device_id)
        if d is None:
            raise NotFound(f"no device {device_id!r} in the inventory")
        contract = self.contract_of.get(d.id, d.policy)
        return d if contract == d.policy else dataclasses.replace(d, policy=contract)

    # -- the tick ------------------------------------------------------------------------
    async def tick(self, now: float | None = None) -> dict[str, Any]:
        """Generate planned work, give the notices due, apply out-of-warranty changes."""
        async with self._lock:
            at = self.clock.now() if now is None else now
            counts, events, marks = await asyncio.to_thread(self._plan_and_find, at)
            offered = self.pipeline.offer_many(events) if events else 0
            if offered:
                await self.pipeline.execute(lambda _now: None)  # the events before it are committed
                await asyncio.to_thread(self._mark_given, marks[:offered])
            overlay = await asyncio.to_thread(self._overlay, at)
            if overlay is not None:
                await self.pipeline.execute(overlay)
            counts["notices"] = offered
            counts["shed"] = len(events) - offered
            self.last_tick = {"at": at, **counts}
            return self.last_tick

    def _plan_and_find(self, now: float) -> tuple[dict[str, Any], list[Event], list[Callable[[], None]]]:
        devices = self.devices()
        cals = self.calendars
        desired, limit, _ = self.after.planned(devices, now, self.horizon_days, lambda name: working_days(cals[name]))
        existing = self.store.list_planned(statuses=["planned", "cancelled"], limit=10**9)
        r = reconcile(existing, desired, limit, now)
        inserted = self.store.insert_planned(r.insert)
        self.store.save_planned(r.update)
        events: list[Event] = []
        marks: list[Callable[[], None]] = []
        self._planned_notices(now, events, marks)
        self._warranty_notices(devices, now, events, marks)
        self._spare_notices(now, events, marks)
        self._replacement_notices(devices, now, events, marks)
        return {"inserted": inserted, "updated": len(r.update), "planned": len(desired)}, events, marks

    def _mark_given(self, marks: list[Callable[[], None]]) -> None:
        for m in marks:
            m()

    def _notice_record(self, device: str, ticket: int | None, now: float, data: dict[str, Any]) -> Callable[[], None]:
        return lambda: self.store.add_service_record(
            {"device": device, "ticket_id": ticket, "kind": "notice", "ts": now, "actor": "service", "data": data})

    def _given(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.store.list_service_records(kinds=["notice"]) if r["data"].get("type") == kind]

    def _planned_notices(self, now: float, events: list[Event], marks: list[Callable[[], None]]) -> None:
        # Work done (or cancelled) after its overdue alarm was raised: clear that alarm, once.
        for item in self.store.list_planned(statuses=["done", "cancelled"], due_before=now, limit=10**9):
            if item.get("notified_at") is None or item.get("cleared_at") is not None:
                continue
            events.append(Event(now, "service", item["device"], "service.planned_done",
                                {"item": item["id"], "kind": item["kind"]}))
            marks.append(self._mark(item, "cleared_at", now))
        for item in self.store.list_planned(statuses=["planned"], due_before=now, limit=10**9):
            if item.get("notified_at") is not None or item_state(item, now) != "overdue":
                continue
            events.append(Event(now, "service", item["device"], "service.planned_overdue", {
                "item": item["id"], "kind": item["kind"], "due_date": item["due_date"], "contract": item["contract"],
                "title": item.get("title", "")}))
            marks.append(self._mark(item, "notified_at", now))

    def _mark(self, item: dict[str, Any], key: str, now: float) -> Callable[[], None]:
        """Record on a planned item that a notice was given (re-read: it may have changed)."""

        def mark() -> None:
            current = self.store.get_planned(item["id"]) or item
            self.store.save_planned([{**current, key: now}])

        return mark

    def _warranty_notices(self, devices: list[Device], now: float, events: list[Event], marks: list[Callable[[], None]]) -> None:
        records = self._given("warranty")
        # A notice whose warranty has ended, or whose end moved (a renewed or corrected
        # warranty), has done its work: its alarm clears, once.
        done = {(g["device"], g["data"].get("warranty_end")) for g in records if g["data"].get("what") == "cleared"}
        today = self.after.day(now).isoformat()
        by_id = {d.id: d for d in devices}
        for g in records:
            end = g["data"].get("warranty_end")
            if g["data"].get("what") == "cleared" or (g["device"], end) in done:
                continue
            d = by_id.get(g["device"])
            try:
                cov = self.after.coverage(d) if d is not None else None
            except ValueError:
                cov = None
            current = cov.warranty_end.isoformat() if cov is not None and cov.warranty_end else None
            if end <= today or current != end:
                events.append(Event(now, "service", g["device"], "service.warranty_ended", {"warranty_end": end}))
                marks.append(self._notice_record(g["device"], None, now,
                                                 {"type": "warranty", "warranty_end": end, "what": "cleared"}))
                done.add((g["device"], end))
        horizon = max((c.terms.notice_days for c in self.after.contracts.values()), default=0)
        if horizon <= 0:
            return
        given = {(g["device"], g["data"].get("warranty_end")) for g in records}
        for row in self.after.expiring(devices, now, horizon):
            if row["days_left"] > row["notice_days"] or (row["device"], row["warranty_end"]) in given:
                continue
            events.append(Event(now, "service", row["device"], "service.warranty_expiring", {
                "warranty_end": row["warranty_end"], "days_left": row["days_left"], "contract": row["contract"]}))
            marks.append(self._notice_record(row["device"], None, now, {
                "type": "warranty", "warranty_end": row["warranty_end"], "days_left": row["days_left"]}))

    def _spare_notices(self, now: float, events: list[Event], marks: list[Callable[[], None]]) -> None:
        records = self.store.list_service_records(kinds=[*ACTIONS, "notice"])
        by_ticket: dict[int, list[dict[str, Any]]] = {}
        for r in records:
            if r["ticket_id"] is not None:
                by_ticket.setdefault(int(r["ticket_id"]), []).append(r)
        for tid, recs in by_ticket.items():
            device = recs[0]["device"]
            contract = self.after.contracts.get(self.contract_of.get(device, ""))
            if contract is None or not contract.spares:
                continue
            runs = clock_runs([r for r in recs if r["kind"] != "notice"], contract.spares, self.calendars)
            given = [r["data"] for r in recs if r["kind"] == "notice" and r["data"].get("type") == "spare"]
            for n in notices_due(runs, given, now):
                name = "service.spare_overdue" if n["what"] == "overdue" else "service.spare_reminder"
                events.append(Event(now, "service", device, name, {
                    "ticket": tid, "clock": n["clock"], "party": n["party"], "due_at": iso(n["due_at"]),
                    "due_local": local(n["due_at"], self.tz)}))
                marks.append(self._notice_record(device, tid, now, {"type": "spare", **n}))
            # A clock met after a notice: clear its alarm once.
            noticed = {(g["clock"], float(g["started_at"])) for g in given if g.get("what") in ("reminder", "overdue")}
            cleared = {(g["clock"], float(g["started_at"])) for g in given if g.get("what") == "met"}
            for run in runs:
                k = (run["clock"], float(run["started_at"]))
                if run["stopped_at"] is not None and k in noticed and k not in cleared:
                    events.append(Event(now, "service", device, "service.spare_met", {"ticket": tid, "clock": run["clock"]}))
                    marks.append(self._notice_record(device, tid, now, {
                        "type": "spare", "clock": run["clock"], "started_at": run["started_at"], "what": "met"}))

    def _replacement_notices(self, devices: list[Device], now: float, events: list[Event], marks: list[Callable[[], None]]) -> None:
        ruled = {d.id: self.after.contracts[d.policy].replacement for d in devices
                 if d.policy in self.after.contracts and self.after.contracts[d.policy].replacement is not None}
        if not ruled:
            return
        given = {(g["device"], g["data"].get("key")) for g in self._given("replacement")}
        tickets: dict[str, list[dict[str, Any]]] = {}
        for t in self.store.find_tickets(devices=sorted(ruled), limit=10**9):
            tickets.setdefault(t["device"], []).append(t)
        records: dict[str, list[dict[str, Any]]] = {}
        for r in self.store.list_service_records(kinds=["part_failed", "spare_requested", "part_replaced"]):
            records.setdefault(r["device"], []).append(r)
        for dev, rule in ruled.items():
            assert rule is not None
            for reason in replacement_reasons(rule, tickets.get(dev, []), records.get(dev, []), now):
                if (dev, reason["key"]) in given:
                    continue
                events.append(Event(now, "service", dev, "service.replacement_due", {
                    "reason": reason["key"], "text": reason["text"], "tickets": ",".join(map(str, reason["tickets"]))}))
                marks.append(self._notice_record(dev, None, now, {"type": "replacement", **reason}))

    def _overlay(self, now: float) -> Callable[[float], None] | None:
        """The swap that gives out-of-warranty devices their contract's other terms, or
        ``None`` when every device already has the policy it should have."""
        if not any(c.terms.out_of_warranty is not None for c in self.after.contracts.values()):
            return None
        p = self.pipeline
        base = p.inventory
        policies = dict(p.policies)
        extra: dict[str, Any] = {}
        devices: list[Device] = []
        changed = False
        for d in base:
            contract = self.contract_of.get(d.id)
            want = d.policy if contract is None else contract
            eff = self.after.out_of_warranty(d.id, contract, now) if contract is not None else None
            if eff is not None:
                pol, penalties, _paid = eff
                want = pol
                if not penalties and pol in policies:
                    want = f"{pol}~no-penalties"
                    if want not in policies:
                        extra[want] = dataclasses.replace(policies[pol], name=want, penalties=None)
            if want != d.policy:
                changed = True
                d = dataclasses.replace(d, policy=want)
            devices.append(d)
        if not changed and not extra:
            return None
        inventory = Inventory(devices, base.default_policy)

        def swap(_now: float) -> None:
            if p.inventory is not base:  # a reload came in between: the next tick starts from it
                return
            merged = {**p.policies, **extra}
            p.policies = merged
            p.desk.policies = merged
            p.inventory = inventory
            p.book.inventory = inventory

        return swap

    # -- reads ---------------------------------------------------------------------------
    def planned(
        self, *, device: str | None = None, contract: str | None = None, state: str | None = None,
        kind: str | None = None, limit: int = 1000,
    ) -> list[dict[str, Any]]:
        now = self.clock.now()
        rows = self.store.list_planned(devices=[device] if device else None,
                                       contracts=[contract] if contract else None, limit=10**9)
        out = []
        for r in rows:
            st = item_state(r, now)
            if (state and st != state) or (kind and r["kind"] != kind):
                continue
            out.append(self._item_out(r, now))
            if len(out) >= limit:
                break
        return out

    def _item_out(self, r: Mapping[str, Any], now: float) -> dict[str, Any]:
        out = {k: v for k, v in r.items() if k != "report"}
        out["state"] = item_state(r, now)
        report = r.get("report")
        if report:
            out["report"] = {**report, "files": [{"name": f["name"], "size": f["size"]} for f in report.get("files", [])]}
        return out

    def planned_item(self, item_id: str, with_files: bool = False) -> dict[str, Any]:
        r = self.store.get_planned(item_id)
        if r is None:
            raise NotFound(f"no planned work {item_id!r}")
        out = self._item_out(r, self.clock.now())
        if with_files and r.get("report"):
            out["report"] = r["report"]
        return out

    def expiring(self, within_days: int) -> list[dict[str, Any]]:
        return self.after.expiring(self.devices(), self.clock.now(), within_days)

    def warranty(self, device_id: str, at: float | None = None) -> dict[str, Any]:
        d = self.device(device_id)
        recs = self.store.list_service_records(device=d.id, kinds=["part_replaced"])
        return self.after.warranty(d, self.clock.now() if at is None else at, recs)

    def ticket_service(self, ticket_id: int) -> dict[str, Any]:
        """A ticket's after-sales side: warranty as of its start, spare clocks, loaner, records."""
        t = self.store.get_ticket(ticket_id)
        if t is None:
            raise NotFound(f"no ticket {ticket_id}")
        now = self.clock.now()
        dev_id = t["device"]
        contract_name = self.contract_of.get(dev_id, t["policy"])
        inv = self.pipeline.inventory.get(dev_id)
        device = dataclasses.replace(inv, policy=contract_name) if inv is not None else Device(dev_id, policy=contract_name, known=False)
        replaced = self.store.list_service_records(device=dev_id, kinds=["part_replaced"])
        warranty = self.after.warranty(device, float(t["opened_at"]),
                                       [r for r in replaced if float(r["ts"]) <= float(t["opened_at"])])
        recs = self.store.list_service_records(ticket_id=ticket_id)
        actions = [r for r in recs if r["kind"] != "notice"]
        contract = self.after.contracts.get(contract_name)
        runs = clock_runs(actions, contract.spares, self.calendars) if contract is not None else []
        for r in runs:
            r["state"] = run_state(r, now)
            for k in ("started_at", "due_at", "remind_at", "stopped_at"):
                r[k + "_local"] = local(r[k], self.tz) if r[k] is not None else None
        loaner = None
        for r in actions:
            if r["kind"] == "loaner_out":
                loaner = {"out_at": r["ts"], "back_at": None, "unit": r["data"].get("unit", "")}
            elif r["kind"] == "loaner_back" and loaner is not None:
                loaner["back_at"] = r["ts"]
        return {"ticket": ticket_id, "device": dev_id, "contract": contract_name, "warranty": warranty,
                "spares": runs, "loaner": loaner,
                "records": [{**r, "label_zh": LABELS_ZH.get(r["kind"], r["kind"])} for r in recs]}

    def history(self, device_id: str) -> dict[str, Any]:
        d = self.device(device_id)
        tickets = self.store.find_tickets(devices=[d.id], limit=10**9)
        planned = self.store.list_planned(devices=[d.id], limit=10**9)
        records = self.store.list_service_records(device=d.id)
        now = self.clock.now()
        out = self.after.history(d, tickets, planned, records, now)
        c = self.after.contracts.get(d.policy)
        rule = c.replacement if c is not None else None
        out["replacement"] = replacement_reasons(rule, tickets, records, now) if rule is not None else []
        return out

    # -- writes --------------------------------------------------------------------------
    async def complete(self, item_id: str, report: Mapping[str, Any], actor: str) -> dict[str, Any]:
        """Mark planned work done with its report (``text``, ``checks``: item → bool,
        ``files``: ``[{"name", "content"}]`` with base64 content); clears its overdue alarm."""
        async with self._lock:  # not while a tick reconciles this item from an older read
            out = await self._complete(item_id, report, actor)
        if out.get("notified_at") is not None:
            await self.tick()  # clears its overdue alarm now (else within a minute)
        return out

    async def _complete(self, item_id: str, report: Mapping[str, Any], actor: str) -> dict[str, Any]:
        item = await asyncio.to_thread(self.store.get_planned, item_id)
        if item is None:
            raise NotFound(f"no planned work {item_id!r}")
        if item.get("status") != "planned":
            raise ServiceError(f"planned work {item_id} is {item.get('status')}; nothing to complete")
        text = str(report.get("text") or "").strip()
        if not text:
            raise ServiceError("report.text: a report is required (what was done, findings, advice)")
        checks = {str(k): bool(v) for k, v in dict(report.get("checks") or {}).items()}
        unknown = sorted(set(checks) - set(item.get("checklist", [])))
        if unknown:
            raise ServiceError(f"report.checks: {unknown[0]!r} is not on the checklist")
        files, total = [], 0
        for i, f in enumerate(report.get("files") or []):
            name = str(f.get("name") or "").strip()
            if not name or "/" in name or name in (".", ".."):
                raise ServiceError(f"report.files[{i}].name: a plain file name is required")
            try:
                raw = base64.b64decode(str(f.get("content") or ""), validate=True)
            except (binascii.Error, ValueError):
                raise ServiceError(f"report.files[{i}].content: not base64") from None
            if len(raw) > MAX_FILE:
                raise ServiceError(f"report.files[{i}]: larger than {MAX_FILE // 1024} KiB")
            total += len(raw)
            files.append({"name": name, "size": len(raw), "content": base64.b64encode(raw).decode()})
        if total > MAX_FILES:
            raise ServiceError(f"report.files: more than {MAX_FILES // 1024} KiB together")
        now = self.clock.now()
        done = {**item, "status": "done", "done_at": now, "done_by": actor,
                "report": {"text": text, "checks": checks, "files": files},
                "on_time": now < float(item["deadline"])}
        await asyncio.to_thread(self.store.save_planned, [done])
        return self._item_out(done, now)

    async def ticket_action(
        self, ticket_id: int, action: str, actor: str, *, part: str = "", note: str = "", unit: str = "",
        at: float | None = None,
    ) -> dict[str, Any]:
        """Record a spare-part / loaner action on a ticket (and a comment on its timeline)."""
        if action not in ACTIONS:
            raise ServiceError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        t = await asyncio.to_thread(self.store.get_ticket, ticket_id)
        if t is None:
            raise NotFound(f"no ticket {ticket_id}")
        now = self.clock.now()
        when = now if at is None else at
        if when > now + 60:
            raise ServiceError("at: lies in the future")
        if when < float(t["opened_at"]):
            raise ServiceError(f"at: before the ticket was opened ({iso(float(t['opened_at']))})")
        data = {k: v for k, v in (("part", part), ("note", note), ("unit", unit)) if v}
        rid = await asyncio.to_thread(self.store.add_service_record, {
            "device": t["device"], "ticket_id": ticket_id, "kind": action, "ts": when, "actor": actor, "data": data})
        text = f"{action} / {LABELS_ZH[action]}" + (f" part={part}" if part else "") + (f" unit={unit}" if unit else "")
        text += f": {note}" if note else ""

        def comment(n: float) -> None:
            desk = self.pipeline.desk
            with contextlib.suppress(Exception):  # a ticket gone from memory keeps its record
                desk.act(ticket_id, "comment", n, actor, text)

        await self.pipeline.execute(comment)
        return {"id": rid, "ticket": ticket_id, "kind": action, "ts": when, "data": data, **self.ticket_service(ticket_id)}


def parse_day(text: str) -> date:
    """A local date (``YYYY-MM-DD``) for ``--at`` options and query parameters."""
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise ServiceError(f"{text!r} is not a date (YYYY-MM-DD)") from None
