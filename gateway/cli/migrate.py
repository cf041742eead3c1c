"""``gateway migrate --from-sqlite FILE``: move a standalone gateway's history (alarms,
tickets with their clocks, timelines, outbox, help-desk links, maintenance, delivery keys,
meta) into the PostgreSQL store the config names."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.cli.common import err, load

__all__ = ["register"]


def cmd_migrate(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    if cfg.store.backend != "postgresql":
        return err(f'{cfg.source}: store.backend: gateway migrate copies into PostgreSQL; set backend = "postgresql" and a dsn')
    from gateway.runtime.stores import open_store
    from gateway.store.postgresql import PostgresStore
    from gateway.store.transfer import copy_sqlite_to_postgresql

    source = Path(args.from_sqlite)
    if not source.is_file():
        return err(f"{source}: no such SQLite store")
    target = open_store(cfg, pool_size=1)
    try:
        assert isinstance(target, PostgresStore)
        report = copy_sqlite_to_postgresql(source, target)
    finally:
        target.close()
    total = sum(report.rows.values())
    per = ", ".join(f"{n} {t}" for t, n in report.rows.items())
    print(f"copied {total} rows from {source} into {target.name} (schema {report.schema_version}): {per}")
    return 0


def register(sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    m = with_config(sub.add_parser(
        "migrate", help="copy a standalone (SQLite) gateway's whole history into the configured PostgreSQL store",
    ))
    m.add_argument("--from-sqlite", required=True, metavar="FILE", help="the SQLite store (e.g. var/gateway.db)")
    m.set_defaults(func=cmd_migrate)
