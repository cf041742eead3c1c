"""kill -9 while tickets are being opened, repeatedly, and SLA clocks across a crash.

After every restart: each alarm in the database has exactly one ticket and each ticket its
alarm (an alarm and its ticket are one transaction); every deadline is the opening time plus
the contract's target on the clock's calendar, and stays what it was before the crash; a
deadline that passed while the gateway was down is recorded once, promptly, at its own
instant (time spent down counts), and later deadlines fire at their wall time."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

from gateway.core.calendars import default_calendars
from tests.fixtures import traps
from tests.fixtures.daemon import Daemon, read_db
from tests.fixtures.netsnmp import COLD_START, NetSnmp, free_udp_port
from tests.fixtures.traps import link_down
from tests.helpers import base_config, wait_until, write_config

CALENDARS = default_calendars()
#: A timer may wake this much before a deadline and record it then (gateway.core.sla's tolerance).
EPS = 1e-3


def _config(tmp_path: Path, port: int, levels: dict[str, dict[str, Any]], warn_at: list[float]) -> Path:
    """sw-1 under a test contract "fast" with short targets (24x7, on-site on working days)."""
    d = base_config(tmp_path / "var", port)
    d["policies"]["fast"] = {"calendar": "24x7", "warn_at": warn_at, "levels": levels}
    d["devices"][0]["policy"] = "fast"
    # Thousands of tickets a minute on purpose (every alarm must keep its ticket across kills):
    # the ticket circuit breaker would hold most of them back.
    d["ticket_breaker"] = {"enabled": False}
    return write_config(tmp_path / "config.toml", d)


def _read(db: Path) -> tuple[str, list[tuple[Any, ...]], list[dict[str, Any]], list[tuple[Any, ...]]]:
    """(integrity_check, alarms (id, key, count, ticket_id), tickets, SLA timeline entries)."""
    with closing(read_db(db)) as c:
        ok = c.execute("PRAGMA integrity_check").fetchone()[0]
        alarms = c.execute("SELECT id, key, count, ticket_id FROM alarms ORDER BY id").fetchall()
        tickets = [json.loads(r[0]) for r in c.execute("SELECT data FROM tickets ORDER BY id")]
        sla = c.execute("SELECT ticket_id, ts, kind, note FROM timeline WHERE kind IN ('sla_warning','sla_breach') "
                        "ORDER BY id").fetchall()
    return ok, alarms, tickets, sla


def _due_times(tickets: list[dict[str, Any]]) -> dict[tuple[int, str], float]:
    return {(t["id"], c["kind"]): c["due_at"] for t in tickets for c in t["clocks"]}


def _check_consistent(db: Path) -> tuple[dict[str, int], dict[tuple[int, str], float], list[tuple[Any, ...]]]:
    """The invariants that must hold after any crash; returns counts, deadlines, SLA entries."""
    ok, alarms, tickets, sla = _read(db)
    assert ok == "ok"
    keys = Counter(a[1] for a in alarms)
    assert all(n == 1 for n in keys.values()), f"a fault has two alarms: {[k for k, n in keys.items() if n > 1]}"
    by_alarm = {t["alarm_id"]: t for t in tickets}
    assert len(by_alarm) == len(tickets), "an alarm has two tickets"
    for alarm_id, key, _count, ticket_id in alarms:
        t = by_alarm.get(alarm_id)
        assert t is not None and ticket_id == t["id"] and t["alarm_key"] == key, f"alarm {key} without its ticket"
    assert len(tickets) == len(alarms), "a ticket without its alarm"
    for t in tickets:
        for c in t["clocks"]:
            due, _ = CALENDARS[c["calendar"]].add(t["opened_at"], c["target"])
            assert c["due_at"] == due, f"ticket {t['id']} {c['kind']}: due {c['due_at']}, contract says {due}"
    fired = Counter((tid, kind, note) for tid, _ts, kind, note in sla)
    assert all(n == 1 for n in fired.values()), f"an SLA warning or breach recorded twice: {fired.most_common(3)}"
    return {a[1]: a[2] for a in alarms}, _due_times(tickets), sla


def test_kill9_while_tickets_open_repeatedly(tmp_path: Path) -> None:
    """Four rounds of 400 new faults each arriving over about a second, killed at a random
    point; then a clean run. Responses are due 4 s after opening, so breaches fire (and are
    recorded once) across the crashes too."""
    port = free_udp_port()
    cfg = _config(tmp_path, port, {"3": {"response": "4s", "solution": "1h", "on_site": {"target": "1d", "calendar": "workdays-cn"}}}, [0.5])
    db = tmp_path / "var" / "gateway.db"
    daemon = Daemon(cfg, tmp_path / "gateway.log")
    rng = random.Random(7)
    counts: dict[str, int] = {}
    dues: dict[tuple[int, str], float] = {}
    try:
        for round_ in range(4):
            daemon.start()
            if db.exists():
                now_counts, now_dues, _ = _check_consistent(db)
                assert all(now_counts.get(k, 0) >= n for k, n in counts.items()), "a committed alarm or count was lost"
                assert {k: now_dues[k] for k in dues} == dues, "a deadline moved across the restart"
                counts, dues = now_counts, now_dues
            base = 1000 * (round_ + 1)
            sender = threading.Thread(target=traps.send, args=(port, [link_down(base + i) for i in range(400)], 20, 0.05))
            sender.start()
            time.sleep(rng.uniform(0.1, 1.0))  # why: the kill lands at a random instant while tickets open
            daemon.kill9()
            sender.join()
        daemon.start()
        now_counts, now_dues, _ = _check_consistent(db)
        assert all(now_counts.get(k, 0) >= n for k, n in counts.items())
        assert {k: now_dues[k] for k in dues} == dues
        assert len(now_counts) > len(counts) > 0  # the kills did land while faults were arriving
        # Every response deadline that has passed is breached, once, at its own instant.
        expected = {tid: d for (tid, kind), d in now_dues.items() if kind == "response"}

        def response_breaches() -> dict[int, float]:
            sla = _read(db)[3]
            return {tid: ts for tid, ts, kind, note in sla if kind == "sla_breach" and note.startswith("response")}

        wait_until(lambda: response_breaches().keys() == expected.keys(),
                   timeout=max(expected.values()) - time.time() + 10, interval=0.2)
        assert daemon.stop() == 0  # a clean stop: all the gateway recorded is in the database
        _check_consistent(db)  # ...and each recorded once
        breaches = response_breaches()
        assert breaches.keys() == expected.keys()
        assert all(abs(breaches[t] - expected[t]) <= EPS for t in expected), "a breach is dated away from its deadline"
        assert "Traceback" not in daemon.log.read_text()
    finally:
        daemon.cleanup()


def _first_seen(db: Path, entry: tuple[int, str, str], deadline: float) -> float:
    """Wall time at which ``(ticket, kind, note)`` first appears in the timeline."""
    def seen() -> bool:
        return any((tid, kind, note) == entry for tid, _ts, kind, note in _read(db)[3])

    wait_until(seen, timeout=max(0.5, deadline - time.time()), interval=0.05)
    return time.time()


def test_deadlines_keep_running_while_the_gateway_is_down(tmp_path: Path, netsnmp: NetSnmp) -> None:
    """Two tickets open, the gateway is killed at once and stays down 4 s. The level-2
    ticket's response deadline (3 s) passed meanwhile: its breach is recorded once, within
    2 s of the restart, dated at the deadline itself. The level-3 ticket (10 s, warning at
    80 %) keeps its deadline: warning at +8 s and breach at +10 s, each within a second."""
    port = free_udp_port()
    cfg = _config(tmp_path, port, {"2": {"response": "3s"}, "3": {"response": "10s"}}, [0.8])
    db = tmp_path / "var" / "gateway.db"
    daemon = Daemon(cfg, tmp_path / "gateway.log")
    try:
        daemon.start()
        assert netsnmp.trap(port, COLD_START).returncode == 0  # level 2: sw-1/restart
        traps.send(port, [link_down(5)])  # level 3: sw-1/if/5
        wait_until(lambda: len(_read(db)[2]) == 2, timeout=5, interval=0.02)
        daemon.kill9()
        _, dues, sla = _check_consistent(db)
        assert sla == []
        tickets = {t["level"]: t for t in _read(db)[2]}
        t2, t3 = tickets[2]["id"], tickets[3]["id"]
        due2, due3 = dues[(t2, "response")], dues[(t3, "response")]
        # why: the scenario: the gateway stays down until past the level-2 deadline
        time.sleep(max(0.0, due2 - time.time()) + 1.0)

        daemon.start()
        ready = time.time()
        seen = _first_seen(db, (t2, "sla_breach", "response deadline breached"), ready + 2.0)
        assert seen - ready < 2.0
        _, after, sla = _check_consistent(db)
        assert after == dues, "a deadline moved across the crash"
        assert [(ts, kind) for tid, ts, kind, _ in sla if tid == t2] == [(due2, "sla_breach")]  # the 80 % warning was passed while down

        warn3 = CALENDARS["24x7"].add(tickets[3]["opened_at"], 8.0)[0]  # 80 % of 10 s
        seen = _first_seen(db, (t3, "sla_warning", "response at 80 % of its target"), warn3 + 1.5)
        assert warn3 - 0.05 <= seen < warn3 + 1.0, f"warning recorded {seen - warn3:+.2f} s from its time"
        seen = _first_seen(db, (t3, "sla_breach", "response deadline breached"), due3 + 1.5)
        assert due3 - 0.05 <= seen < due3 + 1.0, f"breach recorded {seen - due3:+.2f} s from its time"

        assert daemon.stop() == 0
        daemon.start()  # a clean restart fires nothing again:
        # every batch checks the SLA clocks, so once a later trap (one more linkDown on if/5) is
        # committed, anything due would have been recorded with it or before.
        traps.send(port, [link_down(5)])
        wait_until(lambda: any(key == "sw-1/if/5" and count == 2 for _, key, count, _ in _read(db)[1]),
                   timeout=10, interval=0.05)
        _, after, sla = _check_consistent(db)
        assert after == dues
        got = sorted((tid, kind, ts) for tid, ts, kind, _ in sla)
        want = sorted([(t2, "sla_breach", due2), (t3, "sla_warning", warn3), (t3, "sla_breach", due3)])
        assert [g[:2] for g in got] == [w[:2] for w in want]
        assert all(abs(g[2] - w[2]) <= EPS for g, w in zip(got, want, strict=True)), (got, want)
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()
