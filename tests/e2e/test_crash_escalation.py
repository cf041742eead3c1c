"""Escalation steps across kill -9: each step of a ticket is recorded once on the ticket, once
in its timeline and once in the outbox (for the notifier), whether the daemon is killed just
after a step fired or stays down while a step falls due; a clean restart fires nothing again.

The step, its timeline line and its outbox message are one transaction with the ticket, so
a kill can lose all of them (and the restart fires the step then) but never one of them.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.fixtures import traps
from tests.fixtures.daemon import Daemon, read_db
from tests.fixtures.netsnmp import free_udp_port
from tests.fixtures.traps import link_down
from tests.helpers import base_config, wait_until, write_config

STEPS = ["page-on-call", "owner-50", "lead-80", "manager-breach"]


def _config(tmp_path: Path, port: int) -> Path:
    d = base_config(tmp_path / "var", port)
    # Level 3 (a link down): response due 8 s after opening.
    d["policies"]["fast"] = {
        "calendar": "24x7",
        "levels": {"3": {"response": "8s"}},
        "escalation": [
            {"id": "owner-50", "clock": "response", "at": 0.5, "notify": "owner"},
            {"id": "lead-80", "clock": "response", "at": 0.8, "notify": "team_lead"},
            {"id": "manager-breach", "clock": "response", "at": 1.0, "notify": "service_manager", "action": "escalate"},
        ],
    }
    d["escalation"] = [{"id": "page-on-call", "after": "0s", "notify": "on_call"}]
    d["teams"] = [{"name": "noc", "lead": "lead.li", "members": ["alice"],
                   "rota": [{"days": "daily", "start": "00:00", "end": "24:00", "user": "alice"}]}]
    d["people"] = {"service_manager": "wang.mgr", "notify_connector": "notify"}
    d["devices"][0]["policy"] = "fast"
    return write_config(tmp_path / "config.toml", d)


def _read(db: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[str, Any]]:
    with closing(read_db(db)) as c:
        lines = c.execute("SELECT ticket_id, ts, note FROM timeline WHERE kind='escalation' ORDER BY id").fetchall()
        rows = c.execute("SELECT ticket_id, key, payload FROM outbox WHERE connector='notify' ORDER BY id").fetchall()
        tickets = [json.loads(r[0]) for r in c.execute("SELECT data FROM tickets")]
    return lines, rows, (tickets[0] if tickets else {})


def _check(db: Path) -> dict[str, Any]:
    """Each fired step once in the ticket, once in the timeline, once in the outbox."""
    lines, rows, ticket = _read(db)
    fired = ticket.get("escalations", {})
    in_timeline = Counter(note.split(":", 1)[0] for _, _, note in lines)
    in_outbox = Counter(json.loads(p)["escalation"]["step"] for _, _, p in rows)
    assert all(n == 1 for n in in_timeline.values()), f"a step recorded twice: {in_timeline}"
    assert all(n == 1 for n in in_outbox.values()), f"a step sent twice: {in_outbox}"
    assert set(in_timeline) == set(in_outbox) == set(fired), (in_timeline, in_outbox, fired)
    assert len({k for _, k, _ in rows}) == len(rows)
    return {"fired": fired, "rows": rows, "ticket": ticket}


def test_escalation_steps_fire_once_across_kill9(tmp_path: Path) -> None:
    port = free_udp_port()
    cfg = _config(tmp_path, port)
    db = tmp_path / "var" / "gateway.db"
    daemon = Daemon(cfg, tmp_path / "gateway.log")
    try:
        daemon.start()
        traps.send(port, [link_down(7)])
        # The on-call is paged at opening; killed right after the 50 % step is committed.
        wait_until(lambda: db.exists() and "owner-50" in _read(db)[2].get("escalations", {}), timeout=10, interval=0.02)
        daemon.kill9()
        state = _check(db)
        assert set(state["fired"]) == {"page-on-call", "owner-50"}
        opened = state["ticket"]["opened_at"]
        # Down while the 80 % step falls due (6.4 s after opening).
        wait_until(lambda: time.time() > opened + 6.6, timeout=10, interval=0.05)
        daemon.start()
        wait_until(lambda: "lead-80" in _read(db)[2].get("escalations", {}), timeout=5, interval=0.02)
        lead_at = _read(db)[2]["escalations"]["lead-80"]
        assert lead_at <= time.time()
        wait_until(lambda: "manager-breach" in _read(db)[2].get("escalations", {}), timeout=10, interval=0.02)
        daemon.kill9()
        daemon.start()  # nothing more to fire: every step is recorded
        assert daemon.stop() == 0
        state = _check(db)
        assert set(state["fired"]) == set(STEPS)
        by_step = {json.loads(p)["escalation"]["step"]: json.loads(p)["escalation"] for _, _, p in state["rows"]}
        assert by_step["page-on-call"]["recipients"] == ["alice"]
        assert by_step["owner-50"]["recipients"] == ["alice"]  # nobody owns it: the on-call
        assert by_step["lead-80"]["recipients"] == ["lead.li"]
        assert by_step["manager-breach"]["recipients"] == ["wang.mgr"]
        assert by_step["manager-breach"]["action"] == "escalate"
        assert state["fired"]["manager-breach"] >= opened + 8 - 1e-3
        assert "Traceback" not in daemon.log.read_text()
    finally:
        daemon.cleanup()
