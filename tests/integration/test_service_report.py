"""The quarterly service report end to end: tickets from real traps over a quarter (a manual
clock moves time), then ``gateway service-report`` (HTML with SVG charts, PDF, JSON) reads the
store — attainment, MTTA/MTTR, causes, breaches, penalties and repeated faults must match what
happened."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.config import load_config
from tests.fixtures.api import OP, OP_TOKEN
from tests.fixtures.netsnmp import LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import base_config, eventually, write_config

Q1 = 1_767_225_600.0 + 10 * 86400  # 2026-01-11 (UTC); Q1 in Asia/Shanghai


async def _quarter(tmp_path: Path, netsnmp: NetSnmp) -> Path:
    port = free_udp_port()
    d = base_config(tmp_path / "var", port)
    d["devices"][0]["policy"] = "software-7x24"
    d["policies"]["software-7x24"]["customer"] = "Acme Rail"
    d["api"] = {"enabled": True, "host": "127.0.0.1", "port": 0,
                "tokens": [{"token": OP_TOKEN, "role": "viewer", "name": "bob"}]}
    path = write_config(tmp_path / "config.toml", d)
    clock = ManualClock(Q1)
    async with Gateway(load_config(path), clock=clock) as gw:
        plan = [  # (ifIndex, ack after s, restore after s, cause)
            (1, 600, 3600, "fibre cut"), (2, 1800, 7200, "fibre cut"), (4, 300, 20000, "optics aged"),
            (3, 18000, None, ""),
        ]
        for i, (idx, ack, restore, cause) in enumerate(plan):
            clock.set(Q1 + i * 86400 * 20)
            await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(idx, f"eth{idx}"))
            t = await eventually(lambda n=i: len(gw.store.list_tickets()) == n + 1 and gw.store.list_tickets()[0])
            tid = t["id"]
            clock.advance(ack)
            await gw.pipeline.execute(lambda now, tid=tid: gw.desk.act(tid, "acknowledge", now, "alice"))
            if restore is not None:
                clock.set(Q1 + i * 86400 * 20 + restore)
                await gw.pipeline.execute(lambda now, tid=tid: gw.desk.act(tid, "restore", now, "alice"))
            if cause:
                await gw.pipeline.execute(
                    lambda now, tid=tid, c=cause: gw.desk.act(tid, "set_report", now, "alice", fields={"cause": c}))
        clock.set(Q1 + 80 * 86400)
    return path


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "service-report", "-c", str(cfg), *args],
                          capture_output=True, text=True, timeout=120)


async def test_quarterly_report_counts_what_happened(tmp_path: Path, netsnmp: NetSnmp) -> None:
    cfg = await _quarter(tmp_path, netsnmp)
    r = _cli(cfg, "--contract", "software-7x24", "--period", "2026-Q1", "--format", "json")
    assert r.returncode == 0, r.stderr
    rep: dict[str, Any] = json.loads(r.stdout)
    assert rep["kind"] == "quarterly" and rep["customer"] == "Acme Rail" and rep["tickets"] == 4
    clocks = {c["clock"]: c for c in rep["clocks"]}
    # response 4 h (the contract): acks at 10 min, 30 min, 5 min met; 5 h breached
    assert (clocks["response"]["met"], clocks["response"]["breached"]) == (3, 1)
    # restore 4 h: 1 h and 2 h met; 5.6 h breached; the fourth never restored (past due: breached)
    assert (clocks["restore"]["met"], clocks["restore"]["breached"]) == (2, 2)
    assert rep["mtta"] == (600 + 1800 + 300 + 18000) / 4
    assert rep["mttr"] == (3600 + 7200 + 20000) / 3
    assert rep["causes"][0] == {"cause": "fibre cut", "tickets": 2}
    # Tickets 1 and 2 were not solved remotely within 1 h: the dispatch clock (an engineer on
    # the way) breached, as the contract wants; 3 and 4 breached response or restore too.
    by_id = {b["id"]: set(b["clocks"]) for b in rep["breaches"]}
    assert set(by_id) == {1, 2, 3, 4} and by_id[1] == by_id[2] == {"dispatch"}
    assert by_id[3] - {"dispatch"} and by_id[4] - {"dispatch"}
    assert rep["repeated"] == [{"device": "sw-1", "tickets": 4}]
    assert rep["penalties"] is not None and rep["penalties"]["pct"] > 0
    # The other quarter has nothing; a bad period is one line.
    r = _cli(cfg, "--contract", "software-7x24", "--period", "2026-Q2", "--format", "json")
    assert json.loads(r.stdout)["tickets"] == 0
    r = _cli(cfg, "--contract", "software-7x24", "--period", "2026-Q5")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "YYYY-Qn" in r.stderr
    html = tmp_path / "q1.html"
    assert _cli(cfg, "--contract", "software-7x24", "--period", "2026-Q1", "-o", str(html)).returncode == 0
    page = html.read_text()
    assert page.count("<svg") == 3 and "SLA attainment per clock" in page and "Acme Rail" in page
    pdf = tmp_path / "q1.pdf"
    r = _cli(cfg, "--contract", "software-7x24", "--period", "2026-Q1", "--format", "pdf", "-o", str(pdf))
    assert r.returncode == 0, r.stderr
    assert pdf.read_bytes().startswith(b"%PDF")

    # The same report from the API (a viewer may read it), as JSON and as PDF.
    async with Gateway(load_config(cfg), clock=ManualClock(Q1 + 80 * 86400)) as gw:
        assert gw.api is not None
        async with httpx.AsyncClient(base_url=gw.api.url + "/api/v1", headers=OP, timeout=30) as http:
            q = {"contract": "software-7x24", "period": "2026-Q1"}
            r = await http.get("/reports/service", params={**q, "format": "json"})
            assert r.status_code == 200 and r.json()["tickets"] == 4 and r.json()["mtta"] == rep["mtta"]
            r = await http.get("/reports/service", params={**q, "format": "pdf"})
            assert r.status_code == 200 and r.content.startswith(b"%PDF")
            r = await http.get("/reports/service", params={**q, "period": "2026-13"})
            assert r.status_code == 422
