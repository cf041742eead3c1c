"""Schema migrations: numbered, forward-only steps each backend applies at open.

A backend keeps its own list (``migrations/sqlite.py``; a PostgreSQL list will sit beside
it) because DDL differs between databases; the numbering is shared: version ``N`` means
the same tables and columns on every backend, so one contract suite checks them all.

Rules for adding a migration:

* Append ``Migration(N + 1, "what_it_does", sql)``; never edit or renumber a released one
  (a database that ran it will not run it again).
* The whole sequence from the store's version to the newest runs in ONE transaction with
  the version bump: a failure leaves the store exactly as it was.
* A store whose version is newer than the code is refused (:func:`newer_schema_message`):
  the gateway cannot know what a later migration changed. There are no down-migrations;
  a downgrade restores a backup.
* Add a fixture database made by the release before the change under
  ``tests/store_contract/fixtures/`` and a starting point in ``test_migrations.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Migration", "check_sequence", "newer_schema_message", "pending"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step: run ``sql`` to go from version ``version - 1`` to ``version``."""

    version: int
    name: str
    sql: str


def check_sequence(migrations: Sequence[Migration]) -> int:
    """Check that versions run 1, 2, 3, ... without gaps; return the newest (0 if none)."""
    for i, m in enumerate(migrations, start=1):
        if m.version != i:
            raise ValueError(f"migration {m.name!r} is numbered {m.version}, expected {i}")
    return len(migrations)


def pending(migrations: Sequence[Migration], current: int) -> list[Migration]:
    """The migrations a store at version ``current`` still needs, in order."""
    return [m for m in migrations if m.version > current]


def newer_schema_message(found: int, known: int) -> str:
    """The one line that refuses a store written by a newer gateway."""
    return f"store schema {found} is newer than this gateway ({known}); upgrade the gateway"
