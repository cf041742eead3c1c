"""Tickets people report, through the REST API of a running gateway (in process, real HTTP)
on a manual clock: POST /api/v1/tickets, refusals of bad reports, an alarm of the device
attaching to the open report, links between alarms and tickets, and the clocks that apply
only when needed (no on-site visit; the mine contract's response needs a person).

The clock stands at Monday 2026-03-02 11:00 Asia/Shanghai; deadlines worked out by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.model import Event
from tests.fixtures.api import OP, VIEW, api_config
from tests.fixtures.netsnmp import free_udp_port
from tests.helpers import eventually

CST = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 2, 11, 0, tzinfo=CST).timestamp()


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    async with Gateway(api_config(tmp_path, free_udp_port()), clock=ManualClock(NOW)) as g:
        assert g.api is not None
        async with httpx.AsyncClient(base_url=g.api.url, timeout=10) as http:
            yield g, http


def due(ticket: dict[str, object], kind: str) -> str:
    clocks = ticket["clocks"]
    assert isinstance(clocks, list)
    c = next(c for c in clocks if c["kind"] == kind)
    return datetime.fromisoformat(c["due_at"]).astimezone(CST).strftime("%m-%d %H:%M")


REPORT = {"device": "gas-1", "level": 2, "title": "display frozen at the pit-2 station",
          "reported_by": "Li Si (mine dispatch)", "channel": "phone"}


async def test_report_by_phone_back_dated_then_the_device_alarm_attaches(gw: tuple[Gateway, httpx.AsyncClient]) -> None:
    g, http = gw
    # Called at 09:30, entered at 11:00 (no offset: the gateway's time zone).
    body = {**REPORT, "reported_at": "2026-03-02T09:30:00", "reason": "line was busy; written on paper first"}
    r = await http.post("/api/v1/tickets", json=body, headers=OP)
    assert r.status_code == 201, r.text
    t = r.json()
    assert (t["origin"], t["reported_by"], t["status"]) == ("phone", "Li Si (mine dispatch)", "open")
    assert t["opened_at"] == "2026-03-02T01:30:00.000Z" and t["entered_at"] == "2026-03-02T03:00:00.000Z"
    assert t["backdate_reason"] == "line was busy; written on paper first"
    # Mine monitoring level 2 from 09:30: response 1 h (10:30, already late), solution 4 h,
    # on site 12 h.
    assert (due(t, "response"), due(t, "solution"), due(t, "on_site")) == ("03-02 10:30", "03-02 13:30", "03-02 21:30")
    clocks = {c["kind"]: c for c in t["clocks"]}
    assert clocks["response"]["breached"] and clocks["response"]["remaining_seconds"] == -1800.0
    detail = (await http.get(f"/api/v1/tickets/{t['id']}", headers=VIEW)).json()
    assert [(e["actor"], e["kind"]) for e in detail["timeline"]] == [("alice", "opened"), ("sla", "sla_breach")]
    assert "back-dated: line was busy" in detail["timeline"][0]["note"]

    # The sensor raises CH4 at the power-cut limit: level 1 attaches to the report.
    assert g.pipeline.offer(Event(NOW, "test", "gas-1", "status", {"ch4": 1.6}))
    alarm = await eventually(lambda: next((a for a in g.store.find_alarms() if a["key"] == "gas-1/gas/ch4"), None))
    assert alarm["ticket_id"] == t["id"]
    t = (await http.get(f"/api/v1/tickets/{t['id']}", headers=VIEW)).json()
    assert t["alarm_ids"] == [alarm["id"]] and t["level"] == 1 and t["alarm_key"] == "gas-1/gas/ch4"
    assert len(g.store.list_tickets()) == 1
    # Level 1 from 09:30: solution 2 h (11:30), on site 8 h (17:30).
    assert (due(t, "solution"), due(t, "on_site")) == ("03-02 11:30", "03-02 17:30")

    # No on-site visit needed: the on-site clock is not applicable (not met).
    r = await http.post(f"/api/v1/tickets/{t['id']}/no_on_site", json={"note": "reset by phone"}, headers=OP)
    assert r.status_code == 200, r.text
    assert {c["kind"]: c["state"] for c in r.json()["clocks"]}["on_site"] == "not_needed"
    r = await http.post(f"/api/v1/tickets/{t['id']}/no_on_site", headers=OP)
    assert r.status_code == 409 and "on-site clock already stopped" in r.json()["message"]


@pytest.mark.parametrize(
    "change, status, message",
    [
        ({"reported_at": "2026-03-02T12:00:00+08:00"}, 422,
         "reported_at 2026-03-02T04:00:00Z is in the future (now 2026-03-02T03:00:00Z)"),
        ({"reported_at": "2026-03-02T10:00:00+08:00"}, 422, "is 1 h 00 min before entry: a back-dated start needs a reason"),
        ({"device": "nope"}, 422, "body.device: no device 'nope' in the inventory"),
        ({"channel": "fax"}, 422, "channel"),
        ({"level": 7}, 422, "level"),
    ],
    ids=["future", "no-reason", "unknown-device", "channel", "level"],
)
async def test_bad_reports_get_one_clear_error(gw: tuple[Gateway, httpx.AsyncClient], change: dict[str, object],
                                               status: int, message: str) -> None:
    g, http = gw
    r = await http.post("/api/v1/tickets", json={**REPORT, **change}, headers=OP)
    assert r.status_code == status and message in r.json()["message"], r.text
    assert g.store.list_tickets() == []
    assert (await http.post("/api/v1/tickets", json=REPORT, headers=VIEW)).status_code == 403


async def test_link_alarms_and_tickets_both_ways(gw: tuple[Gateway, httpx.AsyncClient]) -> None:
    g, http = gw
    # The switch's link alarm opens its own ticket first.
    assert g.pipeline.offer(Event(NOW, "test", "sw-1", "IF-MIB::linkDown", {"ifIndex": 3, "ifDescr": "ge3"}))
    alarm = await eventually(lambda: next(iter(g.store.find_alarms()), None))
    own = alarm["ticket_id"]
    assert own is not None
    t = (await http.post("/api/v1/tickets", json=REPORT, headers=OP)).json()
    r = await http.post(f"/api/v1/tickets/{t['id']}/link", json={"alarm": alarm["id"]}, headers=OP)
    assert r.status_code == 409 and f"alarm {alarm['id']} already has ticket {own}" in r.json()["message"]
    r = await http.post(f"/api/v1/tickets/{t['id']}/link", json={"alarm": 999}, headers=OP)
    assert r.status_code == 404 and "no open alarm 999" in r.json()["message"]
    # Once the switch's ticket is closed, the alarm can be linked from either side.
    for action in ("restore", "close"):
        assert (await http.post(f"/api/v1/tickets/{own}/{action}", headers=OP)).status_code == 200
    r = await http.post(f"/api/v1/alarms/{alarm['id']}/link", json={"ticket": t["id"], "note": "same outage"}, headers=OP)
    assert r.status_code == 200, r.text
    assert r.json()["alarm_ids"] == [alarm["id"]]
    stored = await eventually(lambda: next((a for a in g.store.find_alarms() if a["id"] == alarm["id"] and a["ticket_id"] == t["id"]), None))
    assert stored["ticket_id"] == t["id"]
    r = await http.post(f"/api/v1/tickets/{t['id']}/link", json={"alarm": alarm["id"]}, headers=OP)
    assert r.status_code == 409 and "already linked" in r.json()["message"]
