"""Tickets people create in the help desk are picked up by the two-way sync: a real
django-helpdesk (the session fixture), an agent creating a ticket in the gateway's queue
through its REST API as a person would, and a running gateway that opens a ticket for it
with clocks from the help desk's creation time, marks the help-desk ticket with its key,
links the two, and then follows changes made there like any other ticket's."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.delivery.helpdesk.base import epoch_of
from tests.fixtures.helpdesk import HelpdeskServer
from tests.fixtures.netsnmp import free_udp_port
from tests.helpers import base_config, eventually


def _cfg(tmp_path: Path, hd: HelpdeskServer, device: str) -> Any:
    d = base_config(tmp_path / "var", free_udp_port())
    d["gateway"]["instance"] = "t" + uuid.uuid4().hex[:8]  # the help desk is shared by the session's tests
    d["devices"].append({"id": device, "class": "network.switch", "site": "floor-2", "region": "shanxi",
                         "policy": "network-equipment"})
    d["helpdesk"] = [{"type": "django-helpdesk", "name": "hd", "url": hd.url, "token": hd.token,
                      "queue": hd.queue_id, "adopt": True}]
    d["outbox"] = {"retry_base": 0.05, "retry_max": 0.5, "poll_interval": 0.3}
    return config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))


def _create(hd: HelpdeskServer, title: str, priority: int = 2) -> dict[str, Any]:
    """A ticket an agent enters in the help desk for a customer's e-mail."""
    body = {"queue": hd.queue_id, "title": title, "description": "the customer wrote in", "priority": priority,
            "submitter_email": "zhou@customer.example"}
    created: dict[str, Any] = hd._request("POST", "/helpdesk/api/tickets/", as_agent=True, json=body)
    return created


async def test_a_ticket_created_in_the_help_desk_is_picked_up_once_and_synced(
    tmp_path: Path, helpdesk_server: HelpdeskServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    hd = helpdesk_server
    device = "edge-" + uuid.uuid4().hex[:6]
    async with Gateway(_cfg(tmp_path, hd, device)) as gw:
        remote = _create(hd, f"[{device}] no network on floor 2")
        created_at = epoch_of(remote["followup_set"][0]["date"])
        assert created_at is not None
        rid = str(remote["id"])
        t = await eventually(lambda: next((t for t in gw.store.list_tickets() if t["device"] == device), None), timeout=10)
        assert (t["origin"], t["reported_by"], t["level"]) == ("helpdesk", "zhou@customer.example", 2)
        assert t["title"] == "no network on floor 2" and t["remote"] == {"hd": rid}
        assert t["opened_at"] == pytest.approx(created_at, abs=1e-3)  # clocks from the help desk's creation
        key = f"gw-{gw.cfg.gateway.instance}-t{t['id']}"
        # The open marks the help-desk ticket with the gateway's key and links the two.
        await eventually(lambda: hd.get_ticket(rid).get(f"custom_{hd.key_field}") == key, timeout=10)
        await eventually(lambda: gw.store.remote_id("hd", t["id"]) == rid, timeout=10)
        assert hd.tickets_with_key(key) == [hd.get_ticket(rid)]  # adopted, not created again
        # Three more polls after the link: still one gateway ticket for it.
        assert gw.sync is not None
        polls = gw.sync.polls
        await eventually(lambda: gw.sync is not None and gw.sync.polls >= polls + 3, timeout=10)
        assert gw.sync.adopted == 1
        assert [x["id"] for x in gw.store.list_tickets() if x["device"] == device] == [t["id"]]

        # A person resolves it in the help desk: the gateway ticket is restored.
        hd.post_followup(rid, "replaced the patch cable", new_status=3)
        await eventually(lambda: gw.store.get_ticket(t["id"])["status"] == "restored", timeout=10)
        restore = next(e for e in gw.store.timeline(t["id"]) if e["kind"] == "restore")
        assert restore["actor"] == "helpdesk:hd"

        # A ticket that names no device is left in the help desk, said once.
        lost = _create(hd, "printer on floor 3 jams", priority=4)
        await eventually(lambda: any(f"ticket {lost['id']} names no device" in r.getMessage() for r in caplog.records),
                         timeout=10)
        assert not any(x["title"] == "printer on floor 3 jams" for x in gw.store.list_tickets())


async def test_a_change_made_in_the_help_desk_while_the_gateway_is_down_is_applied_after_it_starts(
    tmp_path: Path, helpdesk_server: HelpdeskServer
) -> None:
    hd = helpdesk_server
    device = "edge-" + uuid.uuid4().hex[:6]
    cfg = _cfg(tmp_path, hd, device)
    async with Gateway(cfg) as gw:
        rid = str(_create(hd, f"[{device}] badge reader offline")["id"])
        t = await eventually(lambda: next((t for t in gw.store.list_tickets() if t["device"] == device), None), timeout=10)
        await eventually(lambda: gw.store.remote_id("hd", t["id"]) == rid, timeout=10)
        # The sync's position is committed once it has read the linked ticket's changes.
        await eventually(lambda: gw.store.get_meta("sync.since.hd") is not None, timeout=10)
    # Down: a person resolves the ticket in the help desk.
    hd.post_followup(rid, "reader rebooted on site", new_status=3)
    async with Gateway(cfg) as gw:
        await eventually(lambda: gw.store.get_ticket(t["id"])["status"] == "restored", timeout=10)
        restores = [e for e in gw.store.timeline(t["id"]) if e["kind"] == "restore"]
        assert [e["actor"] for e in restores] == ["helpdesk:hd"]
