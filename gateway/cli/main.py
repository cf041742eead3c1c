"""The ``gateway`` command: parses arguments and calls into the app; no logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

from gateway import __version__
from gateway.cli.common import CallError, call, daemon, err, load, login, read_store
from gateway.errors import ConfigError, GatewayError

__all__ = ["main"]

DEFAULT_CONFIG = os.environ.get("GATEWAY_CONFIG", "config.toml")


def _print_config_errors(e: ConfigError) -> None:
    for problem in getattr(e, "errors", [e]):
        print(f"error: {problem}", file=sys.stderr)


_load = load


def _setup_logging(level: str, fmt: str) -> None:
    if fmt == "json":
        class _Json(logging.Formatter):
            def format(self, r: logging.LogRecord) -> str:
                d = {"ts": self.formatTime(r, "%Y-%m-%dT%H:%M:%S"), "level": r.levelname, "logger": r.name, "msg": r.getMessage()}
                if r.exc_info:
                    d["exc"] = self.formatException(r.exc_info)
                return json.dumps(d, ensure_ascii=False)

        h = logging.StreamHandler()
        h.setFormatter(_Json())
        logging.basicConfig(level=level, handlers=[h], force=True)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


# -- commands ---------------------------------------------------------------------------------
def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.rulebook import load_rules

    cfg = _load(args.config)
    engine = load_rules(cfg)
    problems, warnings = _check_environment(cfg)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if problems:
        problems[0].errors = problems  # type: ignore[attr-defined]
        raise problems[0]
    loose = _config_file_exposure(Path(args.config))  # said once the config is otherwise right
    if loose:
        print(f"warning: {loose}", file=sys.stderr)
    print(
        f"OK: {args.config}: {len(cfg.adapters.snmp)} SNMP listener(s), "
        f"{len(cfg.policies)} policies ({', '.join(cfg.policies)}), {len(cfg.devices)} devices, "
        f"{len(engine.rules)} rules from packs {', '.join(engine.packs) or '-'}"
    )
    for s in cfg.adapters.snmp:
        print(f"  snmp {s.name}: udp://{s.host}:{s.port} communities={len(s.communities)} v3 users={len(s.users)}")
    from gateway.runtime.stores import describe_store

    print(f"  store: {describe_store(cfg)}" + ("  (HA: leader lease of " f"{cfg.ha.lease:g} s)" if cfg.ha.enabled else ""))
    return 0


def _check_environment(cfg: Any) -> tuple[list[ConfigError], list[str]]:
    """What ``gateway run`` will need from this machine: a data dir it can create and write,
    and free ports. Ports held by this data dir's running daemon are only a warning."""
    import errno
    import socket

    from gateway.runtime.lock import describe_os_error

    problems: list[ConfigError] = []
    warnings: list[str] = []
    data_dir = cfg.data_path()
    why = _data_dir_problem(data_dir)
    if why:
        problems.append(ConfigError(cfg.source, "gateway.data_dir", f"{data_dir} {why}"))
    running = daemon(cfg)
    ports = [(f"adapters.snmp[{i}].port", s.host, s.port, socket.SOCK_DGRAM) for i, s in enumerate(cfg.adapters.snmp)]
    if cfg.api.enabled:
        ports.append(("api.port", cfg.api.host, cfg.api.port, socket.SOCK_STREAM))
    for key, host, port, kind in ports:
        if port == 0:
            continue
        try:
            family = socket.getaddrinfo(host or None, port, type=kind, flags=socket.AI_PASSIVE)[0][0]
            with socket.socket(family, kind) as s:
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the daemon binds it
                s.bind((host, port))
        except OSError as e:
            where = f"{host}:{port}"
            if e.errno == errno.EADDRINUSE and running is not None:
                warnings.append(f"{key}: {where} is in use by the running gateway (pid {running.pid}) of this data dir")
            elif e.errno == errno.EADDRINUSE:
                problems.append(ConfigError(cfg.source, key, f"{where} is in use by another program"))
            else:
                problems.append(ConfigError(cfg.source, key, f"cannot listen on {where}: {describe_os_error(e)}"))
    return problems, warnings


