"""Opening the configured store: the SQLite file in the data dir (the default) or the
PostgreSQL database of ``[store] backend = "postgresql"``."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config import Config
from gateway.errors import ConfigError
from gateway.store import Store

__all__ = ["PASSWORD_ENV", "describe_store", "open_store", "store_exists", "store_password"]

#: The environment variable holding the PostgreSQL password when no ``password_file`` is set.
PASSWORD_ENV = "GATEWAY_STORE_PASSWORD"


def store_password(cfg: Config) -> str | None:
    """The PostgreSQL password: ``password_file``'s first line, else ``$GATEWAY_STORE_PASSWORD``,
    else ``None`` (the dsn or libpq's ``~/.pgpass`` provide it, or trust needs none)."""
    if cfg.store.password_file:
        path = cfg.resolve_path(cfg.store.password_file)
        try:
            lines = path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(cfg.source, "store.password_file", f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        return lines[0] if lines else ""
    return os.environ.get(PASSWORD_ENV) or None


def describe_store(cfg: Config) -> str:
    """Where the store is, for messages (never the password)."""
    if cfg.store.backend == "postgresql":
        from gateway.store.postgresql import describe_dsn

        return describe_dsn(cfg.store.dsn, cfg.store.db_schema or None)
    return str(Path(cfg.data_path(cfg.store.path)))


def open_store(cfg: Config, *, readonly: bool = False, pool_size: int | None = None) -> Store:
    """The configured store, migrated to the newest schema (read-write) or as it is
    (``readonly``). Raises StoreError when it cannot be opened, ConfigError for a bad
    ``password_file``."""
    if cfg.store.backend == "postgresql":
        from gateway.store.postgresql import PostgresStore

        return PostgresStore(
            cfg.store.dsn, schema=cfg.store.db_schema or None, password=store_password(cfg), readonly=readonly,
            pool_size=pool_size or cfg.store.pool_size,
        )
    from gateway.store.sqlite import SqliteStore

    path = cfg.data_path(cfg.store.path)
    return SqliteStore(path, readonly=True) if readonly else SqliteStore(path, synchronous=cfg.store.synchronous)


def store_exists(cfg: Config) -> bool:
    """Whether the gateway has created its store yet (a PostgreSQL server is asked)."""
    if cfg.store.backend != "postgresql":
        return Path(cfg.data_path(cfg.store.path)).exists()
    from gateway.store.postgresql import PostgresStore

    return PostgresStore.exists(cfg.store.dsn, schema=cfg.store.db_schema or None, password=store_password(cfg))
