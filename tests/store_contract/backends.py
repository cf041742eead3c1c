"""The backends the contract suite runs against, one factory each (Django's backend test
suite in small): a new backend joins by adding a :class:`Backend` to :data:`BACKENDS` and
passing every test, skipping only what its ``features`` say it lacks.

Features:
    ``readonly_open``: the store can be opened read-only (``readonly=True``).
    ``forward_queue``: the edge's forward queue (migration 9).
    ``legacy_sqlite``: stores written by releases before numbered migrations exist
        (``fixtures/legacy_*.sql``) and must be upgraded in place.

PostgreSQL: each test gets its own schema (``t_<random>``) in the database named by
``GATEWAY_TEST_PG_DSN`` (``scripts/test`` sets it: the server at 127.0.0.1:5432, or a
private cluster it starts); the schema is dropped after the test. Without the variable the
suite tries 127.0.0.1:5432 and skips the PostgreSQL runs if nothing answers there.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.store import Store
from gateway.store.sqlite import SqliteStore

__all__ = ["BACKENDS", "Backend", "pg_dsn", "pg_schema"]


@dataclass(frozen=True)
class Backend:
    """How to make, open and poke at one kind of store.

    Attributes:
        name: The parameter id (``store[sqlite]``).
        features: Optional abilities (see the module docstring).
        location: A fresh, empty store location inside a per-test directory.
        open: Open (creating/migrating as the daemon does) the store at a location;
            ``readonly=True`` where the backend has ``readonly_open``.
        force_schema_version: Write a schema version directly, behind the store's back
            (to play a store left by a newer gateway).
        refuse_inserts: A context in which the database itself refuses inserts into one
            table (a trigger): a failure in the middle of a batch, below the store code.
    """

    name: str
    features: frozenset[str]
    location: Callable[[Path], str]
    open: Callable[..., Store]
    force_schema_version: Callable[[str, int], None]
    refuse_inserts: Callable[[str, str], ContextManager[None]]
    #: Remove what ``location`` made outside the test's directory (after the test).
    drop: Callable[[str], None] = lambda location: None

    def require(self, feature: str) -> None:
        if feature not in self.features:
            pytest.skip(f"{self.name} store has no {feature}")


# -- SQLite ----------------------------------------------------------------------------------
def _sqlite_open(location: str, *, readonly: bool = False) -> Store:
    return SqliteStore(location, readonly=readonly)


def _sqlite_force_version(location: str, version: int) -> None:
    db = sqlite3.connect(location)
    try:
        db.execute(f"PRAGMA user_version={int(version)}")
        db.commit()
    finally:
        db.close()


@contextlib.contextmanager
def _sqlite_refuse_inserts(location: str, table: str) -> Iterator[None]:
    db = sqlite3.connect(location, isolation_level=None)
    try:
        db.execute(f"CREATE TRIGGER contract_refuse BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'injected'); END")
        try:
            yield
        finally:
            db.execute("DROP TRIGGER contract_refuse")
    finally:
        db.close()


SQLITE = Backend(
    name="sqlite",
    features=frozenset({"readonly_open", "legacy_sqlite", "forward_queue"}),
    location=lambda tmp: str(tmp / "gateway.db"),
    open=_sqlite_open,
    force_schema_version=_sqlite_force_version,
    refuse_inserts=_sqlite_refuse_inserts,
)


# -- PostgreSQL ------------------------------------------------------------------------------
#: The test database (``scripts/test`` exports it; created there if missing).
_DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


@functools.cache
def pg_dsn() -> str:
    """The DSN the PostgreSQL tests use; skips the test when no server answers and none
    was configured (a configured but dead server fails instead)."""
    import psycopg

    dsn = os.environ.get("GATEWAY_TEST_PG_DSN", "")
    try:
        psycopg.connect(dsn or _DEFAULT_DSN, autocommit=True).close()
    except psycopg.Error as e:
        if dsn:
            raise
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 and GATEWAY_TEST_PG_DSN unset ({str(e).splitlines()[0]})")
    return dsn or _DEFAULT_DSN


def pg_schema(location: str) -> str:
    return location.rpartition("#")[2]


def _pg_location(_tmp: Path) -> str:
    return f"pg#t_{uuid.uuid4().hex[:16]}"


def _pg_open(location: str, *, readonly: bool = False) -> Store:
    from gateway.store.postgresql import PostgresStore

    return PostgresStore(pg_dsn(), schema=pg_schema(location), readonly=readonly)


def _pg_conn(location: str) -> object:
    import psycopg

    return psycopg.connect(pg_dsn(), autocommit=True, options=f"-c search_path={pg_schema(location)}")


def _pg_force_version(location: str, version: int) -> None:
    with _pg_conn(location) as db:  # type: ignore[attr-defined]
        db.execute("UPDATE gateway_schema SET version = %s", (int(version),))


@contextlib.contextmanager
def _pg_refuse_inserts(location: str, table: str) -> Iterator[None]:
    with _pg_conn(location) as db:  # type: ignore[attr-defined]
        db.execute("CREATE FUNCTION contract_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'injected'; END $$")
        db.execute(f"CREATE TRIGGER contract_refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION contract_refuse()")
        try:
            yield
        finally:
            db.execute(f"DROP TRIGGER contract_refuse ON {table}")
            db.execute("DROP FUNCTION contract_refuse()")


def _pg_drop(location: str) -> None:
    """Drop the test's own schema (made by this test run, never anything else)."""
    import psycopg

    schema = pg_schema(location)
    assert schema.startswith("t_")
    with psycopg.connect(pg_dsn(), autocommit=True) as db:
        # A session still holding a lock in the schema (a connection the test leaked) would
        # make DROP wait for ever: wait a while, then name it, end it and fail the test.
        db.execute("SET lock_timeout = '30s'")
        try:
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except psycopg.errors.LockNotAvailable:
            held = db.execute(
                "SELECT pid, application_name, state, left(query, 120) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid IN "
                "(SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s)", (schema,)).fetchall()
            for pid, *_ in held:
                db.execute("SELECT pg_terminate_backend(%s)", (pid,))
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            raise AssertionError(f"sessions still held locks in {schema} after the test: {held}") from None


POSTGRESQL = Backend(
    name="postgresql",
    features=frozenset({"readonly_open", "forward_queue"}),
    location=_pg_location,
    open=_pg_open,
    force_schema_version=_pg_force_version,
    refuse_inserts=_pg_refuse_inserts,
    drop=_pg_drop,
)

#: Every backend the suite runs against.
BACKENDS: dict[str, Backend] = {b.name: b for b in (SQLITE, POSTGRESQL)}
