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
