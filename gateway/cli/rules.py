"""CLI commands for rules and maintenance: ``gateway rules test|replay|reload``,
``gateway maintenance list|add|end``.

* ``rules test EVENT.json``: dry run of one event (or a JSON list of events) against the
  configured rules and the current store state: every candidate rule, which matched, the
  classification, and what the gateway would do. Nothing is written.
* ``rules replay CAPTURE.jsonl --rules DIR``: a recorded stream (``gateway run --record``)
  through a rule set on a fresh in-memory book and desk; ``--compare`` runs the live
  config's rules too and prints what differs per fault key.
* ``rules reload``: validate the config and rules here, then ask the running daemon to
  reload (over its control socket) and report what it said.
* ``maintenance add|end``: through the data dir's writer (the running daemon, or the core
  started in-process when none runs), which keeps the window in the store and applies it;
  ``maintenance list`` reads the store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.store import StoreReader

from gateway.cli.common import CallError, call, err, login, read_store_if_any
from gateway.cli.common import calendars as config_calendars

__all__ = ["register"]


def register(sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """Add the ``rules`` and ``maintenance`` command groups to the top-level parser."""
    r = sub.add_parser("rules", help="rule packs: dry run, replay, reload")
    rsub = r.add_subparsers(dest="rules_command", required=True)

    t = with_config(
        rsub.add_parser(
            "test", help="dry run: which rule, level and key an event gets, and what would happen"
        )
    )
    t.add_argument(
        "event", help='JSON file: {"name": ..., "device": ..., "attrs": {...}} (or a list of them); - = stdin'
    )
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.add_argument(
        "--no-state", action="store_true", help="ignore the store (as if no alarm or ticket were open)"
    )
    t.set_defaults(func=cmd_rules_test)

    rp = rsub.add_parser("replay", help="replay a recorded event stream through a rule set")
    rp.add_argument("capture", help="JSON-lines file recorded with `gateway run --record`")
    rp.add_argument("--rules", required=True, help="directory of rule packs (*.toml) or one pack file")
    rp.add_argument(
        "-c",
        "--config",
        default=None,
        help="config for policies, devices and maintenance (default: $GATEWAY_CONFIG or config.toml if present)",
    )
    rp.add_argument(
        "--compare", action="store_true", help="also run the config's live rules and print the differences"
    )
    rp.add_argument(
        "--settle",
        default="0",
        help="run the clock on after the last event (e.g. 10m) for holds and escalations",
    )
    rp.add_argument("--log", action="store_true", help="print every alarm change and what the desk did")
    rp.add_argument("--json", action="store_true", help="machine-readable output")
    rp.set_defaults(func=cmd_rules_replay)

    rl = with_config(
        rsub.add_parser("reload", help="validate, then make the running gateway reload rules and policies")
    )
    rl.add_argument(
        "--wait", type=float, default=30.0, help="seconds to wait for the daemon's answer (default: 30)"
    )
    rl.set_defaults(func=cmd_rules_reload)

    m = sub.add_parser("maintenance", help="maintenance windows: alarms recorded, no tickets")
    msub = m.add_subparsers(dest="maintenance_command", required=True)
    ml = with_config(msub.add_parser("list", help="current and future windows (--all: ended ones too)"))
    ml.add_argument("--all", action="store_true")
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=cmd_maintenance_list)
    ma = with_config(
        msub.add_parser("add", help="add a window (scope: --device/--site/--class, each repeatable)")
    )
    ma.add_argument("--device", action="append", default=[], help="device id or glob")
    ma.add_argument("--site", action="append", default=[], help="site or glob")
    ma.add_argument(
        "--class", dest="classes", action="append", default=[], help="device class or glob, e.g. network.*"
    )
    ma.add_argument(
        "--start", default="now", help="'now', '+30m', ISO-8601 (local: gateway.timezone) or epoch"
    )
    ma.add_argument("--end", help="same forms as --start")
    ma.add_argument("--for", dest="duration", help="length instead of --end, e.g. 2h")
    ma.add_argument("--author", default="", help="who (default: the login name)")
    ma.add_argument("--reason", required=True, help="why (change ticket, vendor visit, ...)")
    ma.add_argument("--id", dest="window_id", default="", help="window id (default: generated)")
    ma.add_argument("--json", action="store_true")
    ma.set_defaults(func=cmd_maintenance_add)
    me = with_config(msub.add_parser("end", help="end a window now"))
    me.add_argument("window_id")
    me.add_argument("--author", default="", help="who (default: the login name)")
    me.set_defaults(func=cmd_maintenance_end)


# -- helpers ----------------------------------------------------------------------------------
def _iso(ts: float | None) -> str:
    from gateway.core.views import iso

    return iso(ts) or "-"


def _local(ts: float | None, tz: str) -> str:
    """A time for people: in the gateway's time zone, with its offset."""
    from gateway.core.views import local

    return local(ts, tz) or "-"


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    from gateway.core.views import table

    return table(rows, columns)


