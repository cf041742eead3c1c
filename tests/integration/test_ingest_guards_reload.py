"""The unknown-device and circuit-breaker settings follow a config reload (issue 21, item 1):
switching ``unknown_tickets`` on lets unknown devices ticket; a new breaker limit applies at
once; adopting a device (it is in the inventory after the reload) frees its admission slot."""

from __future__ import annotations

from pathlib import Path

from gateway.app import Gateway
from gateway.clock import ManualClock
from gateway.config import load_config
from gateway.model import Event
from tests.helpers import base_config, write_config


async def test_reload_applies_the_ingest_guards(tmp_path: Path) -> None:
    clock = ManualClock()
    d = base_config(tmp_path / "var", rules={"packs": ["mine"], "default_level": 2})
    cfg_file = write_config(tmp_path / "config.toml", d)
    async with Gateway(load_config(cfg_file), clock=clock) as gw:

        async def send(device: str) -> None:
            assert gw.pipeline.offer(Event(clock.now(), "test", device, "odd", {}))
            await gw.pipeline.execute(lambda now: None)

        def tickets() -> list[str]:
            return sorted(t["device"] for t in gw.store.list_tickets())

        await send("stranger-1")
        assert tickets() == []  # unknown: shown, no ticket
        adm = gw.pipeline.decider.admission
        assert adm is not None and "stranger-1" in adm
        d["inventory"] = {**d.get("inventory", {}), "default_policy": "mine-monitoring", "unknown_tickets": True}
        d["devices"].append({"id": "stranger-1", "class": "mine.gas-sensor", "policy": "mine-monitoring"})
        d["ticket_breaker"] = {"limit": 2, "window": "1m"}
        write_config(cfg_file, d)
        await gw.reload()
        assert "stranger-1" not in adm  # adopted: no longer counts against the cap
        for dev in ("stranger-2", "stranger-3", "stranger-4", "stranger-5"):
            await send(dev)
        # Two tickets within the minute, then the breaker: one storm ticket for the rest.
        assert tickets() == ["gateway", "stranger-2", "stranger-3"]
        assert gw.pipeline.stats.tickets_held == 2


async def test_unknown_devices_restored_after_a_restart_count_against_the_cap(tmp_path: Path) -> None:
    """A liveness snapshot from before the cap (or with a larger one) does not bring back more
    unknown devices than the cap: the rest are not watched, counted, and reported once."""
    clock = ManualClock()
    d = base_config(tmp_path / "var", rules={"packs": ["mine"]}, liveness={"default_interval": 60})
    cfg_file = write_config(tmp_path / "config.toml", d)
    async with Gateway(load_config(cfg_file), clock=clock) as gw:
        for i in range(30):
            assert gw.pipeline.offer(Event(clock.now(), "test", f"ghost-{i}", "heartbeat", {}))
        await gw.pipeline.execute(lambda now: None)
        assert gw.watchdog is not None and sum(f"ghost-{i}" in gw.watchdog for i in range(30)) == 30
    d["inventory"] = {"default_policy": "mine-monitoring", "unknown_max": 10}
    write_config(cfg_file, d)
    async with Gateway(load_config(cfg_file), clock=clock) as gw:
        assert gw.watchdog is not None and sum(f"ghost-{i}" in gw.watchdog for i in range(30)) == 10
        adm = gw.pipeline.decider.admission
        assert adm is not None and len(adm) == 10 and adm.overflow == 20
        await gw.pipeline.execute(lambda now: None)
        [alarm] = [a for a in gw.store.list_alarms() if a["key"] == "gateway/unknown-devices"]
        assert alarm["attrs"]["overflow"] == 20
