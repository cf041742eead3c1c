"""CLI commands for tickets and SLA: ticket actions, ``report`` and ``sla-report``.

Commands::

    gateway ticket ack|propose|arrive|restore|close|reopen|pause|resume|comment ID [--note TEXT] [--by NAME]
    gateway ticket level ID --level N [--note TEXT] [--by NAME]
    gateway ticket report-set ID [--symptoms TEXT] [--cause TEXT] [--solution TEXT] [--follow-up TEXT]
    gateway report TICKET [-o FILE]
    gateway sla-report --contract NAME --month YYYY-MM [--json] [-o FILE]

Ticket actions respect the single writer. While the daemon runs (its pid file
``<data_dir>/gateway.pid`` names a live process) they go to its REST API,
``POST /api/v1/tickets/{id}/{action}``, with the first operator token of the config;
with the API disabled they are refused with a message saying so. Otherwise the CLI is
the only writer: it loads the ticket from the store, applies the action through a
:class:`~gateway.core.tickets.TicketDesk` and commits the ticket, its timeline entries and
its outbox messages in one transaction, as the pipeline does.

``report`` and ``sla-report`` only read the store, so they work beside a running daemon.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.store import StoreReader

__all__ = ["register", "CLI_VERBS", "PID_FILE"]

#: Name of the daemon's pid file inside the data directory.
PID_FILE = "gateway.pid"

#: CLI verb → (TicketDesk action, API path segment, help).
CLI_VERBS: dict[str, tuple[str, str, str]] = {
    "ack": ("acknowledge", "acknowledge", "acknowledge: the response (stops the response clock only)"),
    "propose": ("propose_solution", "propose_solution", "a solution was proposed (stops the solution clock)"),
    "arrive": ("arrive", "arrive", "an engineer is on site (stops the on-site clock)"),
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
        if verb == "level":
            sp.add_argument("--level", required=True, help="new level: 1-4 or critical/major/minor/warning")
        sp.set_defaults(func=_cmd_action, verb=verb)

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


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def _config(path: str) -> Any:
    from gateway.config import load_config

    return load_config(path)


def _actor(by: str | None) -> str:
    if by:
        return by if ":" in by else f"user:{by}"
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name (e.g. a container without a passwd entry)
        name = "cli"
    return f"user:{name}"


def _calendars(cfg: Any) -> Any:
    from gateway.core.calendars import default_calendars

    return default_calendars([str(cfg.resolve_path(d)) for d in cfg.calendars.holiday_dirs])


def _store_path(cfg: Any) -> Path:
    return Path(cfg.data_path(cfg.store.path))


def daemon_pid(cfg: Any) -> int | None:
    """Return the pid of a running daemon for this config, or ``None``.

    The daemon writes ``<data_dir>/gateway.pid``; a file naming a process that no
    longer exists is stale and ignored.
    """
    path = Path(cfg.data_path(PID_FILE))
    try:
        text = path.read_text("utf-8").split()
        pid = int(text[0]) if text else 0
    except (OSError, ValueError):
        return None
    if pid <= 0 or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, owned by someone else
        return pid
    return pid


def _write(text: str, output: str) -> None:
    if output:
        Path(output).write_text(text, "utf-8")
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _summary(t: Any, tz: str | None = None) -> str:
    from gateway.core.views import clock_line, ticket_view

    v = ticket_view(t if isinstance(t, dict) else t.to_dict(), tz)
    urgent = ", urgent" if v["urgent"] else ""
    paused = ", paused" if v["paused"] else ""
    lines = [f"ticket {v['id']}: {v['status']}, level {v['level']} ({v['level_name']}{urgent}){paused}"]
    lines += ["  " + clock_line(c) for c in v["clocks"]]
    if v["provisional"]:
        lines.append("  warning: PROVISIONAL deadlines were computed without holiday data; verify them")
    return "\n".join(lines)


# --------------------------------------------------------------------------- actions


def _cmd_action(args: argparse.Namespace) -> int:
    action, api_name, _ = CLI_VERBS[args.verb]
    kw: dict[str, Any] = {}
    body: dict[str, Any] = {"note": args.note}
    if action == "set_level":
        from gateway.model import FaultLevel

        try:
            level = int(FaultLevel.parse(args.level))
        except ValueError:
            return _err(f"unknown fault level {args.level!r} (use 1-4 or critical/major/minor/warning)")
        kw["level"] = body["level"] = level
    if action == "comment" and not args.note.strip():
        return _err("a comment needs --note TEXT")
    return _apply(args, action, api_name, body, kw)


def _cmd_report_set(args: argparse.Namespace) -> int:
    names = ("symptoms", "cause", "solution", "follow_up")
    fields = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if not fields:
        return _err("give at least one of --symptoms, --cause, --solution, --follow-up")
    return _apply(args, "set_report", "report", {"note": args.note, "fields": fields}, {"fields": fields})


def _apply(
    args: argparse.Namespace, action: str, api_name: str, body: dict[str, Any], kw: dict[str, Any]
) -> int:
    cfg = _config(args.config)
    actor = _actor(args.by)
    pid = daemon_pid(cfg)
    if pid is not None:
        return _via_api(cfg, pid, args.id, api_name, {**body, "actor": actor})
    return _offline(cfg, args.id, action, actor, body.get("note", ""), kw)


def _via_api(cfg: Any, pid: int, ticket_id: int, api_name: str, body: dict[str, Any]) -> int:
    """Hand the action to the running daemon (the single writer) through its API."""
    path = f"/api/v1/tickets/{ticket_id}/{api_name}"
    if not cfg.api.enabled:
        return _err(
            f"the gateway is running (pid {pid}) and owns the tickets; with its API disabled the CLI "
            f"cannot act. Enable [api] in the config (then POST {path}) or stop the gateway."
        )
    tokens = [t for t in cfg.api.tokens if t.role == "operator"]
    if not tokens:
        return _err(
            f"the gateway is running (pid {pid}); acting through its API ({path}) needs an "
            "[[api.tokens]] entry with role = \"operator\" in the config"
        )
    import httpx

    host = cfg.api.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    url = f"http://{host}:{cfg.api.port}{path}"
    headers = {"Authorization": f"Bearer {tokens[0].token.get_secret_value()}"}
    try:
        r = httpx.post(url, json=body, headers=headers, timeout=10.0)
    except httpx.HTTPError as e:
        return _err(f"the gateway is running (pid {pid}) but its API at {url} did not answer: {e}")
    detail = _api_message(r)
    if r.status_code == 404:
        if "ticket" in detail.lower() and "no ticket" in detail.lower():
            return _err(detail)
        return _err(
            f"the running gateway (pid {pid}) has no {path} ({detail or 'HTTP 404'}); "
            "stop it to act from the CLI, or update it"
        )
    if r.status_code >= 400:
        return _err(f"{path}: HTTP {r.status_code}: {detail}")
    try:
        print(_summary(r.json()))
    except (ValueError, KeyError, TypeError):
        print(f"ticket {ticket_id}: {api_name} done")
    return 0


def _api_message(r: Any) -> str:
    try:
        doc = r.json()
    except ValueError:
        return r.text[:200]
    if isinstance(doc, dict):
        return str(doc.get("message") or doc.get("detail") or "")
    return ""


def _offline(cfg: Any, ticket_id: int, action: str, actor: str, note: str, kw: dict[str, Any]) -> int:
    """Act as the single writer: load, apply through a TicketDesk, commit one batch."""
    from gateway.clock import SystemClock
    from gateway.config import build_policies
    from gateway.store import BatchWrite
    from gateway.store.sqlite import SqliteStore
    from gateway.core.tickets import TicketDesk, TicketError

    path = _store_path(cfg)
    if not path.exists():
        return _err(f"no store at {path}: the gateway has not run yet, so there are no tickets")
    store = SqliteStore(path, synchronous=cfg.store.synchronous)
    try:
        _, next_ticket = store.next_ids()
        desk = TicketDesk(build_policies(cfg), _calendars(cfg), next_ticket, loader=store.load_ticket)
        now = SystemClock().now()
        try:
            t = desk.act(ticket_id, action, now, actor, note, **kw)
        except TicketError as e:
            return _err(str(e))
        # The daemon may have started since the first look; then it owns the tickets.
        pid = daemon_pid(cfg)
        if pid is not None:
            return _err(f"the gateway started meanwhile (pid {pid}); nothing was written, try again")
        tickets = desk.take_dirty()
        batch = BatchWrite(
            tickets=tickets,
            timeline=desk.take_timeline(),
            outbox=_outbox_rows(cfg, store, desk.take_outbox(), {x.id: x for x in tickets}),
        )
        store.commit(batch)
    finally:
        store.close()
    print(_summary(t, cfg.gateway.timezone))
    return 0


def _outbox_rows(
    cfg: Any, store: StoreReader, messages: list[tuple[int, str, dict[str, Any]]], tickets: dict[int, Any]
) -> list[Any]:
    """Outbox rows for the configured help desks, shaped as the pipeline writes them."""
    from gateway.store import OutboxRow

    connectors = [h.name for h in getattr(cfg, "helpdesk", [])]
    rows: list[OutboxRow] = []
    if not connectors:
        return rows
    instance = cfg.gateway.instance
    for tid, kind, extra in messages:
        t = tickets.get(tid)
        snapshot: dict[str, Any] = t.to_dict() if t is not None else {"id": tid}
        alarm = store.get_alarm(t.alarm_id) if t is not None else None
        if alarm is not None:
            snapshot["count"] = alarm["count"]
            snapshot["first_event"] = alarm.get("event", "")
            snapshot["first_seen"] = alarm["first_seen"]
        snapshot.update(extra)
        snapshot["ticket_key"] = f"gw-{instance}-t{tid}"
        for conn in connectors:
            if extra.get("actor") == f"helpdesk:{conn}":
                continue
            key = snapshot["ticket_key"]
            if kind != "open":
                key = f"{key}-m{uuid.uuid4().hex[:12]}"
            rows.append(OutboxRow(conn, tid, key, kind, snapshot))
    return rows


# --------------------------------------------------------------------------- reports


def _read_store(cfg: Any) -> StoreReader | None:
    from gateway.store.sqlite import SqliteStore

    path = _store_path(cfg)
    if not path.exists():
        return None
    return SqliteStore(path, readonly=True)


def _cmd_report(args: argparse.Namespace) -> int:
    from gateway.clock import SystemClock
    from gateway.core.report import incident_report

    cfg = _config(args.config)
    store = _read_store(cfg)
    if store is None:
        return _err(f"no ticket {args.ticket} (no store at {_store_path(cfg)})")
    try:
        t = store.load_ticket(args.ticket)
        if t is None:
            return _err(f"no ticket {args.ticket}")
        text = incident_report(
            t,
            store.timeline(t.id),
            tz=cfg.gateway.timezone,
            now=SystemClock().now(),
            alarm=store.get_alarm(t.alarm_id),
            calendars=_calendars(cfg),
        )
    finally:
        store.close()
    _write(text, args.output)
    return 0


def _cmd_sla_report(args: argparse.Namespace) -> int:
    from gateway.clock import SystemClock
    from gateway.config import build_policies
    from gateway.core.report import month_bounds, render_sla_summary, sla_summary

    cfg = _config(args.config)
    policies = build_policies(cfg)
    policy = policies.get(args.contract)
    if policy is None:
        return _err(f"no contract (policy) named {args.contract!r}; known: {', '.join(sorted(policies))}")
    try:
        start, end = month_bounds(args.month, cfg.gateway.timezone)
    except ValueError as e:
        return _err(str(e))
    store = _read_store(cfg)
    try:
        tickets = store.tickets_opened(policy.name, start, end) if store is not None else []
    finally:
        if store is not None:
            store.close()
    summary = sla_summary(
        tickets, policy, _calendars(cfg), month=args.month, tz=cfg.gateway.timezone, now=SystemClock().now()
    )
    if summary["provisional"]:
        print("warning: some deadlines are PROVISIONAL (no holiday data for their dates)", file=sys.stderr)
    if args.json:
        text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    else:
        text = render_sla_summary(summary)
    _write(text, args.output)
    return 0