def _stored_windows(store: StoreReader | None) -> list[Any]:
    from gateway.core.maintenance import Window
    from gateway.errors import StoreError

    if store is None:
        return []
    try:
        return [Window.from_dict(d) for d in store.list_maintenance()]
    except StoreError:  # a store written before windows were kept: none stored
        return []


def _windows(cfg: Any, store: StoreReader | None) -> list[Any]:
    from gateway.core.maintenance import windows_from_config

    merged = {w.id: w for w in windows_from_config(cfg)}
    for w in _stored_windows(store):
        merged[w.id] = w
    return list(merged.values())


def _read_events(path: str) -> list[Any]:
    from gateway.errors import GatewayError
    from gateway.runtime.recorder import event_from_dict

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8")
        data = json.loads(text)
    except (OSError, ValueError) as e:
        raise GatewayError(f"{path}: cannot read an event: {e}") from None
    items = data if isinstance(data, list) else [data]
    out = []
    now = time.time()
    for i, d in enumerate(items):
        try:
            out.append(event_from_dict(d, default_ts=now))
        except ValueError as e:
            where = f"{path}[{i}]" if isinstance(data, list) else path
            raise GatewayError(f"{where}: {e}") from None
    return out


# -- rules test -------------------------------------------------------------------------------
def cmd_rules_test(args: argparse.Namespace) -> int:
    from gateway.config import build_devices, build_policies, load_config
    from gateway.core.alarms import AlarmBook
    from gateway.core.decider import Decider
    from gateway.core.inventory import Inventory
    from gateway.core.maintenance import MaintenanceBook
    from gateway.core.suppression import Suppressor
    from gateway.core.tickets import TicketDesk
    from gateway.rulebook import load_rules

    cfg = load_config(args.config)
    engine = load_rules(cfg)
    events = _read_events(args.event)
    policies = build_policies(cfg)
    calendars = config_calendars(cfg)
    inventory = Inventory(build_devices(cfg), cfg.inventory.default_policy)
    store = None if args.no_state else read_store_if_any(cfg)
    next_alarm, next_ticket = store.next_ids() if store is not None else (1, 1)
    book = AlarmBook(next_alarm, suppressor=Suppressor(inventory, MaintenanceBook(_windows(cfg, store))))
    desk = TicketDesk(policies, calendars, next_ticket)
    if store is not None:
        # A copy of the live state in memory: the dry run changes the copy, never the store.
        book.load(store.load_open_alarms())
        desk.load(store.load_open_tickets(), next_ticket)
        store.close()
    decider = Decider(engine=engine, inventory=inventory, book=book, desk=desk, policies=policies, tracing=True)
    decider.unknown_tickets = cfg.inventory.unknown_tickets

    reports = []
    for ev in events:
        decider.step((), ev.ts)  # timers due before the event (holds, escalations) act first
        trace = decider.step((ev,), ev.ts).trace[0]
        dev, cs = trace.device, trace.classifications
        assert dev is not None
        explain = engine.explain(ev, dev)
        used = {(c.rule_id, c.action) for c in cs}
        candidates = []
        by_contract: dict[str, bool] = {}
        for cr, matched in explain:
            is_used = matched and (cr.id, cr.action) in used
            if is_used:
                used.discard((cr.id, cr.action))
                by_contract[cr.id] = cr.by_contract
            candidates.append(
                {
                    "rule": cr.id,
                    "pack": cr.pack,
                    "action": cr.action,
                    "level": int(cr.level) if cr.level is not None else None,
                    "priority": cr.order[0],
                    "matched": matched,
                    "used": is_used,
                    "policy": _as_list(cr.source.policy),
                    "other_contract": cr.policy is not None and not cr.policy(dev.policy),
                }
            )
        outcomes = []
        for r in trace.reactions:
            a, out = r.change.alarm, r.outcome
            outcomes.append(
                {
                    "change": r.change.kind,
                    "alarm_id": a.id,
                    "key": a.key,
                    "state": a.state,
                    "level": int(a.level),
                    "count": a.count,
                    "suppressed_by": a.suppressed_by,
                    "action": out.action if out is not None else "failed",
                    "ticket_id": out.ticket_id if out is not None else None,
                    "text": out.text if out is not None else "ticket reaction failed (see the log)",
                }
            )
        reports.append(
            {
                "event": {"name": ev.name, "device": ev.device, "ts": ev.ts, "attrs": dict(ev.attrs)},
                "device": {
                    "id": dev.id,
                    "known": dev.known,
                    "class": dev.device_class,
                    "site": dev.site,
                    "region": dev.region,
                    "policy": dev.policy,
                    "parent": dev.parent,
                },
                "candidates": candidates,
                "classifications": [
                    {
                        "rule": c.rule_id,
                        "action": c.action,
                        "key": c.key,
                        "level": int(c.level) if c.level is not None else None,
                        "title": c.title,
                        # The contract that decided this classification: the device's, when
                        # the rule that made it is specific to contracts; None otherwise.
                        "contract": dev.policy if by_contract.get(c.rule_id) else None,
                    }
                    for c in cs
                ],
                "unclassified": not cs,
                "outcomes": outcomes,
            }
        )
    if args.json:
        print(
            json.dumps(reports if len(reports) > 1 else reports[0], indent=2, ensure_ascii=False, default=str)
        )
        return 0
    for rep in reports:
        _print_test(rep, engine)
    return 0


