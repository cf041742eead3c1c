"""Which partition's leader a change goes to, and how a site's link state is told
(gateway.api.partitioned, gateway.api.routes.sites): pure functions."""

from __future__ import annotations

import json
from types import SimpleNamespace

from gateway.api.partitioned import partition_of_request
from gateway.api.routes.sites import site_rows


def _site(device: str) -> int | None:
    return {"sw-a": 2, "sw-b": 1}.get(device)


def test_a_change_goes_to_the_partition_of_its_ticket_alarm_or_device() -> None:
    assert partition_of_request("POST", "/api/v1/tickets/7/acknowledge", b"", 3, _site) == 1
    assert partition_of_request("POST", "/api/v1/service/tickets/8/actions", b"", 3, _site) == 2
    assert partition_of_request("POST", "/api/v1/alarms/9/ack", b"", 4, _site) == 1
    new = json.dumps({"device": "sw-a", "level": 2, "title": "x"}).encode()
    assert partition_of_request("POST", "/api/v1/tickets", new, 3, _site) == 2
    assert partition_of_request("POST", "/api/v1/tickets", b'{"device": "nobody"}', 3, _site) == 0
    assert partition_of_request("POST", "/api/v1/tickets", b"not json", 3, _site) == 0
    assert partition_of_request("POST", "/api/v1/maintenance", b"{}", 3, _site) == 0
    assert partition_of_request("POST", "/api/v1/session", b"{}", 3, _site) == 0
    assert partition_of_request("POST", "/api/v1/tickets7/x", b"", 3, _site) == 0


def _dev(i: str, site: str, cls: str = "network.switch", policy: str = "gold") -> SimpleNamespace:
    return SimpleNamespace(id=i, site=site, device_class=cls, policy=policy)


def test_link_states_and_backlog() -> None:
    devices = [_dev("edge-a", "a", "gateway.edge"), _dev("sw-a", "a"), _dev("edge-b", "b", "gateway.edge"),
               _dev("edge-c", "c", "gateway.edge", "silver"), _dev("edge-d", "d", "gateway.edge"), _dev("sw-e", "e"),
               _dev("lab", "")]
    heard = {"edge-a": {"queued": 7, "dropped": 0, "received_at": 95.0},
             "edge-b": {"queued": 0, "dropped": 0, "received_at": 50.0},
             "edge-c": {"queued": 3, "dropped": 1, "received_at": 99.0}}
    rows = {r["site"]: r for r in site_rows(devices, {"gold": "Acme"}, heard, {"edge-c"}, {"sw-a": 2}, 100.0, 15.0,
                                            lambda s: ord(s) % 2)}
    assert sorted(rows) == ["a", "b", "c", "d", "e"]  # a device without a site is no site
    assert (rows["a"]["link"], rows["a"]["backlog"], rows["a"]["open_alarms"]) == ("up", 7, 2)
    assert rows["b"]["link"] == "silent"  # heard, but longer ago than the window
    assert (rows["c"]["link"], rows["c"]["backlog"]) == ("down", 3)  # the leader's loss alarm wins
    assert (rows["d"]["link"], rows["d"]["backlog"]) == ("unknown", None)
    assert rows["e"]["link"] == "no_edge"
    assert rows["a"]["customers"] == ["Acme"] and rows["c"]["customers"] == []
    assert rows["a"]["partition"] == 1 and rows["a"]["contracts"] == ["gold"]
