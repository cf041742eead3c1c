"""Crash safety of help-desk delivery: kill -9 the gateway while deliveries are in flight,
restart it, and check the real help desk holds every ticket exactly once."""

from __future__ import annotations

import uuid
from contextlib import closing
from pathlib import Path

import pytest

from tests.fixtures import traps
from tests.fixtures.daemon import Daemon, read_db
from tests.fixtures.helpdesk import HelpdeskServer
from tests.fixtures.netsnmp import free_udp_port
from tests.fixtures.slowproxy import SlowResponseProxy
from tests.fixtures.traps import link_down
from tests.helpers import base_config, wait_until, write_config


@pytest.mark.parametrize("recorded", [range(4), range(4, 12)], ids=["first-wave", "second-wave"])
def test_kill9_during_delivery_no_duplicates_nothing_missing(
    tmp_path: Path, helpdesk_server: HelpdeskServer, recorded: range
) -> None:
    """The help desk is reached through a proxy that holds its answers back for 1 s, so
    the kill lands after the help desk created tickets but before the gateway recorded it:
    while the first wave of deliveries (concurrency 4) is in flight, or a later one."""
    proxy = SlowResponseProxy(("127.0.0.1", helpdesk_server.port), delay=1.0)
    port = free_udp_port()
    instance = "c" + uuid.uuid4().hex[:8]
    d = base_config(tmp_path / "var", port)
    d["gateway"]["instance"] = instance
    d["helpdesk"] = [{"type": "django-helpdesk", "name": "hd", "url": proxy.url,
                      "token": helpdesk_server.token, "queue": helpdesk_server.queue_id}]
    d["outbox"] = {"retry_base": 0.05, "retry_max": 0.5, "concurrency": 4}
    cfg = write_config(tmp_path / "config.toml", d)
    db = tmp_path / "var" / "gateway.db"
    daemon = Daemon(cfg, tmp_path / "gateway.log")
    try:
        daemon.start()
        traps.send(port, (link_down(i) for i in range(1, 13)))  # 12 faults → 12 tickets to deliver

        def count(sql: str) -> int:
            with closing(read_db(db)) as c:
                n: int = c.execute(sql).fetchone()[0]
            return n

        wait_until(lambda: count("SELECT COUNT(*) FROM tickets") == 12, timeout=10, interval=0.02)

        def in_the_window() -> bool:
            # The help desk first, then the gateway: both only grow, so "more there than recorded
            # here" read in this order is true at the second read.
            field = f"custom_{helpdesk_server.key_field}"
            created = sum(1 for t in helpdesk_server.list_tickets() if str(t.get(field)).startswith(f"gw-{instance}-"))
            done = count("SELECT COUNT(*) FROM helpdesk_links WHERE connector='hd'")
            return done in recorded and created > done

        wait_until(in_the_window, timeout=30, interval=0.05)
        daemon.kill9()
        daemon.start()
        tickets = daemon.cli("tickets")
        assert len(tickets) == 12  # every committed ticket survived

        def all_delivered() -> bool:
            return all(len(helpdesk_server.tickets_with_key(f"gw-{instance}-t{t['id']}")) >= 1 for t in tickets)

        wait_until(all_delivered, timeout=60, interval=0.5)
        for t in tickets:
            found = helpdesk_server.tickets_with_key(f"gw-{instance}-t{t['id']}")
            assert len(found) == 1, f"ticket {t['id']} is in the help desk {len(found)} times"
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()
        proxy.close()
