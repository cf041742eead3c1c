"""Which inventory devices the poller polls, how, and with which credentials (config targets,
a device's own ``poll`` field, addresses), and what it cannot poll (counted, not fatal)."""

from __future__ import annotations

from adapters.poll.adapter import targets_for
from adapters.poll.config import PollConfig
from gateway.model import Device

CFG = PollConfig.model_validate({
    "interval": 60, "port": 161,
    "credentials": [{"name": "pub", "community": "public"},
                    {"name": "v3", "version": "3", "user": "u", "auth_protocol": "SHA", "auth_key": "12345678"}],
    "targets": [
        {"classes": ["network.*"], "sites": ["hq"], "methods": ["snmp"], "credential": "v3", "interval": "30s"},
        {"devices": ["ups-*"], "methods": ["icmp"]},
    ],
})


def test_targets_and_device_overrides() -> None:
    devices = [
        Device("sw-1", "network.switch", site="hq", addresses=("10.0.0.1",)),
        Device("sw-2", "network.switch", site="branch", addresses=("10.0.0.2",)),  # no target matches
        Device("ups-1", "power.ups", addresses=("host.example", "10.0.0.3:1161")),  # first IPv4 address used
        Device("sw-3", "network.switch", site="hq", addresses=("10.0.0.4",), poll="none"),
        Device("srv-1", "server", addresses=("10.0.0.5",), poll="snmp+icmp"),  # own field, default credential
        Device("srv-2", "server", addresses=("10.0.0.6",), poll="snmp:ghost"),
        Device("sw-4", "network.switch", site="hq"),  # no address
    ]
    targets, skipped = targets_for(devices, CFG)
    assert sorted(targets) == ["srv-1", "sw-1", "ups-1"]
    sw1, ups, srv = targets["sw-1"], targets["ups-1"], targets["srv-1"]
    assert (sw1.host, sw1.port, sw1.methods, sw1.credential.name, sw1.interval) == ("10.0.0.1", 161, ("snmp",), "v3", 30.0)
    assert (ups.host, ups.port, ups.methods, ups.interval) == ("10.0.0.3", 1161, ("icmp",), 60.0)
    assert (srv.methods, srv.credential.name) == (("snmp", "icmp"), "pub")
    assert dict(skipped) == {"skipped.no_credential": 1, "skipped.no_address": 1}


async def test_icmp_unavailable_is_said_once_and_counted(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    """A machine that allows no ICMP socket: the poller logs why once, counts each check it could
    not make, and goes on (an ICMP-only device gets no heartbeat, so the watchdog reports it lost)."""
    import asyncio
    from pathlib import Path

    from adapters.base import AdapterContext
    from adapters.poll.adapter import PollAdapter
    from adapters.poll.icmp import IcmpPinger
    from gateway.clock import SystemClock
    from tests.helpers import eventually

    devices = [Device(f"h{i}", addresses=("127.0.0.1",), poll="icmp") for i in range(3)]
    cfg = PollConfig.model_validate({"interval": 0.2, "timeout": 0.1, "retries": 0})
    ctx = AdapterContext(clock=SystemClock(), state_dir=tmp_path, resolve_path=Path, broker_down=lambda n: None,
                         broker_up=lambda n: None, devices=lambda: devices)
    pinger = IcmpPinger(sock_factory=lambda: (None, "unavailable", "not allowed here (test)"))
    beats: list[object] = []

    class Sink:
        def offer(self, e: object) -> bool:
            beats.append(e)
            return True

    poller = PollAdapter(cfg, ctx, icmp=pinger)
    await poller.start(Sink())  # type: ignore[arg-type]
    try:
        await eventually(lambda: poller.stats().get("icmp.unavailable", 0) >= 6, what=lambda: str(poller.stats()))
        await asyncio.sleep(0)  # why: let the last poll's bookkeeping run
    finally:
        await poller.stop()
    assert beats == [] and poller.stats()["unanswered"] >= 6
    warnings = [r for r in caplog.records if "ICMP polling unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "not allowed here (test)" in warnings[0].getMessage()
