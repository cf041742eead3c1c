"""``gateway service-report``: a contract's monthly, quarterly or yearly service report as HTML,
PDF or JSON (reads the store only, so it works beside a running daemon)::

    gateway service-report --contract NAME --period 2026-Q1 [--format html|pdf|json] [-o FILE]

and ``gateway report-send TICKET``: e-mail a ticket's incident report to the customer (through
the contract's report notifiers; the delivery stops the report clock).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.cli.common import CallError, actor, calendars, call, err, load, read_store_if_any, write_out

__all__ = ["build_report", "register"]


def register(sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    p = with_config(sub.add_parser("service-report", help="service report of one contract: month, quarter or year"))
    p.add_argument("--contract", required=True, help="policy (contract) name")
    p.add_argument("--period", required=True, help="YYYY-MM, YYYY-Qn or YYYY, in the config's time zone")
    p.add_argument("--format", choices=("html", "pdf", "json"), default="html")
    p.add_argument("-o", "--output", default="", help="write to this file (required for pdf)")
    p.set_defaults(func=_cmd)
    rs = with_config(sub.add_parser("report-send", help="e-mail a ticket's incident report (text + PDF) to the customer"))
    rs.add_argument("ticket", type=int, help="ticket id (restored or closed)")
    rs.add_argument("--by", default=None, metavar="NAME", help="who acts (default: your login name)")
    rs.set_defaults(func=_cmd_send)


def _cmd_send(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    who = actor(args.by)
    try:
        call(cfg, "POST", f"/tickets/{args.ticket}/report/send", {"actor": who}, user=who.removeprefix("user:"))
    except CallError as e:
        return err(e.message)
    print(f"ticket {args.ticket}: incident report queued for the customer")
    return 0


def build_report(cfg: Any, contract: str, period: str, now: float) -> dict[str, Any]:
    """The report's data (raises ``LookupError`` for an unknown contract, ``ValueError`` for a
    bad period)."""
    from gateway.config import build_policies
    from gateway.core.service_report import period_bounds, service_report

    policy = build_policies(cfg).get(contract)
    if policy is None:
        raise LookupError(f"no contract (policy) named {contract!r}; known: {', '.join(sorted(build_policies(cfg)))}")
    start, end, _ = period_bounds(period, cfg.gateway.timezone)
    store = read_store_if_any(cfg)
    try:
        tickets = store.tickets_opened(policy.name, start, end) if store is not None else []
    finally:
        if store is not None:
            store.close()
    customer = cfg.policies[contract].customer if contract in cfg.policies else ""
    return service_report(tickets, policy, calendars(cfg), period=period, tz=cfg.gateway.timezone, now=now,
                          customer=customer)


def _cmd(args: argparse.Namespace) -> int:
    from gateway.clock import SystemClock
    from gateway.core.service_report import render_html

    cfg = load(args.config)
    try:
        report = build_report(cfg, args.contract, args.period, SystemClock().now())
    except (LookupError, ValueError) as e:
        return err(str(e).strip("'\""))
    if args.format == "json":
        write_out(json.dumps(report, indent=2, ensure_ascii=False) + "\n", args.output)
        return 0
    html = render_html(report)
    if args.format == "html":
        write_out(html, args.output)
        return 0
    if not args.output:
        return err("--format pdf needs -o FILE")
    from gateway.delivery.helpdesk.notify.pdf import html_pdf

    Path(args.output).write_bytes(html_pdf(html))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
