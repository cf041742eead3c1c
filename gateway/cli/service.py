"""CLI commands for after-sales: planned work, warranty, spare parts and repair history.

Commands::

    gateway planned list [--device ID] [--contract NAME] [--state S] [--kind K] [--json]
    gateway planned show ITEM [--json]
    gateway planned generate
    gateway planned done ITEM --report TEXT [--check ITEM]... [--file PATH]... [--by NAME]
    gateway warranty expiring [--within 30|60|90] [--json]
    gateway warranty show DEVICE [--on YYYY-MM-DD] [--json]
    gateway device history DEVICE [--json]
    gateway ticket spare ID ACTION [--part P] [--unit U] [--note TEXT] [--at TIME] [--by NAME]
    gateway ticket service ID [--json]

Reads open the store read-only (beside a running daemon or not); ``generate``, ``done`` and
``ticket spare`` are requests to the data dir's writer (the daemon, or the core started in
this process), like every other change.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gateway.cli.common import CallError, actor, calendars, call, err, load, read_store_if_any

__all__ = ["register"]

SPARE_ACTIONS = (
    "spare_requested", "spare_shipped", "repaired", "replacement_received", "part_replaced",
    "part_returned", "part_failed", "loaner_out", "loaner_back",
)
STATE_ZH = {"upcoming": "未到期", "due": "待办", "overdue": "已逾期", "done": "已完成", "cancelled": "已取消"}
KIND_ZH = {"inspection": "巡检", "visit": "回访", "maintenance": "预防性维护"}


def register(sub: Any, ticket_sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """Add ``planned``, ``warranty``, ``device history`` and ``ticket spare|service``."""
    pl = sub.add_parser("planned", help="planned work: inspections (巡检), return visits (回访), preventive maintenance")
    psub = pl.add_subparsers(dest="planned_command", required=True)
    ls = with_config(psub.add_parser("list", help="planned work items by due date, with their state"))
    ls.add_argument("--device", default=None)
    ls.add_argument("--contract", default=None)
    ls.add_argument("--state", choices=["upcoming", "due", "overdue", "done", "cancelled"])
    ls.add_argument("--kind", choices=["inspection", "visit", "maintenance"])
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_planned_list)
    sh = with_config(psub.add_parser("show", help="one item with its checklist and report"))
    sh.add_argument("item")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_planned_show)
    gen = with_config(psub.add_parser("generate", help="generate planned work now and raise the notices due"))
    gen.set_defaults(func=cmd_planned_generate)
    dn = with_config(psub.add_parser("done", help="complete an item with its report"))
    dn.add_argument("item")
    dn.add_argument("--report", required=True, help="what was done, findings, maintenance advice")
    dn.add_argument("--check", action="append", default=[], metavar="ITEM", help="a checklist item done (repeatable)")
    dn.add_argument("--file", action="append", default=[], metavar="PATH", help="attach a file (repeatable)")
    dn.add_argument("--by", default=None, metavar="NAME")
    dn.set_defaults(func=cmd_planned_done)

    w = sub.add_parser("warranty", help="warranty and service periods (保修期)")
    wsub = w.add_subparsers(dest="warranty_command", required=True)
    ex = with_config(wsub.add_parser("expiring", help="warranties ending within N days"))
    ex.add_argument("--within", type=int, default=90, help="days (default: %(default)s; e.g. 30, 60, 90)")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_warranty_expiring)
    ws = with_config(wsub.add_parser("show", help="a device's warranty status, periods and replaced parts"))
    ws.add_argument("device")
    ws.add_argument("--on", default=None, metavar="YYYY-MM-DD", help="as of this local date (default: today)")
    ws.add_argument("--json", action="store_true")
    ws.set_defaults(func=cmd_warranty_show)

    dv = sub.add_parser("device", help="one device's after-sales record")
    dsub = dv.add_subparsers(dest="device_command", required=True)
    hi = with_config(dsub.add_parser("history", help="repair history (维修档案): tickets, planned work, spares, warranty"))
    hi.add_argument("device")
    hi.add_argument("--json", action="store_true")
    hi.set_defaults(func=cmd_device_history)

    sp = with_config(ticket_sub.add_parser("spare", help="record a spare-part or loaner action on a ticket"))
    sp.add_argument("id", type=int)
    sp.add_argument("action", choices=SPARE_ACTIONS)
    sp.add_argument("--part", default="", help="the (main) part, e.g. psu")
    sp.add_argument("--unit", default="", help="the loaner unit")
    sp.add_argument("--note", default="")
    sp.add_argument("--at", default=None, help="when (ISO time, local without an offset; default: now)")
    sp.add_argument("--by", default=None, metavar="NAME")
    sp.set_defaults(func=cmd_ticket_spare)
    sv = with_config(ticket_sub.add_parser("service", help="a ticket's warranty status as of its start and its spare clocks"))
    sv.add_argument("id", type=int)
    sv.add_argument("--json", action="store_true")
    sv.set_defaults(func=cmd_ticket_service)


# -- the reader ------------------------------------------------------------------------------
class _NoStore:
    """Stands in for a store that does not exist yet: no rows."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None if name.startswith("get_") else []


