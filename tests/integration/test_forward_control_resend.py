"""A person's ticket action at the central is committed with the ticket, but reaches the
site's edge through the control publisher's queue, which lives in memory. A central that
crashed before publishing sends it at its next start, from the store (the edge finds an
action it already applied done; JetStream drops a repeat within its window by message id)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gateway.model import Device
from gateway.runtime.sitecontrol import CentralSide
from gateway.store import BatchWrite
from gateway.store.sqlite import SqliteStore
from tests.store_contract import samples as s


class Recorder:
    """Stands in for the ControlPublisher (its network side is tested with a real
    nats-server in test_forward_twoway.py): records what would be published."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def site(self, site: str, msg_id: str, body: dict[str, Any]) -> None:
        self.sent.append((site, msg_id, body))


def _gw(store: SqliteStore, retention: float) -> Any:
    inventory = [Device(id="edge-north", device_class="gateway.edge", site="north"),
                 Device(id="sw-1", device_class="network.switch", site="north"),
                 Device(id="sw-9", device_class="network.switch", site="south")]  # no edge at south
    cfg = SimpleNamespace(forward=SimpleNamespace(control_retention=retention))
    return SimpleNamespace(store=store, inventory=inventory, cfg=cfg)


def test_people_s_ticket_actions_are_sent_again_from_the_store_at_start(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "central.db")
    try:
        t1, t2 = s.ticket(1), s.ticket(2, alarm_id=2, device="sw-9", site="south")
        entries = [
            s.entry(1, s.T0 + 10, "acknowledge", "on it"),
            s.entry(1, s.T0 + 20, "note", "not an action the site needs"),
            s.entry(1, s.T0 + 30, "arrive"),
            s.entry(2, s.T0 + 40, "acknowledge"),  # a site without an edge
        ]
        system = dataclasses.replace(s.entry(1, s.T0 + 50, "restore"), actor="system")  # the gateway's own
        old = s.entry(1, s.T0 - 10_000, "acknowledge")  # older than the retention
        store.commit(BatchWrite(tickets=[t1, t2], timeline=[old, *entries, system]))
        pub = Recorder()
        side = CentralSide(_gw(store, retention=3600.0), pub)  # type: ignore[arg-type]

        assert side.resend_ticket_actions(s.T0 + 100) == 2
        assert [(site, body["action"], body["at"], body["actor"], body["note"]) for site, _id, body in pub.sent] == [
            ("north", "acknowledge", s.T0 + 10, "user:li", "on it"),
            ("north", "arrive", s.T0 + 30, "user:li", ""),
        ]
        # The same message ids as when the action was first published (on_timeline).
        live = Recorder()
        CentralSide(_gw(store, 3600.0), live).on_timeline([entries[0]], [t1])  # type: ignore[arg-type]
        assert live.sent[0][1] == pub.sent[0][1] and live.sent[0][2] == pub.sent[0][2]
    finally:
        store.close()
