"""Schema versions: a new store is created at the newest version, a store written by an
earlier release is upgraded in place without losing a row, a store written by a newer
gateway is refused with one clear line, and migrations run once, all or nothing."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import StoreError
from gateway.store import BatchWrite, OutboxRow, Store
from gateway.store.migrations import Migration, check_sequence, pending
from gateway.store.migrations.sqlite import LATEST, MIGRATIONS
from gateway.store.sqlite import SqliteStore, _statements
from tests.store_contract import samples as s
from tests.store_contract.backends import Backend

T0 = s.T0
FIXTURES = Path(__file__).resolve().parent / "fixtures"
#: One dump per schema written by a release before numbered migrations (make_legacy.py).
LEGACY = sorted(FIXTURES.glob("legacy_*.sql"))


def _version_of(dump: Path) -> int:
    return int(dump.stem.split("_")[1])


def _load_dump(dump: Path, path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")  # as the releases left it
        db.executescript(dump.read_text("utf-8"))
    finally:
        db.close()


def _raw(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (sqlite_sequence included: AUTOINCREMENT ids must not be reused)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: db.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables}
    finally:
        db.close()


def _shape(path: Path) -> dict[str, Any]:
    """Tables with their columns, and indexes: what a schema version means."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        objs = db.execute("SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
        out: dict[str, Any] = {}
        for kind, name, table in objs.fetchall():
            if kind == "table":
                out[name] = [tuple(c) for c in db.execute(f'PRAGMA table_info("{name}")')]
            else:
                out[name] = (kind, table, [tuple(c) for c in db.execute(f'PRAGMA index_info("{name}")')])
        return out
    finally:
        db.close()


