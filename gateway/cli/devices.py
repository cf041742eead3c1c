"""``gateway devices import|export|changes``: the inventory as CSV or JSON.

Writes go through the data dir's writer (:func:`gateway.cli.common.call`): the running daemon,
which uses the new inventory at once, or the core started in-process when none runs. An
import is all or nothing: with any bad row, each problem is printed on one line (row and
column) and nothing changes. Exports read the same API (so they show what the daemon uses).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.cli.common import CallError, call, err, load, login, write_out

__all__ = ["register"]


def register(sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """Add the ``devices`` command group to the top-level parser."""
    d = sub.add_parser("devices", help="the inventory: import or export devices as CSV or JSON, see who changed what")
    dsub = d.add_subparsers(dest="devices_command", required=True)

    im = with_config(dsub.add_parser(
        "import", help="add or update devices from a CSV or JSON file (all rows or none)",
        description="Columns: id, name, class, site, region, policy, parent, addresses, aliases, "
                    "heartbeat_interval, poll (only id is required; lists separated by ';' in CSV). "
                    "Devices of the config file's [[devices]] win and are not changed.",
    ))
    im.add_argument("file", help="the file ('-' = standard input)")
    im.add_argument("--format", choices=["csv", "json"], default=None, help="default: from the file name (.csv, .json)")
    im.add_argument("--replace", action="store_true",
                    help="the file is the whole stored inventory: stored devices not in it are removed")
    im.add_argument("--dry-run", action="store_true", help="check and report what would change; change nothing")
    im.add_argument("--by", default=None, metavar="NAME", help="who imports (default: your login name)")
    im.set_defaults(func=cmd_import)

    ex = with_config(dsub.add_parser("export", help="write every device (config file and store) as CSV or JSON"))
    ex.add_argument("--format", choices=["csv", "json"], default="csv")
    ex.add_argument("-o", "--output", default="", help="file to write (default: standard output)")
    ex.set_defaults(func=cmd_export)

    ch = with_config(dsub.add_parser("changes", help="who changed which device when (newest first)"))
    ch.add_argument("--device", default=None)
    ch.add_argument("--limit", type=int, default=50)
    ch.add_argument("--json", action="store_true")
    ch.set_defaults(func=cmd_changes)


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CallError(0, f"{path}: not UTF-8 text (save the file as UTF-8 CSV or JSON)") from None


def cmd_import(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    fmt = args.format or ("json" if args.file.lower().endswith(".json") else "csv" if args.file.lower().endswith(".csv") else "")
    if not fmt:
        return err(f"{args.file}: say --format csv or --format json")
    try:
        text = _read(args.file)
    except CallError as e:
        return err(e.message)
    body = {"format": fmt, "text": text, "mode": "replace" if args.replace else "merge", "dry_run": args.dry_run}
    try:
        doc, who = call(cfg, "POST", "/inventory/import", body, user=args.by or login(), need_store=False, timeout=120)
    except CallError as e:
        return _print_rejected(args.file, e)
    verb = "would change" if args.dry_run else "imported"
    print(f"{args.file}: {verb}: {doc['added']} added, {doc['updated']} updated, {doc['removed']} removed, "
          f"{doc['unchanged']} unchanged" + ("" if args.dry_run or who is None else f" (gateway pid {who.pid} uses them now)"))
    return 0


def _print_rejected(path: str, e: CallError) -> int:
    """One line per problem: ``file: row N, column C: problem``."""
    problems = e.detail
    if e.status == 422 and isinstance(problems, list) and problems:
        for p in problems:
            where = "file" if not p.get("row") else f"row {p['row']}"
            col = f", column {p['column']}" if p.get("column") else ""
            print(f"{path}: {where}{col}: {p['message']}", file=sys.stderr)
        print(f"error: {len(problems)} problem(s); nothing was imported", file=sys.stderr)
        return 1
    return err(e.message)


def cmd_export(args: argparse.Namespace) -> int:
    from gateway.core.devicebook import to_csv, to_json

    cfg = load(args.config)
    try:
        doc, _ = call(cfg, "GET", "/inventory?format=json", user=login(), need_store=False)
    except CallError as e:
        return err(e.message)
    write_out(to_json(doc) if args.format == "json" else to_csv(doc), args.output)
    return 0


def cmd_changes(args: argparse.Namespace) -> int:
    from gateway.core.views import table

    cfg = load(args.config)
    path = f"/inventory/changes?limit={args.limit}" + (f"&device={args.device}" if args.device else "")
    try:
        doc, _ = call(cfg, "GET", path, user=login(), need_store=False)
    except CallError as e:
        return err(e.message)
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(table([{k: r[k] for k in ("at", "actor", "action", "device")} for r in doc], ["at", "actor", "action", "device"]))
    return 0