def _config_file_exposure(path: Path) -> str | None:
    """A warning when the config file (it holds every secret) is readable or writable by
    other users than its owner, or ``None``."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return None
    who = [w for w, bits in (("its group", 0o070), ("every local user", 0o007)) if mode & bits]
    if not who:
        return None
    return (f"{path} (mode {mode:04o}) can be read by {' and '.join(who)}, and it holds every secret "
            f"(API tokens, community strings, keys): make the gateway's user its owner and chmod 600 it")


def _data_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be the data dir (it is made if missing), or ``None``."""
    if path.exists():
        if not path.is_dir():
            return "is a file, not a directory"
        return None if os.access(path, os.W_OK | os.X_OK) else "is not writable"
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: {parent} is not writable"
    return None


_EARLY_HUP: list[int] = []


def _hup_while_starting(signum: int, _frame: Any) -> None:
    _EARLY_HUP.append(signum)


def cmd_run(args: argparse.Namespace) -> int:
    # A SIGHUP (``systemctl reload``) that arrives while the daemon is still starting must not
    # end it (the default action): remember it and reload once ready.
    signal.signal(signal.SIGHUP, _hup_while_starting)
    cfg = _load(args.config)
    _setup_logging(cfg.gateway.log_level, cfg.gateway.log_format)
    if args.record:
        cfg.pipeline.record = args.record
    # Young collections every 10,000 allocations, not 700: a trap or INFORM allocates dozens
    # of short-lived objects, and at 700 the collector ran every few of them and moved the
    # ones still in flight to older generations (5 % of the CPU per INFORM at 8,000/s,
    # bench/cpu_inform.py). The daemon's long-lived state is frozen once it is ready.
    gc.set_threshold(10_000, 10, 10)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    partitioned = cfg.forward.mode == "central" and cfg.forward.partitions > 1
    if args.partition is not None:
        if not partitioned or not 0 <= args.partition < cfg.forward.partitions or not args.member:
            return err(f"{cfg.source}: --partition needs a central with [forward] partitions > {args.partition} "
                       "and --member (it is how a partitioned central starts its children)")
        _partition_child(cfg, args.partition, args.member)
        return int(runner(_run(cfg, args.partition)) or 0)
    if partitioned:
        return int(runner(_supervise(cfg)) or 0)
    return int(runner(_run(cfg)) or 0)


def _partition_child(cfg: Any, partition: int, member: str) -> None:
    """A partitioned central's child (docs/scaling.md): the ordinary central for one
    partition, with a data dir of its own, no local adapters (a central's events come from
    JetStream), holding the lease as ``<member>#p<partition>:<pid>``; its API (for the
    supervisors to forward changes to) on ``[api]`` host, an ephemeral port."""
    cfg.gateway.data_dir = str(cfg.data_path(f"p{partition}"))
    cfg.api.port = 0
    for _kind, entries in cfg.adapters.by_kind():
        entries.clear()
    cfg.ha.name = f"{member}#p{partition}:{os.getpid()}"


async def _supervise(cfg: Any) -> int:
    """A partitioned central: keep this instance's share of the partitions led by children."""
    from gateway.runtime.ha import default_holder
    from gateway.runtime.partitions import PartitionSupervisor
    from gateway.runtime.stores import open_store

    log = logging.getLogger("gateway")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from gateway.store.postgresql import PostgresStore

    store = await asyncio.to_thread(open_store, cfg)  # migrates the store once, before any child
    store.close()
    assert isinstance(store, PostgresStore)  # config check: [ha] needs backend = "postgresql"
    conninfo = store.conninfo
    member = cfg.ha.name or default_holder(cfg.gateway.instance)
    sup = PartitionSupervisor(conninfo, member, cfg.forward.partitions, cfg.ha.lease, str(cfg.source))
    api = None
    if cfg.api.enabled:
        from gateway.api.partitioned import PartitionedApi

        api = PartitionedApi()
        try:
            await api.start(cfg, member, lambda: sorted(sup.mine))
        except BaseException:
            await api.stop()
            raise
    await sup.start()
    loop.add_signal_handler(signal.SIGHUP, sup.reload)  # each child reloads, as a single gateway does
    log.info("gateway ready: partition member %s of a central with %d partitions%s", member, cfg.forward.partitions,
             f", board and API on {cfg.api.host}:{cfg.api.port}" if api is not None else "")
    try:
        await stop.wait()
    finally:
        log.info("stopping: the partitions' children drain and hand over")
        await sup.stop()
        if api is not None:
            await api.stop()
    log.info("stopped")
    return 0


