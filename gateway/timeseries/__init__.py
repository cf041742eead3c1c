"""Time series sink: heartbeat/status numbers and alarm/ticket transitions to an InfluxDB v2 write API.

Optional and off by default. The pipeline hands every telemetry event to
:meth:`TimeseriesSink.offer_event` (O(1): a tuple appended to a bounded buffer) and
registers :meth:`TimeseriesSink.on_commit` as a change listener; a background task turns
the buffer into InfluxDB line protocol and writes it in batches with influxdb-client's
synchronous ``WriteApi`` on a thread of its own, so neither a slow nor a dead server can
block the event loop. Any server that speaks ``POST /api/v2/write`` works: InfluxDB 2,
InfluxDB 3 (its v2-compatible endpoint), VictoriaMetrics. ``docs/timeseries.md`` describes
the schema for dashboards.

Shape::

    pipeline ──offer_event(ev, dev)──> events deque (bounded; full = oldest dropped, counted)
    pipeline ──on_commit(...)────────> transitions deque (alarm/ticket points, built at commit)
                                          │ every flush_interval, or at batch_size points
                                          v
                         writer task: take a batch (transitions first) → line protocol
                         (worker thread) → WriteApi.write (worker thread)
                           2xx          → written
                           408/429/5xx,
                           unreachable  → the same batch retried with exponential backoff;
                                          new points keep buffering (bounded)
                           other 4xx    → batch dropped, counted as ``rejected``, logged

Decisions:

* **Numbers only.** ``int`` and ``float`` attributes become fields, **all written as
  floats** (no ``i`` suffix), so a reading that is sometimes ``80`` and sometimes ``79.5``
  never causes a field-type conflict (InfluxDB refuses a batch with one). ``bool`` becomes
  ``1``/``0``. NaN and infinities are skipped (line protocol cannot carry them). Strings are
  ignored unless their name matches ``tag_attributes`` (then they are tags; mind the
  cardinality). Attribute names ``time``, names starting with ``_`` (reserved by InfluxDB)
  and names equal to a tag key the sink writes are skipped.
* **Tags** are ``device``, ``site``, ``region``, ``class`` (plus ``event`` when the
  measurement is the device class); empty values are left out (line protocol has no empty
  tag). They depend on the device only, so the series count is devices × fields.
* **Transitions**: every alarm change but a repeat (raised, pending, escalated, cleared,
  suppressed, …) and every ticket change. Alarm and ticket ids grow without bound, so they
  are fields, never tags. The alarm key is a tag by default (it is a template over device
  and rule, so bounded); ``alarm_key_tag = false`` writes it as a string field instead.
* **Escaping** follows influxdb-client's ``Point``, except that a trailing backslash in a
  name or tag value is removed (line protocol cannot express one), and so are leading
  ``#`` of a measurement (the line would be a comment).
* **Backpressure**: the buffer drops its oldest points when full (the newest matter most
  once the server is back); the batch in flight counts towards ``buffer_size``. Alarm and
  ticket points have a deque of their own with the same bound, so a telemetry flood cannot
  push the fault overlay out. Failures are logged when the state changes, not per retry.
* **Client API**: the synchronous ``WriteApi`` on one worker thread, with the buffer,
  batching and retries here. influxdb-client's batching mode keeps its own queue and retry
  schedule, which would hide how much is held and what is lost; its asyncio API needs
  ``aiohttp`` (the ``influxdb-client[async]`` extra), which buys nothing with one writer.

Modules: :mod:`~gateway.timeseries.config` (the section model; what ``gateway.config``
imports), :mod:`~gateway.timeseries.lines` (line protocol, pure) and
:mod:`~gateway.timeseries.sink` (buffers, writer task, influxdb-client). The names below
are loaded on first use, so importing the package (or its config) does not load the sink.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.timeseries.config import TimeseriesConfig
    from gateway.timeseries.lines import (
        LineBuilder,
        escape_key,
        escape_measurement,
        escape_string,
        format_number,
        timestamp,
    )
    from gateway.timeseries.sink import TimeseriesSink, TimeseriesStats, classify_status

__all__ = [
    "LineBuilder",
    "TimeseriesConfig",
    "TimeseriesSink",
    "TimeseriesStats",
    "classify_status",
    "escape_key",
    "escape_measurement",
    "escape_string",
    "format_number",
    "timestamp",
]

_HOME = {
    "TimeseriesConfig": "config",
    "LineBuilder": "lines",
    "escape_key": "lines",
    "escape_measurement": "lines",
    "escape_string": "lines",
    "format_number": "lines",
    "timestamp": "lines",
    "TimeseriesSink": "sink",
    "TimeseriesStats": "sink",
    "classify_status": "sink",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
