"""Help-desk delivery end to end: real traps → the gateway's outbox → a real django-helpdesk
(started by the fixture), and changes made in the help desk flowing back."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.fixtures.helpdesk import HelpdeskServer
from tests.fixtures.netsnmp import COLD_START, LINK_DOWN, LINK_UP, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import base_config, eventually


def _cfg(tmp_path: Path, port: int, hd: HelpdeskServer, **outbox: Any):  # type: ignore[no-untyped-def]
    d = base_config(tmp_path / "var", port)
    d["gateway"]["instance"] = "t" + uuid.uuid4().hex[:8]  # the help desk is shared by the session's tests
    d["helpdesk"] = [{"type": "django-helpdesk", "name": "hd", "url": hd.url, "token": hd.token, "queue": hd.queue_id}]
    d["outbox"] = {"retry_base": 0.05, "retry_max": 0.5, "poll_interval": 0.3, **outbox}
    return config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))


async def test_trap_creates_one_helpdesk_ticket_and_clear_resolves_it(
    tmp_path: Path, netsnmp: NetSnmp, helpdesk_server: HelpdeskServer
) -> None:
    port = free_udp_port()
    async with Gateway(_cfg(tmp_path, port, helpdesk_server)) as gw:
        await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(4, "eth4"))
        [ticket] = await eventually(lambda: gw.store.list_tickets())
        key = f"gw-{gw.cfg.gateway.instance}-t{ticket['id']}"
        remote = await eventually(lambda: helpdesk_server.tickets_with_key(key), timeout=10)
        assert len(remote) == 1
        r = remote[0]
        assert r["priority"] == 3 and "sw-1/if/4" in r["description"] and "eth4" in r["title"]
        assert r["due_date"]  # the earliest running SLA deadline
        # more of the same fault: still one help-desk ticket
        for _ in range(5):
            await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(4, "eth4"))
        await asyncio.to_thread(netsnmp.trap, port, LINK_UP, link_varbinds(4))
        await eventually(lambda: helpdesk_server.get_ticket(r["id"])["status"] == 3, timeout=10)
        assert len(helpdesk_server.tickets_with_key(key)) == 1
        assert gw.outbox is not None and gw.outbox.stats.failed == 0


async def test_changes_in_the_helpdesk_flow_back(
    tmp_path: Path, netsnmp: NetSnmp, helpdesk_server: HelpdeskServer
) -> None:
    port = free_udp_port()
    async with Gateway(_cfg(tmp_path, port, helpdesk_server)) as gw:
        await asyncio.to_thread(netsnmp.trap, port, COLD_START)
        [ticket] = await eventually(lambda: gw.store.list_tickets())
        tid = ticket["id"]
        remote_id = await eventually(lambda: gw.store.remote_id("hd", tid), timeout=10)
        # A person comments and then closes it in the help desk while the fault is still active here:
        helpdesk_server.post_followup(remote_id, "looking into it")
        await eventually(lambda: any(e["kind"] == "comment" and e["actor"] == "helpdesk:hd"
                                     for e in gw.store.timeline(tid)), timeout=10)
        helpdesk_server.post_followup(remote_id, "done", new_status=4)
        await eventually(lambda: any("conflict" in e["note"] for e in gw.store.timeline(tid)), timeout=10)
        assert gw.store.get_ticket(tid)["status"] == "open"  # recorded and shown, not applied
        # The coldStart fault has no clear event: an operator restores it here, then the help desk closes it.
        await gw.pipeline.execute(lambda now: gw.desk.act(tid, "restore", now, "alice"))
        await eventually(lambda: helpdesk_server.get_ticket(remote_id)["status"] == 3, timeout=10)


async def test_outage_queues_durably_and_drains_in_order(
    tmp_path: Path, netsnmp: NetSnmp, helpdesk_server: HelpdeskServer
) -> None:
    port = free_udp_port()
    async with Gateway(_cfg(tmp_path, port, helpdesk_server)) as gw:
        helpdesk_server.stop()
        try:
            for i in range(1, 11):  # 10 tickets, 5 changes each = 50 ticket changes
                await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(100 + i))
            await eventually(lambda: len(gw.store.list_tickets()) == 10, timeout=10)
            tids = [t["id"] for t in gw.store.list_tickets()]
            for tid in tids:
                for action in ("acknowledge", "comment", "arrive", "propose_solution"):
                    await gw.pipeline.execute(lambda now, tid=tid, a=action: gw.desk.act(tid, a, now, "noc", f"{a} {tid}"))
            counts = gw.store.outbox_counts()
            assert counts.get("delivered", 0) == 0 and counts.get("pending", 0) + counts.get("sending", 0) == 50
            assert gw.outbox is not None
            await eventually(lambda: gw.outbox.stats.retried > 0)  # type: ignore[union-attr]
        finally:
            helpdesk_server.start()
        await eventually(lambda: gw.store.outbox_counts().get("delivered") == 50, timeout=60)
        for tid in tids:
            [remote] = helpdesk_server.tickets_with_key(f"gw-{gw.cfg.gateway.instance}-t{tid}")
            notes = [f["comment"] for f in sorted(helpdesk_server.get_ticket(remote["id"])["followup_set"], key=lambda f: f["date"])]
            ours = [n for n in notes if n.startswith("[gateway]")]
            order = [next(a for a in ("acknowledge", "comment", "arrive", "propose_solution") if f"{a} {tid}" in n) for n in ours
                     if any(f"{a} {tid}" in n for a in ("acknowledge", "comment", "arrive", "propose_solution"))]
            assert order == ["acknowledge", "comment", "arrive", "propose_solution"], notes


async def test_permanent_failure_is_parked_visible_and_operable(
    tmp_path: Path, netsnmp: NetSnmp, helpdesk_server: HelpdeskServer
) -> None:
    import json
    import subprocess
    import sys

    from tests.helpers import ROOT, to_toml

    port = free_udp_port()
    cfg = _cfg(tmp_path, port, helpdesk_server)
    cfg.helpdesk[0] = cfg.helpdesk[0].model_copy(update={"queue": 999_999})  # no such queue: a permanent 4xx
    async with Gateway(cfg) as gw:
        await asyncio.to_thread(netsnmp.trap, port, COLD_START)
        await eventually(lambda: gw.store.outbox_counts().get("failed") == 1, timeout=30)
        # ...raised as a gateway alarm of its own, never dropped:
        await eventually(lambda: [a for a in gw.store.list_alarms() if a["key"] == "gateway/helpdesk:hd/delivery"], timeout=20)
        assert gw.outbox is not None and gw.outbox.stats.failed == 1
    # The operator sees it and discards it from the CLI.
    d = base_config(tmp_path / "var", port)
    (tmp_path / "cli.toml").write_text(to_toml(d))

    def cli(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", "outbox", *a, "-c", str(tmp_path / "cli.toml")],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    r = cli("list", "--state", "failed", "--json")
    assert r.returncode == 0, r.stderr
    # Ticket 1 is the coldStart's. The delivery alarm opens a ticket of its own, whose message
    # to the same (misconfigured) help desk may have failed too by now: only ticket 1's is ours.
    [row] = [x for x in json.loads(r.stdout) if x["ticket"] == 1]
    assert row["kind"] == "open" and "http_4xx" in row["error"]
    assert cli("discard", str(row["id"])).returncode == 0
    assert cli("discard", str(row["id"])).returncode == 1  # no longer a failed message
    assert json.loads(cli("list", "--state", "discarded", "--json").stdout)[0]["id"] == row["id"]
