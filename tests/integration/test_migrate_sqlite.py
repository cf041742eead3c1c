"""``gateway migrate --from-sqlite``: a standalone gateway's whole history moves into an
empty PostgreSQL store (real server, the CLI as a user runs it): every table compared row
by row, ids continue without reuse, a paused ticket's clocks run on where they stopped,
and a store that already holds data is refused with one line."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.core.calendars import default_calendars
from gateway.core.sla import SlaClock
from gateway.store import BatchWrite, OutboxRow, StoreReader
from gateway.store.postgresql import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.helpers import base_config, write_config
from tests.store_contract import samples as s
from tests.store_contract.backends import POSTGRESQL, pg_dsn, pg_schema

T0 = s.T0
CAL = default_calendars()["24x7"]


def _history(path: Path) -> None:
    """Every kind of row a standalone gateway keeps, with a paused ticket (id 2)."""
    st = SqliteStore(path)
    try:
        paused = s.ticket(2, alarm_id=2)
        paused.clocks = [SlaClock(kind="response", target=3600.0, calendar="24x7", started_at=T0, due_at=T0 + 3600,
                                  run_since=T0), SlaClock(kind="restore", target=7200.0, calendar="24x7", started_at=T0,
                                                          due_at=T0 + 7200, run_since=T0)]
        for c in paused.clocks:
            assert c.pause(T0 + 100, CAL)
        paused.paused, paused.pauses = True, [[T0 + 100, None]]
        st.commit(BatchWrite(
            alarms=[s.alarm(1, ticket_id=1), s.stateful_alarm(2), s.alarm(3, state="cleared", cleared_at=T0 + 50)],
            tickets=[s.ticket(1), paused, s.ticket(3, alarm_id=3, status="closed", closed_at=T0 + 60)],
            timeline=[s.entry(1, T0, "opened"), s.entry(2, T0, "opened"), s.entry(2, T0 + 100, "paused", "waiting on site"),
                      s.entry(3, T0 + 60, "close", "fixed ü")],
            outbox=[OutboxRow("desk", t, f"gw-t{t}-{k}", k, {"id": t, "k": k}) for t in (1, 2, 3) for k in ("open", "update")],
            meta={"sync.since.desk": str(T0)},
            delivery_keys=[("inform-a", T0), ("mqtt-b", T0 + 5.25)],
        ))
        due = st.outbox_claim(T0, 60.0)
        st.outbox_delivered(due[0]["id"], T0 + 1, "HD-1", "desk", 1, due[0]["key"])
        st.outbox_failed(due[1]["id"], "HTTP 400: bad queue")
        st.outbox_retry_later(due[2]["id"], T0 + 30, "timeout")
        st.save_maintenance(s.window("mw-1", T0, T0 + 3600))
        # The tables later releases added: people, inventory, planned work, service records.
        st.save_user({"name": "li.wei", "role": "operator", "password_hash": "scrypt$x", "created_at": T0})
        st.add_user_token("li.wei", "script", "d" * 64, T0)
        st.add_session("e" * 64, "li.wei", T0, T0 + 3600)
        st.save_devices([{"device": "sw-9", "action": "add", "data": {"id": "sw-9", "class": "network.switch"}}],
                        "ops:li", T0)
        st.insert_planned([{"id": "p/insp:sw-9:2026-01-31", "schedule": "insp", "contract": "p", "device": "sw-9",
                            "kind": "inspection", "due": T0, "deadline": T0 + 86400, "status": "planned"}])
        st.add_service_record({"device": "sw-9", "ticket_id": 1, "kind": "spare_requested", "ts": T0, "actor": "li"})
    finally:
        st.close()
    db = sqlite3.connect(path)  # a deleted outbox row: its id must never come back
    db.execute("INSERT INTO outbox(connector,ticket_id,key,kind,payload,created_at) VALUES('x',9,'k','open','{}',0)")
    db.execute("DELETE FROM outbox WHERE connector='x'")
    db.commit()
    db.close()


def _sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        out = {}
        for t in tables:
            cols = [c[1] for c in db.execute(f'PRAGMA table_info("{t}")')]
            out[t] = [tuple(r) for r in db.execute(f'SELECT {",".join(chr(34) + c + chr(34) for c in cols)} FROM "{t}" '
                                                    f'ORDER BY {",".join(chr(34) + c + chr(34) for c in cols)}')]
        return out
    finally:
        db.close()


def _pg_rows(location: str, tables: list[str], path: Path) -> dict[str, list[tuple[Any, ...]]]:
    lite = sqlite3.connect(path)
    out = {}
    with psycopg.connect(pg_dsn(), autocommit=True, options=f"-c search_path={pg_schema(location)}") as db:
        for t in tables:
            cols = ",".join(f'"{c[1]}"' for c in lite.execute(f'PRAGMA table_info("{t}")'))
            out[t] = [tuple(r) for r in db.execute(f'SELECT {cols} FROM "{t}" ORDER BY {cols}')]
    lite.close()
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-6)
    return bool(a == b)


def _reader_view(st: StoreReader) -> dict[str, Any]:
    return {
        "alarms": st.list_alarms(limit=100), "tickets": st.list_tickets(limit=100),
        "timeline": {t: st.timeline(t) for t in (1, 2, 3)}, "outbox": st.outbox_list(limit=100),
        "links": st.remote_links("desk"), "maintenance": st.list_maintenance(), "keys": st.load_delivery_keys(0.0),
        "meta": st.get_meta("sync.since.desk"), "next_ids": st.next_ids(), "open": [t.to_dict() for t in st.load_open_tickets()],
    }


@pytest.fixture
def pg_location(tmp_path: Path) -> Any:
    loc = POSTGRESQL.location(tmp_path)
    yield loc
    POSTGRESQL.drop(loc)


def _migrate(cfg: Path, source: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "migrate", "--from-sqlite", str(source), "-c", str(cfg)],
                          capture_output=True, text=True, timeout=120)


def test_the_whole_history_moves_and_a_paused_ticket_runs_on(tmp_path: Path, pg_location: str) -> None:
    source = tmp_path / "standalone.db"
    _history(source)
    before = _sqlite_rows(source)
    cfg = write_config(tmp_path / "pg.toml", base_config(tmp_path / "var", store={
        "backend": "postgresql", "dsn": pg_dsn(), "schema": pg_schema(pg_location)}))

    r = _migrate(cfg, source)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("copied ") and "3 alarms" in r.stdout and "7 outbox" not in r.stdout
    assert _sqlite_rows(source) == before  # the source is read, never changed

    # Every table, every row, every column.
    after = _pg_rows(pg_location, sorted(before), source)
    filled = {"alarms", "delivery_keys", "helpdesk_links", "maintenance", "meta", "outbox", "tickets", "timeline",
              "users", "user_tokens", "sessions", "ticket_owners", "devices", "device_changes", "planned_work",
              "service_records"}
    assert filled <= set(before)  # every table is copied; these hold the history made above
    for t, rows in before.items():
        assert len(after[t]) == len(rows), t
        assert rows or t not in filled, t
        for a, b in zip(rows, after[t], strict=True):
            assert all(_same(x, y) for x, y in zip(a, b, strict=True)), (t, a, b)

    lite, pg = SqliteStore(source, readonly=True), PostgresStore(pg_dsn(), schema=pg_schema(pg_location))
    try:
        assert _reader_view(pg) == _reader_view(lite)
        # The paused ticket's clocks run on from where they stopped: 100 s used of each.
        t_lite, t_pg = lite.load_ticket(2), pg.load_ticket(2)
        assert t_pg is not None and t_lite is not None and t_pg.paused and t_pg.to_dict() == t_lite.to_dict()
        for c in t_pg.clocks:
            assert c.paused and c.remaining(T0 + 5000, CAL) == c.target - 100
            assert c.resume(T0 + 1000, CAL)
            assert c.remaining(T0 + 1300, CAL) == c.target - 400
            assert c.due_at == T0 + 1000 + c.target - 100
        # The store takes writes after the move; ids continue past every id SQLite used.
        pg.commit(BatchWrite(tickets=[t_pg], outbox=[OutboxRow("desk", 2, "gw-t2-resume", "update", {})],
                             timeline=[s.entry(2, T0 + 1000, "resumed")]))
        assert pg.outbox_list(limit=1)[0]["id"] == 8  # 6 rows + one deleted id (7) in SQLite
        assert pg.timeline(2)[-1]["kind"] == "resumed" and pg.next_ids() == (4, 4)
        assert [c.remaining(T0 + 1300, CAL) for c in pg.load_ticket(2).clocks] == [3200.0, 6800.0]  # type: ignore[union-attr]
    finally:
        lite.close()
        pg.close()

    # A store holding data is refused with one line, and left as it is.
    again = _migrate(cfg, source)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.count("\n") == 1 and "is not empty (" in again.stderr and "only fills an empty store" in again.stderr
    assert len(_pg_rows(pg_location, ["outbox"], source)["outbox"]) == 7


def test_migrate_needs_a_postgresql_config_and_an_existing_file(tmp_path: Path) -> None:
    lite_cfg = write_config(tmp_path / "lite.toml", base_config(tmp_path / "var"))
    r = _migrate(lite_cfg, tmp_path / "nope.db")
    assert r.returncode == 1 and r.stderr.strip().endswith('set backend = "postgresql" and a dsn') and "store.backend" in r.stderr
    pg_cfg = write_config(tmp_path / "pg.toml", base_config(tmp_path / "var", store={
        "backend": "postgresql", "dsn": pg_dsn(), "schema": "t_never_made"}))
    r = _migrate(pg_cfg, tmp_path / "nope.db")
    assert (r.returncode, r.stderr) == (1, f"error: {tmp_path / 'nope.db'}: no such SQLite store\n")
