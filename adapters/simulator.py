"""Simulated devices for the demo and benchmarks: real SNMP traps over UDP, real MQTT messages.

The scenario is a script of timed steps over three sites — a mine (gas sensors,
substations), a hospital ward (infusion pumps, patient monitors) and a network closet
(switches, a UPS) — with faults, recoveries, a trap storm, a flapping link and a device
that goes silent. It loops, so the board always has something to show.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.snmp import ber

__all__ = ["DEMO_DEVICES", "SimDevice", "Simulator", "demo_devices"]

log = logging.getLogger("adapters.simulator")

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
LINK_DOWN, LINK_UP = "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.6.3.1.1.5.4"
COLD_START = "1.3.6.1.6.3.1.1.5.1"
IF_INDEX, IF_DESCR = "1.3.6.1.2.1.2.2.1.1", "1.3.6.1.2.1.2.2.1.2"
IF_ADMIN, IF_OPER = "1.3.6.1.2.1.2.2.1.7", "1.3.6.1.2.1.2.2.1.8"
UPS_ON_BATTERY = "1.3.6.1.2.1.33.2.1"
UPS_ALARM_ADDED, UPS_ALARM_REMOVED = "1.3.6.1.2.1.33.2.3", "1.3.6.1.2.1.33.2.4"
UPS_ALARM_ID, UPS_ALARM_DESCR = "1.3.6.1.2.1.33.1.6.2.1.1", "1.3.6.1.2.1.33.1.6.2.1.2"
UPS_ALARM_ON_BATTERY, UPS_ALARM_LOW_BATTERY = "1.3.6.1.2.1.33.1.6.3.2", "1.3.6.1.2.1.33.1.6.3.3"
UPS_MINUTES_LEFT = "1.3.6.1.2.1.33.1.2.3.0"
SNMP_TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"


@dataclass
class SimDevice:
    """One simulated device; SNMP devices are told apart by ``snmpTrapAddress.0``."""

    id: str
    device_class: str
    site: str
    region: str
    policy: str
    protocol: str  # "snmp" | "mqtt"
    address: str = ""
    telemetry: dict[str, float | str] = field(default_factory=dict)
    silent: bool = False


def demo_devices() -> list[SimDevice]:
    return [
        SimDevice("mine-gas-01", "mine.gas-sensor", "mine-north", "shanxi", "mine-monitoring", "mqtt",
                  telemetry={"ch4": 0.3, "co": 4.0}),
        SimDevice("mine-gas-02", "mine.gas-sensor", "mine-north", "shanxi", "mine-monitoring", "mqtt",
                  telemetry={"ch4": 0.2, "co": 3.0}),
        SimDevice("mine-sub-01", "mine.substation", "mine-north", "shanxi", "mine-monitoring", "mqtt",
                  telemetry={"power": "mains", "battery": 100.0, "voltage": 660.0}),
        SimDevice("ward-pump-01", "medical.infusion-pump", "ward-3", "beijing", "medical-devices", "mqtt",
                  telemetry={"state": "running", "battery": 85.0, "temperature": 34.0}),
        SimDevice("ward-pump-02", "medical.infusion-pump", "ward-3", "beijing", "medical-devices", "mqtt",
                  telemetry={"state": "running", "battery": 64.0, "temperature": 33.5}),
        SimDevice("ward-mon-01", "medical.patient-monitor", "ward-3", "beijing", "medical-devices", "mqtt",
                  telemetry={"battery": 92.0, "temperature": 36.0}),
        SimDevice("closet-sw-01", "network.switch", "hq-closet", "beijing", "network-equipment", "snmp", address="10.20.0.11"),
        SimDevice("closet-sw-02", "network.switch", "hq-closet", "beijing", "network-equipment", "snmp", address="10.20.0.12"),
        SimDevice("closet-ups-01", "network.ups", "hq-closet", "beijing", "network-equipment", "snmp", address="10.20.0.20"),
    ]


DEMO_DEVICES = demo_devices()


class Simulator:
    """Plays the demo scenario against a gateway: traps to ``snmp_target`` over UDP,
    heartbeats and status to an MQTT broker (via ``publish``)."""

    def __init__(
        self,
        snmp_target: tuple[str, int],
        publish: Callable[[str, bytes], Any] | None,
        devices: list[SimDevice] | None = None,
        heartbeat_every: float = 5.0,
        speed: float = 1.0,
        seed: int = 7,
        topic_prefix: str = "site",
    ) -> None:
        self.target = snmp_target
        self.publish = publish
        self.devices = {d.id: d for d in (devices or demo_devices())}
        self.heartbeat_every = heartbeat_every
        self.speed = speed
        self.rng = random.Random(seed)
        self.topic_prefix = topic_prefix
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._req = 0
        self.sent_traps = 0
        self.sent_messages = 0

    # -- primitives ----------------------------------------------------------------------
    def trap(self, device: str, trap_oid: str, varbinds: list[tuple[str, Any]]) -> None:
        d = self.devices[device]
        self._req += 1
        vbs = [
            (SYS_UPTIME, ber.Typed(ber.TAG_TIMETICKS, self._req * 100)),
            (TRAP_OID, ber.Typed(ber.TAG_OID, trap_oid)),
            *varbinds,
            (SNMP_TRAP_ADDRESS, ber.Typed(ber.TAG_IPADDRESS, d.address)),
        ]
        pkt = ber.encode_trap(ber.TrapMessage(ber.V2C, b"public", ber.PDU_TRAP_V2, self._req, vbs))
        self._sock.sendto(pkt, self.target)
        self.sent_traps += 1

    def link(self, device: str, index: int, up: bool) -> None:
        self.trap(device, LINK_UP if up else LINK_DOWN, [
            (f"{IF_INDEX}.{index}", index),
            (f"{IF_DESCR}.{index}", f"GigabitEthernet1/0/{index}".encode()),
            (f"{IF_ADMIN}.{index}", 1),
            (f"{IF_OPER}.{index}", 1 if up else 2),
        ])

    async def message(self, device: str, kind: str, payload: dict[str, Any]) -> None:
        if self.publish is None:
            return
        d = self.devices[device]
        topic = f"{self.topic_prefix}/{d.site}/device/{d.id}/{kind}"
        res = self.publish(topic, json.dumps(payload).encode())
        if asyncio.iscoroutine(res):
            await res
        self.sent_messages += 1

    async def heartbeats(self) -> None:
        while True:
            for d in self.devices.values():
                if d.protocol != "mqtt" or d.silent:
                    continue
                reading: dict[str, Any] = {}
                for k, v in d.telemetry.items():
                    if isinstance(v, float) and k in ("ch4", "co", "temperature", "voltage"):
                        reading[k] = round(v * (1 + self.rng.uniform(-0.03, 0.03)), 2)
                    else:
                        reading[k] = v
                try:
                    await self.message(d.id, "heartbeat", reading)
                except Exception as e:  # noqa: BLE001 - a broker hiccup must not end the demo
                    log.warning("simulator: heartbeat publish failed: %s", e)
            await asyncio.sleep(self.heartbeat_every / self.speed)

    # -- the scenario --------------------------------------------------------------------
    def steps(self) -> list[tuple[float, str, Callable[[], Any]]]:
        """(seconds into the loop, description, action)."""
        dv = self.devices

        def tele(dev: str, **kw: Any) -> Callable[[], Any]:
            def act() -> Any:
                dv[dev].telemetry.update(kw)
                return self.message(dev, "status", dict(dv[dev].telemetry))
            return act

        def silent(dev: str, on: bool) -> Callable[[], None]:
            def act() -> None:
                dv[dev].silent = on
            return act

        def storm() -> None:
            for _ in range(500):
                self.link("closet-sw-02", 9, up=False)

        def flap(n: int) -> Callable[[], None]:
            return lambda: self.link("closet-sw-01", 5, up=n % 2 == 1)

        def ups(on_battery: bool) -> Callable[[], None]:
            if on_battery:
                return lambda: self.trap("closet-ups-01", UPS_ON_BATTERY, [(UPS_MINUTES_LEFT, 25)])
            return lambda: self.trap("closet-ups-01", UPS_ALARM_REMOVED, [
                (f"{UPS_ALARM_ID}.1", 1), (f"{UPS_ALARM_DESCR}.1", ber.Typed(ber.TAG_OID, UPS_ALARM_ON_BATTERY))])

        steps: list[tuple[float, str, Callable[[], Any]]] = [
            (5, "closet-sw-01 port 3 down", lambda: self.link("closet-sw-01", 3, up=False)),
            (12, "mine-gas-01 CH4 over the alarm limit", tele("mine-gas-01", ch4=1.2)),
            (20, "trap storm: closet-sw-02 port 9 (500 traps)", storm),
            (30, "ward-pump-01 occlusion", tele("ward-pump-01", state="occlusion")),
            (40, "closet-sw-01 port 3 up", lambda: self.link("closet-sw-01", 3, up=True)),
            (48, "mine-sub-01 on backup battery", tele("mine-sub-01", power="battery", battery=78.0)),
            (55, "mine-gas-01 CH4 back to normal", tele("mine-gas-01", ch4=0.3)),
            (62, "ward-mon-01 goes silent", silent("ward-mon-01", True)),
            (70, "ward-pump-01 running again", tele("ward-pump-01", state="running")),
            (80, "closet-ups-01 on battery", ups(True)),
            (95, "mine-sub-01 back on mains", tele("mine-sub-01", power="mains", battery=100.0)),
            (100, "ward-pump-02 battery low", tele("ward-pump-02", battery=15.0)),
            (110, "closet-ups-01 back on mains", ups(False)),
            (130, "ward-mon-01 reports again", silent("ward-mon-01", False)),
            (140, "ward-pump-02 charged", tele("ward-pump-02", battery=60.0)),
        ]
        steps += [(85 + 2 * i, f"closet-sw-01 port 5 flaps ({'up' if i % 2 else 'down'})", flap(i)) for i in range(8)]
        return sorted(steps, key=lambda s: s[0])

    async def run(self, loops: int | None = None, loop_seconds: float = 150.0) -> None:
        hb = asyncio.create_task(self.heartbeats(), name="sim-heartbeats")
        try:
            n = 0
            while loops is None or n < loops:
                t = 0.0
                for at, what, act in self.steps():
                    await asyncio.sleep(max(0.0, at - t) / self.speed)
                    t = at
                    log.info("simulator: %s", what)
                    try:
                        res = act()
                        if asyncio.iscoroutine(res):
                            await res
                    except Exception as e:  # noqa: BLE001
                        log.warning("simulator: step %r failed: %s", what, e)
                await asyncio.sleep(max(0.0, loop_seconds - t) / self.speed)
                n += 1
        finally:
            hb.cancel()
            self._sock.close()