def _as_list(v: str | list[str] | None) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


def _print_test(rep: dict[str, Any], engine: Any) -> None:
    from gateway.model import FaultLevel

    ev, dev = rep["event"], rep["device"]
    known = "" if dev["known"] else "unknown device, "
    print(
        f"event {ev['name']} from {dev['id']} ({known}class {dev['class']}, site {dev['site'] or '-'}, "
        f"region {dev['region'] or '-'}, policy {dev['policy'] or '-'}) at {_iso(ev['ts'])}"
    )
    if not rep["candidates"]:
        print("  no rule names this event")
    for c in rep["candidates"]:
        mark = "x" if c["used"] else ("-" if c["matched"] else " ")
        what = f"{c['action']}" + (f" level {c['level']}" if c["level"] is not None else "")
        if c["used"]:
            note = ""
        elif c["matched"]:
            note = " (matched; an earlier rule won)"
        elif c.get("other_contract"):
            note = f" (only under contract {', '.join(c['policy'])}; the device's is {dev['policy'] or '-'})"
        else:
            note = " (conditions not met)"
        scope = f"  contract {', '.join(c['policy'])}" if c.get("policy") else ""
        print(f"  [{mark}] {c['pack']}/{c['rule']}  {what}  priority {c['priority']}{scope}{note}")
    if rep["unclassified"]:
        dl = engine.default_level
        print("  unclassified: counted" + ("" if dl is None else f"; default level {int(dl)} applies"))
    for c in rep["classifications"]:
        lvl = "" if c["level"] is None else f", level {c['level']} ({FaultLevel(c['level']).label})"
        print(f"  classification: rule {c['rule']} → {c['action']}{lvl}, key {c['key']}")
        if c.get("contract"):
            print(f"    decided by contract {c['contract']} (the rule applies under it only)")
        elif c["action"] == "raise":
            print(f"    the same under every contract (the rule names none); device's contract {dev['policy'] or '-'}")
    for o in rep["outcomes"]:
        verb = o["text"].startswith(("open ", "reopen ", "re-target ", "restore ", "record ", "clear "))
        print(f"    {o['change']}: {'would ' if verb else ''}{o['text']}")
    if rep["classifications"] and not rep["outcomes"]:
        print("    nothing would change (a clear with no open alarm for the key)")


