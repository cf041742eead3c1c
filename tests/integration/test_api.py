"""The REST API, SSE stream, /metrics and /healthz of a running gateway (in process), over real
HTTP with httpx, fed by net-snmp's snmptrap over real UDP (and by events offered to the
pipeline where a device other than the loopback sender is needed)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.api.client import ApiClient, ApiClientError
from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.errors import ConfigError
from gateway.model import Event
from gateway.store import BatchWrite, OutboxRow
from tests.fixtures.api import OP, OP_TOKEN, VIEW, VIEW_TOKEN, api_config
from tests.fixtures.netsnmp import COLD_START, LINK_DOWN, LINK_UP, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import eventually


class Harness:
    def __init__(self, gw: Gateway, http: httpx.AsyncClient, snmp_port: int) -> None:
        self.gw = gw
        self.http = http
        self.snmp_port = snmp_port

    @property
    def ctx(self) -> Any:
        return self.gw.api.ctx

    async def trap(self, netsnmp: NetSnmp, oid: str, varbinds: list[str] | None = None, **kw: Any) -> None:
        r = await asyncio.to_thread(netsnmp.trap, self.snmp_port, oid, varbinds or [], **kw)
        assert r.returncode == 0, r.stderr

    def offer(self, device: str, name: str, **attrs: Any) -> None:
        assert self.gw.pipeline.offer(Event(self.gw.clock.now(), "test", device, name, attrs))

    async def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return await self.http.get(path, headers=OP if headers is None else headers, **kw)

    async def post(
        self, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.http.post(path, json=body, headers=OP if headers is None else headers)

    async def metrics(self) -> dict[str, list[Any]]:
        r = await self.http.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        out: dict[str, list[Any]] = {}
        for fam in text_string_to_metric_families(r.text):
            for s in fam.samples:
                out.setdefault(s.name, []).append(s)
        return out


def sample(m: dict[str, list[Any]], name: str, **labels: str) -> float:
    for s in m.get(name, []):
        if all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {name}{labels}")


async def _harness(tmp_path: Path, clock: Any = None) -> AsyncIterator[Harness]:
    port = free_udp_port()
    async with Gateway(api_config(tmp_path, port), clock=clock) as gw:
        assert gw.api is not None
        async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as http:
            yield Harness(gw, http, port)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async for x in _harness(tmp_path):
        yield x


async def _one_ticket(h: Harness, netsnmp: NetSnmp, index: int = 7) -> dict[str, Any]:
    await h.trap(netsnmp, LINK_DOWN, link_varbinds(index, f"eth{index}"))
    return await eventually(
        lambda: next((t for t in h.gw.store.list_tickets() if t["alarm_key"] == f"sw-1/if/{index}"), None)
    )


# -- auth ----------------------------------------------------------------------------------------
async def test_auth_401_without_token_403_for_viewer_acting_and_tokens_never_logged(
    h: Harness, netsnmp: NetSnmp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    t = await _one_ticket(h, netsnmp)
    r = await h.get("/api/v1/alarms", headers={})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"] == "unauthorized" and "bearer token" in r.json()["message"]
    r = await h.get("/api/v1/alarms", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401
    r = await h.get("/api/v1/alarms", headers={"Authorization": f"Basic {OP_TOKEN}"})
    assert r.status_code == 401
    assert (await h.get("/api/v1/whoami", headers=VIEW)).json().items() >= {"name": "bob", "role": "viewer"}.items()
    assert (await h.get("/api/v1/whoami")).json().items() >= {"name": "alice", "role": "operator", "kind": "service"}.items()
    assert (await h.get("/api/v1/alarms", headers=VIEW)).status_code == 200
    for path in (
        f"/api/v1/tickets/{t['id']}/acknowledge",
        "/api/v1/alarms/1/ack",
        "/api/v1/rules/reload",
        "/api/v1/outbox/1/retry",
        "/api/v1/maintenance/x/end",
    ):
        r = await h.post(path, {}, headers=VIEW)
        assert r.status_code == 403, path
        assert "viewer" in r.json()["message"]
    assert h.gw.store.get_ticket(t["id"])["status"] == "open"  # nothing happened
    # ops endpoints are open: a scraper and a load balancer carry no token
    assert (await h.get("/healthz", headers={})).status_code == 200
    assert (await h.get("/metrics", headers={})).status_code == 200
    assert OP_TOKEN not in caplog.text and VIEW_TOKEN not in caplog.text


async def test_openapi_and_board_are_served(h: Harness) -> None:
    r = await h.get("/api/v1/openapi.json", headers={})
    assert r.status_code == 200
    spec = r.json()
    for path in (
        "/api/v1/alarms",
        "/api/v1/tickets",
        "/api/v1/tickets/{ticket_id}/{action}",
        "/api/v1/devices",
        "/api/v1/maintenance",
        "/api/v1/rules/reload",
        "/api/v1/outbox/failed",
        "/api/v1/events/stream",
    ):
        assert path in spec["paths"], path
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    r = await h.get("/", headers={})
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "/static/board.js" in r.text
    for asset in ("/static/board.js", "/static/board.css"):
        assert (await h.get(asset, headers={})).status_code == 200


# -- alarms ----------------------------------------------------------------------------------------
async def test_alarms_filter_by_level_state_site_device_and_ack(h: Harness, netsnmp: NetSnmp) -> None:
    await _one_ticket(h, netsnmp, 7)  # sw-1 (site hq), level 3
    h.offer("gas-1", "heartbeat.lost")  # gas-1 (site pit-2), level 1
    await eventually(lambda: len(h.gw.store.list_alarms()) == 2)

    async def keys(**params: Any) -> list[str]:
        r = await h.get("/api/v1/alarms", params=params)
        assert r.status_code == 200, r.text
        return sorted(a["key"] for a in r.json())

    assert await keys() == ["gas-1/reachability", "sw-1/if/7"]
    assert await keys(level=1) == ["gas-1/reachability"]
    assert await keys(level=[1, 3]) == ["gas-1/reachability", "sw-1/if/7"]
    assert await keys(site="hq") == ["sw-1/if/7"]
    assert await keys(site="pit-2", device="sw-1") == []
    assert await keys(device="gas-1") == ["gas-1/reachability"]
    assert await keys(state="open") == ["gas-1/reachability", "sw-1/if/7"]
    assert await keys(state="cleared") == []
    await h.trap(netsnmp, LINK_UP, link_varbinds(7))
    await eventually(lambda: any(a["state"] == "cleared" for a in h.gw.store.list_alarms()))
    assert await keys(state="cleared") == ["sw-1/if/7"]
    assert await keys(state="active") == ["gas-1/reachability"]

    [gas] = (await h.get("/api/v1/alarms", params={"device": "gas-1"})).json()
    assert (gas["site"], gas["device_name"], gas["level_name"], gas["acked"]) == (
        "pit-2",
        "Gas monitor 1",
        "critical",
        False,
    )
    assert (await h.get(f"/api/v1/alarms/{gas['id']}")).json()["key"] == "gas-1/reachability"
    r = await h.post(f"/api/v1/alarms/{gas['id']}/ack")
    assert r.status_code == 200 and r.json()["acked"] is True
    assert h.gw.store.get_alarm(gas["id"])["acked"] is True  # committed before the answer
    cleared = next(a for a in h.gw.store.list_alarms() if a["state"] == "cleared")
    assert (await h.post(f"/api/v1/alarms/{cleared['id']}/ack")).status_code == 409
    assert (await h.post("/api/v1/alarms/999/ack")).status_code == 404
    assert (await h.get("/api/v1/alarms/999")).status_code == 404


# -- tickets ---------------------------------------------------------------------------------------
async def test_ticket_actions_go_through_the_pipeline(h: Harness, netsnmp: NetSnmp) -> None:
    t = await _one_ticket(h, netsnmp)
    tid = t["id"]
    commits = h.gw.pipeline.stats.batches
    r = await h.post(f"/api/v1/tickets/{tid}/acknowledge", {"note": "looking"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "acknowledged"
    resp = next(c for c in body["clocks"] if c["kind"] == "response")
    assert resp["state"] == "met" and resp["remaining_seconds"] is None
    sol = next(c for c in body["clocks"] if c["kind"] == "solution")
    assert (
        sol["state"] == "running" and 0 < sol["remaining_seconds"] <= sol["target_seconds"] and sol["ticking"]
    )
    assert h.gw.pipeline.stats.batches > commits
    assert h.gw.store.get_ticket(tid)["status"] == "acknowledged"  # committed before the answer
    alarm = next(a for a in h.gw.store.list_alarms() if a["ticket_id"] == tid)
    assert alarm["acked"] is True  # acknowledging the ticket acks its alarm

    assert (
        await h.post(f"/api/v1/tickets/{tid}/comment", {"note": "spare part ordered", "actor": "carol"})
    ).status_code == 200
    r = await h.post(f"/api/v1/tickets/{tid}/pause", {"note": "waiting for the customer"})
    assert r.json()["paused"] is True
    assert all(c["state"] in ("paused", "met", "waiting") for c in r.json()["clocks"])
    assert (await h.post(f"/api/v1/tickets/{tid}/pause")).status_code == 409  # nothing left to pause
    assert (await h.post(f"/api/v1/tickets/{tid}/resume")).json()["paused"] is False
    r = await h.post(f"/api/v1/tickets/{tid}/level", {"level": 2, "note": "whole line affected"})
    assert r.json()["level"] == 2 and r.json()["level_name"] == "major"
    r = await h.post(f"/api/v1/tickets/{tid}/propose_solution")
    assert r.json()["status"] == "solution_proposed"
    r = await h.post(f"/api/v1/tickets/{tid}/arrive")
    assert r.json()["status"] == "on_site"
    assert next(c for c in r.json()["clocks"] if c["kind"] == "on_site")["state"] == "met"
    fields = {
        "symptoms": "port flapping",
        "cause": "bad SFP",
        "solution": "replaced SFP",
        "follow_up": "audit optics",
    }
    r = await h.post(f"/api/v1/tickets/{tid}/report", {"fields": fields})
    assert r.json()["report"] == fields
    r = await h.post(f"/api/v1/tickets/{tid}/resolve", {"note": "link up"})
    assert r.json()["status"] == "restored"
    r = await h.post(f"/api/v1/tickets/{tid}/close")
    assert r.json()["status"] == "closed" and r.json()["closed_at"]
    assert (await h.post(f"/api/v1/tickets/{tid}/arrive")).status_code == 409  # closed: reopen first
    r = await h.post(f"/api/v1/tickets/{tid}/reopen", {"note": "fault came back"})
    assert r.status_code == 200 and r.json()["status"] == "open"
    r = await h.post(f"/api/v1/tickets/{tid}/reopen")
    assert r.status_code == 409 and "reopen" in r.json()["message"]
    assert (await h.post(f"/api/v1/tickets/{tid}/close")).json()["status"] == "closed"
    assert (await h.post("/api/v1/tickets/999/acknowledge")).status_code == 404

    detail = (await h.get(f"/api/v1/tickets/{tid}")).json()
    kinds = [(e["kind"], e["actor"]) for e in detail["timeline"]]
    assert ("acknowledge", "alice") in kinds
    # The caller is the actor; the name in the body is only whom alice acted for.
    assert [(e["actor"], e["on_behalf_of"]) for e in detail["timeline"] if e["kind"] == "comment"] == [("alice", "carol")]
    assert [k for k, _ in kinds][-4:] == ["restore", "close", "reopened", "close"]
    assert detail["timeline"][0]["ts"].endswith("Z")
    assert (await h.get("/api/v1/tickets/999")).status_code == 404

    async def ids(**params: Any) -> list[int]:
        r = await h.get("/api/v1/tickets", params=params)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()]

    t2 = await _one_ticket(h, netsnmp, 8)
    assert await ids() == [t2["id"], tid]
    assert await ids(closed="false") == [t2["id"]]
    assert await ids(status="closed") == [tid]
    assert await ids(level=3) == [t2["id"]]
    assert await ids(site="hq", device="sw-1") == [t2["id"], tid]
    assert await ids(site="pit-2") == []


async def test_invalid_input_is_422_naming_the_field(h: Harness, netsnmp: NetSnmp) -> None:
    t = await _one_ticket(h, netsnmp)

    async def err(r: httpx.Response) -> str:
        assert r.status_code == 422, r.text
        assert r.json()["error"] in ("invalid_input",)
        return str(r.json()["message"])

    assert "body.level" in await err(await h.post(f"/api/v1/tickets/{t['id']}/level", {"level": 9}))
    assert "body.level" in await err(await h.post(f"/api/v1/tickets/{t['id']}/level", {}))
    assert "body.fields" in await err(await h.post(f"/api/v1/tickets/{t['id']}/report", {}))
    assert "body.fields.blame" in await err(
        await h.post(f"/api/v1/tickets/{t['id']}/report", {"fields": {"blame": "x"}})
    )
    assert "body.note" in await err(await h.post(f"/api/v1/tickets/{t['id']}/comment", {"note": 5}))
    assert "body.colour" in await err(await h.post(f"/api/v1/tickets/{t['id']}/comment", {"colour": "red"}))
    assert "path.action" in await err(await h.post(f"/api/v1/tickets/{t['id']}/explode", {}))
    assert "path.ticket_id" in await err(await h.post("/api/v1/tickets/abc/acknowledge", {}))
    assert "query.level[0]" in await err(await h.get("/api/v1/alarms", params={"level": 7}))
    assert "query.state[0]" in await err(await h.get("/api/v1/alarms", params={"state": "burning"}))
    assert "query.limit" in await err(await h.get("/api/v1/tickets", params={"limit": 0}))
    r = await h.http.post(
        f"/api/v1/tickets/{t['id']}/comment",
        content=b"{not json",
        headers={**OP, "Content-Type": "application/json"},
    )
    assert "invalid JSON" in await err(r)
    assert h.gw.store.get_ticket(t["id"])["status"] == "open"


async def test_request_body_over_limit_is_413(h: Harness, netsnmp: NetSnmp) -> None:
    t = await _one_ticket(h, netsnmp)
    big = {"note": "x" * (65 * 1024)}
    r = await h.post(f"/api/v1/tickets/{t['id']}/comment", big)
    assert r.status_code == 413 and r.json()["error"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        yield b'{"note": "'
        for _ in range(80):
            yield b"y" * 1024
        yield b'"}'

    r = await h.http.post(
        f"/api/v1/tickets/{t['id']}/comment",
        content=chunks(),
        headers={**OP, "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    ok = await h.post(f"/api/v1/tickets/{t['id']}/comment", {"note": "x" * 1000})
    assert ok.status_code == 200
    assert [e["kind"] for e in h.gw.store.timeline(t["id"])].count("comment") == 1


# -- devices, optional features ------------------------------------------------------------------
async def test_devices_and_liveness(h: Harness, netsnmp: NetSnmp) -> None:
    h.offer("gas-1", "heartbeat.lost")
    h.offer("10.9.9.9", "SNMPv2-MIB::coldStart")  # a sender not in the inventory
    await eventually(lambda: len(h.gw.store.list_alarms()) == 2)
    devs = {d["id"]: d for d in (await h.get("/api/v1/devices")).json()}
    assert devs["gas-1"]["liveness"] == "lost" and devs["gas-1"]["worst_level"] == 1
    assert devs["gas-1"]["class"] == "mine.gas-sensor" and devs["gas-1"]["site"] == "pit-2"
    assert devs["sw-1"]["liveness"] == "unmonitored" and devs["sw-1"]["open_alarms"] == 0
    assert devs["10.9.9.9"]["known"] is False
    lost = (await h.get("/api/v1/devices", params={"liveness": "lost"})).json()
    assert [d["id"] for d in lost] == ["gas-1"]
    assert [d["id"] for d in (await h.get("/api/v1/devices", params={"site": "hq"})).json()] == ["sw-1"]
    one = (await h.get("/api/v1/devices/gas-1")).json()
    assert [a["key"] for a in one["alarms"]] == ["gas-1/reachability"]
    assert (await h.get("/api/v1/devices/nope")).status_code == 404
    assert [d["id"] for d in (await h.get("/api/v1/devices", params={"limit": 1})).json()] == ["10.9.9.9"]
    board = (await h.get("/api/v1/board")).json()
    assert [d["id"] for d in board["devices"]] == ["gas-1", "10.9.9.9", "sw-1"]  # worst open alarm first
    assert board["health"]["devices"]["total"] == 3 and board["health"]["devices"]["lost"] == 1
    h.offer("gas-1", "heartbeat")  # a sign of life: the watchdog restores it
    await eventually(lambda: not h.gw.book.open.get("gas-1/reachability"))
    back = (await h.get("/api/v1/devices/gas-1")).json()
    assert back["liveness"] == "alive" and back["last_seen"] and back["deadline"] and back["open_alarms"] == 0


async def test_maintenance_windows_reload_and_outbox(h: Harness, netsnmp: NetSnmp) -> None:
    hooks = h.ctx.maintenance
    h.ctx.maintenance = None  # a gateway without the feature: a clear 501
    spec = {"sites": ["hq"], "end": "2030-01-01T08:00:00+08:00", "reason": "firmware upgrade"}
    for method, path in (("GET", "/api/v1/maintenance"), ("POST", "/api/v1/maintenance/mw1/end")):
        r = await h.http.request(method, path, headers=OP)
        assert r.status_code == 501 and "not available" in r.json()["message"], path
    assert (await h.post("/api/v1/maintenance", spec)).status_code == 501
    h.ctx.maintenance = hooks

    r = await h.post("/api/v1/maintenance", spec)
    assert r.status_code == 201, r.text
    w = r.json()
    assert (w["sites"], w["author"], w["end"], w["reason"]) == (
        ["hq"],
        "alice",
        "2030-01-01T00:00:00.000Z",
        "firmware upgrade",
    )
    assert (
        "body: name at least one"
        in (await h.post("/api/v1/maintenance", {"end": "2030-01-01T00:00:00Z"})).json()["message"]
    )
    assert (
        "body.end"
        in (await h.post("/api/v1/maintenance", {"sites": ["hq"], "end": "soon"})).json()["message"]
    )
    r = await h.post(
        "/api/v1/maintenance",
        {"sites": ["hq"], "start": "2030-01-02T00:00:00Z", "end": "2030-01-01T00:00:00Z"},
    )
    assert r.status_code == 422 and "end must be after start" in r.json()["message"]
    r = await h.post("/api/v1/maintenance", {"sites": ["hq"], "end": "2020-01-01T00:00:00Z"})
    assert r.status_code == 422 and "body.end" in r.json()["message"]
    assert [x["id"] for x in (await h.get("/api/v1/maintenance", headers=VIEW)).json()] == [w["id"]]
    # while the window is open, a fault at the site is suppressed: no ticket
    await h.trap(netsnmp, LINK_DOWN, link_varbinds(4))
    await eventually(lambda: h.gw.store.list_alarms())
    [a] = (await h.get("/api/v1/alarms", params={"state": "suppressed"})).json()
    assert a["key"] == "sw-1/if/4" and a["ticket_id"] is None
    ended = (await h.post(f"/api/v1/maintenance/{w['id']}/end")).json()
    assert ended["id"] == w["id"] and ended["ended_by"] == "alice"
    await eventually(lambda: h.gw.store.list_tickets())  # the fault is still there: now it needs people
    assert (await h.post(f"/api/v1/maintenance/{w['id']}/end")).status_code == 409
    assert (await h.post("/api/v1/maintenance/nope/end")).status_code == 404
    assert (await h.get("/api/v1/maintenance")).json() == []
    assert [
        x["id"] for x in (await h.get("/api/v1/maintenance", params={"include_ended": "true"})).json()
    ] == [w["id"]]
    assert w["source"] == "api"
    r = await h.post("/api/v1/maintenance", {**spec, "id": w["id"]})  # an id names one window, never replaced
    assert r.status_code == 422 and "exists already" in r.json()["message"]

    r = await h.post("/api/v1/rules/reload")  # the gateway's own reload
    assert r.status_code == 200 and r.json()["result"]["ok"] is True and r.json()["result"]["rules"] > 0
    real_reload = h.ctx.reload

    async def broken() -> dict[str, Any]:
        raise ConfigError("rules/site.toml", "rules[0].level", "must be 1-4")

    h.ctx.reload = broken
    r = await h.post("/api/v1/rules/reload")
    assert r.status_code == 422 and "rules[0].level" in r.json()["message"]
    h.ctx.reload = None
    assert (await h.post("/api/v1/rules/reload")).status_code == 501
    h.ctx.reload = real_reload

    # failed outbox messages, through the store
    store = h.gw.store
    store.commit(BatchWrite(outbox=[OutboxRow("desk", 1, "test-t1", "open", {"id": 1})]))
    [row] = store.outbox_list()
    store.outbox_failed(row["id"], "permanent: 400 bad request")
    [failed] = (await h.get("/api/v1/outbox/failed", headers=VIEW)).json()
    assert failed["id"] == row["id"] and "400" in failed["last_error"]
    assert (await h.post(f"/api/v1/outbox/{row['id']}/retry")).json()["status"] == "requeued"
    assert (await h.get("/api/v1/outbox/failed")).json() == []
    assert (await h.post(f"/api/v1/outbox/{row['id']}/retry")).status_code == 409
    store.outbox_failed(row["id"], "again")
    assert (await h.post(f"/api/v1/outbox/{row['id']}/discard")).json()["status"] == "discarded"
    assert store.outbox_counts().get("discarded") == 1
    h.ctx.outbox = None
    assert (await h.get("/api/v1/outbox/failed")).status_code == 501


# -- live stream -----------------------------------------------------------------------------------
async def _sse(resp: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    event, data = "message", []
    async for line in resp.aiter_lines():
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


async def _next_of(
    events: AsyncIterator[tuple[str, dict[str, Any]]], kind: str, pred: Any = None, timeout: float = 2.0
) -> dict[str, Any]:
    async def find() -> dict[str, Any]:
        async for ev, data in events:
            if ev == kind and (pred is None or pred(data)):
                return data
        raise AssertionError(f"stream ended before a {kind!r} event")

    return await asyncio.wait_for(find(), timeout)


async def test_sse_delivers_an_alarm_change_within_2s(h: Harness, netsnmp: NetSnmp) -> None:
    async with h.http.stream("GET", "/api/v1/events/stream", headers=VIEW) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = _sse(resp).__aiter__()
        await _next_of(events, "hello")
        t0 = time.monotonic()
        await h.trap(netsnmp, LINK_DOWN, link_varbinds(3, "eth3"))
        alarm = await _next_of(events, "alarm", lambda a: a["key"] == "sw-1/if/3")
        assert time.monotonic() - t0 < 2.0
        assert (alarm["state"], alarm["level"], alarm["site"]) == ("active", 3, "hq")
        ticket = await _next_of(events, "ticket", lambda t: t["alarm_key"] == "sw-1/if/3")
        assert ticket["status"] == "open" and ticket["clocks"][0]["remaining_seconds"] > 0
        # an operator action shows up on the stream too
        r = await h.post(f"/api/v1/tickets/{ticket['id']}/acknowledge")
        assert r.status_code == 200
        acked = await _next_of(
            events, "ticket", lambda t: t["id"] == ticket["id"] and t["status"] == "acknowledged"
        )
        assert acked["clocks"][0]["state"] == "met"
    assert (await h.get("/api/v1/alarms", headers={"Authorization": ""})).status_code == 401
    assert (await h.http.get("/api/v1/events/stream")).status_code == 401


async def test_sse_sla_warning_and_breach(tmp_path: Path, netsnmp: NetSnmp) -> None:
    clock = ManualClock(time.time())
    async for h in _harness(tmp_path, clock):
        async with h.http.stream(
            "GET", "/api/v1/events/stream", params={"types": "sla.warning,sla.breach"}, headers=VIEW
        ) as resp:
            events = _sse(resp).__aiter__()
            await _next_of(events, "hello")
            t = await _one_ticket(h, netsnmp)  # level 3, mine-monitoring: response within 2 h
            m0 = await h.metrics()
            clock.advance(3700)  # past 50 % of the response target
            warn = await _next_of(events, "sla.warning", lambda n: n["clock"] == "response", timeout=3)
            assert (warn["ticket_id"], warn["fraction"], warn["level"]) == (t["id"], 0.5, 3)
            clock.advance(3600)  # past the deadline
            breach = await _next_of(events, "sla.breach", lambda n: n["clock"] == "response", timeout=3)
            assert breach["ticket_id"] == t["id"] and breach["fraction"] == 1.0
            m1 = await h.metrics()
            assert sample(m1, "gateway_sla_breaches_total") > sample(m0, "gateway_sla_breaches_total")
            assert sample(m1, "gateway_sla_warnings_total") == sample(m0, "gateway_sla_warnings_total") + 1
            assert sample(m1, "gateway_sla_clocks", clock="response", state="breached") == 1
        board = (await h.get("/api/v1/board")).json()
        [bt] = board["tickets"]
        resp_clock = next(c for c in bt["clocks"] if c["kind"] == "response")
        assert resp_clock["breached"] and resp_clock["remaining_seconds"] < 0


async def test_slow_subscriber_is_dropped_and_counted(h: Harness, netsnmp: NetSnmp) -> None:
    bus = h.ctx.bus
    slow = bus.subscribe(maxsize=2)  # never reads
    fast = bus.subscribe()
    for i in (1, 2, 3):
        await h.trap(netsnmp, LINK_DOWN, link_varbinds(i))
    await eventually(lambda: len(h.gw.store.list_tickets()) == 3)  # the pipeline never waited
    # The bus is fed right after each commit: the store can show a batch a moment before.
    await eventually(lambda: slow.dropped and bus.stats.dropped_subscribers == 1)
    assert [m["type"] async for m in slow] == ["overflow"]
    got: list[str] = []

    def drained() -> bool:
        while len(fast):
            got.append(fast._q.popleft()["type"])  # what is already queued, without waiting
        return got.count("alarm") >= 3 and got.count("ticket") >= 3

    await eventually(drained)
    assert got.count("alarm") == 3 and got.count("ticket") == 3
    fast.close()
    m = await h.metrics()
    assert sample(m, "gateway_bus_dropped_subscribers_total") == 1
    assert sample(m, "gateway_bus_dropped_messages_total") >= 1

    # over HTTP: a stream whose queue overflows is told so and ended; the client reconnects
    bus.maxsize = 1
    async with h.http.stream("GET", "/api/v1/events/stream", headers=VIEW) as resp:
        events = _sse(resp).__aiter__()
        await _next_of(events, "hello")
        await h.trap(netsnmp, LINK_DOWN, link_varbinds(9))  # alarm + ticket in one commit
        over = await _next_of(events, "overflow")
        assert "fell behind" in over["reason"]
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(events.__anext__(), 2)
    assert bus.stats.dropped_subscribers == 2 and bus.subscribers == 0


# -- metrics and health ----------------------------------------------------------------------------
async def test_metrics_parse_and_move_with_traffic(h: Harness, netsnmp: NetSnmp) -> None:
    m0 = await h.metrics()
    assert sample(m0, "gateway_adapter_received_total", adapter="snmp") == 0
    assert sample(m0, "gateway_store_healthy") == 1
    assert sample(m0, "gateway_queue_capacity") == h.gw.cfg.pipeline.queue_size
    assert sample(m0, "gateway_alarms", level="3", state="active") == 0
    await _one_ticket(h, netsnmp)
    await h.trap(netsnmp, COLD_START, community="wrong")
    await eventually(lambda: h.gw.adapters[0].stats().get("rejected.bad_community") == 1)
    m1 = await h.metrics()
    assert sample(m1, "gateway_adapter_received_total", adapter="snmp") == 2
    assert sample(m1, "gateway_adapter_decoded_total", adapter="snmp") == 1
    assert sample(m1, "gateway_adapter_rejected_total", adapter="snmp", reason="bad_community") == 1
    assert sample(m1, "gateway_pipeline_received_total") == 1
    assert sample(m1, "gateway_pipeline_shed_total") == 0
    assert sample(m1, "gateway_alarms", level="3", state="active") == 1
    assert sample(m1, "gateway_tickets_open", level="3", status="open") == 1
    assert sample(m1, "gateway_alarms_raised_total") == 1 and sample(m1, "gateway_tickets_opened_total") == 1
    assert sample(m1, "gateway_sla_clocks", clock="response", state="running") == 1
    assert sample(m1, "gateway_pipeline_latency_seconds_count") > sample(
        m0, "gateway_pipeline_latency_seconds_count"
    )
    inf = sample(m1, "gateway_pipeline_latency_seconds_bucket", le="+Inf")
    assert inf == sample(m1, "gateway_pipeline_latency_seconds_count")
    assert sample(m1, "gateway_outbox_messages", state="failed") == 0
    assert "gateway_bus_subscribers" in m1


async def test_healthz_reports_an_unhealthy_store(h: Harness) -> None:
    r = await h.get("/healthz", headers={})
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    h.gw.pipeline.healthy = False
    h.gw.pipeline.last_error = "gateway.db: commit failed: disk I/O error"
    try:
        r = await h.get("/healthz", headers={})
        assert r.status_code == 503
        assert r.json() == {"status": "unhealthy", "reason": "gateway.db: commit failed: disk I/O error"}
        assert sample(await h.metrics(), "gateway_store_healthy") == 0
    finally:
        h.gw.pipeline.healthy = True


async def test_action_answers_503_when_the_commit_does_not_come(h: Harness, netsnmp: NetSnmp) -> None:
    t = await _one_ticket(h, netsnmp)
    h.ctx.command_timeout = 0.5
    h.gw.pipeline.paused_commit = True
    try:
        r = await h.post(f"/api/v1/tickets/{t['id']}/acknowledge")
        assert r.status_code == 503 and r.json()["error"] == "not_committed"
    finally:
        h.gw.pipeline.paused_commit = False
    await eventually(
        lambda: h.gw.store.get_ticket(t["id"])["status"] == "acknowledged"
    )  # applied once committed


async def test_client_helper_uses_config_tokens(h: Harness) -> None:
    cfg = h.gw.cfg.model_copy(deep=True)
    cfg.api.port = h.gw.api.port
    with ApiClient(cfg, role="operator") as c:
        assert (await asyncio.to_thread(c.get, "/whoami")).items() >= {"name": "alice", "role": "operator"}.items()
        with pytest.raises(ApiClientError) as e:
            await asyncio.to_thread(c.post, "/tickets/999/acknowledge", {})
        assert e.value.status == 404
    with ApiClient(cfg) as c:
        assert (await asyncio.to_thread(c.get, "/whoami"))["role"] == "viewer"
    cfg.api.tokens = [t for t in cfg.api.tokens if t.role == "viewer"]
    with (
        ApiClient(cfg, role="operator") as c,
        pytest.raises(ApiClientError, match=r"no \[\[api\.tokens\]\]"),
    ):
        c.get("/whoami")


async def test_api_port_taken_fails_the_start(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        cfg = api_config(tmp_path, free_udp_port())
        cfg.api.port = s.getsockname()[1]
        with pytest.raises(ConfigError) as e:
            async with Gateway(cfg):
                pass
        assert e.value.key == "api.port" and f"127.0.0.1:{cfg.api.port} is in use by another program" in str(e.value)
        assert not (tmp_path / "var" / "gateway.db").exists()  # nothing began before the check


async def test_stopping_the_gateway_ends_open_streams(tmp_path: Path) -> None:
    gw = Gateway(api_config(tmp_path, free_udp_port()))
    await gw.__aenter__()
    stopping: asyncio.Task[None] | None = None
    try:
        async with (
            httpx.AsyncClient(base_url=gw.api.url, timeout=10) as http,
            http.stream("GET", "/api/v1/events/stream", headers=VIEW) as resp,
        ):
            events = _sse(resp).__aiter__()
            await _next_of(events, "hello")
            t0 = time.monotonic()
            stopping = asyncio.create_task(gw.__aexit__(None, None, None))
            assert (await _next_of(events, "closed")) == {}
            await asyncio.wait_for(stopping, 5)
            assert time.monotonic() - t0 < 5
    finally:
        if stopping is None:
            await gw.__aexit__(None, None, None)
