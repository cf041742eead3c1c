"""A flood of invented device ids through a real Mosquitto (issue 21, item 1), bounded: a few
thousand ids, sub-second heartbeat intervals.

Before: every invented id was tracked, went silent, matched the network pack's
``device-unreachable`` rule (it covered ``unknown``) and opened a level-1 ticket (the probe:
120,000 ids → 59,281 tickets). Now: unknown devices open no tickets by default, new ids are
admitted at a bounded rate per source up to a hard cap (the rest counted, one gateway alarm),
and a global circuit breaker turns a flood of new tickets into one storm ticket.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt

from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.helpers import base_config, eventually

IDS = 3000


def _cfg(tmp_path: Path, host: str, port: int, prefix: str, **sections: Any) -> Any:
    d = base_config(tmp_path / "var", None)
    d["adapters"] = {"mqtt": [{
        "name": "mqtt", "url": f"mqtt://{host}:{port}", "client_id": f"gw-{prefix.replace('/', '-')}",
        "subscriptions": [{"topic": prefix + "/site/{site}/device/{device}/heartbeat", "kind": "heartbeat", "qos": 0}],
    }]}
    d["liveness"] = {"default_interval": 0.5, "tolerance": 1, "grace": 0.5}
    for k, v in sections.items():
        d[k] = {**d.get(k, {}), **v}
    return config_from_dict(d, "t.toml", str(tmp_path))


async def _flood(host: str, port: int, prefix: str, n: int) -> None:
    """One QoS 0 heartbeat for each of ``n`` invented ids (as the probe did, anonymously)."""
    async with aiomqtt.Client(host, port, identifier=f"flood-{uuid.uuid4().hex[:6]}") as c:
        for i in range(n):
            await c.publish(f"{prefix}/site/x/device/big-{i}/heartbeat", b"{}")


async def test_invented_ids_open_no_tickets_and_are_capped(tmp_path: Path, mqtt_broker: tuple[str, int]) -> None:
    host, port = mqtt_broker
    prefix = f"t/{uuid.uuid4().hex[:8]}"
    # The defaults but a small cap, burst and rate, so a bounded flood crosses them.
    cfg = _cfg(tmp_path, host, port, prefix,
               inventory={"unknown_max": 800, "unknown_burst": 500, "unknown_new_per_minute": 6})
    async with Gateway(cfg) as gw:
        t0 = time.monotonic()
        await _flood(host, port, prefix, IDS)
        adm = gw.pipeline.decider.admission
        assert adm is not None and gw.watchdog is not None
        await eventually(lambda: len(adm) + adm.rate_limited + adm.overflow >= IDS, timeout=30)
        # The burst of new ids (plus one every 10 s); the rest of the flood refused, counted.
        assert 500 <= len(adm) <= 500 + (time.monotonic() - t0 + 1) / 10 and adm.overflow == 0
        assert adm.rate_limited == IDS - len(adm)
        tracked = [f"big-{i}" for i in range(IDS) if f"big-{i}" in gw.watchdog]
        assert len(tracked) == len(adm)
        # Three intervals later the admitted ones are lost: shown, but no alarm and no ticket.
        await eventually(lambda: all(gw.watchdog.status(d).lost for d in tracked[:50]), timeout=15)  # type: ignore[union-attr]
        await eventually(lambda: gw.pipeline.depth == 0)
        assert [a["key"] for a in gw.store.list_alarms()] == ["gateway/unknown-devices"]  # one gateway alarm
        assert [t["alarm_key"] for t in gw.store.list_tickets()] == ["gateway/unknown-devices"]
        # A second flood a little later: the rate budget refills slowly, the cap holds.
        adm.rate = 1e9  # let the cap decide
        async with aiomqtt.Client(host, port, identifier=f"flood-{uuid.uuid4().hex[:6]}") as c:
            for i in range(1000):
                await c.publish(f"{prefix}/site/x/device/late-{i}/heartbeat", b"{}")
        await eventually(lambda: len(adm) + adm.rate_limited + adm.overflow >= IDS + 1000, timeout=30)
        assert len(adm) == 800 and adm.overflow == 1000 - (800 - len(tracked))
        assert len(gw.inventory.unknown) <= 801  # and the gateway itself
        alarms = gw.store.list_alarms()
        assert [a["key"] for a in alarms] == ["gateway/unknown-devices"] and alarms[0]["attrs"]["overflow"] > 0
        assert len(gw.store.list_tickets()) == 1


async def test_ticket_flood_trips_the_circuit_breaker(tmp_path: Path, mqtt_broker: tuple[str, int]) -> None:
    """Unknown devices allowed to ticket and every event an alarm (``default_level``): the
    breaker lets ``limit`` tickets through, then one storm ticket; every alarm is recorded."""
    host, port = mqtt_broker
    prefix = f"t/{uuid.uuid4().hex[:8]}"
    cfg = _cfg(tmp_path, host, port, prefix, inventory={"unknown_tickets": True}, rules={"default_level": 2},
               ticket_breaker={"limit": 25, "window": "1m"}, liveness={"unknown_devices": "ignore"})
    async with Gateway(cfg) as gw:
        await _flood(host, port, prefix, 400)
        await eventually(lambda: gw.pipeline.stats.alarms_raised >= 401, timeout=30)
        await eventually(lambda: gw.pipeline.depth == 0)
        await eventually(lambda: len(gw.store.list_alarms()) >= 401)
        tickets = gw.store.list_tickets()
        assert len(tickets) == 26
        assert [t["alarm_key"] for t in tickets].count("gateway/ticket-storm") == 1
        assert gw.pipeline.stats.tickets_held == 400 - 25
        [storm] = [a for a in gw.store.list_alarms() if a["key"] == "gateway/ticket-storm"]
        assert storm["state"] == "active" and storm["attrs"]["held"] == 375


async def test_the_probe_with_default_settings_opens_no_device_tickets(
    tmp_path: Path, mqtt_broker: tuple[str, int]
) -> None:
    """The probe as found, scaled down: default settings (only short intervals), anonymous
    QoS 0 heartbeats for invented ids, then silence. On the old main every one of them went
    lost and opened a level-1 ticket."""
    host, port = mqtt_broker
    prefix = f"t/{uuid.uuid4().hex[:8]}"
    async with Gateway(_cfg(tmp_path, host, port, prefix)) as gw:
        t0 = time.monotonic()
        await _flood(host, port, prefix, IDS)
        assert gw.watchdog is not None
        await eventually(lambda: gw.pipeline.stats.received >= IDS, timeout=30)
        refill = 10 * (time.monotonic() - t0 + 1)  # the default 600 new ids a minute meanwhile
        await eventually(lambda: (st := gw.watchdog.status("big-0")) is not None and st.lost, timeout=15)  # type: ignore[union-attr]
        await eventually(lambda: gw.pipeline.depth == 0)
        tracked = [f"big-{i}" for i in range(IDS) if f"big-{i}" in gw.watchdog]
        assert len(tracked) <= 1000 + refill  # the default burst of new ids per source, plus the refill
        await eventually(lambda: all(gw.watchdog.status(d).lost for d in tracked[::97]), timeout=15)  # type: ignore[union-attr]
        device_tickets = [t for t in gw.store.list_tickets() if not t["alarm_key"].startswith("gateway/")]
        assert device_tickets == []
        assert not [a for a in gw.store.list_alarms() if a["device"].startswith("big-")]
