"""Integration tests of the time-series sink against a real VictoriaMetrics (InfluxDB v2 write API).

Every test writes under device ids of its own (a uuid), so tests sharing the session's
server never see each other's series. Points are read back with ``/api/v1/export``: each
field is a metric ``<measurement>_<field>``, tags are labels, timestamps are milliseconds.
Outage tests use a server of their own that they stop and start again on the same port and
storage directory. The HTTP status tests use a stub server (see :class:`StubServer`).
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.model import Device, Event
from gateway.timeseries import TimeseriesConfig, TimeseriesSink
from tests.fixtures.tsdb import VictoriaMetricsProcess, export, free_port, points
from tests.helpers import base_config, eventually

# The server fixtures, by name (redundant, and harmless, once conftest lists tests.fixtures.tsdb).

FAST = {"flush_interval": 0.05, "retry_min": 0.05, "retry_max": 0.2, "timeout": 2.0, "stop_timeout": 5.0}


def _cfg(url: str, **kw: Any) -> TimeseriesConfig:
    return TimeseriesConfig(enabled=True, url=url, token="secret-token", org="noc", bucket="gateway", **{**FAST, **kw})


def _device(**kw: Any) -> Device:
    base = {"id": f"gs-{uuid.uuid4().hex[:10]}", "device_class": "mine.gas-sensor", "site": "pit 3,north",
            "region": "shan=xi"}
    return Device(**{**base, **kw})


def _t0() -> float:
    # A minute ago, on a millisecond boundary plus .123 s, so precisions differ visibly.
    return float(int(time.time()) - 60) + 0.123


def _ms(ts: float, precision: str = "ms") -> int:
    return round(ts) * 1000 if precision == "s" else round(ts * 1000)


def _count(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda rows: len(points(rows)) >= n


# ====================================================================== data read back


@pytest.mark.parametrize("precision", ["s", "ms", "us", "ns"])
async def test_heartbeat_and_status_numbers_read_back_with_tags_and_times(victoria_metrics: str, precision: str) -> None:
    dev = _device()
    cfg = _cfg(victoria_metrics, precision=precision, exclude=["debug_*"], tag_attributes=["shaft"])
    t0 = _t0()
    beats = [
        Event(t0 + i * 1.5, "mqtt", dev.id, "heartbeat",
              {"ch4": 0.31 + i / 100, "co": 3 + i, "battery": 87.5, "door_open": i % 2 == 0,
               "state": "ok", "debug_seq": i, "shaft": "main shaft"})
        for i in range(5)
    ]
    status = Event(t0 + 10, "mqtt", dev.id, "status", {"temperature": -4.25, "voltage": 229, "fw": "1.2.3"})
    trap = Event(t0 + 11, "snmp", dev.id, "IF-MIB::linkDown", {"ifIndex": 7})
    async with TimeseriesSink(cfg) as sink:
        assert all(sink.offer_event(ev, dev) for ev in [*beats, status])
        assert not sink.offer_event(trap, dev)  # not a telemetry event name
        assert await sink.flush(10)
        assert sink.stats()["written"] == 6 and sink.stats()["dropped"] == 0

    rows = export(victoria_metrics, f'{{device="{dev.id}"}}', until=_count(5 * 4 + 2))
    labels = {"device": dev.id, "site": "pit 3,north", "region": "shan=xi", "class": "mine.gas-sensor"}
    by_name = {r["metric"]["__name__"]: r for r in rows}
    assert sorted(by_name) == ["heartbeat_battery", "heartbeat_ch4", "heartbeat_co", "heartbeat_door_open",
                               "status_temperature", "status_voltage"]
    for name, row in by_name.items():
        expect = {**labels, "__name__": name, **({"shaft": "main shaft"} if name.startswith("heartbeat") else {})}
        assert row["metric"] == expect
    got = points(rows)
    want = sorted(
        [(f"heartbeat_{f}", _ms(ev.ts, precision), float(v)) for ev in beats
         for f, v in ev.attrs.items() if f in ("ch4", "co", "battery", "door_open")]
        + [("status_temperature", _ms(status.ts, precision), -4.25), ("status_voltage", _ms(status.ts, precision), 229.0)]
    )
    assert [(n, t) for n, t, _ in got] == [(n, t) for n, t, _ in want]
    assert [v for *_, v in got] == pytest.approx([v for *_, v in want], rel=1e-12)


async def test_class_measurement_puts_the_event_name_in_a_tag(victoria_metrics: str) -> None:
    dev = _device(device_class="mine.gas-sensor", region="")
    ev = Event(_t0(), "mqtt", dev.id, "heartbeat", {"ch4": 0.5})
    async with TimeseriesSink(_cfg(victoria_metrics, measurement="class")) as sink:
        sink.offer_event(ev, dev)
    [row] = export(victoria_metrics, f'{{device="{dev.id}"}}')
    # An empty region is left out: line protocol has no empty tag values.
    assert row["metric"] == {"__name__": "mine.gas-sensor_ch4", "device": dev.id, "site": "pit 3,north",
                             "class": "mine.gas-sensor", "event": "heartbeat"}
    assert (row["timestamps"], row["values"]) == ([_ms(ev.ts)], [0.5])


# ====================================================================== through the pipeline


def _gateway_cfg(tmp_path: Path, dev_id: str) -> Any:
    d = base_config(tmp_path / "var")
    d["devices"] = [{"id": dev_id, "class": "mine.gas-sensor", "site": "pit 3", "region": "shanxi",
                     "policy": "mine-monitoring"}]
    return config_from_dict(d, str(tmp_path / "config.toml"), str(tmp_path))


def _attach(gw: Gateway, sink: TimeseriesSink, timings: list[float] | None = None) -> None:
    """Wire the sink as the composition root will: a commit listener and a per-event hook.

    The per-event hook goes through ``pipeline.recorder`` here (it sees every event, before
    classification) as a stand-in for the pipeline's own call of ``offer_event``.
    """
    resolve = gw.inventory.resolve
    offer = sink.offer_event

    def hook(ev: Event) -> None:
        t = time.perf_counter()
        offer(ev, resolve(ev.device))
        if timings is not None:
            timings.append(time.perf_counter() - t)

    gw.pipeline.recorder = hook
    gw.pipeline.listeners.append(sink.on_commit)


async def _feed(gw: Gateway, ev: Event) -> None:
    before = gw.pipeline.stats.committed_events
    assert gw.pipeline.offer(ev)
    await eventually(lambda: gw.pipeline.stats.committed_events > before)


async def test_alarm_and_ticket_transitions_overlay_the_curve(victoria_metrics: str, tmp_path: Path) -> None:
    dev_id = f"gs-{uuid.uuid4().hex[:10]}"
    t0 = _t0()
    readings = [0.4, 1.2, 1.6, 0.5]  # normal, CH4 alarm (2), power-cut limit (1), back below 0.8
    async with Gateway(_gateway_cfg(tmp_path, dev_id)) as gw:
        sink = TimeseriesSink(_cfg(victoria_metrics), resolve=gw.inventory.resolve)
        async with sink:
            _attach(gw, sink)
            for i, ch4 in enumerate(readings):
                await _feed(gw, Event(t0 + i * 10, "mqtt", dev_id, "heartbeat", {"ch4": ch4}))
            assert await sink.flush(10)
        st = sink.stats()
        assert st["transitions"] == 6 and st["written"] == 10 and st["dropped"] == 0

    curve = export(victoria_metrics, f'{{__name__="heartbeat_ch4",device="{dev_id}"}}')
    assert points(curve) == [("heartbeat_ch4", _ms(t0 + i * 10), v) for i, v in enumerate(readings)]

    alarms = export(victoria_metrics, f'{{__name__=~"gateway_alarm_.*",device="{dev_id}"}}', until=_count(3 * 5))
    key = f"{dev_id}/gas/ch4"
    common = {"device": dev_id, "site": "pit 3", "region": "shanxi", "class": "mine.gas-sensor", "key": key}
    active = {r["metric"]["change"]: r for r in alarms if r["metric"]["__name__"] == "gateway_alarm_active"}
    assert {k: r["metric"] for k, r in active.items()} == {
        "raised": {**common, "__name__": "gateway_alarm_active", "change": "raised", "level": "2",
                   "state": "active", "rule": "ch4-alarm"},
        "escalated": {**common, "__name__": "gateway_alarm_active", "change": "escalated", "level": "1",
                      "state": "active", "rule": "ch4-alarm"},
        "cleared": {**common, "__name__": "gateway_alarm_active", "change": "cleared", "level": "1",
                    "state": "cleared", "rule": "ch4-alarm"},
    }
    got = {(n, t, v) for n, t, v in points(alarms) if n not in ("gateway_alarm_title", "gateway_alarm_note")}
    assert got == {
        ("gateway_alarm_active", _ms(t0 + 10), 1.0), ("gateway_alarm_level", _ms(t0 + 10), 2.0),
        ("gateway_alarm_count", _ms(t0 + 10), 1.0), ("gateway_alarm_active", _ms(t0 + 20), 1.0),
        ("gateway_alarm_level", _ms(t0 + 20), 1.0), ("gateway_alarm_count", _ms(t0 + 20), 2.0),
        ("gateway_alarm_active", _ms(t0 + 30), 0.0), ("gateway_alarm_level", _ms(t0 + 30), 1.0),
        ("gateway_alarm_count", _ms(t0 + 30), 2.0),
        ("gateway_alarm_id", _ms(t0 + 10), 1.0), ("gateway_alarm_id", _ms(t0 + 20), 1.0),
        ("gateway_alarm_id", _ms(t0 + 30), 1.0),
    }

    tickets = export(victoria_metrics, f'{{__name__="gateway_ticket_level",device="{dev_id}"}}', until=_count(3))
    seen = sorted((r["metric"]["status"], r["metric"]["level"], t, v) for r in tickets
                  for t, v in zip(r["timestamps"], r["values"], strict=True))
    assert seen == sorted([("open", "2", _ms(t0 + 10), 2.0), ("open", "1", _ms(t0 + 20), 1.0),
                           ("restored", "1", _ms(t0 + 30), 1.0)])
    assert {r["metric"]["policy"] for r in tickets} == {"mine-monitoring"}


# ====================================================================== outages


async def _loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.01)  # why: the probe itself: how late a 10 ms timer fires is the loop's lag
        lags.append(loop.time() - t - 0.01)


async def test_server_down_gateway_keeps_going_and_points_arrive_after_recovery(
    private_victoria_metrics: Callable[..., VictoriaMetricsProcess], tmp_path: Path
) -> None:
    vm = private_victoria_metrics()
    dev_id = f"gs-{uuid.uuid4().hex[:10]}"
    t0 = _t0()
    timings: list[float] = []
    lags: list[float] = []
    n_down = 300
    async with (
        Gateway(_gateway_cfg(tmp_path, dev_id)) as gw,
        TimeseriesSink(_cfg(vm.url, batch_size=50, buffer_size=1000)) as sink,
    ):
        _attach(gw, sink, timings)
        await _feed(gw, Event(t0, "mqtt", dev_id, "heartbeat", {"ch4": 0.1}))
        assert await sink.flush(10)

        vm.stop()
        stop_lag = asyncio.Event()
        lag_task = asyncio.create_task(_loop_lag(stop_lag, lags))
        before = gw.pipeline.stats.committed_events
        for i in range(1, n_down + 1):
            assert gw.pipeline.offer(Event(t0 + i * 0.1, "mqtt", dev_id, "heartbeat", {"ch4": 0.2, "seq": i}))
            if i % 25 == 0:  # paced: each 25 are committed before the next are offered
                await eventually(lambda i=i: gw.pipeline.stats.committed_events >= before + i)
        # The gateway keeps processing: every event is committed while the server is down.
        await eventually(lambda: gw.pipeline.stats.committed_events == before + n_down)
        await eventually(lambda: sink.stats()["write_errors"] >= 3)
        st = sink.stats()
        assert st["healthy"] == 0 and st["buffered"] == n_down and st["dropped"] == 0
        stop_lag.set()
        await lag_task

        vm.start()
        assert await sink.flush(15)
        st = sink.stats()
        assert st["written"] == n_down + 1 and st["dropped"] == 0 and st["healthy"] == 1

    rows = export(vm.url, f'{{__name__="heartbeat_seq",device="{dev_id}"}}', until=_count(n_down))
    assert points(rows) == [("heartbeat_seq", _ms(t0 + i * 0.1), float(i)) for i in range(1, n_down + 1)]
    assert max(timings) < 0.005, f"offer_event took {max(timings) * 1e6:.0f} µs"
    assert max(lags) < 0.25, f"event loop stalled {max(lags):.3f} s"


async def test_drops_only_when_the_buffer_overflows_oldest_first(
    private_victoria_metrics: Callable[..., VictoriaMetricsProcess],
) -> None:
    vm = private_victoria_metrics(start=False)  # a closed port until started below
    dev = _device()
    t0 = _t0()
    evs = [Event(t0 + i * 0.01, "mqtt", dev.id, "heartbeat", {"seq": i}) for i in range(80)]
    async with TimeseriesSink(_cfg(vm.url, batch_size=10, buffer_size=50)) as sink:
        for ev in evs[:20]:
            sink.offer_event(ev, dev)
        await eventually(lambda: sink.stats()["write_errors"] >= 2)
        assert sink.stats()["dropped"] == 0 and sink.buffered == 20  # 10 in flight, 10 waiting
        for ev in evs[20:]:
            sink.offer_event(ev, dev)
        # 50 slots: the batch in flight (0-9) stays, the oldest waiting ones (10-39) go.
        assert sink.stats()["dropped"] == 30 and sink.buffered == 50
        vm.start()
        assert await sink.flush(15)
        assert sink.stats()["written"] == 50 and sink.stats()["dropped"] == 30

    rows = export(vm.url, f'{{__name__="heartbeat_seq",device="{dev.id}"}}', until=_count(50))
    kept = [*range(10), *range(40, 80)]
    assert points(rows) == sorted(("heartbeat_seq", _ms(evs[i].ts), float(i)) for i in kept)


async def test_stop_writes_what_is_buffered(victoria_metrics: str) -> None:
    dev = _device()
    t0 = _t0()
    sink = TimeseriesSink(_cfg(victoria_metrics, flush_interval=3600.0))
    await sink.start()
    for i in range(7):
        sink.offer_event(Event(t0 + i, "mqtt", dev.id, "heartbeat", {"seq": i}), dev)
    await sink.stop()
    assert sink.stats()["written"] == 7 and sink.stats()["abandoned"] == 0
    rows = export(victoria_metrics, f'{{__name__="heartbeat_seq",device="{dev.id}"}}', until=_count(7))
    assert len(points(rows)) == 7


async def test_stop_gives_up_after_stop_timeout_and_counts_what_is_left() -> None:
    dev = _device()
    sink = TimeseriesSink(_cfg(f"http://127.0.0.1:{free_port()}", stop_timeout=0.3))
    await sink.start()
    for i in range(12):
        sink.offer_event(Event(_t0() + i, "mqtt", dev.id, "heartbeat", {"seq": i}), dev)
    t = time.monotonic()
    await sink.stop()
    assert time.monotonic() - t < 3.0
    assert sink.stats()["abandoned"] == 12 and sink.stats()["written"] == 0 and sink.stats()["dropped"] == 0


# ====================================================================== HTTP statuses (stub)


class StubServer:
    """A scripted HTTP server standing in for the write endpoint: the one seam faked here.

    VictoriaMetrics answers 204 to every write, even to malformed line protocol (it skips
    bad lines and logs them), so it cannot show how the sink treats a 4xx or 5xx. This stub
    answers the first requests with the scripted statuses, then 204, and records what it got.
    """

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                u = urlsplit(self.path)
                stub.requests.append({"path": u.path, "query": parse_qs(u.query), "headers": dict(self.headers),
                                      "lines": body.decode().splitlines()})
                status, headers, payload = stub.script.pop(0) if stub.script else (204, {}, b"")
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[StubServer]:
    s = StubServer()
    yield s
    s.close()


def _error(status: int) -> tuple[int, dict[str, str], bytes]:
    body = b'{"code":"some-error","message":"scripted failure"}'
    return status, {"Content-Type": "application/json"}, body


async def test_request_carries_token_org_bucket_precision_gzip(stub: StubServer) -> None:
    dev = _device()
    ev = Event(_t0(), "mqtt", dev.id, "heartbeat", {"ch4": 0.5})
    async with TimeseriesSink(_cfg(stub.url, precision="s", gzip=True)) as sink:
        sink.offer_event(ev, dev)
        assert await sink.flush(10)
    [req] = stub.requests
    assert req["path"] == "/api/v2/write"
    assert req["query"] == {"org": ["noc"], "bucket": ["gateway"], "precision": ["s"]}
    assert req["headers"]["Authorization"] == "Token secret-token"
    assert req["lines"] == [(f"heartbeat,class=mine.gas-sensor,device={dev.id},region=shan\\=xi,site=pit\\ 3\\,north "
                             f"ch4=0.5 {round(ev.ts)}")]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
async def test_retryable_status_resends_the_same_batch_with_backoff(
    stub: StubServer, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.timeseries")
    stub.script = [_error(status), _error(status), _error(status)]
    dev = _device()
    async with TimeseriesSink(_cfg(stub.url, batch_size=5)) as sink:
        for i in range(5):
            sink.offer_event(Event(_t0() + i, "mqtt", dev.id, "heartbeat", {"seq": i}), dev)
        assert await sink.flush(10)
        st = sink.stats()
    assert (st["written"], st["write_errors"], st["rejected"], st["dropped"], st["healthy"]) == (5, 3, 0, 0, 1)
    assert len(stub.requests) == 4 and all(r["lines"] == stub.requests[0]["lines"] for r in stub.requests)
    messages = [r.getMessage() for r in caplog.records]
    # Logged when the state changes, not on every retry.
    assert sum("failed" in m and f"HTTP {status}" in m for m in messages) == 1
    assert sum("succeed again" in m for m in messages) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_permanent_status_drops_the_batch_counts_it_rejected_and_logs(
    stub: StubServer, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    stub.script = [_error(status)]
    dev = _device()
    async with TimeseriesSink(_cfg(stub.url, batch_size=5)) as sink:
        for i in range(5):
            sink.offer_event(Event(_t0() + i, "mqtt", dev.id, "heartbeat", {"seq": i}), dev)
        assert await sink.flush(10)
        st = sink.stats()
        assert (st["written"], st["rejected"], st["write_errors"], st["dropped"]) == (0, 5, 0, 0)
        # The next batch goes out normally.
        sink.offer_event(Event(_t0() + 9, "mqtt", dev.id, "heartbeat", {"seq": 9}), dev)
        assert await sink.flush(10)
        assert sink.stats()["written"] == 1
    assert len(stub.requests) == 2
    [line] = [r.getMessage() for r in caplog.records if "rejected a batch" in r.getMessage()]
    assert f"HTTP {status}" in line and "5 points" in line and "scripted failure" in line
