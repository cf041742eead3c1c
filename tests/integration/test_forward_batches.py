"""The central reads batch messages (many events in one JetStream message) and the older
single-event messages alike, through a real ``nats-server -js``: every event is committed
once by its own delivery key ``<edge>/<seq>`` even when a batch is republished cut
differently, a hole in the sequence is one ``forward.gap`` alarm, and a malformed batch is
dropped with one line."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from gateway.app import Gateway
from tests.fixtures.natsjs import JetStreamServer
from tests.helpers import eventually
from tests.integration.test_forward import SITES, central_cfg, central_store

__all__ = ["central_store"]


def _event(i: int, ts: float) -> dict[str, Any]:
    return {"ts": ts, "source": "snmp", "device": "sw-a", "name": "IF-MIB::linkDown",
            "attrs": {"ifIndex": i, "ifDescr": f"eth{i}"}, "peer": "127.0.0.1", "site": "a", "edge": "edge-a",
            "class": "network.switch"}


async def _publish(js: Any, seqs: list[int], prev: int | None, ts: float, count: str | None = None) -> None:
    headers = {}
    if len(seqs) == 1 and count is None:
        headers["Nats-Msg-Id"] = f"edge-a/{seqs[0]}"
        body = _event(seqs[0], ts)
    else:
        headers["Nats-Msg-Id"] = f"edge-a/{seqs[0]}-{seqs[-1]}"
        headers["Gw-Count"] = count or str(len(seqs))
        body = {"seqs": seqs, "events": [_event(i, ts) for i in seqs]}
    if prev is not None:
        headers["Gw-Prev"] = str(prev)
    await js.publish("gw.ev.a", json.dumps(body).encode(), headers=headers, timeout=5.0)


async def test_batches_and_single_events_each_event_once_gaps_seen(
    tmp_path: Path, jetstream: JetStreamServer, central_store: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with Gateway(central_cfg(tmp_path, jetstream.url, central_store, {"a": SITES["a"]})) as central:
        nc = await nats.connect(jetstream.url)
        try:
            js = nc.jetstream()
            await eventually(lambda: central.forwarder._nc is not None, what="the central's stream")
            ts = time.time()
            await _publish(js, [1], None, ts)  # the old form: one event, id <edge>/<seq>
            await _publish(js, [2, 3, 4], 1, ts)
            await _publish(js, [2, 3, 4, 5, 6], 1, ts)  # republished after a crash, cut differently
            with caplog.at_level(logging.WARNING, logger="gateway.forward"):
                await _publish(js, [7, 8], 6, ts, count="3")  # Gw-Count does not match: dropped
                await _publish(js, [9, 10], 8, ts)  # 7 and 8 never arrive
                alarms = await eventually(
                    lambda: (lambda a: a if len(a) == 8 else None)(
                        [a for a in central.store.list_alarms() if a["device"] == "sw-a"]),
                    what="eight alarms")
            assert sorted(a["key"] for a in alarms) == sorted(f"sw-a/if/{i}" for i in (1, 2, 3, 4, 5, 6, 9, 10))
            assert all(a["count"] == 1 for a in alarms), alarms
            assert "\n" not in next(r.getMessage() for r in caplog.records if "malformed" in r.getMessage())
            [gap] = await eventually(lambda: [a for a in central.store.list_alarms() if a["device"] == "edge-a"
                                              and "gap" in a["key"]], what="the gap alarm")
            assert gap["attrs"]["missing"] == "7..8"
            assert central.forwarder.gaps == 1
            # Every message acknowledged (the malformed one terminated): nothing pending.
            deadline = time.monotonic() + 10
            while True:
                info = await js.consumer_info("GATEWAY", "central")
                if info.num_ack_pending == 0 and info.num_pending == 0:
                    break
                assert time.monotonic() < deadline, info
                await asyncio.sleep(0.05)  # why: polling the consumer's state until the acks are in
        finally:
            await nc.close()
