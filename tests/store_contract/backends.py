"""The backends the contract suite runs against, one factory each (Django's backend test
suite in small): a new backend joins by adding a :class:`Backend` to :data:`BACKENDS` and
passing every test, skipping only what its ``features`` say it lacks.

Features:
    ``readonly_open``: the store can be opened read-only (``readonly=True``).
    ``legacy_sqlite``: stores written by releases before numbered migrations exist
        (``fixtures/legacy_*.sql``) and must be upgraded in place.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.store import Store
from gateway.store.sqlite import SqliteStore

__all__ = ["BACKENDS", "Backend"]


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
    features=frozenset({"readonly_open", "legacy_sqlite"}),
    location=lambda tmp: str(tmp / "gateway.db"),
    open=_sqlite_open,
    force_schema_version=_sqlite_force_version,
    refuse_inserts=_sqlite_refuse_inserts,
)

#: Every backend the suite runs against (PostgreSQL joins here).
BACKENDS: dict[str, Backend] = {b.name: b for b in (SQLITE,)}
