"""CLI commands for tickets and SLA: ticket actions, ``report`` and ``sla-report``.

Commands::

    gateway ticket open --device ID --level N --title TEXT --reported-by WHO --channel phone|email|helpdesk
                        [--reported-at TIME --reason TEXT] [--by NAME] [--on-behalf-of NAME]
    gateway ticket link ID --alarm ALARM [--note TEXT] [--by NAME]
    gateway ticket ack|dispatch|propose|arrive|no-visit|restore|close|reopen|pause|resume|comment ID [--note TEXT] [--by NAME] [--on-behalf-of NAME]
    gateway ticket level ID --level N [--note TEXT] [--by NAME]
    gateway ticket report-set ID [--symptoms TEXT] [--cause TEXT] [--solution TEXT] [--follow-up TEXT]
    gateway report TICKET [-o FILE]
    gateway sla-report --contract NAME --month YYYY-MM [--json] [-o FILE]

Ticket actions respect the single writer: each is one request,
``POST /api/v1/tickets/{id}/{action}``, to the data dir's writer (see
:mod:`gateway.cli.common`): the running daemon over its control socket, or, when none
runs, the core started in this process for the one action. No token is needed.

``report`` and ``sla-report`` only read the store, so they work beside a running daemon.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from gateway.cli.common import (
    CallError,
    actor,
    calendars,
    call,
    err,
    load,
    read_store,
    read_store_if_any,
    write_out,
)

__all__ = ["CLI_VERBS", "register"]

#: CLI verb → (TicketDesk action, API path segment, help).
CLI_VERBS: dict[str, tuple[str, str, str]] = {
    "ack": ("acknowledge", "acknowledge", "acknowledge: the response (stops the response clock only)"),
    "dispatch": ("dispatch", "dispatch", "an engineer was dispatched (stops the dispatch clock, the remote-fix window)"),
    "propose": ("propose_solution", "propose_solution", "a solution was proposed (stops the solution clock)"),
    "arrive": ("arrive", "arrive", "an engineer is on site (stops the on-site clock)"),
    "no-visit": ("no_on_site", "no_on_site", "no on-site visit is needed (the on-site clock becomes not applicable, not met)"),
    "restore": ("restore", "restore", "service is restored (stops restore; starts the report clock)"),
    "close": ("close", "close", "close the ticket (the incident report was delivered)"),
    "reopen": ("reopen", "reopen", "reopen a restored or closed ticket"),
    "pause": ("pause", "pause", "pause the clocks (waiting on the customer, access or parts)"),
    "resume": ("resume", "resume", "resume paused clocks"),
    "comment": ("comment", "comment", "add a comment (--note)"),
    "level": ("set_level", "level", "change the fault level (--level): re-targets the clocks"),
}


def register(
    sub: Any,
    ticket_sub: Any,
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ticket actions (to ``gateway ticket``), ``report`` and ``sla-report``.

    Args:
        sub: The top-level subparsers.
        ticket_sub: The subparsers of ``gateway ticket``.
        with_config: Adds the ``-c/--config`` option to a parser.
    """
    for verb, (_, _, text) in CLI_VERBS.items():
        aliases = ["resolve"] if verb == "restore" else []
        sp = with_config(ticket_sub.add_parser(verb, help=text, description=text, aliases=aliases))
        sp.add_argument("id", type=int, help="ticket id")
        sp.add_argument("--note", default="", help="free text for the timeline and the help desk")
        sp.add_argument("--by", default=None, metavar="NAME", help="who acts (default: your login name)")
        sp.add_argument("--on-behalf-of", dest="on_behalf_of", default=None, metavar="NAME",
                        help="whom you act for (recorded beside you in the timeline, never instead)")
        if verb == "level":
            sp.add_argument("--level", required=True, help="new level: 1-4 or critical/major/minor/warning")
        sp.set_defaults(func=_cmd_action, verb=verb)

    op = with_config(
        ticket_sub.add_parser(
            "open",
            help="open a ticket a person reported (phone, e-mail, help desk)",
            description="Open a ticket a customer reported. Its clocks start at --reported-at "
            "(default: now); a start more than a minute back needs --reason; a time in the "
            "future is refused. A fault the device raises while it is open attaches to it.",
        )
    )
    op.add_argument("--device", required=True, help="inventory device id, address or alias")
    op.add_argument("--level", required=True, help="1-4 or critical/major/minor/warning")
    op.add_argument("--title", required=True, help="what is wrong, in a line")
    op.add_argument("--reported-by", dest="reported_by", required=True, help="who reported it (name, phone, e-mail)")
    op.add_argument("--channel", required=True, choices=["phone", "email", "helpdesk"], help="how it was reported")
    op.add_argument("--reported-at", dest="reported_at", default=None, metavar="TIME",
                    help="when the vendor was told: ISO 8601, e.g. 2026-03-02T09:30 (no offset: gateway.timezone)")
    op.add_argument("--reason", default="", help="why the start is back-dated (required with an earlier --reported-at)")
    op.add_argument("--by", default=None, metavar="NAME", help="who enters it (default: your login name)")
    op.set_defaults(func=_cmd_open, verb="open")

    ln = with_config(
        ticket_sub.add_parser(
            "link",
            help="link an open alarm to a ticket",
            description="Link an open alarm to a ticket (e.g. one a customer reported): the alarm's "
            "clear and escalations then act on that ticket.",
        )
    )
    ln.add_argument("id", type=int, help="ticket id")
    ln.add_argument("--alarm", type=int, required=True, help="alarm id")
    ln.add_argument("--note", default="", help="free text for the timeline")
    ln.add_argument("--by", default=None, metavar="NAME", help="who acts (default: your login name)")
    ln.set_defaults(func=_cmd_link, verb="link")

    rs = with_config(
        ticket_sub.add_parser(
            "report-set",
            help="set parts of the post-incident report",
            description="Set the parts of the post-incident report people write; an empty text clears one.",
        )
    )
    rs.add_argument("id", type=int, help="ticket id")
    rs.add_argument("--symptoms", default=None, help="what was observed")
    rs.add_argument("--cause", default=None, help="the cause of the fault")
    rs.add_argument("--solution", default=None, help="the final solution")
    rs.add_argument("--follow-up", dest="follow_up", default=None, help="follow-up measures")
    rs.add_argument("--note", default="", help="free text for the timeline")
    rs.add_argument("--by", default=None, metavar="NAME", help="who acts (default: your login name)")
    rs.add_argument("--on-behalf-of", dest="on_behalf_of", default=None, metavar="NAME",
                    help="whom you act for (recorded beside you in the timeline, never instead)")
    rs.set_defaults(func=_cmd_report_set, verb="report-set")

    rp = with_config(sub.add_parser("report", help="write a ticket's post-incident report (Markdown)"))
    rp.add_argument("ticket", type=int, help="ticket id")
    rp.add_argument("-o", "--output", default="", help="write to this file instead of standard output")
    rp.set_defaults(func=_cmd_report)

    sr = with_config(sub.add_parser("sla-report", help="SLA summary of one contract and month"))
    sr.add_argument("--contract", required=True, help="policy (contract) name")
    sr.add_argument("--month", required=True, help="YYYY-MM, in the config's time zone")
    sr.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    sr.add_argument("-o", "--output", default="", help="write to this file instead of standard output")
    sr.set_defaults(func=_cmd_sla_report)