def _user_version(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


# -- every backend ------------------------------------------------------------------------
def test_the_migration_list_is_numbered_without_gaps() -> None:
    assert check_sequence(MIGRATIONS) == LATEST == len(MIGRATIONS)
    with pytest.raises(ValueError, match="numbered 3, expected 2"):
        check_sequence([Migration(1, "a", ""), Migration(3, "b", "")])
    assert [m.version for m in pending(MIGRATIONS, 2)] == list(range(3, LATEST + 1))
    for m in MIGRATIONS:
        assert _statements(m.sql), m.name


def test_a_store_newer_than_the_code_is_refused_with_one_clear_line(
    backend: Backend, location: str, open_store: Callable[..., Store]
) -> None:
    open_store().close()
    backend.force_schema_version(location, LATEST + 1)
    line = f"store schema {LATEST + 1} is newer than this gateway ({LATEST}); upgrade the gateway"
    with pytest.raises(StoreError) as e:
        open_store()
    assert line in str(e.value) and "\n" not in str(e.value)
    if "readonly_open" in backend.features:
        with pytest.raises(StoreError, match="upgrade the gateway"):
            open_store(readonly=True)
    backend.force_schema_version(location, LATEST)  # nothing was changed by the refusal
    assert open_store().schema_version() == LATEST


def test_opening_a_current_store_again_changes_nothing(open_store: Callable[..., Store]) -> None:
    first = open_store()
    first.commit(BatchWrite(alarms=[s.alarm(1)], tickets=[s.ticket(1)]))
    first.close()
    again = open_store()
    assert again.schema_version() == LATEST
    assert again.next_ids() == (2, 2)


def test_many_openers_of_a_new_store_migrate_it_once(backend: Backend, location: str) -> None:
    errors: list[BaseException] = []
    stores: list[Store] = []
    lock = threading.Lock()

    def opener() -> None:
        try:
            st = backend.open(location)
            with lock:
                stores.append(st)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert {st.schema_version() for st in stores} == {LATEST}
    finally:
        for st in stores:
            st.close()


# -- SQLite stores written before numbered migrations ----------------------------------------
def test_every_earlier_schema_has_a_fixture() -> None:
    """The releases before numbered migrations wrote schemas 1..4 (all as user_version 1)."""
    assert [_version_of(p) for p in LEGACY] == [1, 2, 3, 4]


@pytest.mark.parametrize("dump", LEGACY, ids=lambda p: p.stem)
def test_a_store_from_an_earlier_release_is_upgraded_in_place(dump: Path, tmp_path: Path, backend: Backend) -> None:
    backend.require("legacy_sqlite")
    version = _version_of(dump)
    path = tmp_path / "gateway.db"
    _load_dump(dump, path)
    before = _raw(path)
    assert _user_version(path) == 1  # every earlier release said 1, whatever it had

    store = SqliteStore(path)
    try:
        assert store.schema_version() == LATEST
        after = _raw(path)
        # Not a row lost or changed (columns added since are appended with their defaults).
        assert {t: [r[: len(b)] for r, b in zip(after[t], before[t], strict=True)] for t in before} == before
        # What the release wrote reads back through today's store.
        assert [a.id for a in store.load_open_alarms()] == [1, 2]
        assert [t.id for t in store.load_open_tickets()] == [1]
        assert store.load_open_tickets()[0].clocks == s.ticket(1).clocks
        closed = store.load_ticket(2)
        assert closed is not None and closed.status == "closed"
        assert [e["kind"] for e in store.timeline(2)] == ["opened", "close"]
        assert store.next_ids() == (4, 3)
        assert store.get_meta("sync.since.desk") == str(T0)
        if version >= 2:
            assert store.remote_links("desk") == {"HD-1": 1}
            assert store.outbox_counts() == {"delivered": 1, "failed": 1, "pending": 2}
            assert [(r["ticket_id"], r["kind"]) for r in store.outbox_due(T0 + 1e9)] == [(1, "update"), (2, "close")]
        else:
            assert store.outbox_counts() == {"pending": 4}
        assert [w["id"] for w in store.list_maintenance()] == (["mw-1"] if version >= 3 else [])
        assert store.load_delivery_keys(0.0) == ([("inform-a", T0), ("inform-b", T0 + 10)] if version >= 4 else [])

        # Every table, old or added by the upgrade, takes writes.
        store.commit(BatchWrite(
            alarms=[s.alarm(4)], tickets=[s.ticket(3, alarm_id=4)], timeline=[s.entry(3, T0 + 99, "opened")],
            outbox=[OutboxRow("desk", 3, "gw-t3", "open", {"id": 3})], meta={"m": "1"},
            delivery_keys=[("inform-c", T0 + 99)],
        ))
        [new] = store.outbox_list(limit=1)
        assert new["id"] == 5  # AUTOINCREMENT continues: an old id is never handed out again
        store.outbox_attempt(new["id"], T0, 60.0)
        store.outbox_delivered(new["id"], T0, "HD-3", "desk", 3, "gw-t3")
        store.save_maintenance(s.window("mw-2", T0, T0 + 60))
        assert store.next_ids() == (5, 4)
    finally:
        store.close()

    fresh = tmp_path / "fresh.db"
    SqliteStore(fresh).close()
    assert _shape(path) == _shape(fresh)  # version N means the same tables, columns and indexes
    reopened = SqliteStore(path)
    reopened.close()
    assert _user_version(path) == LATEST
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


@pytest.mark.parametrize("dump", LEGACY, ids=lambda p: p.stem)
def test_a_read_only_opening_reads_an_earlier_store_as_it_is(dump: Path, tmp_path: Path) -> None:
    """The CLI may read a store the daemon has not upgraded yet: it never migrates it;
    what the old schema lacks is an error of that query only."""
    path = tmp_path / "gateway.db"
    _load_dump(dump, path)
    before = _raw(path)
    ro = SqliteStore(path, readonly=True)
    try:
        assert ro.schema_version() == 1
        assert [a["id"] for a in ro.list_alarms()] == [3, 2, 1]
        assert ro.get_ticket(1) is not None
        if _version_of(dump) < 3:
            with pytest.raises(StoreError, match="no such table: maintenance"):
                ro.list_maintenance()
    finally:
        ro.close()
    assert _raw(path) == before and _user_version(path) == 1


def test_a_half_created_store_of_an_earlier_release_is_completed(tmp_path: Path) -> None:
    """Earlier releases created tables one autocommitted statement at a time and wrote the
    version last: a crash in between left some tables and user_version 0."""
    path = tmp_path / "gateway.db"
    db = sqlite3.connect(path, isolation_level=None)
    for stmt in _statements(MIGRATIONS[0].sql)[:4]:  # alarms with its indexes, then tickets
        db.execute(stmt)
    db.execute("INSERT INTO alarms(id,key,device,level,state,rule,title,count,first_seen,last_seen) "
               "VALUES(1,'k','d',2,'active','r','t',1,0,0)")
    db.close()
    SqliteStore(path).close()
    fresh = tmp_path / "fresh.db"
    SqliteStore(fresh).close()
    assert _shape(path) == _shape(fresh)
    assert _raw(path)["alarms"][0][:2] == (1, "k")
    assert _user_version(path) == LATEST


def test_an_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    path.write_bytes(b"")
    with_store = SqliteStore(path)
    try:
        assert with_store.schema_version() == LATEST
    finally:
        with_store.close()


# -- the migration runner, with a made-up next migration ---------------------------------------
def _with_next_migration(monkeypatch: pytest.MonkeyPatch, sql: str) -> int:
    nxt = LATEST + 1
    monkeypatch.setattr("gateway.store.sqlite.MIGRATIONS", (*MIGRATIONS, Migration(nxt, "next", sql)))
    monkeypatch.setattr("gateway.store.sqlite.SCHEMA_VERSION", nxt)
    return nxt


@pytest.mark.parametrize("dump", LEGACY, ids=lambda p: p.stem)
def test_a_column_added_by_a_later_migration_is_added_once_from_every_starting_point(
    dump: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gateway.db"
    _load_dump(dump, path)
    nxt = _with_next_migration(monkeypatch, """
        ALTER TABLE outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
        UPDATE outbox SET priority = 1 WHERE kind = 'open';
    """)
    SqliteStore(path).close()
    SqliteStore(path).close()  # not again: ADD COLUMN twice would fail
    assert _user_version(path) == nxt
    rows = _raw(path)["outbox"]
    assert len(rows) == 4 and [r[-1] for r in rows] == [1, 0, 1, 0]


def test_a_failing_migration_leaves_the_store_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gateway.db"
    _load_dump(LEGACY[0], path)
    before, shape = _raw(path), _shape(path)
    _with_next_migration(monkeypatch, """
        ALTER TABLE alarms ADD COLUMN site TEXT;
        CREATE TABLE liveness (device TEXT PRIMARY KEY, last_seen REAL NOT NULL);
        INSERT INTO no_such_table VALUES (1);
    """)
    with pytest.raises(StoreError, match=rf"migration {LATEST + 1} \(next\) failed: no such table: no_such_table"):
        SqliteStore(path)
    # Not even migrations 2-4, which ran fine before it: one transaction for the whole step.
    assert _raw(path) == before and _shape(path) == shape and _user_version(path) == 1


# -- PostgreSQL: the same numbered steps --------------------------------------------------------
def _pg_shape(location: str) -> dict[str, Any]:
    """Tables with their column names in order, and index names, of the test's schema."""
    import psycopg

    from tests.store_contract.backends import pg_dsn, pg_schema

    with psycopg.connect(pg_dsn(), autocommit=True) as db:
        cols = db.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name <> 'gateway_schema' ORDER BY table_name, ordinal_position", (pg_schema(location),)
        ).fetchall()
        idx = db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexname NOT LIKE '%%_pkey'",
                         (pg_schema(location),)).fetchall()
    out: dict[str, Any] = {}
    for table, col in cols:
        out.setdefault(table, []).append(col)
    out["indexes"] = sorted(r[0] for r in idx)
    return out


