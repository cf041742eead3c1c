"""PostgreSQL store (psycopg 3 + psycopg-pool): the shared SQL of :mod:`gateway.store.sql`
on a pool of connections, one transaction per batch.

Connections run in autocommit; every write is an explicit transaction (``_write``), every
read a single statement, so a read sees committed batches only. ``executemany`` of a batch
goes through libpq's pipeline mode (one round trip for the rows, not one per row).
Migrations (:mod:`gateway.store.migrations.postgresql`) run under a transaction-level
advisory lock, so any number of gateways opening one database migrate it once. With a
``schema``, everything lives in that schema (created on first open) instead of ``public``.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from gateway import failpoints
from gateway.errors import StoreError
from gateway.store import Store
from gateway.store.lease import Lease
from gateway.store.migrations import Migration, newer_schema_message, pending
from gateway.store.migrations.postgresql import LATEST, MIGRATIONS
from gateway.store.sql import Dialect, SqlStore

__all__ = ["SCHEMA_VERSION", "PostgresStore", "describe_dsn", "pg_sql"]

#: The schema version this code writes (the newest migration).
SCHEMA_VERSION = LATEST

_T = TypeVar("_T")

# The pool logs every failed reconnection (several lines each) while the server is down;
# the pipeline reports a store outage once, on /healthz and in one log line per change.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS gateway_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
)


@functools.lru_cache(maxsize=1024)
def pg_sql(sql: str) -> str:
    """The shared SQL's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


@functools.lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[tuple[Any, ...]]:
    index = {n: i for i, n in enumerate(names)}

    class Row(tuple[Any, ...]):
        """A result row read by position or by column name (as ``sqlite3.Row``)."""

        __slots__ = ()

        def __getitem__(self, k: Any) -> Any:
            return tuple.__getitem__(self, index[k] if isinstance(k, str) else k)

        def keys(self) -> list[str]:
            return list(names)

    return Row


def _row_factory(cursor: Any) -> Any:
    desc = cursor.description
    return tuple if desc is None else _row_class(tuple(c.name for c in desc))


def describe_dsn(dsn: str, schema: str | None = None) -> str:
    """``postgresql://host:port/dbname[#schema]`` for messages: never the password."""
    try:
        d = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql://(unparsable dsn)"
    host = d.get("host") or d.get("hostaddr") or "localhost"
    out = f"postgresql://{host}:{d.get('port') or 5432}/{d.get('dbname') or d.get('user') or ''}"
    return f"{out}#{schema}" if schema else out


class _Tx:
    """The shared SQL's view of a transaction on one connection."""

    __slots__ = ("_conn", "_types")

    def __init__(self, conn: psycopg.Connection[Any], types: dict[str, dict[str, str]]) -> None:
        self._conn = conn
        self._types = types

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._conn.execute(pg_sql(sql), tuple(args))

    def executemany(self, sql: str, rows: Any) -> Any:
        """A batch of ``INSERT … VALUES (?, …)`` rows as ONE statement over column arrays
        (``INSERT … SELECT * FROM unnest(%s::type[], …)``): one round trip, a short query
        text that is parsed and prepared once, instead of a statement per row. An upsert
        may not touch a row twice in one statement, so repeated conflict keys keep the
        last row (as row-by-row upserts would). Other statements: plain ``executemany``."""
        rows = list(rows)
        cur = self._conn.cursor()
        multi = _insert_parts(sql)
        if multi is None or not rows:
            cur.executemany(pg_sql(sql), rows)
            return cur
        table, cols, tail, key = multi
        if key is not None:
            rows = list({tuple(r[i] for i in key): r for r in rows}.values())
        types = self._column_types(table)
        casts = [types[c] for c in cols]
        columns = [[_as(casts[j], r[j]) for r in rows] for j in range(len(cols))]
        arrays = ",".join(f"%b::{t}[]" for t in casts)  # binary: no text escaping of each element
        query = f"INSERT INTO {table}({','.join(cols)}) SELECT * FROM unnest({arrays}){pg_sql(tail)}"
        cur.execute(query, columns)
        return cur

    def _column_types(self, table: str) -> dict[str, str]:
        got = self._types.get(table)
        if got is None:
            rows = self._conn.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped", (table,)
            ).fetchall()
            got = self._types[table] = {str(r[0]): str(r[1]) for r in rows}
        return got