async def _run(cfg: Any, partition: int | None = None) -> int:
    from gateway.app import Gateway
    from gateway.runtime.ha import StoppedWhileStandby

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    gateway = Gateway(cfg, partition=partition)

    def stopping() -> None:
        stop.set()
        gateway.stop_standing_by()  # an HA standby stops at once (it has nothing to drain)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping)
    try:
        await _serve(gateway, stop, loop)
    except StoppedWhileStandby:  # a standby or a partition's child that never led
        logging.getLogger("gateway").info("stopped while standing by (waiting for the lease)")
        return 0
    logging.getLogger("gateway").info("stopped")
    return 0


async def _serve(gateway: Any, stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
    async with gateway as gw:
        reloads: set[asyncio.Task[Any]] = set()  # held until done: the loop keeps only weak references

        def reload() -> None:
            task = asyncio.ensure_future(gw.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload)
        if _EARLY_HUP:
            logging.getLogger("gateway").info("SIGHUP received while starting: reloading now")
            _EARLY_HUP.clear()
            reload()
        await stop.wait()
        logging.getLogger("gateway").info("stopping: adapters first, then the queue is drained")


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.cli.demo import run_demo

    _setup_logging(args.log_level, "text")

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await run_demo(Path(args.data_dir) if args.data_dir else None, args.port, args.speed, args.loops, stop)

    try:
        return int(asyncio.run(main()) or 0)
    except ConfigError as e:
        if e.key != "api.port":
            raise
        return err(f"the board's port {args.port} {e.problem.split(' ', 1)[1]}; choose another with --port")


def cmd_alarms(args: argparse.Namespace) -> int:
    from gateway.core.views import alarm_view, table

    cfg = _load(args.config)
    store = read_store(cfg)
    tz = cfg.gateway.timezone  # text shows local times; JSON adds *_local beside the UTC ones
    try:
        rows = [alarm_view(a, tz) for a in store.list_alarms(state=args.state, limit=args.limit)]
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(table(rows, ["id", "level", "state", "count", "device", "key", "last_seen", "ticket_id", "title"]))
    return 0


def cmd_tickets(args: argparse.Namespace) -> int:
    from gateway.core.tickets import STATUSES
    from gateway.core.views import shown, table, ticket_view

    # Checked here, not by argparse: importing the ticket model to build the parser would
    # delay every command's start (`gateway run` installs its SIGHUP handler after parsing).
    if args.status is not None and args.status not in STATUSES:
        print(f"error: gateway tickets: argument --status: invalid choice: {args.status!r} "
              f"(choose from {', '.join(STATUSES)})", file=sys.stderr)
        return 2
    cfg = _load(args.config)
    store = read_store(cfg)
    tz = cfg.gateway.timezone
    try:
        if args.owner is not None:
            found = store.find_tickets(statuses=[args.status] if args.status else None, owners=[args.owner],
                                       limit=args.limit)
        else:
            found = store.list_tickets(status=args.status, limit=args.limit)
        rows = [ticket_view(t, tz) for t in found]
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        flat = []
        for r in rows:
            due = {c["kind"]: f"{shown(c, 'due_at') or '-'} ({c['state']}{', PROVISIONAL' if c['provisional'] else ''})" for c in r["clocks"]}
            flat.append({**r, "clocks": "; ".join(f"{k}: {v}" for k, v in due.items())})
        print(table(flat, ["id", "level", "status", "owner", "device", "alarm_key", "opened_at", "clocks"]))
    return 0


def cmd_ticket_show(args: argparse.Namespace) -> int:
    from gateway.core.views import clock_line, shown, ticket_view, timeline_view

    cfg = _load(args.config)
    store = read_store(cfg)
    tz = cfg.gateway.timezone
    try:
        t = store.get_ticket(args.id)
        if t is None:
            return err(f"no ticket {args.id}")
        view = ticket_view(t, tz)
        view["timeline"] = [timeline_view(e, tz) for e in store.timeline(args.id)]
    finally:
        store.close()
    if args.json:
        print(json.dumps(view, indent=2, ensure_ascii=False))
    else:
        print(f"Ticket {view['id']}  level {view['level']} ({view['level_name']})  {view['status']}")
        print(f"  {view['title']}")
        print(f"  device {view['device']}  key {view['alarm_key'] or '-'}  policy {view['policy']}  opened {shown(view, 'opened_at')}")
        if view["origin"] != "alarm":
            print(f"  reported by {view['reported_by']} via {view['origin']}")
        if view["entered_at"]:
            print(f"  back-dated: entered {shown(view, 'entered_at')}, clocks from the report ({view['backdate_reason']})")
        if view["alarm_ids"]:
            print(f"  alarms {', '.join(str(a) for a in view['alarm_ids'])}")
        print(f"  owner {view.get('owner') or '-'}  team {view.get('team') or '-'}")
        for c in view["clocks"]:
            print(f"  clock {clock_line(c)}")
        for e in view["timeline"]:
            print(f"  {shown(e, 'ts')}  {e['actor']:<16} {e['kind']:<12} {e['note']}")
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    """Help-desk messages: list them (read-only), retry or discard a failed one (through the
    data dir's writer: the daemon, whose worker picks a retried message up, or in-process)."""
    from gateway.core.views import iso, local, table

    cfg = _load(args.config)
    if args.outbox_action in ("retry", "discard"):
        try:
            call(cfg, "POST", f"/outbox/{args.id}/{args.outbox_action}", user=login())
        except CallError as e:
            return err(e.message)
        print(f"message {args.id}: {'queued again' if args.outbox_action == 'retry' else 'discarded'}")
        return 0
    store = read_store(cfg)
    try:
        rows = store.outbox_list(state=args.state, limit=args.limit)
    finally:
        store.close()
    view = [{"id": r["id"], "connector": r["connector"], "ticket": r["ticket_id"], "kind": r["kind"], "state": r["state"],
             "attempts": r["attempts"], "created": iso(r["created_at"]),
             "created_local": local(r["created_at"], cfg.gateway.timezone), "error": (r["last_error"] or "")[:80]} for r in rows]
    print(json.dumps(view, indent=2) if args.json else table(view, ["id", "connector", "ticket", "kind", "state", "attempts", "created", "error"]))
    return 0


def cmd_edges(args: argparse.Namespace) -> int:
    """Sites and a central NOC: the edges the running central hears from, with the rule-set
    version each runs (``GET /api/v1/edges`` of the running daemon)."""
    from gateway.core.views import table

    cfg = _load(args.config)
    try:
        out, _ = call(cfg, "GET", "/edges", user=login(), offline=False)
    except CallError as e:
        return err(e.message)
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(f"{out['mode']}: rule set version {out['rules_version']}")
    rows = [{**e, "rules_error": (e.get("rules_error") or {}).get("error", "")[:60]} for e in out["edges"]]
    print(table(rows, ["edge", "site", "rules_version", "last_heartbeat", "age_s", "queued", "rules_error"]))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Write the documented example config (``config.toml``) and its ``var/`` data dir."""
    from importlib import resources

    target = Path(args.dir)
    path = target / "config.toml"
    text = resources.files("gateway").joinpath("data", "config.example.toml").read_text("utf-8")
    if path.exists():
        return err(f"{path} exists already; not overwritten (remove it, or give another directory)")
    target.mkdir(parents=True, exist_ok=True)
    # O_EXCL: never overwrite, even in a race; 0600: it will hold every secret.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    (target / "var").mkdir(mode=0o750, exist_ok=True)
    print(f"wrote {path} (every option documented) and {target / 'var'}/")
    print(f"next: gateway check-config -c {path}   then   gateway run -c {path}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (no usage block before them)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gateway", description="Device telemetry and auto-alarm gateway")
    p.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: %(default)s)")
        return sp

    r = with_config(sub.add_parser("run", help="run the gateway daemon"))
    r.add_argument("--record", default="", help="record every ingested event to this JSON-lines file")
    # A partitioned central's supervisor starts its children with these (docs/scaling.md).
    r.add_argument("--partition", type=int, default=None, help=argparse.SUPPRESS)
    r.add_argument("--member", default="", help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_run)

    with_config(sub.add_parser(
        "check-config", help="validate a config file; check the data dir can be written and the ports are free"
    )).set_defaults(func=cmd_check_config)

    it = sub.add_parser("init", help="write the documented example config (config.toml) and a var/ dir to start from")
    it.add_argument("dir", nargs="?", default=".", help="where (default: the current directory)")
    it.set_defaults(func=cmd_init)

    dm = sub.add_parser("demo", help="run the gateway with simulated devices (SNMP and MQTT); prints the board's URL")
    dm.add_argument("--port", type=int, default=8080, help="board and API port (default: %(default)s)")
    dm.add_argument("--data-dir", default="", help="where the demo's database goes (default: a new temporary directory)")
    dm.add_argument("--speed", type=float, default=1.0, help="scenario speed factor (2 = twice as fast)")
    dm.add_argument("--loops", type=int, default=None, help="stop after this many scenario loops (default: run until Ctrl-C)")
    dm.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    dm.set_defaults(func=cmd_demo)

    a = with_config(sub.add_parser("alarms", help="list alarms"))
    a.add_argument("--json", action="store_true")
    a.add_argument("--state", choices=["active", "pending", "cleared", "suppressed"])
    a.add_argument("--limit", type=int, default=1000)
    a.set_defaults(func=cmd_alarms)

    t = with_config(sub.add_parser("tickets", help="list tickets"))
    t.add_argument("--json", action="store_true")
    t.add_argument("--status", help="open, acknowledged, solution_proposed, on_site, restored or closed")
    t.add_argument("--limit", type=int, default=1000)
    t.add_argument("--owner", default=None, help="only tickets this account owns ('' = nobody owns them)")
    t.set_defaults(func=cmd_tickets)

    ed = with_config(sub.add_parser("edges", help="a central's edges: last heartbeat, backlog, rule-set version"))
    ed.add_argument("--json", action="store_true")
    ed.set_defaults(func=cmd_edges)

    ob = sub.add_parser("outbox", help="help-desk messages: list, retry or discard failed ones")
    osub = ob.add_subparsers(dest="outbox_action", required=True)
    ol = with_config(osub.add_parser("list", help="list messages (newest first)"))
    ol.add_argument("--state", choices=["pending", "sending", "delivered", "failed", "discarded"])
    ol.add_argument("--limit", type=int, default=100)
    ol.add_argument("--json", action="store_true")
    for name, text in (("retry", "queue a failed message again"), ("discard", "give up on a failed message")):
        op = with_config(osub.add_parser(name, help=text))
        op.add_argument("id", type=int)
    ob.set_defaults(func=cmd_outbox)

    tk = sub.add_parser("ticket", help="one ticket: show it or act on it")
    tsub = tk.add_subparsers(dest="action", required=True)
    show = with_config(tsub.add_parser("show", help="show a ticket with its clocks and timeline"))
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_ticket_show)

    # Commands owned by their feature modules register themselves here, in one place.
    from gateway.cli import devices as cli_devices
    from gateway.cli import migrate as cli_migrate
    from gateway.cli import people as cli_people
    from gateway.cli import rules as cli_rules
    from gateway.cli import service as cli_service
    from gateway.cli import service_report as cli_service_report
    from gateway.cli import tickets as cli_sla

    cli_devices.register(sub, with_config)
    cli_rules.register(sub, with_config)
    cli_sla.register(sub, tsub, with_config)
    cli_migrate.register(sub, with_config)
    cli_service.register(sub, tsub, with_config)
    cli_people.register(sub, tsub, with_config)
    cli_service_report.register(sub, with_config)
    return p


def main(argv: list[str] | None = None) -> int:
    # What the gateway and its commands create (store, state, recordings, config written by
    # init) is never for other local users: tighten the umask, never loosen it.
    os.umask(os.umask(0o027) | 0o027)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        _print_config_errors(e)
        return 2
    except GatewayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # words, not a bare "[Errno n]"
        what = e.strerror or str(e)
        print(f"error: {e.filename}: {what}" if e.filename else f"error: {what}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