def _reader(cfg: Any) -> tuple[Any, Any]:
    """A read-only service desk over the store (or over nothing, before the first run)."""
    from gateway.clock import SystemClock
    from gateway.config import build_devices
    from gateway.core.inventory import Inventory
    from gateway.runtime.service import ServiceDesk
    from gateway.service_config import build_aftersales

    store = read_store_if_any(cfg)
    devices = build_devices(cfg)
    desk = ServiceDesk(
        store=store if store is not None else _NoStore(), pipeline=SimpleNamespace(inventory=Inventory(devices)),
        clock=SystemClock(), calendars=calendars(cfg), aftersales=build_aftersales(cfg),
        contract_of={d.id: d.policy for d in devices}, default_policy=cfg.inventory.default_policy,
        tz=cfg.gateway.timezone,
    )
    return desk, store


def _read(args: argparse.Namespace, fn: Callable[[Any], Any]) -> Any:
    from gateway.runtime.service import ServiceError

    cfg = load(args.config)
    desk, store = _reader(cfg)
    try:
        return cfg, fn(desk)
    except ServiceError as e:
        raise SystemExit(err(str(e))) from None
    finally:
        if store is not None:
            store.close()


def _local(ts: Any, tz: str) -> str:
    from gateway.core.views import local

    return local(float(ts), tz) or "-" if ts is not None else "-"


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, ensure_ascii=False, default=str))


# -- planned work ----------------------------------------------------------------------------
def cmd_planned_list(args: argparse.Namespace) -> int:
    from gateway.core.views import table

    cfg, rows = _read(args, lambda d: d.planned(device=args.device, contract=args.contract, state=args.state,
                                                kind=args.kind, limit=100000))
    if args.json:
        _print_json(rows)
        return 0
    tz = cfg.gateway.timezone
    view = [{"id": r["id"], "kind": f"{r['kind']} {KIND_ZH.get(r['kind'], '')}", "device": r["device"],
             "due": r["due_date"], "deadline": _local(r["deadline"], tz),
             "state": f"{r['state']} {STATE_ZH.get(r['state'], '')}" + (" PROVISIONAL" if r.get("provisional") else ""),
             "title": r.get("title", "")} for r in rows]
    print(table(view, ["id", "kind", "device", "due", "deadline", "state", "title"]) if view else "no planned work / 无计划工作")
    return 0


def cmd_planned_show(args: argparse.Namespace) -> int:
    cfg, item = _read(args, lambda d: d.planned_item(args.item))
    if args.json:
        _print_json(item)
        return 0
    tz = cfg.gateway.timezone
    print(f"{item['id']}  {item['kind']} ({KIND_ZH.get(item['kind'], '')})  {item['state']} ({STATE_ZH.get(item['state'], '')})")
    print(f"  {item.get('title', '')}  device {item['device']}  contract {item['contract']}")
    print(f"  nominal {item['nominal']}  due {item['due_date']}  window {_local(item['window_start'], tz)} … {_local(item['deadline'], tz)}")
    report = item.get("report") or {}
    for c in item.get("checklist", []):
        mark = "x" if report.get("checks", {}).get(c) else " "
        print(f"  [{mark}] {c}")
    if report:
        print(f"  done {_local(item.get('done_at'), tz)} by {item.get('done_by', '')}{'' if item.get('on_time') else ' (late / 逾期完成)'}")
        print(f"  report: {report.get('text', '')}")
        for f in report.get("files", []):
            print(f"  file: {f['name']} ({f['size']} bytes)")
    return 0


