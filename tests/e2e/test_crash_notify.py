"""Notifications across kill -9, with a real SMTP server (aiosmtpd) as the peer.

A notice is an outbox row written in the same transaction as the ticket change or escalation
step it tells of, so a kill never loses one and never writes one twice; the row is leased
before the send and marked delivered after it, so a kill before the send sends it after the
restart, and a restart after delivery sends nothing again. (A kill in the instant between the
SMTP server's "250 OK" and the commit would send that one message again: at least once.)
"""

from __future__ import annotations

import json
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.fixtures import traps
from tests.fixtures.daemon import Daemon, read_db
from tests.fixtures.netsnmp import free_udp_port
from tests.fixtures.notify_peers import SmtpSink
from tests.fixtures.traps import link_down
from tests.helpers import base_config, wait_until, write_config


def _config(tmp_path: Path, port: int, smtp: SmtpSink) -> Path:
    d = base_config(tmp_path / "var", port)
    d["escalation"] = [{"id": "page-on-call", "after": "0s", "notify": "on_call"}]
    d["teams"] = [{"name": "noc", "lead": "lead.li", "members": ["alice"],
                   "rota": [{"days": "daily", "start": "00:00", "end": "24:00", "user": "alice"}]}]
    d["people"] = {"service_manager": "wang.mgr", "notify_connector": "mail"}
    d["helpdesk"] = [{"type": "notify", "name": "mail", "urls": [smtp.url()], "levels": [1, 2, 3], "language": "en",
                      "burst": 50}]
    d["outbox"] = {"retry_base": 0.05, "retry_max": 0.3}
    return write_config(tmp_path / "config.toml", d)


def _rows(db: Path) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    with closing(read_db(db)) as c:
        return [{"key": r[0], "kind": r[1], "state": r[2], "attempts": r[3], "payload": json.loads(r[4])}
                for r in c.execute("SELECT key, kind, state, attempts, payload FROM outbox WHERE connector='mail' ORDER BY id")]


def test_notices_are_sent_once_across_kill9(tmp_path: Path) -> None:
    port = free_udp_port()
    smtp = SmtpSink()  # not started yet: the mail server is down at first
    cfg = _config(tmp_path, port, smtp)
    db = tmp_path / "var" / "gateway.db"
    daemon = Daemon(cfg, tmp_path / "gateway.log")
    try:
        daemon.start()
        for i in (1, 2, 3):
            traps.send(port, [link_down(30 + i)])
        # 3 tickets: an "open" and a "page-on-call" escalation notice each; the head of each
        # ticket's queue (its "open") failing to send.
        wait_until(lambda: len(_rows(db)) == 6 and sum(r["attempts"] > 0 for r in _rows(db)) == 3, timeout=15, interval=0.05)
        daemon.kill9()
        assert not smtp.messages
        smtp.start()
        daemon.start()
        wait_until(lambda: all(r["state"] == "delivered" for r in _rows(db)), timeout=15, interval=0.05)
        daemon.kill9()
        # why: a repeat after the restart would be sent at once; give it a moment to show up.
        time.sleep(0.5)
        daemon.start()
        time.sleep(1.0)  # why: as above — anything still thought undelivered would be re-sent now
        assert daemon.stop() == 0
        rows = _rows(db)
        assert len(rows) == 6 and {r["state"] for r in rows} == {"delivered"}
        subjects = smtp.subjects()
        assert len(subjects) == 6, subjects
        for r in rows:
            ref = r["payload"]["ticket_key"]
            want = f"{ref} escalated:" if r["kind"] == "escalation" else f"new ticket {ref}:"
            assert sum(want in s for s in subjects) == 1, (want, subjects)
        assert "Traceback" not in daemon.log.read_text()
    finally:
        daemon.cleanup()
        smtp.stop()
