"""An INFORM whose event was committed but which was not answered before the process died
(kill -9 between the store commit and the response) is resent by net-snmp's ``snmpinform``
and recorded once: the INFORM's delivery key is committed in the same transaction as its
effects, and the restarted gateway answers the resend without processing it again.

The crash lands exactly in that window through the ``before_commit_callbacks`` failpoint
(``gateway/failpoints.py``), which ends the process with ``os._exit`` right after the commit."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.fixtures.daemon import Daemon
from tests.fixtures.netsnmp import LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import base_config, wait_until, write_config


def _alarms(db: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return list(c.execute("SELECT key, count FROM alarms"))


def test_inform_committed_but_unanswered_before_a_crash_is_recorded_once(tmp_path: Path, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    cfg = write_config(tmp_path / "config.toml", base_config(tmp_path / "var", port))
    db = tmp_path / "var" / "gateway.db"
    log = tmp_path / "gateway.log"
    daemon = Daemon(cfg, log)
    try:
        daemon.start(env={"GATEWAY_FAILPOINTS": "before_commit_callbacks=exit"})
        with ThreadPoolExecutor(1) as pool:
            sent = pool.submit(netsnmp.inform, port, LINK_DOWN, link_varbinds(7, "uplink"), timeout=2, retries=8)
            wait_until(lambda: not daemon.alive(), timeout=15)
            assert daemon.proc is not None and daemon.proc.returncode == 137
            assert "failpoint before_commit_callbacks" in log.read_text()
            # Committed before the crash, never answered:
            assert [n for _, n in _alarms(db)] == [1]
            daemon.start()  # no failpoint now; snmpinform is still retrying
            r = sent.result(timeout=60)
        assert r.returncode == 0, r.stderr  # the resend was answered
        alarms = _alarms(db)
        assert len(alarms) == 1 and alarms[0][1] == 1, alarms  # ...and not recorded a second time
        assert len(daemon.cli("tickets")) == 1
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()