def cmd_planned_generate(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    try:
        doc, _ = call(cfg, "POST", "/service/planned/generate", user=actor(None).split(":", 1)[1], need_store=False)
    except CallError as e:
        return err(e.message)
    print(f"planned work: {doc['inserted']} new, {doc['updated']} updated, {doc['planned']} wanted; "
          f"{doc['notices']} notice(s) raised")
    return 0


def cmd_planned_done(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    files = []
    for p in args.file:
        path = Path(p)
        try:
            data = path.read_bytes()
        except OSError as e:
            return err(f"--file {p}: {e.strerror or e}")
        files.append({"name": path.name, "content": base64.b64encode(data).decode()})
    body = {"text": args.report, "checks": dict.fromkeys(args.check, True), "files": files}
    who = actor(args.by).split(":", 1)[1]
    try:
        doc, _ = call(cfg, "POST", f"/service/planned/{args.item}/done", body, user=who)
    except CallError as e:
        return err(e.message)
    late = "" if doc.get("on_time") else " (after its window / 逾期完成)"
    print(f"{doc['id']}: done{late}")
    return 0


# -- warranty --------------------------------------------------------------------------------
def cmd_warranty_expiring(args: argparse.Namespace) -> int:
    from gateway.core.views import table

    if args.within < 1:
        return err("--within: give a number of days >= 1")
    _, rows = _read(args, lambda d: d.expiring(args.within))
    if args.json:
        _print_json(rows)
        return 0
    print(table(rows, ["device", "contract", "warranty_end", "days_left"]) if rows
          else f"no warranty ends within {args.within} days / {args.within} 天内无到期保修")
    return 0


def cmd_warranty_show(args: argparse.Namespace) -> int:
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    from gateway.runtime.service import parse_day

    def show(d: Any) -> Any:
        at = None
        if args.on:
            at = datetime.combine(parse_day(args.on), time(12), tzinfo=ZoneInfo(d.tz)).timestamp()
        return d.warranty(args.device, at)

    _, view = _read(args, show)
    if args.json:
        _print_json(view)
        return 0
    _print_warranty(view)
    return 0


def _print_warranty(view: dict[str, Any]) -> None:
    print(f"{view['device']}  contract {view['contract']}  as of {view['as_of']}: {view['status']} ({view['status_zh']})")
    cov = view.get("coverage") or {}
    if cov:
        print(f"  warranty {cov.get('term') or '-'}: {cov.get('start') or '?'} … {cov.get('warranty_end') or '?'}"
              + (f"; service period ends {cov['service_end']}" if cov.get("service_end") else ""))
    oow = view.get("out_of_warranty")
    if oow:
        bits = [f"policy {oow['policy']}" if oow.get("policy") else "", "no penalties" if not oow.get("penalties") else "",
                "paid service / 有偿服务" if oow.get("paid_service") else "", oow.get("note", "")]
        print("  out of warranty: " + "; ".join(b for b in bits if b))
    for p in view.get("parts", []):
        print(f"  part {p['part']}: replaced {p['replaced']}, own warranty until {p['warranty_end']} ({p['status']})")
    if view.get("error"):
        print(f"  error: {view['error']}")


# -- device history and tickets ----------------------------------------------------------------
def cmd_device_history(args: argparse.Namespace) -> int:
    cfg, doc = _read(args, lambda d: d.history(args.device))
    if args.json:
        _print_json(doc)
        return 0
    tz = cfg.gateway.timezone
    _print_warranty(doc["warranty"])
    for e in doc["entries"]:
        ref = f" [{e['ref']}]" if e.get("ref") is not None else ""
        print(f"  {_local(e['ts'], tz)}  {e['kind']:<8} {e['what']:<20}{ref} {e['text']}")
    for r in doc.get("replacement", []):
        print(f"  REPLACE / 应更换: {r['text']}")
    if not doc["entries"]:
        print("  no history yet / 暂无记录")
    return 0


def cmd_ticket_spare(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    body: dict[str, Any] = {"action": args.action, "part": args.part, "unit": args.unit, "note": args.note}
    if args.at:
        body["at"] = args.at
    try:
        doc, _ = call(cfg, "POST", f"/service/tickets/{args.id}/actions", body, user=actor(args.by).split(":", 1)[1])
    except CallError as e:
        return err(e.message)
    print(f"ticket {args.id}: {args.action} recorded")
    _print_spares(doc, cfg.gateway.timezone)
    return 0


def cmd_ticket_service(args: argparse.Namespace) -> int:
    cfg, doc = _read(args, lambda d: d.ticket_service(args.id))
    if args.json:
        _print_json(doc)
        return 0
    _print_warranty(doc["warranty"])
    _print_spares(doc, cfg.gateway.timezone)
    return 0


def _print_spares(doc: dict[str, Any], tz: str) -> None:
    for r in doc.get("spares", []):
        print(f"  clock {r['clock']} ({r['party']}): due {_local(r['due_at'], tz)}  {r['state']}"
              + (" PROVISIONAL" if r.get("provisional") else ""))
    loaner = doc.get("loaner")
    if loaner:
        back = _local(loaner["back_at"], tz) if loaner.get("back_at") else "not back / 未归还"
        print(f"  loaner {loaner.get('unit') or ''} out {_local(loaner['out_at'], tz)}, back {back}")
