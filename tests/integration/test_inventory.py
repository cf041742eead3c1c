"""The inventory at scale: ``gateway devices import|export`` of 10,000 rows, an import with bad
rows changes nothing and names each (row, column), the running daemon uses imported devices at
once (its poller polls a new one against a real snmpd), and the API's device writes need an
operator, record who and when, leave config-file devices alone and adopt unknown senders."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cli.main import main
from gateway.config import config_from_dict, load_config
from gateway.model import Event
from gateway.store.sqlite import SqliteStore
from tests.fixtures.api import OP, OP_TOKEN, VIEW, VIEW_TOKEN, GatewayThread
from tests.fixtures.snmpd import Snmpd
from tests.helpers import base_config, wait_until, write_config

HEADER = "id,name,class,site,region,policy,parent,addresses,aliases,heartbeat_interval,poll\n"


def _rows(n: int, start: int = 0) -> list[str]:
    return [f"sw-{i:05},Switch {i},network.switch,site-{i % 50},shanxi,mine-monitoring,,10.{i // 65536 % 256}."
            f"{i // 256 % 256}.{i % 256},,60s,\n" for i in range(start, start + n)]


def _config(tmp_path: Path, **extra: Any) -> Path:
    return write_config(tmp_path / "config.toml", base_config(tmp_path / "var", **extra))


def _stored(cfg_path: Path) -> list[dict[str, Any]]:
    cfg = load_config(cfg_path)
    store = SqliteStore(cfg.data_path(cfg.store.path), readonly=True)
    try:
        return store.list_devices()
    finally:
        store.close()


def test_ten_thousand_rows_import_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    src = tmp_path / "devices.csv"
    src.write_text(HEADER + "".join(_rows(10_000)), "utf-8")
    assert main(["devices", "import", str(src), "-c", str(cfg), "--by", "li"]) == 0
    assert "10000 added, 0 updated, 0 removed, 0 unchanged" in capsys.readouterr().out
    stored = _stored(cfg)
    assert len(stored) == 10_000 and stored[42]["addresses"] == ["10.0.0.42"] and stored[42]["heartbeat_interval"] == 60.0
    out = tmp_path / "export.csv"
    assert main(["devices", "export", "-c", str(cfg), "-o", str(out)]) == 0
    exported = list(csv.DictReader(io.StringIO(out.read_text("utf-8"))))
    assert len(exported) == 10_001  # the config file's sw-1 too
    assert {r["id"] for r in exported} == {"sw-1"} | {s["id"] for s in stored}
    # The export imports again without a change (config device included: identical, so unchanged).
    assert main(["devices", "import", str(out), "-c", str(cfg)]) == 0
    assert "0 added, 0 updated, 0 removed, 10001 unchanged" in capsys.readouterr().out
    assert main(["devices", "changes", "-c", str(cfg), "--limit", "3", "--json"]) == 0
    assert '"actor": "li"' in capsys.readouterr().out


def test_an_import_with_bad_rows_changes_nothing_and_names_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    first = tmp_path / "first.csv"
    first.write_text(HEADER + "".join(_rows(100)), "utf-8")
    assert main(["devices", "import", str(first), "-c", str(cfg)]) == 0
    before = _stored(cfg)
    rows = _rows(10_000)
    rows[500] = rows[500].replace("mine-monitoring", "no-such-policy")
    rows[7000] = rows[7000].replace(",60s,", ",every minute,")
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "".join(rows), "utf-8")
    capsys.readouterr()
    assert main(["devices", "import", str(bad), "-c", str(cfg)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{bad}: row 502, column policy: no policy named 'no-such-policy'"
    assert err[1].startswith(f"{bad}: row 7002, column heartbeat_interval: ")
    assert err[2] == "error: 2 problem(s); nothing was imported"
    assert len(err) == 3
    assert _stored(cfg) == before


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Snmpd]:
    a = Snmpd(tmp_path / "snmpd").start()
    yield a
    a.stop()


def _api_cfg(tmp_path: Path, **extra: Any) -> Any:
    d = base_config(tmp_path / "var", None)
    d["api"] = {"enabled": True, "host": "127.0.0.1", "port": 0, "tokens": [
        {"token": OP_TOKEN, "role": "operator", "name": "alice"}, {"token": VIEW_TOKEN, "role": "viewer", "name": "bob"}]}
    d.update(extra)
    path = write_config(tmp_path / "config.toml", d)
    return config_from_dict(d, str(path), str(tmp_path)), path


def test_the_running_daemon_polls_an_imported_device_at_once(tmp_path: Path, agent: Snmpd,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg, path = _api_cfg(tmp_path, adapters={"poll": [{"name": "poll", "interval": 0.5, "timeout": 0.5,
                                                       "targets": [{"classes": ["network.*"], "methods": ["snmp"]}]}]},
                         liveness={"default_interval": 60, "tolerance": 3})
    gt = GatewayThread(cfg).start()
    try:
        gw = gt.gw
        assert gw is not None
        src = tmp_path / "new.json"
        src.write_text(f'[{{"id": "sw-new", "class": "network.switch", "addresses": ["127.0.0.1:{agent.port}"]}}]', "utf-8")
        assert main(["devices", "import", str(src), "-c", str(path), "--by", "wang"]) == 0
        assert "uses them now" in capsys.readouterr().out
        assert gw.pipeline.inventory.get("sw-new") is not None  # swapped in before the answer
        poller = next(a for a in gw.adapters if a.name == "poll")
        wait_until(lambda: poller.stats().get("answered", 0) >= 1, timeout=15)
        assert gw.watchdog is not None and gw.watchdog.status("sw-new") is not None
        assert gw.watchdog.status("sw-new").interval == 0.5  # type: ignore[union-attr]
    finally:
        gt.stop()


def test_api_device_writes(tmp_path: Path) -> None:
    cfg, _ = _api_cfg(tmp_path)
    gt = GatewayThread(cfg).start()
    try:
        gw = gt.gw
        assert gw is not None
        with httpx.Client(base_url=gt.url + "/api/v1", timeout=15) as c:
            body = {"class": "network.ups", "site": "hq", "addresses": ["10.1.1.1"], "heartbeat_interval": "30s"}
            assert c.put("/devices/ups-1", json=body, headers=VIEW).status_code == 403
            r = c.put("/devices/ups-1", json=body, headers=OP)
            assert r.status_code == 200 and r.json()["heartbeat_interval"] == 30.0
            assert gw.pipeline.inventory.lookup("10.1.1.1") == "ups-1"
            assert gw.watchdog is not None and "ups-1" in gw.watchdog  # watched at its interval
            r = c.put("/devices/ups-1", json={**body, "policy": "nope"}, headers=OP)
            assert r.status_code == 422 and r.json()["detail"] == [
                {"row": 1, "column": "policy", "message": "no policy named 'nope'"}]
            r = c.put("/devices/sw-1", json=body, headers=OP)  # the config file's device
            assert r.status_code == 422 and "defined in the config file" in r.json()["message"]
            assert c.delete("/devices/sw-1", headers=OP).status_code == 422
            # An unknown sender seen in traffic, adopted with class, site and policy.
            gt.run(_offer(gw, Event(gw.clock.now(), "snmp", "10.9.9.9", "SNMPv2-MIB::coldStart", peer="10.9.9.9")))
            wait_until(lambda: any(u["id"] == "10.9.9.9" for u in c.get("/inventory/unknown", headers=VIEW).json()))
            r = c.post("/devices/10.9.9.9/adopt", json={"id": "ups-9", "class": "network.ups", "site": "pit-2",
                                                        "policy": "network-equipment"}, headers=OP)
            assert r.status_code == 201, r.text
            assert gw.pipeline.inventory.lookup("10.9.9.9") == "ups-9"
            assert not any(u["id"] == "10.9.9.9" for u in c.get("/inventory/unknown", headers=VIEW).json())
            assert c.post("/devices/10.9.9.9/adopt", json={}, headers=OP).status_code == 409
            assert c.delete("/devices/ups-1", headers=OP).json() == {"removed": "ups-1"}
            assert gw.pipeline.inventory.get("ups-1") is None
            assert c.delete("/devices/ups-1", headers=OP).status_code == 404
            log = c.get("/inventory/changes", headers=VIEW).json()
            assert [(x["device"], x["action"], x["actor"]) for x in log] == [
                ("ups-1", "remove", "alice"), ("ups-9", "adopt", "alice"), ("ups-1", "add", "alice")]
            assert all(x["at"].endswith("Z") or "+" in x["at"] for x in log)
            inv = c.get("/inventory", headers=VIEW).json()
            assert {(d["id"], d["source"]) for d in inv} == {("sw-1", "config"), ("ups-9", "store")}
            assert c.get("/inventory?format=csv", headers=VIEW).text.startswith("id,name,class")
    finally:
        gt.stop()


async def _offer(gw: Any, ev: Event) -> None:
    gw.pipeline.offer(ev)
    await asyncio.sleep(0)  # why: let the writer pick the event up on its loop