# --------------------------------------------------------------------------- helpers


def _summary(cfg: Any, ticket_id: int) -> str:
    """The ticket as committed (read back from the store), in a few lines."""
    from gateway.core.views import clock_line, shown, ticket_view

    store = read_store(cfg)
    try:
        t = store.get_ticket(ticket_id)
    finally:
        store.close()
    if t is None:  # pragma: no cover - the writer has just committed it
        return f"ticket {ticket_id}: done"
    v = ticket_view(t, cfg.gateway.timezone)
    urgent = ", urgent" if v["urgent"] else ""
    paused = ", paused" if v["paused"] else ""
    lines = [f"ticket {v['id']}: {v['status']}, level {v['level']} ({v['level_name']}{urgent}){paused}"]
    if v["origin"] != "alarm":
        lines.append(f"  reported by {v['reported_by']} via {v['origin']}, clocks from {shown(v, 'opened_at')}")
        if v["entered_at"]:
            lines.append(f"  back-dated (entered {shown(v, 'entered_at')}): {v['backdate_reason']}")
    if v["alarm_ids"]:
        lines.append(f"  alarms: {', '.join(str(a) for a in v['alarm_ids'])}")
    lines += ["  " + clock_line(c) for c in v["clocks"]]
    if v["provisional"]:
        lines.append("  warning: PROVISIONAL deadlines were computed without holiday data; verify them")
    return "\n".join(lines)


# --------------------------------------------------------------------------- actions


def _cmd_action(args: argparse.Namespace) -> int:
    api_name = CLI_VERBS[args.verb][1]
    body: dict[str, Any] = {"note": args.note}
    if api_name == "level":
        from gateway.model import FaultLevel

        try:
            body["level"] = int(FaultLevel.parse(args.level))
        except ValueError:
            return err(f"unknown fault level {args.level!r} (use 1-4 or critical/major/minor/warning)")
    if api_name == "comment" and not args.note.strip():
        return err("a comment needs --note TEXT")
    return _apply(args, api_name, body)


