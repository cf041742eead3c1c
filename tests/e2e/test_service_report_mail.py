"""Scheduled service reports e-mailed exactly once, with a real SMTP server (aiosmtpd).

The contract's monthly report is due as soon as the last month has ended (delay 0). The
gateway builds it and commits its once-marker and its outbox row in one transaction; a kill
-9 right after that commit (the ``service_report_queued`` failpoint) and before any send
still gives one mail after the restart, and later restarts send nothing again. The mail
carries the right period in its subject and text, and the report attached as HTML and PDF.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import closing
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from gateway.core.report_schedule import period_containing, previous_period
from tests.fixtures.daemon import Daemon, read_db
from tests.fixtures.notify_peers import SmtpSink
from tests.helpers import ROOT, base_config, wait_until, write_config

TZ = "Asia/Shanghai"


def _config(tmp_path: Path, smtp: SmtpSink) -> Path:
    d = base_config(tmp_path / "var")
    d["gateway"]["timezone"] = TZ
    d["policies"]["mine-monitoring"]["customer"] = "Shanxi Coal"
    d["helpdesk"] = [{"type": "notify", "name": "customer-mail", "urls": [smtp.url("it@coal.example.com")],
                      "language": "en", "events": ["open"], "levels": [1]}]
    d["service"] = {"mine-monitoring": {"reports": [{"every": "monthly", "to": "customer-mail", "delay": "0s"}]}}
    d["outbox"] = {"retry_base": 0.05, "retry_max": 0.3}
    return write_config(tmp_path / "config.toml", d)


def _rows(db: Path) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    with closing(read_db(db)) as c:
        try:
            return [{"key": r[0], "kind": r[1], "state": r[2], "ticket_id": r[3], "payload": json.loads(r[4])}
                    for r in c.execute("SELECT key, kind, state, ticket_id, payload FROM outbox ORDER BY id")]
        except Exception:  # noqa: BLE001 - not created yet
            return []


def _attachments(m: EmailMessage) -> dict[str, bytes]:
    return {str(a.get_filename()): bytes(a.get_payload(decode=True)) for a in m.iter_attachments()}


def test_the_monthly_report_is_mailed_once_across_kill9_and_restarts(tmp_path: Path) -> None:
    smtp = SmtpSink()
    smtp.start()
    cfg = _config(tmp_path, smtp)
    db = tmp_path / "var" / "gateway.db"
    log = tmp_path / "gateway.log"
    month = previous_period(period_containing(time.time(), TZ, "monthly"))
    daemon = Daemon(cfg, log)
    try:
        # 1. Killed right after the report and its marker were committed, before any send.
        with log.open("ab") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(cfg)], stdout=fh,
                                    stderr=subprocess.STDOUT, cwd=ROOT,
                                    env={**os.environ, "GATEWAY_FAILPOINTS": "service_report_queued=exit"})
            assert proc.wait(60) == 137, log.read_text()
        assert "failpoint service_report_queued" in log.read_text()
        rows = _rows(db)
        assert [(r["kind"], r["state"], r["ticket_id"]) for r in rows] == [("service_report", "pending", 0)]
        assert rows[0]["key"] == f"service-report:mine-monitoring:{month}:customer-mail"
        assert not smtp.messages  # committed, not sent

        # 2. The restart sends it: one mail, the right period, HTML and PDF attached.
        daemon.start()
        wait_until(lambda: [r["state"] for r in _rows(db)] == ["delivered"] and len(smtp.messages) == 1, timeout=30,
                   interval=0.05)
        assert daemon.stop() == 0

        # 3. Later restarts send nothing again (the marker says it was queued).
        daemon.start()
        time.sleep(1.0)  # why: a second queueing would happen in the first sweep at start and be sent at once
        assert daemon.stop() == 0
        assert len(_rows(db)) == 1 and len(smtp.messages) == 1, smtp.subjects()
        [mail] = smtp.messages
        assert mail["Subject"] == f"Service report {month}: mine-monitoring — Shanxi Coal"
        assert "it@coal.example.com" in str(mail["To"])
        body = mail.get_body(preferencelist=("plain", "html"))
        assert body is not None and f"Period: {month} (monthly, {TZ})" in body.get_content()
        files = _attachments(mail)
        stem = f"service-report-mine-monitoring-{month}"
        assert set(files) == {f"{stem}.html", f"{stem}.pdf"}, set(files)
        assert files[f"{stem}.pdf"].startswith(b"%PDF")
        assert f"Service report {month}: mine-monitoring".encode() in files[f"{stem}.html"]
        assert "Traceback" not in log.read_text()
    finally:
        daemon.cleanup()
        smtp.stop()
