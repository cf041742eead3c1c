"""Two-way (issue 17 part 5) through a real ``nats-server -js``: operator actions at the
central reach the site's edge on its durable per-site subject and are applied there once;
the central's rule set reaches an edge that was cut off when its link returns, and the edge
reports the version it runs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.cli.main import main as cli_main
from gateway.config import config_from_dict
from gateway.model import Event
from gateway.runtime.sitecontrol import SEQ_KEY
from tests.fixtures.natsjs import CuttableProxy, JetStreamServer
from tests.fixtures.netsnmp import LINK_DOWN, NetSnmp, free_udp_port, link_varbinds
from tests.helpers import eventually, write_config
from tests.integration.test_forward import SITES, central_cfg, central_dict, central_store, edge_cfg

__all__ = ["central_store"]


def _edge_ticket(gw: Gateway, key: str) -> Any:
    return next((t for t in gw.desk.open.values() if t.alarm_key == key), None)


def _kinds(gw: Gateway, ticket_id: int) -> list[tuple[str, str]]:
    return [(e["kind"], e["actor"]) for e in gw.store.timeline(ticket_id)]


async def test_central_maintenance_and_ticket_actions_reach_the_edge_once(
    tmp_path: Path, jetstream: JetStreamServer, netsnmp: NetSnmp, central_store: dict[str, Any]
) -> None:
    port = free_udp_port()
    proxy = CuttableProxy(("127.0.0.1", jetstream.port))
    try:
        async with Gateway(edge_cfg(tmp_path, "a", proxy.url, port)) as ea, \
                Gateway(central_cfg(tmp_path, jetstream.url, central_store, {"a": SITES["a"]})) as central:
            r = await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(1, "eth1"))
            assert r.returncode == 0, r.stderr
            [ct] = await eventually(lambda: central.store.list_tickets(), what="the ticket at the central")
            et = await eventually(lambda: _edge_ticket(ea, ct["alarm_key"]), what="the ticket at the edge")
            # The operator at the central acknowledges, and arrives while the edge is cut off.
            await central.pipeline.execute(lambda now: central.desk.act(ct["id"], "acknowledge", now, "user:li.wei", "on it"))
            await eventually(lambda: et.status == "acknowledged", what="the ack at the edge")
            proxy.cut()
            await central.pipeline.execute(lambda now: central.desk.act(ct["id"], "arrive", now, "user:li.wei", "on site"))
            # A maintenance window for site a, created at the central during the cut.
            w = await central.maintenance_hooks.create(
                {"id": "mw-a", "sites": ["a"], "end": time.time() + 3600, "reason": "vendor visit"}, "user:li.wei")
            await eventually(lambda: central.central_side.publisher.pending == 0, what="published to JetStream")
            await asyncio.sleep(0.5)  # why: nothing may cross a cut link; it would land within this
            assert ea.maintenance.get("mw-a") is None and et.status == "acknowledged"
            proxy.mend()
            got = await eventually(lambda: ea.maintenance.get("mw-a"), timeout=20, what="the window at the edge")
            assert got.end == w["end"] and got.source == "central"
            await eventually(lambda: et.status == "on_site", what="the arrival at the edge")
            # The window suppresses a new fault at the edge: an alarm, no local ticket.
            r = await asyncio.to_thread(netsnmp.trap, port, LINK_DOWN, link_varbinds(2, "eth2"))
            [a2] = await eventually(lambda: [a for a in ea.store.list_alarms() if a["key"].endswith("/2")],
                                    what="the second alarm at the edge")
            assert a2["state"] == "suppressed" and a2["suppressed_by"] == "maintenance:mw-a", a2
            assert len(ea.store.list_tickets()) == 1
            # Resolved at the central: restored at the edge; the window ended there too.
            await central.pipeline.execute(lambda now: central.desk.act(ct["id"], "restore", now, "user:li.wei", "fan replaced"))
            await central.maintenance_hooks.end("mw-a", "user:li.wei")
            await eventually(lambda: ea.store.get_ticket(et.id)["status"] == "restored", what="the resolve at the edge")
            await eventually(lambda: ea.maintenance.get("mw-a").ended_by == "user:li.wei", what="the window's end at the edge")
            # Each action once: one timeline entry each, the applied sequence recorded with them.
            kinds = _kinds(ea, et.id)
            for kind in ("acknowledge", "arrive", "restore"):
                assert kinds.count((kind, "central:user:li.wei")) == 1, kinds
            # ack, arrive, window, restore, window ended (counted once each is committed)
            await eventually(lambda: ea.edge_control.applied == 5, what="five actions applied")
            assert int(ea.store.get_meta(SEQ_KEY) or 0) == ea.edge_control.status()["control_seq"] > 0
            # The central's automatic actions (the device clearing) are not sent back.
            assert ea.edge_control.skipped == 0
    finally:
        proxy.close()


async def test_an_action_applied_but_not_acknowledged_is_not_applied_again(
    tmp_path: Path, jetstream: JetStreamServer, central_store: dict[str, Any]
) -> None:
    """The edge applies an action and stops before its ack went out (``hold_acks``); after
    its restart JetStream delivers it again (after ``ack_wait``) with what came meanwhile:
    the new one is applied, the old one only acknowledged."""
    port = free_udp_port()
    cfg_c = central_cfg(tmp_path, jetstream.url, central_store, {"a": SITES["a"]})
    async with Gateway(cfg_c) as central:
        async with Gateway(edge_cfg(tmp_path, "a", jetstream.url, port, ack_wait="1s")) as ea:
            await central.maintenance_hooks.create({"id": "mw-1", "sites": ["a"], "end": time.time() + 600}, "user:op")
            await eventually(lambda: ea.maintenance.get("mw-1"), what="the first window at the edge")
            ea.edge_control.hold_acks = True
            await central.maintenance_hooks.create({"id": "mw-2", "sites": ["a"], "end": time.time() + 600}, "user:op")
            await eventually(lambda: ea.maintenance.get("mw-2"), what="the second window at the edge")
            seq = int(ea.store.get_meta(SEQ_KEY) or 0)
        await central.maintenance_hooks.create({"id": "mw-3", "sites": ["a"], "end": time.time() + 600}, "user:op")
        async with Gateway(edge_cfg(tmp_path, "a", jetstream.url, port, ack_wait="1s")) as ea:
            assert ea.maintenance.get("mw-2") is not None  # kept in the edge's store
            await eventually(lambda: ea.maintenance.get("mw-3"), what="the window made while the edge was down")
            await eventually(lambda: ea.edge_control.skipped == 1, what="the unacknowledged one, again")
            await eventually(lambda: ea.edge_control.applied == 1)
            assert int(ea.store.get_meta(SEQ_KEY) or 0) > seq


async def test_a_rule_set_pushed_during_a_cut_runs_at_the_edge_after_it(
    tmp_path: Path, jetstream: JetStreamServer, central_store: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = CuttableProxy(("127.0.0.1", jetstream.port))
    extra = tmp_path / "noc-rules"
    extra.mkdir()
    c = central_dict(tmp_path, jetstream.url, central_store, {"a": SITES["a"]})
    c["forward"]["distribute_rules"] = True
    c["rules"] = {"packs": ["network", "mine"], "dirs": [str(extra)]}
    path = write_config(tmp_path / "central.toml", c)
    cfg_c = config_from_dict(c, str(path), str(tmp_path))
    try:
        async with Gateway(cfg_c) as central, \
                Gateway(edge_cfg(tmp_path, "a", proxy.url, free_udp_port())) as ea:
            pub = central.central_side.publisher
            await eventually(lambda: pub.rules_version == 1, what="version 1 published")
            await eventually(lambda: central.forwarder.edges.get("edge-a", {}).get("rules_version") == 1,
                             what="the edge reporting version 1")
            assert "medical" not in {p for p in ea.engine.packs}  # the central's set, not the edge's own
            proxy.cut()
            (extra / "hoist.toml").write_text(
                '[pack]\nname = "hoist"\n\n[[rules]]\nid = "hoist-overspeed"\nevent = "hoist.overspeed"\n'
                'level = 1\nkey = "{device}/hoist"\ntitle = "Hoist overspeed on {device}"\n', "utf-8")
            result = await central.reload()
            assert result["ok"]
            await eventually(lambda: pub.rules_version == 2, what="version 2 published")
            await asyncio.sleep(0.5)  # why: the edge is cut off: nothing may reach it within this
            assert ea.edge_control.status()["rules_version"] == 1
            proxy.mend()
            await eventually(lambda: central.forwarder.edges.get("edge-a", {}).get("rules_version") == 2,
                             timeout=20, what="the edge reporting version 2 after the cut")
            assert "hoist" in ea.engine.packs
            # The edge runs it: its own board raises the new rule's alarm.
            ea.pipeline.offer(Event(time.time(), "test", "sw-a", "hoist.overspeed", {}))
            await eventually(lambda: [a for a in ea.store.list_alarms() if a["key"] == "sw-a/hoist"])
            status = central.edge_status()
            assert status["rules_version"] == 2
            assert [(e["edge"], e["rules_version"]) for e in status["edges"]] == [("edge-a", 2)]
            # The same through the CLI (the running central's control socket).
            capsys.readouterr()
            assert await asyncio.to_thread(cli_main, ["edges", "-c", str(path)]) == 0
            text = capsys.readouterr().out
            assert "central: rule set version 2" in text and "edge-a" in text, text
        # A restart keeps the version it ran (stored in its data dir), with no central around.
        jetstream.kill()
        async with Gateway(edge_cfg(tmp_path, "a", proxy.url, free_udp_port())) as ea:
            assert ea.edge_control.status()["rules_version"] == 2 and "hoist" in ea.engine.packs
    finally:
        proxy.close()


async def test_a_rule_set_the_edge_cannot_take_is_refused_and_reported(
    tmp_path: Path, jetstream: JetStreamServer, central_store: dict[str, Any]
) -> None:
    """A pack the edge cannot load (e.g. written for a newer version) is refused: the edge
    keeps the version it runs and says why in its heartbeat."""
    extra = tmp_path / "noc-rules"
    extra.mkdir()
    c = central_dict(tmp_path, jetstream.url, central_store, {"a": SITES["a"]})
    c["forward"]["distribute_rules"] = True
    c["rules"] = {"packs": ["network"], "dirs": [str(extra)]}
    cfg_c = config_from_dict(c, str(tmp_path / "central.toml"), str(tmp_path))
    async with Gateway(cfg_c) as central, Gateway(edge_cfg(tmp_path, "a", jetstream.url, free_udp_port())) as ea:
        await eventually(lambda: central.forwarder.edges.get("edge-a", {}).get("rules_version") == 1)
        # The central's own parser is bypassed: the pack is added to the set it sends.
        bad = {"packs": [["broken", "[pack]\nname = 'broken'\n[[rules]]\nid = 'x'\nlevel = 9\n"]],
               "policies": {}, "default_level": None}
        central.central_side.publisher.rules(bad)
        hb = await eventually(lambda: central.forwarder.edges.get("edge-a", {}).get("rules_error"),
                              what="the refusal in the edge's heartbeat")
        assert hb["version"] == 2
        assert central.forwarder.edges["edge-a"]["rules_version"] == 1
        assert "network" in ea.engine.packs
