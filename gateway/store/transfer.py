"""Copy a SQLite store's whole history into an empty PostgreSQL store (``gateway migrate
--from-sqlite``).

The copy is generic: every table of the SQLite schema (brought to the newest version on a
snapshot, never on the file itself) is copied column by column into the table of the same
name, in one PostgreSQL transaction, with ``COPY``. Ids are kept; the identity sequences
continue after the largest id SQLite ever handed out (``sqlite_sequence``), so no id is
reused. A target holding any row is refused before anything is written.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql

from gateway.errors import StoreError
from gateway.store.postgresql import PostgresStore
from gateway.store.sqlite import SqliteStore

__all__ = ["CopyReport", "copy_sqlite_to_postgresql", "nonempty_tables", "sqlite_tables"]


@dataclass(frozen=True, slots=True)
class CopyReport:
    #: Rows copied per table, in copy order.
    rows: dict[str, int]
    schema_version: int


def sqlite_tables(db: sqlite3.Connection) -> list[str]:
    rows = db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    return [str(r[0]) for r in rows]


def nonempty_tables(target: PostgresStore, tables: list[str]) -> dict[str, int]:
    """Row counts of the target's tables that hold rows."""
    out: dict[str, int] = {}
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        for t in tables:
            n = conn.execute(pgsql.SQL("SELECT COUNT(*) FROM {}").format(pgsql.Identifier(t))).fetchone()
            if n and n[0]:
                out[t] = int(n[0])
    return out


def _snapshot(source: Path, into: Path) -> None:
    """A consistent copy of a (possibly live) SQLite store, through the backup API."""
    try:
        src = sqlite3.connect(f"file:{source.resolve()}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error as e:
        raise StoreError(f"{source}: {e}") from e
    try:
        dst = sqlite3.connect(into)
        try:
            src.backup(dst)
        finally:
            dst.close()
    except sqlite3.Error as e:
        raise StoreError(f"{source}: cannot read it as a SQLite store: {e}") from e
    finally:
        src.close()


def copy_sqlite_to_postgresql(source: Path, target: PostgresStore) -> CopyReport:
    """Copy everything; raises StoreError (nothing written) when the target is not empty,
    the schemas differ or the copy fails."""
    if not source.is_file():
        raise StoreError(f"{source}: no such file")
    tmp = Path(tempfile.mkdtemp(prefix="gateway-migrate-"))
    try:
        snap = tmp / "gateway.db"
        _snapshot(source, snap)
        SqliteStore(snap).close()  # the snapshot at the newest schema, as PostgreSQL is
        src = sqlite3.connect(snap)
        try:
            return _copy(src, target, str(source))
        finally:
            src.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy(src: sqlite3.Connection, target: PostgresStore, name: str) -> CopyReport:
    tables = sqlite_tables(src)
    busy = nonempty_tables(target, tables)
    if busy:
        held = ", ".join(f"{n} {t}" for t, n in sorted(busy.items()))
        raise StoreError(f"{target.name} is not empty ({held}); gateway migrate only fills an empty store")
    sequences = {str(r[0]): int(r[1]) for r in src.execute("SELECT name, seq FROM sqlite_sequence")} if _has_seq(src) else {}
    counts: dict[str, int] = {}
    try:
        with psycopg.connect(target.conninfo, autocommit=True) as conn, conn.transaction():
            for t in tables:
                cols = [str(c[1]) for c in src.execute(f'PRAGMA table_info("{t}")')]
                pg_cols = [str(r[0]) for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                    "AND table_name = %s ORDER BY ordinal_position", (t,)).fetchall()]
                if sorted(pg_cols) != sorted(cols):
                    raise StoreError(
                        f"{name}: table {t} has columns {cols}, the PostgreSQL store {pg_cols}; "
                        "both gateways must be the same release"
                    )
                n = 0
                copy_sql = pgsql.SQL("COPY {} ({}) FROM STDIN").format(
                    pgsql.Identifier(t), pgsql.SQL(",").join(pgsql.Identifier(c) for c in cols)
                )
                col_sql = ",".join(f'"{c}"' for c in cols)
                with conn.cursor().copy(copy_sql) as cp:
                    for row in src.execute(f'SELECT {col_sql} FROM "{t}" ORDER BY rowid'):
                        cp.write_row(row)
                        n += 1
                counts[t] = n
                if "id" in cols:
                    _continue_identity(conn, t, sequences.get(t, 0))
    except sqlite3.Error as e:
        raise StoreError(f"{name}: {e}") from e
    except psycopg.Error as e:
        raise StoreError(f"{target.name}: copy failed, nothing was written: {str(e).splitlines()[0]}") from e
    return CopyReport(rows=counts, schema_version=target.schema_version())


def _has_seq(src: sqlite3.Connection) -> bool:
    return src.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone() is not None


def _continue_identity(conn: psycopg.Connection[Any], table: str, sqlite_seq: int) -> None:
    """An identity column continues after the largest id ever used (SQLite's AUTOINCREMENT
    never reuses the id of a deleted row; neither does the copy)."""
    seq = conn.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,)).fetchone()
    if not seq or not seq[0]:
        return  # ids assigned by the writer (alarms, tickets): nothing to continue
    top = conn.execute(pgsql.SQL("SELECT COALESCE(MAX(id), 0) FROM {}").format(pgsql.Identifier(table))).fetchone()
    last = max(int(top[0]) if top else 0, sqlite_seq)
    if last > 0:
        conn.execute("SELECT setval(%s, %s, true)", (seq[0], last))
