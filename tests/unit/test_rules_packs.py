"""The shipped rule packs: every fault of the three kinds of equipment in our contracts gets its
rule, level and key (table-driven), clears where it should, and the packs are documented."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

import pytest

from gateway.model import Device, Event, FaultLevel
from rules import RuleEngine, parse_pack
from tests.helpers import ROOT

PACKS = ("network", "mine", "medical")


def _engine() -> RuleEngine:
    packs = [parse_pack(tomllib.loads(resources.files("rules").joinpath("packs", f"{n}.toml").read_text("utf-8")))
             for n in PACKS]
    return RuleEngine(packs)


ENGINE = _engine()
SW = Device("sw-1", "network.switch", site="hq", region="beijing")
UPS = Device("ups-1", "network.ups", site="hq")
GAS = Device("gs-1", "mine.gas-sensor", site="north")
SUB = Device("ss-1", "mine.substation", site="north")
PUMP = Device("pump-1", "medical.infusion-pump", site="ward-3")
MON = Device("mon-1", "medical.patient-monitor", site="ward-3")


def ev(name: str, **attrs: Any) -> Event:
    return Event(0.0, "test", "x", name, attrs)


RAISES = [
    # network gear
    ("link-down", ev("IF-MIB::linkDown", ifIndex=7, ifDescr="ge-0/0/7"), SW, [("if-link-down", 3, "sw-1/if/7")]),
    ("cold-start", ev("SNMPv2-MIB::coldStart"), SW, [("cold-start", 2, "sw-1/restart")]),
    ("warm-start", ev("SNMPv2-MIB::warmStart"), SW, [("warm-start", 4, "sw-1/restart")]),
    ("auth-failure", ev("SNMPv2-MIB::authenticationFailure"), SW, [("auth-failure", 4, "sw-1/snmp-auth")]),
    ("entity-disabled", ev("ENTITY-STATE-MIB::entStateOperDisabled", entPhysicalName="PSU 2"), SW,
     [("entity-oper-disabled", 2, "sw-1/entity/PSU 2")]),
    ("entity-disabled-numeric", ev("SNMPv2-SMI::mib-2.131.0.2", entPhysicalName="Fan 1"), SW,
     [("entity-oper-disabled", 2, "sw-1/entity/Fan 1")]),
    ("psu-failed", ev("status", psu="2", psu_state="failed"), SW, [("power-supply-failed", 2, "sw-1/psu/2")]),
    ("temperature", ev("sensor.temperature", temperature=75), SW, [("over-temperature", 2, "sw-1/temperature")]),
    ("sensor-broken", ev("status", sensor="inlet", entPhySensorOperStatus=3), SW,
     [("sensor-nonoperational", 4, "sw-1/sensor/inlet")]),
    ("sensor-threshold", ev("SNMPv2-SMI::enterprises.9.9.91.2.0.1"), SW, [("sensor-threshold", 2, "sw-1/sensor-threshold")]),
    ("ups-on-battery", ev("UPS-MIB::upsTrapOnBattery", upsEstimatedMinutesRemaining=25), UPS,
     [("ups-on-battery", 2, "ups-1/ups/power")]),
    ("ups-low-battery", ev("UPS-MIB::upsTrapAlarmEntryAdded", upsAlarmId=3, upsAlarmDescr="UPS-MIB::upsAlarmLowBattery"),
     UPS, [("ups-alarm-low-battery", 1, "ups-1/ups/battery")]),
    ("ups-low-battery-numeric", ev("UPS-MIB::upsTrapAlarmEntryAdded", upsAlarmId=3,
                                   upsAlarmDescr="1.3.6.1.2.1.33.1.6.3.3"), UPS,
     [("ups-alarm-low-battery", 1, "ups-1/ups/battery")]),
    ("ups-overload", ev("UPS-MIB::upsTrapAlarmEntryAdded", upsAlarmId=4, upsAlarmDescr="UPS-MIB::upsAlarmOutputOverload"),
     UPS, [("ups-alarm-output-overload", 2, "ups-1/ups/overload")]),
    ("ups-other", ev("UPS-MIB::upsTrapAlarmEntryAdded", upsAlarmId=5, upsAlarmDescr="UPS-MIB::upsAlarmFanFailure"),
     UPS, [("ups-alarm-other", 3, "ups-1/ups/alarm/5")]),
    ("switch-unreachable", ev("heartbeat.lost"), SW, [("device-unreachable", 1, "sw-1/reachability")]),
    # mine monitoring
    ("ch4-alarm", ev("status", ch4=1.2), GAS, [("ch4-alarm", 2, "gs-1/gas/ch4")]),
    ("ch4-cutoff", ev("status", ch4=1.6), GAS, [("ch4-cutoff", 1, "gs-1/gas/ch4")]),
    ("co", ev("alarm", co=30), GAS, [("co-alarm", 2, "gs-1/gas/co")]),
    ("ch4-and-co", ev("status", ch4=1.1, co=25), GAS, [("ch4-alarm", 2, "gs-1/gas/ch4"), ("co-alarm", 2, "gs-1/gas/co")]),
    ("substation-power", ev("status", power="failed"), SUB, [("substation-power-failure", 1, "ss-1/power")]),
    ("substation-battery", ev("status", power="battery", battery=80), SUB, [("substation-on-battery", 2, "ss-1/power")]),
    ("sensor-comm", ev("status", comm="lost", sensor="CH4-07"), SUB, [("sensor-comm-fault", 1, "ss-1/comm/CH4-07")]),
    ("sensor-fault-code", ev("alarm", fault="drift", fault_code=12), GAS, [("sensor-fault", 3, "gs-1/fault/12")]),
    ("gas-heartbeat-lost", ev("heartbeat.lost"), GAS, [("sensor-comm-lost", 1, "gs-1/reachability")]),
    # medical devices
    ("error-high", ev("alarm", error_code="E12", error_severity="high"), PUMP, [("device-error-high", 1, "pump-1/error/E12")]),
    ("error-medium", ev("alarm", error_code="E7", error_severity="medium"), MON, [("device-error-medium", 2, "mon-1/error/E7")]),
    ("error-low", ev("status", error_code="W3", error_severity="low"), MON, [("device-error-low", 4, "mon-1/error/W3")]),
    ("error-info-is-no-fault", ev("status", error_code="I1", error_severity="info"), MON, []),
    ("occlusion", ev("status", state="occlusion"), PUMP, [("occlusion", 1, "pump-1/occlusion")]),
    ("air-in-line", ev("alarm", state="air-in-line"), PUMP, [("therapy-stopped", 1, "pump-1/therapy")]),
    ("near-end", ev("status", state="near-empty"), PUMP, [("infusion-near-end", 4, "pump-1/therapy-end")]),
    ("battery-low", ev("status", battery=15), MON, [("battery-low", 2, "mon-1/battery")]),
    ("battery-critical", ev("status", battery=5), MON, [("battery-critical", 1, "mon-1/battery")]),
    ("over-temperature", ev("heartbeat", temperature=47), MON, [("over-temperature", 3, "mon-1/temperature")]),
    ("offline", ev("heartbeat.lost"), PUMP, [("device-offline", 1, "pump-1/reachability")]),
    # nothing for healthy readings
    ("healthy-gas", ev("status", ch4=0.3, co=2), GAS, []),
    ("healthy-pump", ev("status", state="running", battery=90, temperature=30), PUMP, []),
]


@pytest.mark.parametrize("event, device, expected", [r[1:] for r in RAISES], ids=[r[0] for r in RAISES])
def test_shipped_rule_raises(event: Event, device: Device, expected: list[tuple[str, int, str]]) -> None:
    got = [(c.rule_id, int(c.level), c.key) for c in ENGINE.classify(event, device) if c.action == "raise"]
    assert got == expected


CLEARS = [
    ("link-up", ev("IF-MIB::linkUp", ifIndex=7), SW, "sw-1/if/7"),
    ("entity-enabled", ev("ENTITY-STATE-MIB::entStateOperEnabled", entPhysicalName="PSU 2"), SW, "sw-1/entity/PSU 2"),
    ("psu-ok", ev("status", psu="2", psu_state="ok"), SW, "sw-1/psu/2"),
    ("temperature-below-hysteresis", ev("sensor.temperature", temperature=55), SW, "sw-1/temperature"),
    ("ups-back-on-mains", ev("UPS-MIB::upsTrapAlarmEntryRemoved", upsAlarmId=2,
                             upsAlarmDescr="1.3.6.1.2.1.33.1.6.3.2"), UPS, "ups-1/ups/power"),
    ("ups-low-battery-removed", ev("UPS-MIB::upsTrapAlarmEntryRemoved", upsAlarmId=3,
                                   upsAlarmDescr="UPS-MIB::upsAlarmLowBattery"), UPS, "ups-1/ups/battery"),
    ("ups-other-removed", ev("UPS-MIB::upsTrapAlarmEntryRemoved", upsAlarmId=5, upsAlarmDescr="UPS-MIB::upsAlarmFanFailure"),
     UPS, "ups-1/ups/alarm/5"),
    ("heartbeat-restored", ev("heartbeat.restored"), SW, "sw-1/reachability"),
    ("ch4-below-hysteresis", ev("status", ch4=0.5), GAS, "gs-1/gas/ch4"),
    ("mains-back", ev("status", power="mains"), SUB, "ss-1/power"),
    ("sensor-comm-back", ev("status", comm="ok", sensor="CH4-07"), SUB, "ss-1/comm/CH4-07"),
    ("pump-running", ev("status", state="running"), PUMP, "pump-1/occlusion"),
    ("battery-charged", ev("status", battery=35), MON, "mon-1/battery"),
    ("error-cleared", ev("status", error_code="E12", error_state="cleared"), PUMP, "pump-1/error/E12"),
]


@pytest.mark.parametrize("event, device, key", [r[1:] for r in CLEARS], ids=[r[0] for r in CLEARS])
def test_shipped_rule_clears(event: Event, device: Device, key: str) -> None:
    assert key in {c.key for c in ENGINE.classify(event, device) if c.action == "clear"}


@pytest.mark.parametrize("event, device", [
    (ev("sensor.temperature", temperature=65), SW),  # between 60 and 70: neither raise nor clear
    (ev("status", ch4=0.9), GAS),  # between 0.8 and 1.0
], ids=["network-temperature", "mine-ch4"])
def test_hysteresis_band_neither_raises_nor_clears(event: Event, device: Device) -> None:
    assert ENGINE.classify(event, device) == []


def test_time_behaviour_of_shipped_rules() -> None:
    by_id = {(r.pack, r.id): r for r in ENGINE.rules if r.action == "raise"}
    assert by_id[("network", "if-link-down")].flap_count == 6 and by_id[("network", "if-link-down")].flap_window == 600
    assert by_id[("network", "auth-failure")].hold_count == 3
    assert by_id[("network", "ups-on-battery")].escalate == ((1800.0, FaultLevel.CRITICAL),)
    assert by_id[("mine", "substation-on-battery")].escalate == ((5400.0, FaultLevel.CRITICAL),)


def test_every_rule_justifies_its_level_and_the_readme_lists_every_pack() -> None:
    """Each rule in a shipped pack carries a comment (its level's justification) in its table,
    and rules/README.md documents the schema and every shipped pack."""
    for name in PACKS:
        text = resources.files("rules").joinpath("packs", f"{name}.toml").read_text("utf-8")
        for block in text.split("[[rules]]")[1:]:
            rid = next(line for line in block.splitlines() if line.startswith("id ="))
            assert any(line.lstrip().startswith("#") and "(" in line for line in block.splitlines()), \
                f"{name}: rule {rid} has no level justification comment"
    readme = (ROOT / "rules" / "README.md").read_text("utf-8")
    for word in ("hold_for", "hold_count", "escalate", "flap_count", "flap_window", "clear_when", "continue", *PACKS):
        assert word in readme
