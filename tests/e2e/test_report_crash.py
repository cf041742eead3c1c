"""A customer report recorded delivered just before a crash (kill -9 after the outbox row is
committed, before the ticket's close is written) still stops the report clock at the
delivery: the restarted gateway closes the ticket as delivered, at the outbox row's
``delivered_at``, and the customer gets the report once (real SMTP server, aiosmtpd).

The crash lands in that window through the ``report_delivered_before_close`` failpoint
(``gateway/failpoints.py``)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fixtures.daemon import ROOT, Daemon
from tests.fixtures.netsnmp import LINK_DOWN, LINK_UP, NetSnmp, free_udp_port, link_varbinds
from tests.fixtures.notify_peers import SmtpSink
from tests.helpers import base_config, wait_until, write_config


def _q(db: Path, sql: str) -> list[Any]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return list(c.execute(sql))


def _run(cfg: Path, *args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "gateway", *args, "-c", str(cfg), "--by", "alice"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr


def test_report_delivered_before_a_crash_closes_its_ticket_at_the_delivery_time(
    tmp_path: Path, netsnmp: NetSnmp, smtp_sink: SmtpSink
) -> None:
    port = free_udp_port()
    d = base_config(tmp_path / "var", port)
    d["devices"][0]["policy"] = "network-equipment"
    d["helpdesk"] = [{"type": "notify", "name": "customer", "urls": [smtp_sink.url("it@customer.example.com")],
                      "reports": True, "policies": ["network-*"], "events": [], "levels": [1, 2, 3, 4]}]
    cfg = write_config(tmp_path / "config.toml", d)
    db = tmp_path / "var" / "gateway.db"
    log = tmp_path / "gateway.log"
    daemon = Daemon(cfg, log)
    try:
        daemon.start(env={"GATEWAY_FAILPOINTS": "report_delivered_before_close=exit"})
        netsnmp.trap(port, LINK_DOWN, link_varbinds(5, "eth5"))
        wait_until(lambda: len(_q(db, "SELECT id FROM tickets")) == 1, timeout=15)
        [(tid,)] = _q(db, "SELECT id FROM tickets")
        netsnmp.trap(port, LINK_UP, link_varbinds(5))
        wait_until(lambda: _q(db, f"SELECT status FROM tickets WHERE id={tid}") == [("restored",)], timeout=15)
        _run(cfg, "ticket", "report-set", str(tid), "--symptoms", "link down", "--cause", "old optics",
             "--solution", "optics replaced", "--follow-up", "check optics quarterly")
        _run(cfg, "report-send", str(tid))
        wait_until(lambda: not daemon.alive(), timeout=30)
        assert daemon.proc is not None and daemon.proc.returncode == 137
        assert "failpoint report_delivered_before_close" in log.read_text()
        # Delivered and committed, the ticket not closed: the report clock would run on.
        [(delivered_at,)] = _q(db, f"SELECT delivered_at FROM outbox WHERE ticket_id={tid} AND kind='report' "
                                   "AND state='delivered'")
        assert _q(db, f"SELECT status FROM tickets WHERE id={tid}") == [("restored",)]
        daemon.start()
        wait_until(lambda: _q(db, f"SELECT status FROM tickets WHERE id={tid}") == [("closed",)], timeout=30)
        # The report clock stopped (met) at the delivery, not at the restart.
        [(closed_at, data)] = _q(db, f"SELECT closed_at, data FROM tickets WHERE id={tid}")
        report = next(c for c in json.loads(data)["clocks"] if c["kind"] == "report")
        assert report["state"] == "met" and report["stopped_at"] == delivered_at == closed_at, report
        assert _q(db, f"SELECT actor, ts FROM timeline WHERE ticket_id={tid} AND kind='close'") == [
            ("delivery:customer", delivered_at)]
        assert len([m for m in smtp_sink.messages if "故障报告" in str(m["Subject"])]) == 1  # once
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()
