"""CLI commands for people: accounts and ticket ownership.

Commands::

    gateway user add NAME [--role viewer|operator|admin|customer] [--display-name TEXT]
                          [--site S ...] [--contract C ...] [--password-stdin]
    gateway user list [--json]
    gateway user disable|enable NAME
    gateway user reset NAME [--password-stdin]
    gateway user token NAME [--label TEXT]
    gateway ticket take ID [--by NAME]
    gateway ticket assign ID (--to NAME | --team TEAM) [--note TEXT] [--by NAME]
    gateway ticket handover ID --to NAME [--note TEXT] [--by NAME]
    gateway oncall [--json]

Writes go to the data dir's writer over the control socket (only the data dir's owner can
open it), like every other CLI write; ``user list`` and ``oncall`` only read. A password is
never an argument (it would sit in the shell history and the process list): it is made at
random and printed once, or read from standard input with ``--password-stdin``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from gateway.cli.common import CallError, actor, call, err, load, read_store_if_any

__all__ = ["register"]


def register(
    sub: Any, ticket_sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    """Add ``gateway user ...``, ``gateway oncall`` and the ownership verbs of ``gateway ticket``."""
    us = sub.add_parser("user", help="people: add, list, disable, enable, reset accounts; personal tokens")
    usub = us.add_subparsers(dest="user_action", required=True)
    add = with_config(usub.add_parser("add", help="create an account (a random password is printed once)"))
    add.add_argument("name")
    add.add_argument("--role", default="viewer", choices=["viewer", "operator", "admin", "customer"])
    add.add_argument("--display-name", default="", help="the name shown on the board")
    add.add_argument("--site", action="append", default=[], help="customer: a site it may see (repeat)")
    add.add_argument("--contract", action="append", default=[], help="customer: a contract (policy) it may see (repeat)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(func=_cmd_add)
    ls = with_config(usub.add_parser("list", help="list accounts"))
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_cmd_list)
    for verb, text in (("disable", "disable an account (its sessions end, its tokens stop working)"),
                       ("enable", "enable a disabled account")):
        sp = with_config(usub.add_parser(verb, help=text))
        sp.add_argument("name")
        sp.set_defaults(func=_cmd_simple, verb=verb)
    rs = with_config(usub.add_parser("reset", help="set a new password (random unless --password-stdin)"))
    rs.add_argument("name")
    rs.add_argument("--password-stdin", action="store_true")
    rs.set_defaults(func=_cmd_reset)
    tk = with_config(usub.add_parser("token", help="make a personal API token for scripts (printed once)"))
    tk.add_argument("name")
    tk.add_argument("--label", default="", help="what the token is for")
    tk.set_defaults(func=_cmd_token)

    oc = with_config(sub.add_parser("oncall", help="teams, their leads and who is on call now"))
    oc.add_argument("--json", action="store_true")
    oc.set_defaults(func=_cmd_oncall)

    for verb, api, text in (
        ("take", "take", "take the ticket: you become its owner"),
        ("assign", "assign", "assign the ticket to a person (--to) and/or a team (--team)"),
        ("handover", "hand_over", "hand the ticket over from its owner to another person (--to)"),
    ):
        sp = with_config(ticket_sub.add_parser(verb, help=text, description=text))
        sp.add_argument("id", type=int, help="ticket id")
        if verb != "take":
            sp.add_argument("--to", default=None, metavar="NAME", help="the account taking the ticket")
        if verb == "assign":
            sp.add_argument("--team", default=None, help="the team taking the ticket")
        sp.add_argument("--note", default="", help="free text for the timeline (what is handed over)")
        sp.add_argument("--by", default=None, metavar="NAME", help="who acts (default: your login name)")
        sp.set_defaults(func=_cmd_own, api=api)


def _password(args: argparse.Namespace) -> str | None:
    if not args.password_stdin:
        return None
    text = sys.stdin.readline().rstrip("\r\n")
    return text


def _write(args: argparse.Namespace, path: str, body: Any) -> Any:
    cfg = load(args.config)
    who = actor(None).removeprefix("user:")
    answer, _ = call(cfg, "POST", path, body, user=who)
    return answer


def _cmd_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "role": args.role, "display_name": args.display_name,
                            "sites": args.site, "policies": args.contract}
    pw = _password(args)
    if pw is not None:
        if len(pw) < 8:
            return err("the password must have at least 8 characters")
        body["password"] = pw
    try:
        u = _write(args, "/users", body)
    except CallError as e:
        return err(e.message)
    print(f"user {u['name']}: {u['role']}" + (f" (sites {', '.join(u['sites'])})" if u["sites"] else "")
          + (f" (contracts {', '.join(u['policies'])})" if u["policies"] else ""))
    if "password" in u:
        print(f"password: {u['password']}  (shown once)")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from gateway.core.views import table

    cfg = load(args.config)
    store = read_store_if_any(cfg)
    try:
        users = store.list_users() if store is not None else []
    finally:
        if store is not None:
            store.close()
    rows = [
        {"name": u["name"], "role": u["role"], "display_name": u["display_name"],
         "state": "disabled" if u["disabled"] else "active",
         "scope": ", ".join((u["scope"] or {}).get("sites", []) + (u["scope"] or {}).get("policies", []))}
        for u in users
    ]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif not rows:
        print("no accounts (gateway user add NAME --role operator)")
    else:
        print(table(rows, ["name", "role", "display_name", "state", "scope"]))
    return 0


def _cmd_simple(args: argparse.Namespace) -> int:
    try:
        u = _write(args, f"/users/{args.name}/{args.verb}", None)
    except CallError as e:
        return err(e.message)
    print(f"user {u['name']}: {'disabled' if u['disabled'] else 'active'}")
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    pw = _password(args)
    if pw is not None and len(pw) < 8:
        return err("the password must have at least 8 characters")
    try:
        u = _write(args, f"/users/{args.name}/reset", {"password": pw} if pw else None)
    except CallError as e:
        return err(e.message)
    print(f"user {u['name']}: password reset; every session ended")
    if "password" in u:
        print(f"password: {u['password']}  (shown once)")
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    try:
        t = _write(args, f"/users/{args.name}/tokens", {"label": args.label})
    except CallError as e:
        return err(e.message)
    print(f"token {t['id']} for {t['user']}: {t['token']}  (shown once; send 'Authorization: Bearer <token>')")
    return 0


def _cmd_own(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    who = actor(args.by)
    body: dict[str, Any] = {"note": args.note, "actor": who}
    if getattr(args, "to", None):
        body["to"] = args.to
    if getattr(args, "team", None):
        body["team"] = args.team
    if args.api == "hand_over" and "to" not in body:
        return err("handover needs --to NAME")
    if args.api == "assign" and not ("to" in body or "team" in body):
        return err("assign needs --to NAME or --team TEAM")
    try:
        t, _ = call(cfg, "POST", f"/tickets/{args.id}/{args.api}", body, user=who.removeprefix("user:"))
    except CallError as e:
        return err(e.message)
    print(f"ticket {t['id']}: owner {t.get('owner') or '-'}, team {t.get('team') or '-'}")
    return 0


def _cmd_oncall(args: argparse.Namespace) -> int:
    import time

    from gateway.config import build_staffing

    cfg = load(args.config)
    staffing = build_staffing(cfg)
    now = time.time()
    rows = [{"team": t.name, "lead": t.lead, "on_call": t.on_call(now), "members": ", ".join(t.members)}
            for t in staffing.teams]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif not rows:
        print("no teams configured ([[teams]] in the config)")
    else:
        from gateway.core.views import table

        print(table(rows, ["team", "lead", "on_call", "members"]))
    return 0
