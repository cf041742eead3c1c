"""After-sales through a running gateway's REST API (real HTTP, in process) on a manual clock:
planned work generated once and only once (again, and after a restart of the gateway on the
same store), overdue work raising an alarm that its report clears, spare-part clocks on Chinese
working days with their reminder, loaners, warranty as of a ticket's start, expiring warranties
with their notice, the out-of-warranty policy switch, repair history and the replacement rule."""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.config import Config, config_from_dict
from gateway.model import Event
from tests.fixtures.api import OP, OP_TOKEN, VIEW
from tests.helpers import base_config, eventually, example_dict

CST = ZoneInfo("Asia/Shanghai")


def local(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CST).timestamp()


def shown(ts: float) -> str:
    return datetime.fromtimestamp(ts, CST).strftime("%Y-%m-%d %H:%M")


def config(tmp_path: Path) -> Config:
    d = base_config(tmp_path / "var")
    d["api"] = {"enabled": True, "host": "127.0.0.1", "port": 0,
                "tokens": [{"token": OP_TOKEN, "role": "operator", "name": "alice"},
                           {"token": "view-Secret-51be0d", "role": "viewer", "name": "bob"}]}
    service = copy.deepcopy(example_dict()["service"])
    mine = service["mine-monitoring"]
    mine["part_warranty_restarts"] = True
    mine["replacement"] = {"unrepaired_after": "30d", "same_part_failures": 2}
    mine["out_of_warranty"] = {"policy": "software-7x24", "penalties": False, "paid_service": True}
    d["service"] = {"mine-monitoring": mine, "medical-devices": service["medical-devices"]}
    d["devices"] = [
        {"id": "pump-1", "class": "medical.infusion-pump", "site": "ward-3", "policy": "medical-devices",
         "installation": date(2026, 1, 31)},
        {"id": "gas-1", "class": "mine.gas-sensor", "site": "pit-2", "policy": "mine-monitoring",
         "acceptance": date(2025, 4, 20)},
    ]
    return config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))


@asynccontextmanager
async def running(cfg: Config, clock: ManualClock) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    async with Gateway(cfg, clock=clock) as gw:
        assert gw.api is not None
        await eventually(lambda: gw.service.last_tick, what="the first after-sales tick")
        async with httpx.AsyncClient(base_url=gw.api.url + "/api/v1", timeout=10, headers=OP) as http:
            yield gw, http


async def ok(r: Any, status: int = 200) -> Any:
    resp = await r
    assert resp.status_code == status, resp.text
    return resp.json()