# -- rules replay -----------------------------------------------------------------------------
def _replay_config(path: str | None) -> Any:
    from gateway.config import Config, load_config

    if path is None:
        default = os.environ.get("GATEWAY_CONFIG", "config.toml")
        if not Path(default).exists():
            return Config()
        path = default
    return load_config(path)


def _engine_from(path: str) -> Any:
    from gateway.errors import ConfigError
    from gateway.rulebook import load_pack_file
    from rules import RuleEngine

    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.toml"))
        if not files:
            raise ConfigError(path, "", "no *.toml rule packs in this directory")
    elif p.is_file():
        files = [p]
    else:
        raise ConfigError(path, "", "no such rule pack file or directory")
    return RuleEngine([load_pack_file(f) for f in files])


def cmd_rules_replay(args: argparse.Namespace) -> int:
    from gateway.config import build_devices, build_policies
    from gateway.core.maintenance import windows_from_config
    from gateway.core.replay import compare, replay
    from gateway.errors import GatewayError
    from gateway.rulebook import load_rules
    from gateway.runtime.recorder import read_events
    from rules import parse_seconds

    cfg = _replay_config(args.config)
    try:
        settle = parse_seconds(args.settle)
    except ValueError as e:
        raise GatewayError(f"--settle: {e}") from None
    try:
        events = list(read_events(args.capture))
    except (OSError, ValueError) as e:
        raise GatewayError(str(e)) from None
    new_engine = _engine_from(args.rules)
    common = {
        "policies": build_policies(cfg),
        "calendars": config_calendars(cfg),
        "devices": build_devices(cfg),
        "default_policy": cfg.inventory.default_policy,
        "windows": windows_from_config(cfg),
        "settle": settle,
        "unknown_tickets": cfg.inventory.unknown_tickets,
    }
    new = replay(events, new_engine, **common)
    live = replay(events, load_rules(cfg), **common) if args.compare else None
    if args.json:
        doc: dict[str, Any] = {"capture": args.capture, "rules": args.rules, "new": _replay_doc(new)}
        if live is not None:
            doc["live"] = _replay_doc(live)
            doc["diff"] = compare(live, new)
        print(json.dumps(doc, indent=2, ensure_ascii=False, default=str))
        return 0
    print(
        f"replayed {new.events} events from {args.capture} ({_iso(new.first_ts)} … {_iso(new.last_ts)}) "
        f"through {len(new_engine.rules)} rules from {args.rules}"
    )
    _print_replay(new, args.log)
    if live is not None:
        print()
        print(f"live rules ({cfg.source}):")
        print(f"  {_summary_line(live)}")
        diff = compare(live, new)
        print()
        if diff:
            print(f"differences, live → {args.rules} (+ only new, - only live, ~ changed):")
            for line in diff:
                print(f"  {line}")
        else:
            print("no difference: both rule sets produce the same alarms and tickets")
    return 0


def _summary_line(res: Any) -> str:
    states = ", ".join(f"{n} {s}" for s, n in sorted(res.counts().items())) or "none"
    return (
        f"classified {res.classified}, unclassified {res.unclassified}; "
        f"alarms {len(res.alarms)} ({states}); tickets {len(res.tickets)}"
    )