def test_postgresql_runs_the_same_numbered_migrations_as_sqlite() -> None:
    from gateway.store.migrations import postgresql as pgm

    assert [(m.version, m.name) for m in pgm.MIGRATIONS] == [(m.version, m.name) for m in MIGRATIONS]


def test_postgresql_has_the_tables_columns_and_indexes_of_sqlite(tmp_path: Path) -> None:
    """Version N means the same tables, columns (in order) and indexes on both backends."""
    from tests.store_contract.backends import POSTGRESQL

    loc = POSTGRESQL.location(tmp_path)
    try:
        POSTGRESQL.open(loc).close()
        SqliteStore(tmp_path / "fresh.db").close()
        lite = _shape(tmp_path / "fresh.db")
        want = {t: [c[1] for c in cols] for t, cols in lite.items() if isinstance(cols, list)}
        want["indexes"] = sorted(n for n, v in lite.items() if isinstance(v, tuple))
        assert _pg_shape(loc) == want
    finally:
        POSTGRESQL.drop(loc)


def test_a_failing_postgresql_migration_leaves_the_store_as_it_was(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gateway.store.migrations import postgresql as pgm
    from tests.store_contract.backends import POSTGRESQL

    loc = POSTGRESQL.location(tmp_path)
    try:
        st = POSTGRESQL.open(loc)
        st.commit(BatchWrite(alarms=[s.alarm(1)]))
        st.close()
        shape = _pg_shape(loc)
        nxt = pgm.LATEST + 1
        monkeypatch.setattr("gateway.store.postgresql.SCHEMA_VERSION", nxt)
        monkeypatch.setattr("gateway.store.postgresql.MIGRATIONS", (*pgm.MIGRATIONS, Migration(nxt, "next", """
            ALTER TABLE alarms ADD COLUMN site TEXT;
            INSERT INTO no_such_table VALUES (1);
        """)))
        with pytest.raises(StoreError, match=rf"migration {nxt} \(next\) failed: .*no_such_table.*; the store is unchanged"):
            POSTGRESQL.open(loc)
        assert _pg_shape(loc) == shape
        monkeypatch.setattr("gateway.store.postgresql.MIGRATIONS", (*pgm.MIGRATIONS, Migration(nxt, "next", """
            ALTER TABLE alarms ADD COLUMN site TEXT;
            UPDATE alarms SET site = 'hq';
        """)))
        POSTGRESQL.open(loc).close()
        again = POSTGRESQL.open(loc)  # not again: ADD COLUMN twice would fail
        assert again.schema_version() == nxt and again.list_alarms()[0]["id"] == 1
        again.close()
        assert _pg_shape(loc)["alarms"][-1] == "site"
    finally:
        POSTGRESQL.drop(loc)