async def test_planned_work_is_generated_once_overdue_alarms_and_reports_clear_them(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    clock = ManualClock(local("2026-04-01 10:00"))
    async with running(cfg, clock) as (gw, http):
        items = await ok(http.get("/service/planned", params={"device": "pump-1", "kind": "inspection"}))
        # Installed 31 Jan: monthly, the 28 Feb due date is a 调休 Saturday (a working day),
        # 31 May is a Sunday → Mon 1 Jun; generated 100 days ahead (to 10 Jul).
        assert [(i["nominal"], i["due_date"]) for i in items] == [
            ("2026-02-28", "2026-02-28"), ("2026-03-31", "2026-03-31"), ("2026-04-30", "2026-04-30"),
            ("2026-05-31", "2026-06-01"), ("2026-06-30", "2026-06-30")]
        assert [i["state"] for i in items[:3]] == ["overdue", "due", "upcoming"]
        # 31 Mar + 3 working days (1, 2, 3 Apr): overdue from Sat 4 Apr 00:00.
        assert shown(items[1]["deadline"]) == "2026-04-04 00:00"
        visits = await ok(http.get("/service/planned", params={"device": "pump-1", "kind": "visit"}))
        assert [v["due_date"] for v in visits] == ["2026-02-28", "2026-06-01"]

        # Two overdue items (inspection 1 and visit 1) → two level-3 alarms, raised once.
        def overdue_alarms() -> list[dict[str, Any]]:
            return [a for a in gw.store.list_alarms() if a["rule"] == "service-planned-overdue"]

        await eventually(lambda: len(overdue_alarms()) == 2, what=lambda: str(overdue_alarms()))
        again = await ok(http.post("/service/planned/generate"))
        assert (again["inserted"], again["updated"], again["notices"]) == (0, 0, 0)
        assert {a["level"] for a in overdue_alarms()} == {3}

        first = items[0]["id"]
        assert first == "medical-devices/inspection:pump-1:2026-02-28"
        bad = await http.post(f"/service/planned/{first}/done", json={"text": "ok", "checks": {"nope": True}})
        assert bad.status_code == 422 and "not on the checklist" in bad.json()["message"]
        r = await http.post(f"/service/planned/{first}/done", json={"text": "x"}, headers=VIEW)
        assert r.status_code == 403
        done = await ok(http.post(f"/service/planned/{first}/done", json={
            "text": "巡检完成, all fine", "checks": {"self-test": True},
            "files": [{"name": "report.txt", "content": base64.b64encode(b"test report").decode()}]}))
        assert done["state"] == "done" and done["on_time"] is False and done["report"]["files"] == [
            {"name": "report.txt", "size": 11}]
        full = await ok(http.get(f"/service/planned/{first}/report"))
        assert base64.b64decode(full["report"]["files"][0]["content"]) == b"test report"
        r = await http.post(f"/service/planned/{first}/done", json={"text": "again"})
        assert r.status_code == 422
        r = await http.post("/service/planned/nope:1/done", json={"text": "x"})
        assert r.status_code == 404

        def cleared() -> bool:
            return any(a["state"] == "cleared" and first in a["key"] for a in overdue_alarms())

        await eventually(cleared, what=lambda: str(overdue_alarms()))
        count = len(gw.store.list_planned())

    # A restart on the same store: nothing generated twice, no notice repeated.
    async with running(cfg, clock) as (gw, http):
        again = await ok(http.post("/service/planned/generate"))
        assert (again["inserted"], again["notices"]) == (0, 0)
        assert len(gw.store.list_planned()) == count
        assert len([a for a in gw.store.list_alarms() if a["rule"] == "service-planned-overdue"]) == 2
        assert (await ok(http.get(f"/service/planned/{first}")))["state"] == "done"
        # A day later: inspection 2's window closed too → one more alarm.
        clock.set(local("2026-04-04 00:00"))
        tick = await ok(http.post("/service/planned/generate"))
        assert tick["notices"] == 1


async def test_spare_clocks_loaner_and_warranty_as_of_the_ticket(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    clock = ManualClock(local("2026-04-01 10:00"))
    async with running(cfg, clock) as (gw, http):
        await eventually(lambda: gw.store.find_tickets(devices=["pump-1"]), what="a ticket on pump-1")
        tid = gw.store.find_tickets(devices=["pump-1"])[0]["id"]
        view = await ok(http.get(f"/service/tickets/{tid}"))
        assert view["warranty"]["status"] == "in_warranty" and view["warranty"]["status_zh"] == "保修期内"
        assert view["warranty"]["coverage"]["warranty_end"] == "2027-01-31"

        act = await ok(http.post(f"/service/tickets/{tid}/actions", json={"action": "spare_requested", "part": "pump-motor"}), 201)
        runs = {r["clock"]: r for r in act["spares"]}
        assert runs["provide"]["due_at_local"].startswith("2026-04-02 10:00")
        # Wed 10:00 + 2 working days: 14 h Wed, 24 h Thu, 10 h Fri.
        assert runs["ship"]["due_at_local"].startswith("2026-04-03 10:00")
        r = await http.post(f"/service/tickets/{tid}/actions", json={"action": "spare_shipped", "at": "2027-01-01T00:00:00"})
        assert r.status_code == 422 and "future" in r.json()["message"]
        r = await http.post(f"/service/tickets/{tid}/actions", json={"action": "teleported"})
        assert r.status_code == 422
        r = await http.post("/service/tickets/999/actions", json={"action": "loaner_out"})
        assert r.status_code == 404

        clock.set(local("2026-04-03 12:00"))
        await ok(http.post(f"/service/tickets/{tid}/actions", json={"action": "spare_shipped", "at": "2026-04-02T09:00:00"}), 201)
        await ok(http.post(f"/service/tickets/{tid}/actions", json={"action": "loaner_out", "unit": "PUMP-SPARE-2"}), 201)
        act = await ok(http.post(f"/service/tickets/{tid}/actions", json={"action": "replacement_received", "at": "2026-04-03T09:00:00"}), 201)
        runs = {r["clock"]: r for r in act["spares"]}
        assert (runs["provide"]["state"], runs["ship"]["state"]) == ("met", "met")
        # 15 working days from Fri 3 Apr 09:00: 15 h that day; 4-6 Apr Qingming; 7-24 Apr
        # (14 working days); 9 h on Mon 27 Apr. Reminder 3 working days earlier: Wed 22 Apr 09:00.
        ret = runs["return_broken"]
        assert ret["party"] == "customer" and ret["due_at_local"].startswith("2026-04-27 09:00")
        assert ret["remind_at_local"].startswith("2026-04-22 09:00")
        assert act["loaner"]["unit"] == "PUMP-SPARE-2" and act["loaner"]["back_at"] is None
        timeline = gw.store.timeline(tid)
        assert any("loaner_out" in e["note"] and "备用机借出" in e["note"] for e in timeline)

        def spare_alarms() -> list[dict[str, Any]]:
            return [a for a in gw.store.list_alarms() if a["rule"].startswith("service-spare")]

        clock.set(local("2026-04-22 08:59"))
        await ok(http.post("/service/planned/generate"))  # returns once its notices are committed
        assert spare_alarms() == []
        clock.set(local("2026-04-22 09:00"))
        await ok(http.post("/service/planned/generate"))
        await eventually(lambda: [a["rule"] for a in spare_alarms()] == ["service-spare-reminder"], what=lambda: str(spare_alarms()))
        clock.set(local("2026-04-27 09:00"))
        await ok(http.post("/service/planned/generate"))
        await eventually(lambda: {a["level"] for a in spare_alarms()} == {3}, what=lambda: str(spare_alarms()))
        clock.set(local("2026-04-27 09:30"))
        await ok(http.post(f"/service/tickets/{tid}/actions", json={"action": "part_returned"}), 201)
        await ok(http.post(f"/service/tickets/{tid}/actions", json={"action": "loaner_back"}), 201)
        await ok(http.post("/service/planned/generate"))
        await eventually(lambda: all(a["state"] == "cleared" for a in spare_alarms()), what=lambda: str(spare_alarms()))
        view = await ok(http.get(f"/service/tickets/{tid}"))
        assert {r["clock"]: r["state"] for r in view["spares"]}["return_broken"] == "late"
        assert view["loaner"]["back_at"] is not None


async def test_warranty_expiry_notice_policy_switch_history_and_replacement_rule(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    clock = ManualClock(local("2026-04-01 10:00"))
    async with running(cfg, clock) as (gw, http):
        # Accepted 20 Apr 2025, 12 months: ends 20 Apr 2026 (19 days left) → a level-4 notice.
        rows = await ok(http.get("/service/warranty/expiring", params={"within": 30}))
        assert rows == [{"device": "gas-1", "warranty_end": "2026-04-20", "days_left": 19,
                         "contract": "mine-monitoring", "notice_days": 30}]
        assert await ok(http.get("/service/warranty/expiring", params={"within": 15})) == []

        def notices() -> list[dict[str, Any]]:
            return [a for a in gw.store.list_alarms() if a["rule"] == "service-warranty-expiring"]

        await eventually(lambda: [a["level"] for a in notices()] == [4], what=lambda: str(notices()))
        w = await ok(http.get("/service/devices/gas-1/warranty", params={"on": "2026-04-20"}))
        assert w["status"] == "out_of_warranty" and w["out_of_warranty"]["paid_service"] is True
        assert gw.pipeline.inventory.get("gas-1").policy == "mine-monitoring"

        # Out of warranty: new tickets of gas-1 run on the named policy, without penalties.
        clock.set(local("2026-04-20 00:00"))
        await ok(http.post("/service/planned/generate"))
        assert [a["state"] for a in notices()] == ["cleared"]  # the notice did its work
        assert gw.pipeline.inventory.get("gas-1").policy == "software-7x24~no-penalties"
        assert gw.pipeline.policies["software-7x24~no-penalties"].penalties is None
        assert gw.pipeline.policies["software-7x24"].penalties is not None
        gw.pipeline.offer(Event(clock.now(), "test", "gas-1", "heartbeat.lost", {}))
        await eventually(lambda: gw.store.find_tickets(devices=["gas-1"], levels=[1]), what="a level-1 ticket")
        t1 = gw.store.find_tickets(devices=["gas-1"], levels=[1])[0]
        assert t1["policy"] == "software-7x24~no-penalties"
        view = await ok(http.get(f"/service/tickets/{t1['id']}"))
        assert view["contract"] == "mine-monitoring" and view["warranty"]["status"] == "out_of_warranty"

        # The same main part failing on two tickets → the replacement notice, once.
        t4 = gw.store.find_tickets(devices=["gas-1"], levels=[4])[0]
        await ok(http.post(f"/service/tickets/{t4['id']}/actions", json={"action": "part_failed", "part": "sensor-head"}), 201)
        await ok(http.post(f"/service/tickets/{t1['id']}/actions", json={"action": "part_replaced", "part": "sensor-head"}), 201)
        await ok(http.post("/service/planned/generate"))

        def replacements() -> list[dict[str, Any]]:
            return [a for a in gw.store.list_alarms() if a["rule"] == "service-replacement-due"]

        await eventually(lambda: len(replacements()) == 1, what=lambda: str(replacements()))
        await ok(http.post("/service/planned/generate"))
        await asyncio.sleep(0)  # why: let a (wrongly) repeated notice reach the pipeline before counting
        await ok(http.post("/service/planned/generate"))
        assert len(replacements()) == 1 and replacements()[0]["count"] == 1

        hist = await ok(http.get("/service/devices/gas-1/history"))
        kinds = [(e["kind"], e["what"]) for e in hist["entries"]]
        assert ("ticket", "opened") in kinds and ("spare", "part_failed") in kinds and ("warranty", "part_replaced") in kinds
        assert ("notice", "notice") in kinds
        assert [r["key"] for r in hist["replacement"]] == ["same_part:sensor-head"]
        # The replaced part has its own warranty from the day it was replaced.
        assert hist["warranty"]["parts"] == [{"part": "sensor-head", "replaced": "2026-04-20",
                                              "warranty_end": "2027-04-20", "status": "in_warranty"}]
        r = await http.get("/service/devices/nope/history")
        assert r.status_code == 404


async def test_a_schedule_edited_and_reloaded_keeps_done_work_and_duplicates_nothing(tmp_path: Path) -> None:
    from gateway.config import load_config
    from tests.helpers import write_config

    d = base_config(tmp_path / "var")
    d["api"] = {"enabled": True, "host": "127.0.0.1", "port": 0,
                "tokens": [{"token": OP_TOKEN, "role": "operator", "name": "alice"}]}
    med = copy.deepcopy(example_dict()["service"]["medical-devices"])
    med["schedules"] = [s for s in med["schedules"] if s["kind"] == "inspection"]
    d["service"] = {"medical-devices": med}
    d["devices"] = [{"id": "pump-1", "class": "medical.infusion-pump", "policy": "medical-devices",
                     "installation": "2026-01-31"}]
    path = write_config(tmp_path / "config.toml", d)
    clock = ManualClock(local("2026-04-01 10:00"))
    async with running(load_config(path), clock) as (gw, http):
        first = "medical-devices/inspection:pump-1:2026-02-28"
        await ok(http.post(f"/service/planned/{first}/done", json={"text": "done"}))
        before = {i["nominal"] for i in await ok(http.get("/service/planned"))}
        assert before == {"2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31", "2026-06-30"}

        med["schedules"][0]["rule"] = "every 2 months"
        write_config(path, d)
        assert (await gw.reload())["ok"]
        tick = await ok(http.post("/service/planned/generate"))
        assert tick["inserted"] == 0  # 31 Mar and 31 May exist already
        items = {i["nominal"]: i for i in await ok(http.get("/service/planned"))}
        assert {n: i["state"] for n, i in items.items()} == {
            "2026-02-28": "done", "2026-03-31": "due", "2026-04-30": "cancelled", "2026-05-31": "upcoming",
            "2026-06-30": "cancelled"}
        assert len(gw.store.list_planned()) == 5
        again = await ok(http.post("/service/planned/generate"))
        assert (again["inserted"], again["updated"]) == (0, 0)

        # Back to monthly: the cancelled dates return as they were, still one item per date.
        med["schedules"][0]["rule"] = "monthly"
        write_config(path, d)
        assert (await gw.reload())["ok"]
        await ok(http.post("/service/planned/generate"))
        states = [i["state"] for i in await ok(http.get("/service/planned"))]
        assert states == ["done", "due", "upcoming", "upcoming", "upcoming"]
        assert len(gw.store.list_planned()) == 5