def _cmd_open(args: argparse.Namespace) -> int:
    from datetime import datetime

    from gateway.model import FaultLevel

    try:
        level = int(FaultLevel.parse(args.level))
    except ValueError:
        return err(f"unknown fault level {args.level!r} (use 1-4 or critical/major/minor/warning)")
    body: dict[str, Any] = {
        "device": args.device, "level": level, "title": args.title, "reported_by": args.reported_by,
        "channel": args.channel, "reason": args.reason,
    }
    if args.reported_at is not None:
        try:
            datetime.fromisoformat(args.reported_at)
        except ValueError:
            return err(f"--reported-at {args.reported_at!r}: not an ISO 8601 time (e.g. 2026-03-02T09:30)")
        body["reported_at"] = args.reported_at
    cfg = load(args.config)
    who = actor(args.by)
    try:
        t, _ = call(cfg, "POST", "/tickets", {**body, "actor": who}, user=who.removeprefix("user:"))
    except CallError as e:
        return err(e.message)
    print(_summary(cfg, int(t["id"])))
    return 0


def _cmd_link(args: argparse.Namespace) -> int:
    return _apply(args, "link", {"alarm": args.alarm, "note": args.note})


def _cmd_report_set(args: argparse.Namespace) -> int:
    names = ("symptoms", "cause", "solution", "follow_up")
    fields = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if not fields:
        return err("give at least one of --symptoms, --cause, --solution, --follow-up")
    return _apply(args, "report", {"note": args.note, "fields": fields})


def _apply(args: argparse.Namespace, api_name: str, body: dict[str, Any]) -> int:
    """One action through the data dir's writer (the daemon, or the core in-process)."""
    cfg = load(args.config)
    who = actor(args.by)
    if getattr(args, "on_behalf_of", None):
        body = {**body, "actor": args.on_behalf_of}  # the API keeps it as on_behalf_of
    try:
        # The control socket's caller is who the timeline names: the API takes the actor
        # from the caller, and a body "actor" only as whom it acts for.
        call(cfg, "POST", f"/tickets/{args.id}/{api_name}", body, user=who)
    except CallError as e:
        return err(e.message)
    print(_summary(cfg, args.id))
    return 0


# --------------------------------------------------------------------------- reports


def _cmd_report(args: argparse.Namespace) -> int:
    from gateway.clock import SystemClock
    from gateway.core.report import incident_report

    cfg = load(args.config)
    store = read_store(cfg)
    try:
        t = store.load_ticket(args.ticket)
        if t is None:
            return err(f"no ticket {args.ticket}")
        text = incident_report(
            t,
            store.timeline(t.id),
            tz=cfg.gateway.timezone,
            now=SystemClock().now(),
            alarm=store.get_alarm(t.alarm_id),
            calendars=calendars(cfg),
        )
    finally:
        store.close()
    write_out(text, args.output)
    return 0


def _cmd_sla_report(args: argparse.Namespace) -> int:
    from gateway.clock import SystemClock
    from gateway.config import build_policies
    from gateway.core.report import month_bounds, render_sla_summary, sla_summary

    cfg = load(args.config)
    policies = build_policies(cfg)
    policy = policies.get(args.contract)
    if policy is None:
        return err(f"no contract (policy) named {args.contract!r}; known: {', '.join(sorted(policies))}")
    try:
        start, end = month_bounds(args.month, cfg.gateway.timezone)
    except ValueError as e:
        return err(str(e))
    from gateway.core.aftersales import planned_summary, render_planned_summary

    store = read_store_if_any(cfg)
    try:
        tickets = store.tickets_opened(policy.name, start, end) if store is not None else []
        planned = store.list_planned(contracts=[policy.name], limit=10**9) if store is not None else []
    finally:
        if store is not None:
            store.close()
    summary = sla_summary(
        tickets, policy, calendars(cfg), month=args.month, tz=cfg.gateway.timezone, now=SystemClock().now()
    )
    summary["planned"] = planned_summary(planned, start, end, SystemClock().now())
    if summary["provisional"]:
        print("warning: some deadlines are PROVISIONAL (no holiday data for their dates)", file=sys.stderr)
    if args.json:
        text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    else:
        text = render_sla_summary(summary) + "\n" + render_planned_summary(summary["planned"])
    write_out(text, args.output)
    return 0