def _replay_doc(res: Any) -> dict[str, Any]:
    return {
        "events": res.events,
        "classified": res.classified,
        "unclassified": res.unclassified,
        "alarms": [a.to_dict() for a in sorted(res.alarms.values(), key=lambda a: a.id)],
        "tickets": [
            {
                "id": t.id,
                "level": int(t.level),
                "status": t.status,
                "device": t.device,
                "alarm_key": t.alarm_key,
                "alarm_id": t.alarm_id,
                "policy": t.policy,
                "opened_at": t.opened_at,
                "title": t.title,
            }
            for t in sorted(res.tickets.values(), key=lambda t: t.id)
        ],
        "log": [{"at": at, "change": kind, "key": key, "text": text} for at, kind, key, text in res.log],
    }


def _print_replay(res: Any, with_log: bool) -> None:
    print(f"  {_summary_line(res)}")
    if with_log and res.log:
        print()
        for at, kind, key, text in res.log:
            print(f"  {_iso(at)}  {kind:<12} {key}  → {text}")
    alarms = [
        {
            **a.to_dict(),
            "last_seen": _iso(a.last_seen),
            "flags": ",".join(
                f
                for f, on in (
                    ("flapping", a.flapping),
                    (a.suppressed_by or "", bool(a.suppressed_by)),
                    (a.clear_reason, bool(a.clear_reason)),
                )
                if on
            ),
        }
        for a in sorted(res.alarms.values(), key=lambda a: a.id)
    ]
    print()
    print("ALARMS")
    print(_table(alarms, ["id", "level", "state", "count", "device", "key", "ticket_id", "flags", "title"]))
    tickets = [
        {
            "id": t.id,
            "level": int(t.level),
            "status": t.status,
            "device": t.device,
            "alarm_key": t.alarm_key,
            "policy": t.policy,
            "opened_at": _iso(t.opened_at),
        }
        for t in sorted(res.tickets.values(), key=lambda t: t.id)
    ]
    print()
    print("TICKETS")
    print(_table(tickets, ["id", "level", "status", "device", "alarm_key", "policy", "opened_at"]))