def _as(pg_type: str, v: Any) -> Any:
    """A value as the Python type of its column (an array must not mix int and float)."""
    if v is None:
        return None
    if pg_type == "double precision":
        return float(v)
    if pg_type in ("bigint", "integer", "smallint"):
        return int(v)
    return v


_INSERT = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<table>\w+)\s*\((?P<cols>[^)]*)\)\s*VALUES\s*\((?P<group>[^)]*)\)(?P<tail>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_CONFLICT = re.compile(r"ON\s+CONFLICT\s*\((?P<key>[^)]*)\)\s*DO\s+UPDATE", re.IGNORECASE)


@functools.lru_cache(maxsize=256)
def _insert_parts(sql: str) -> tuple[str, tuple[str, ...], str, tuple[int, ...] | None] | None:
    """(table, columns, tail, positions of the upsert's conflict key) of a single-row
    ``INSERT INTO t(cols) VALUES (?, …)`` whose values are all placeholders; else None."""
    m = _INSERT.match(sql)
    if m is None or "?" in m.group("tail"):
        return None
    cols = tuple(c.strip().strip('"') for c in m.group("cols").split(","))
    if [g.strip() for g in m.group("group").split(",")] != ["?"] * len(cols):
        return None
    key = None
    c = _CONFLICT.search(m.group("tail"))
    if c is not None:
        names = [k.strip().strip('"') for k in c.group("key").split(",")]
        if not all(n in cols for n in names):
            return None
        key = tuple(cols.index(n) for n in names)
    return m.group("table"), cols, m.group("tail"), key


class PostgresStore(SqlStore):
    """The PostgreSQL backend (implements :class:`gateway.store.Store`).

    ``readonly=True`` opens read-only sessions (``default_transaction_read_only``) and never
    migrates. A store written by a newer gateway is refused either way. ``pool_size``
    bounds the connections (the pipeline's writer, the outbox worker, API readers).
    """

    dialect = Dialect("postgresql", lock_skip=" FOR UPDATE OF o SKIP LOCKED")

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        password: str | None = None,
        readonly: bool = False,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        self.name = describe_dsn(dsn, schema)
        self.schema = schema
        #: Column types by table (the batch INSERTs cast their arrays to them).
        self._types: dict[str, dict[str, str]] = {}
        #: Set by an HA gateway: every write transaction checks the leader lease first.
        self.fence: Lease | None = None
        self.readonly = readonly
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error as e:
            raise StoreError(f"{self.name}: {e}") from e
        options = [str(params.pop("options", "") or "")]
        if schema:
            options.append(f"-c search_path={schema}")
        if readonly:
            options.append("-c default_transaction_read_only=on")
        if password is not None:
            params["password"] = password
        params.setdefault("connect_timeout", max(1, int(connect_timeout)))
        params.setdefault("application_name", "gateway")
        self._conninfo = make_conninfo("", **params, options=" ".join(o for o in options if o))
        self._closed = threading.Event()
        try:
            with psycopg.connect(self._conninfo, autocommit=True) as conn:
                if readonly:
                    self._refuse_newer(self._read_version(conn))
                else:
                    self._migrate(conn, MIGRATIONS)
        except psycopg.Error as e:
            raise StoreError(f"{self.name}: {_one_line(e)}") from e
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"autocommit": True, "row_factory": _row_factory},
            timeout=connect_timeout,
            open=False,
            name="gateway-store",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except psycopg.Error as e:
            self._pool.close()
            raise StoreError(f"{self.name}: {_one_line(e)}") from e

    @classmethod
    def exists(cls, dsn: str, *, schema: str | None = None, password: str | None = None) -> bool:
        """Whether a gateway store (its version table) is there. Raises StoreError when the
        server cannot be reached."""
        kw: dict[str, Any] = {"autocommit": True, "connect_timeout": 10}
        if password is not None:
            kw["password"] = password
        if schema:
            kw["options"] = f"-c search_path={schema}"
        try:
            with psycopg.connect(dsn, **kw) as conn:
                return cls._read_version(conn) > 0
        except psycopg.Error as e:
            raise StoreError(f"{describe_dsn(dsn, schema)}: {_one_line(e)}") from e

    @property
    def conninfo(self) -> str:
        """The connection string this store uses (schema and read-only options included)."""
        return self._conninfo

    # -- schema ---------------------------------------------------------------------------
    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.name}: {newer_schema_message(version, SCHEMA_VERSION)}")

    @staticmethod
    def _read_version(conn: psycopg.Connection[Any]) -> int:
        row = conn.execute("SELECT to_regclass('gateway_schema') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return 0
        got = conn.execute("SELECT version FROM gateway_schema WHERE id = 1").fetchone()
        return int(got[0]) if got else 0

    def _migrate(self, conn: psycopg.Connection[Any], migrations: Sequence[Migration]) -> None:
        """Apply what the store lacks, all in one transaction with the version bump, under
        an advisory lock: concurrent openers wait, then find the store current."""
        lock = zlib.crc32(f"gateway.migrate:{self.schema or ''}".encode())
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            if self.schema:
                conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(self.schema)))
            conn.execute(_VERSION_TABLE)
            current = self._read_version(conn)
            self._refuse_newer(current)
            todo = pending(migrations, current)
            for m in todo:
                try:
                    with conn.transaction():  # a savepoint: names the failing step
                        conn.execute(m.sql.encode())
                except psycopg.Error as e:
                    raise StoreError(
                        f"{self.name}: migration {m.version} ({m.name}) failed: {_one_line(e)}; the store is unchanged"
                    ) from e
            if todo:
                conn.execute(
                    "INSERT INTO gateway_schema(id, version) VALUES (1, %s) "
                    "ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                    (todo[-1].version,),
                )

    def schema_version(self) -> int:
        try:
            with self._pool.connection() as conn:
                return self._read_version(conn)
        except psycopg.Error as e:
            raise StoreError(f"{self.name}: {_one_line(e)}") from e

    # -- plumbing -------------------------------------------------------------------------
    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            with self._pool.connection() as conn:
                return conn.execute(pg_sql(sql), tuple(args)).fetchall()
        except psycopg.Error as e:
            raise StoreError(f"{self.name}: {_one_line(e)}") from e

    def _write(self, fn: Callable[[Any], _T], what: str = "") -> _T:
        """Run ``fn`` in one transaction: committed if it returns, rolled back if anything
        raises. Database errors and armed failpoints become ``StoreError``. With a
        ``fence`` (HA), the transaction first proves this instance holds the leader lease
        (:class:`~gateway.store.lease.FencedError` otherwise, nothing written)."""
        fence = self.fence
        try:
            with self._pool.connection() as conn, conn.transaction():
                if fence is not None:
                    fence.fence(conn.execute, self.name)
                return fn(_Tx(conn, self._types))
        except (psycopg.Error, failpoints.FailpointError) as e:
            raise StoreError(f"{self.name}: {what}{_one_line(e)}") from e

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._pool.close()


def _one_line(e: BaseException) -> str:
    """A driver message on one line (PostgreSQL adds DETAIL/HINT/LINE lines)."""
    return " ".join(str(e).split("\n")[0].split()) or type(e).__name__


if TYPE_CHECKING:

    def _implements_store(s: PostgresStore) -> Store:
        return s  # mypy checks here that PostgresStore implements the whole protocol
