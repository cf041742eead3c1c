"""Store faults: a database locked by another process, and a disk that fills up (an error
injected at the store seam). The gateway says so loudly, holds events in bounded memory,
retries, and commits everything once the store works again — without corrupting it."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.errors import StoreError
from tests.fixtures import traps
from tests.fixtures.netsnmp import LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import base_config, committed, eventually

#: Holds an exclusive lock on the database until told to let go (a line or EOF on stdin).
HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


async def test_database_locked_by_another_process(tmp_path: Path, netsnmp: NetSnmp, caplog: pytest.LogCaptureFixture) -> None:
    port = free_udp_port()
    cfg = config_from_dict(base_config(tmp_path / "var", port), "t.toml", str(tmp_path))
    caplog.set_level(logging.ERROR, logger="gateway.pipeline")
    async with Gateway(cfg) as gw:
        db = str(gw.store.path)
        locker = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, db], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert locker.stdin is not None and locker.stdout is not None
        try:
            assert locker.stdout.readline().strip() == "locked"
            for i in range(20):
                await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(1 + i % 2))
            # Held until the gateway has found the store locked and is retrying, then let go.
            await eventually(lambda: not gw.pipeline.healthy, timeout=15)
            assert "store commit failed" in caplog.text and "locked" in caplog.text
        finally:
            locker.stdin.close()  # EOF: the locker commits and exits
            locker.wait(30)
            locker.stdout.close()
        await eventually(lambda: gw.pipeline.healthy, timeout=15)
        await eventually(lambda: sum(a["count"] for a in gw.store.list_alarms()) == 20, timeout=10)
        assert len(gw.store.list_tickets()) == 2
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


class _FullDisk:
    """Wraps the real store and fails ``commit`` like a full disk while ``full`` is set
    (a fault injected at the store seam: filling a real filesystem needs mount rights)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.full = True
        self.failures = 0

    def commit(self, batch: object) -> None:
        if self.full:
            self.failures += 1
            raise StoreError("database or disk is full")
        self.inner.commit(batch)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_disk_full_holds_events_within_bounds_and_recovers(tmp_path: Path, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    d = base_config(tmp_path / "var", port)
    d["pipeline"] = {"queue_size": 50, "batch_max": 10}
    cfg = config_from_dict(d, "t.toml", str(tmp_path))
    async with Gateway(cfg) as gw:
        faulty = _FullDisk(gw.store)
        gw.pipeline.store = faulty  # type: ignore[assignment]
        for _i in range(5):
            await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(3))
        await eventually(lambda: faulty.failures >= 2 and not gw.pipeline.healthy)
        # While the store is down, a burst beyond the queue bound is shed and counted, never unbounded.
        from adapters.snmp import ber
        pkt = ber.encode_trap(ber.TrapMessage(ber.V2C, b"public", ber.PDU_TRAP_V2, 1, [
            ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, 1)),
            ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, LINK_DOWN)),
            ("1.3.6.1.2.1.2.2.1.1.3", 3),
        ]))
        # From a thread, a short pause every 20 datagrams, so the gateway reads them as they come.
        await asyncio.to_thread(traps.send, port, [pkt] * 200, 20)
        await eventually(lambda: gw.pipeline.stats.received >= 205, timeout=10)
        assert gw.pipeline.depth <= 50
        shed = gw.pipeline.stats.shed
        assert shed > 0
        faulty.full = False
        await eventually(lambda: gw.pipeline.healthy, timeout=15)
        await eventually(lambda: gw.pipeline.depth == 0, timeout=10)
        # Everything not shed is committed exactly once: once a marker queued behind the last
        # batch has been committed, nothing of this burst can still be on its way.
        await committed(gw.pipeline)
        [alarm] = gw.store.list_alarms()
        assert alarm["count"] == 205 - shed


async def test_ticket_and_its_outbox_row_commit_together_or_not_at_all(tmp_path: Path, netsnmp: NetSnmp) -> None:
    """A failure while writing the outbox row (a trigger in the database refuses it) must leave
    no ticket or alarm behind either: a ticket committed without its outbox row would never
    reach the help desk. Once the fault is gone, both arrive together."""
    port = free_udp_port()
    d = base_config(tmp_path / "var", port)
    d["helpdesk"] = [{"type": "webhook", "name": "hook", "url": "http://127.0.0.1:9/", "secret": "x" * 32}]
    cfg = config_from_dict(d, "t.toml", str(tmp_path))
    async with Gateway(cfg) as gw:
        db = str(gw.store.path)
        with sqlite3.connect(db) as c:
            c.execute("CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'injected'); END")

        def counts() -> tuple[int, int, int]:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as r:
                return tuple(r.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # type: ignore[return-value]
                             for t in ("alarms", "tickets", "outbox"))

        await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(3))
        await eventually(lambda: gw.pipeline.stats.store_errors >= 2, timeout=10)
        assert counts() == (0, 0, 0)  # the failed batch left nothing half-written
        with sqlite3.connect(db) as c:
            c.execute("DROP TRIGGER refuse_outbox")
        await eventually(lambda: gw.pipeline.healthy, timeout=15)
        alarms, tickets, outbox = counts()
        assert (alarms, tickets) == (1, 1) and outbox >= 1