# -- rules reload -----------------------------------------------------------------------------
def cmd_rules_reload(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.rulebook import load_rules

    cfg = load_config(args.config)
    engine = load_rules(cfg)  # a bad file is reported here, before the daemon is bothered
    try:
        doc, who = call(cfg, "POST", "/rules/reload", user=login(), offline=False, timeout=args.wait)
    except CallError as e:
        if e.status == 422:
            return err(f"the running gateway rejected the reload; the previous rules stay live: {e.message}")
        return err(e.message)
    status = (doc or {}).get("result") or {}
    pid = who.pid if who is not None else "?"
    print(
        f"reloaded gateway (pid {pid}): {status.get('rules', len(engine.rules))} rules, "
        f"{status.get('policies')} policies, {status.get('devices')} devices, "
        f"{status.get('maintenance')} maintenance windows"
    )
    parts = status.get("partitions")
    if isinstance(parts, dict) and parts.get("requested") == "all":
        print(f"asked of every partition's leader ({parts.get('count')} partitions; each reloads within "
              f"{parts.get('others_within_s')} s and logs a rejection itself)")
    return 0


# -- maintenance ------------------------------------------------------------------------------
def cmd_maintenance_list(args: argparse.Namespace) -> int:
    from gateway.config import load_config

    cfg = load_config(args.config)
    store = read_store_if_any(cfg)
    try:
        windows = _windows(cfg, store)
    finally:
        if store is not None:
            store.close()
    now = time.time()
    rows = []
    for w in sorted(windows, key=lambda w: (w.start, w.id)):
        if not args.all and w.end <= now:
            continue
        # JSON keeps epoch seconds for programs and adds the local rendering for people.
        tz = cfg.gateway.timezone
        local = {"start_local": _local(w.start, tz), "end_local": _local(w.end, tz)}
        rows.append({**w.to_dict(), **local, "active": w.active(now)})
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    view = [
        {
            **r,
            "start": r["start_local"],
            "end": r["end_local"],
            "scope": " ".join(f"{k}={','.join(r[k])}" for k in ("devices", "sites", "classes") if r[k]),
            "active": "yes" if r["active"] else "",
        }
        for r in rows
    ]
    print(_table(view, ["id", "active", "start", "end", "scope", "author", "reason", "source"]))
    return 0


def _where(who: Any) -> str:
    if who is None:
        return "  (no running gateway: saved in the store; it applies when the gateway starts)"
    return f"  the running gateway (pid {who.pid}) has it now"


def _epochs(w: dict[str, Any]) -> dict[str, Any]:
    """A window from the API (ISO times) with epoch times, as ``maintenance list`` shows it."""
    from datetime import datetime

    out = dict(w)
    for k in ("start", "end", "created_at"):
        if isinstance(out.get(k), str):
            out[k] = datetime.fromisoformat(out[k]).timestamp()
    return out


def _stored(cfg: Any, window_id: str) -> dict[str, Any] | None:
    """The window as the writer stored it (exact epoch times), read back read-only."""
    store = read_store_if_any(cfg)
    try:
        return next((w.to_dict() for w in _stored_windows(store) if w.id == window_id), None)
    finally:
        if store is not None:
            store.close()


def cmd_maintenance_add(args: argparse.Namespace) -> int:
    import uuid
    from datetime import UTC, datetime

    from gateway.config import load_config
    from gateway.core.maintenance import MaintenanceError, new_window, parse_when
    from gateway.errors import GatewayError
    from rules import parse_seconds

    cfg = load_config(args.config)
    now = time.time()
    tz = cfg.gateway.timezone
    try:
        start = parse_when(args.start, now, tz)
        if args.duration:
            end = start + parse_seconds(args.duration)
        elif args.end:
            end = parse_when(args.end, now, tz)
        else:
            raise MaintenanceError("give --end or --for")
        # Checked here first, for messages in the CLI's words; the writer checks again.
        w = new_window(
            args.window_id or f"mw-{uuid.uuid4().hex[:8]}", start, end, devices=args.device, sites=args.site,
            classes=args.classes, author=args.author or login(), reason=args.reason, source="cli", created_at=now,
        )
    except ValueError as e:
        raise GatewayError(str(e)) from None
    store = read_store_if_any(cfg)
    try:
        if any(x.id == w.id for x in _windows(cfg, store)):
            return err(f"a maintenance window {w.id!r} exists already")
    finally:
        if store is not None:
            store.close()
    body = {
        "id": w.id, "devices": list(w.devices), "sites": list(w.sites), "classes": list(w.classes),
        "start": datetime.fromtimestamp(w.start, UTC).isoformat(), "end": datetime.fromtimestamp(w.end, UTC).isoformat(),
        "reason": w.reason,
    }
    try:
        doc, who = call(cfg, "POST", "/maintenance", body, user=w.author, need_store=False)
    except CallError as e:
        return err(e.message)
    done = _stored(cfg, w.id) or _epochs(doc)
    if args.json:
        print(json.dumps(done, indent=2, ensure_ascii=False))
    else:
        print(f"added maintenance window {w.id}: {w.scope_text()}, {_local(done['start'], tz)} … {_local(done['end'], tz)}")
    print(_where(who))
    return 0


def cmd_maintenance_end(args: argparse.Namespace) -> int:
    from gateway.config import load_config

    cfg = load_config(args.config)
    try:
        doc, who = call(cfg, "POST", f"/maintenance/{args.window_id}/end", user=args.author or login(),
                        need_store=False)
    except CallError as e:
        return err(e.message)
    print(f"ended maintenance window {args.window_id} at {_local(_epochs(doc)['end'], cfg.gateway.timezone)}")
    print(_where(who))
    return 0
