"""HA and the help desk (real django-helpdesk behind a proxy that holds its answers 1 s, so
requests are in flight): the leader dies (kill -9) or is paused (SIGSTOP) while delivering;
the standby takes over and delivers the rest; every ticket is in the help desk exactly
once. A paused old leader that wakes up (SIGCONT) sends nothing more: it stops (exit 75)."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.e2e.test_ha_fencing import LEASE, Instance, _holder
from tests.fixtures import traps
from tests.fixtures.helpdesk import HelpdeskServer
from tests.fixtures.slowproxy import SlowResponseProxy
from tests.fixtures.traps import link_down
from tests.helpers import wait_until
from tests.store_contract.backends import POSTGRESQL, pg_dsn, pg_schema


@pytest.mark.parametrize("how", ["kill-9", "sigstop"])
def test_every_ticket_reaches_the_help_desk_once_across_a_failover(
    tmp_path: Path, helpdesk_server: HelpdeskServer, how: str
) -> None:
    loc = POSTGRESQL.location(tmp_path)
    proxy = SlowResponseProxy(("127.0.0.1", helpdesk_server.port), delay=1.0)
    instance = "h" + uuid.uuid4().hex[:8]
    extra = {
        "helpdesk": [{"type": "django-helpdesk", "name": "hd", "url": proxy.url, "token": helpdesk_server.token,
                      "queue": helpdesk_server.queue_id}],
        "outbox": {"retry_base": 0.05, "retry_max": 0.5, "concurrency": 4},
    }
    field = f"custom_{helpdesk_server.key_field}"

    def db_count(sql: str) -> int:
        with psycopg.connect(pg_dsn(), autocommit=True, options=f"-c search_path={pg_schema(loc)}") as c:
            row = c.execute(sql).fetchone()
            return int(row[0]) if row else 0

    a = Instance(tmp_path, "gw-a", loc, extra=extra, instance=instance)
    b: Instance | None = None
    try:
        wait_until(lambda: "gateway ready" in a.text() or a.proc.poll() is not None, 60)
        assert a.proc.poll() is None, a.text()
        b = Instance(tmp_path, "gw-b", loc, extra=extra, instance=instance)
        wait_until(lambda: "standby: gw-a holds the leader lease" in b.text(), 60)  # type: ignore[union-attr]
        traps.send(a.port, (link_down(i) for i in range(1, 13)))  # 12 faults → 12 tickets
        wait_until(lambda: db_count("SELECT COUNT(*) FROM tickets") == 12, timeout=30, interval=0.05)

        def in_the_window() -> bool:
            created = sum(1 for t in helpdesk_server.list_tickets() if str(t.get(field)).startswith(f"gw-{instance}-"))
            done = db_count("SELECT COUNT(*) FROM helpdesk_links WHERE connector='hd'")
            return done < 12 and created > done

        wait_until(in_the_window, timeout=60, interval=0.05)
        os.kill(a.proc.pid, signal.SIGKILL if how == "kill-9" else signal.SIGSTOP)
        wait_until(lambda: _holder(loc) == "gw-b", 4 * LEASE + 20)
        wait_until(lambda: db_count("SELECT COUNT(*) FROM helpdesk_links WHERE connector='hd'") == 12, 90, 0.5)
        if how == "sigstop":
            os.kill(a.proc.pid, signal.SIGCONT)
            assert a.proc.wait(30) == 75, a.text()
        for t in range(1, 13):
            found = helpdesk_server.tickets_with_key(f"gw-{instance}-t{t}")
            assert len(found) == 1, f"ticket {t} is in the help desk {len(found)} times"
        assert b.proc.poll() is None
    finally:
        a.stop()
        if b is not None:
            b.stop()
        proxy.close()
        POSTGRESQL.drop(loc)
