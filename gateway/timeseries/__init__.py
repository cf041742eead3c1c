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
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fnmatch
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from gateway.core.alarms import CLEARED, CLEARED_CHANGE, RAISED, REPEATED, AlarmChange
from gateway.model import Device, Event
from gateway.core.tickets import Ticket

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

log = logging.getLogger("gateway.timeseries")

Precision = Literal["s", "ms", "us", "ns"]


def _duration(v: Any) -> float:
    # gateway.config imports this module for its section model, so the shared duration
    # parser is imported when a value is validated, not at import time.
    from gateway.config import parse_duration

    return parse_duration(v)


Duration = Annotated[float, BeforeValidator(_duration)]


class TimeseriesConfig(BaseModel):
    """The ``[timeseries]`` section.

    Attributes:
        enabled: write anything at all (off by default).
        url: base URL of the server; the sink posts to ``<url>/api/v2/write``.
        token: API token (InfluxDB 2: a token with write access to the bucket; InfluxDB 3:
            a database token). Sent as ``Authorization: Token …``.
        org: InfluxDB 2 organisation (name or id); ignored by InfluxDB 3 and VictoriaMetrics.
        bucket: InfluxDB 2 bucket; for InfluxDB 3 the database name.
        precision: timestamp precision of the written points.
        batch_size: most points per write request; a full batch is written at once.
        flush_interval: write what is buffered at least this often.
        buffer_size: most points held while the server is slow or gone (the batch in
            flight included); beyond it the oldest are dropped and counted.
        timeout: HTTP timeout of one write request.
        retry_min: first delay after a failed write; doubled per failure.
        retry_max: cap of the delay between retries.
        stop_timeout: how long ``stop()`` keeps trying to write what is buffered.
        gzip: compress write requests.
        event_names: event names whose numeric attributes are telemetry.
        include: attribute name globs to write (default all).
        exclude: attribute name globs never written (wins over ``include``).
        tag_attributes: attribute name globs written as tags (string values included)
            instead of fields. Every distinct value is a new series: use sparingly.
        measurement: ``"event"`` (measurement = event name, e.g. ``heartbeat``) or
            ``"class"`` (measurement = device class, with an ``event`` tag).
        alarm_measurement: measurement of alarm transitions.
        ticket_measurement: measurement of ticket changes.
        alarm_key_tag: write the alarm key as a tag (else as a string field).
        titles: write alarm and ticket titles, and why an alarm changed, as string fields
            ``title`` and ``note`` (Grafana annotation text). VictoriaMetrics stores string
            fields as 0.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    url: str = "http://127.0.0.1:8086"
    token: SecretStr = SecretStr("")
    org: str = ""
    bucket: str = "gateway"
    precision: Precision = "ms"
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    flush_interval: Duration = Field(default=5.0, gt=0)
    buffer_size: int = Field(default=100_000, ge=1)
    timeout: Duration = Field(default=10.0, gt=0)
    retry_min: Duration = Field(default=1.0, gt=0)
    retry_max: Duration = Field(default=60.0, gt=0)
    stop_timeout: Duration = Field(default=10.0, ge=0)
    gzip: bool = False
    event_names: list[str] = Field(default_factory=lambda: ["heartbeat", "status", "alarm"])
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    tag_attributes: list[str] = Field(default_factory=list)
    measurement: Literal["event", "class"] = "event"
    alarm_measurement: str = Field(default="gateway_alarm", min_length=1)
    ticket_measurement: str = Field(default="gateway_ticket", min_length=1)
    alarm_key_tag: bool = True
    titles: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> TimeseriesConfig:
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) cannot exceed buffer_size ({self.buffer_size})")
        if self.retry_min > self.retry_max:
            raise ValueError(f"retry_min ({self.retry_min}) cannot exceed retry_max ({self.retry_max})")
        if self.alarm_measurement == self.ticket_measurement:
            raise ValueError("alarm_measurement and ticket_measurement must differ")
        if self.measurement == "event":
            clash = {self.alarm_measurement, self.ticket_measurement} & set(self.event_names)
            if clash:
                raise ValueError(f"measurement {min(clash)!r} is both an event name and a transition measurement")
        return self


# ====================================================================== line protocol

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})
_MULT = {"s": 1, "ms": 1_000, "us": 1_000_000}


def escape_measurement(name: str) -> str:
    """Escape a measurement name (commas, spaces, control characters).

    Leading ``#`` are dropped (a line starting with one is a comment) and so is a trailing
    backslash (line protocol would read it as escaping the delimiter).
    """
    return name.lstrip("#").rstrip("\\").translate(_ESCAPE_MEASUREMENT)


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key (commas, equals signs, spaces, control
    characters); a trailing backslash is dropped."""
    return text.rstrip("\\").translate(_ESCAPE_KEY)


def escape_string(text: str) -> str:
    """Escape a string field value (double quotes and backslashes); the caller quotes it."""
    return text.translate(_ESCAPE_STRING)


def format_number(value: Any) -> str | None:
    """A field value written as a float, or ``None`` for anything that is not a finite number.

    ``bool`` is ``1``/``0``; ``int`` keeps its digits (the server reads it as a float).
    """
    t = type(value)
    if t is float:  # the common cases first: this runs per attribute
        if not math.isfinite(value):
            return None
        return repr(value).removesuffix(".0")
    if t is int:
        return str(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):  # IntEnum and other int subclasses
        return str(int(value))
    if isinstance(value, float):
        return format_number(float(value))
    return None


def timestamp(ts: float, precision: str) -> int:
    """Epoch seconds as an integer in ``precision`` units."""
    if precision == "ns":
        # Past microseconds a float has no digits left; scale in two steps.
        return round(ts * 1_000_000) * 1_000
    return round(ts * _MULT[precision])


_SKIP, _FIELD, _TAG = 0, 1, 2
# Alarm change kinds by name: the alarm book may grow new ones, which are written as they come.
_NOT_ACTIVE = frozenset({CLEARED_CHANGE, "pending"})  # no fault (yet, or any more)
_STATE_AFTER = {CLEARED_CHANGE: CLEARED, "pending": "pending", "suppressed": "suppressed"}
_CACHE_MAX = 10_000


class LineBuilder:
    """Turns events, alarm changes and tickets into line protocol (pure, no I/O).

    Args:
        cfg: the sink's configuration (filters, measurement mode, precision).
    """

    def __init__(self, cfg: TimeseriesConfig) -> None:
        self.cfg = cfg
        self.precision = cfg.precision
        self._by_class = cfg.measurement == "class"
        self._reserved = {"device", "site", "region", "class"} | ({"event"} if self._by_class else set())
        self._include = tuple(cfg.include)
        self._exclude = tuple(cfg.exclude)
        self._tag_globs = tuple(cfg.tag_attributes)
        self._attr: dict[str, tuple[int, str]] = {}
        self._prefix: dict[tuple[str, str], tuple[Device, str, list[tuple[str, str]], str]] = {}
        self._alarm_m = escape_measurement(cfg.alarm_measurement)
        self._ticket_m = escape_measurement(cfg.ticket_measurement)

    # -- attribute decisions -----------------------------------------------------------
    def attr_kind(self, name: str) -> tuple[int, str]:
        """``(kind, escaped key)`` for an attribute name: skipped, field or tag (cached)."""
        hit = self._attr.get(name)
        if hit is not None:
            return hit
        kind = _SKIP
        if name and name != "time" and not name.startswith("_") and name not in self._reserved:
            if any(fnmatch.fnmatchcase(name, g) for g in self._tag_globs):
                kind = _TAG
            elif any(fnmatch.fnmatchcase(name, g) for g in self._include) and not any(
                fnmatch.fnmatchcase(name, g) for g in self._exclude
            ):
                kind = _FIELD
        key = escape_key(name)
        if not key:
            kind = _SKIP
        if len(self._attr) >= _CACHE_MAX:
            self._attr.clear()
        out = self._attr[name] = (kind, key)
        return out

    @staticmethod
    def _device_tags(dev: Device | None, device_id: str) -> list[tuple[str, str]]:
        """Unescaped ``(key, value)`` tags that describe a device."""
        tags = [("device", device_id)]
        if dev is not None:
            tags += [("site", dev.site), ("region", dev.region), ("class", dev.device_class)]
        return tags

    def _series(self, ev: Event, dev: Device) -> tuple[str, list[tuple[str, str]], str]:
        """Measurement, sorted escaped base tags and the point's head (measurement + tags),
        cached per device id and event name while the device object stays the same."""
        ck = (dev.id, ev.name)
        hit = self._prefix.get(ck)
        if hit is not None and hit[0] is dev:
            return hit[1], hit[2], hit[3]
        raw = self._device_tags(dev, dev.id or ev.device)
        if self._by_class:
            meas = escape_measurement(dev.device_class) or "unknown"
            raw.append(("event", ev.name))
        else:
            meas = escape_measurement(ev.name) or "event"
        tags = sorted((k, escape_key(v)) for k, v in raw if v and escape_key(v))
        head = meas + "".join(f",{k}={v}" for k, v in tags)
        if len(self._prefix) >= _CACHE_MAX:
            self._prefix.clear()
        self._prefix[ck] = (dev, meas, tags, head)
        return meas, tags, head

    # -- points ---------------------------------------------------------------------------
    def event_line(self, ev: Event, dev: Device) -> str | None:
        """The point for one telemetry event, or ``None`` when it has no numeric field."""
        fields: list[str] = []
        extra: list[tuple[str, str]] | None = None
        cache = self._attr
        for name, value in ev.attrs.items():
            kind, key = cache.get(name) or self.attr_kind(name)
            if kind == _FIELD:
                t = type(value)
                if t is float and math.isfinite(value):
                    num: str | None = repr(value).removesuffix(".0")
                elif t is int:
                    num = str(value)
                else:
                    num = format_number(value)
                if num is not None:
                    fields.append(f"{key}={num}")
            elif kind == _TAG and isinstance(value, (str, int, float)):
                tv = escape_key(str(value))
                if tv:
                    if extra is None:
                        extra = []
                    extra.append((key, tv))
        if not fields:
            return None
        meas, tags, head = self._series(ev, dev)
        if extra:
            head = meas + "".join(f",{k}={v}" for k, v in sorted(tags + extra))
        if len(fields) > 1:
            fields.sort()
        return f"{head} {','.join(fields)} {timestamp(ev.ts, self.precision)}"

    def alarm_line(self, change: AlarmChange, dev: Device | None = None) -> str:
        """The point for one alarm change (any kind but a repeat).

        Tags: ``change`` (the kind: raised, pending, escalated, cleared, suppressed, …),
        ``device`` (+ ``site``, ``region``, ``class`` when ``dev`` is known), ``key``
        (unless ``alarm_key_tag`` is off), ``level``, ``rule``, ``state``. Fields:
        ``active`` (1 while the fault is real: raised, escalated, suppressed, …; 0 when
        pending or cleared), ``count``, ``id``, ``level``, and ``title`` / ``note`` / ``key``
        as strings when configured. Time: when the change happened.
        """
        a = change.alarm
        kind = change.kind
        state = _STATE_AFTER.get(kind) or (a.state if a.state != CLEARED else "active")
        active = "0" if kind in _NOT_ACTIVE else "1"
        ts = getattr(change, "at", 0.0) or (
            (a.cleared_at if a.cleared_at is not None else a.last_seen) if kind == CLEARED_CHANGE
            else a.first_seen if kind == RAISED else a.last_seen
        )
        tags = self._device_tags(dev, a.device)
        tags += [("change", kind), ("level", str(int(a.level))), ("rule", a.rule_id), ("state", state)]
        if self.cfg.alarm_key_tag:
            tags.append(("key", a.key))
        fields = [f"active={active}", f"count={a.count}", f"id={a.id}", f"level={int(a.level)}"]
        if not self.cfg.alarm_key_tag:
            fields.append(f'key="{escape_string(a.key)}"')
        if self.cfg.titles:
            if a.title:
                fields.append(f'title="{escape_string(a.title)}"')
            note = getattr(change, "note", "")
            if note:
                fields.append(f'note="{escape_string(note)}"')
        return self._line(self._alarm_m, tags, fields, ts)

    def ticket_line(self, t: Ticket, dev: Device | None = None) -> str:
        """The point for a ticket as it stands after a change.

        Tags: ``device``, ``site``, ``region`` (+ ``class`` when ``dev`` is known),
        ``level``, ``policy``, ``status``. Fields: ``breached`` (clocks past their
        deadline), ``id``, ``level``, ``open`` (0 once closed), ``paused``, ``title``.
        Time: the ticket's last update.
        """
        tags = [("device", t.device), ("site", t.site), ("region", t.region)]
        if dev is not None:
            tags.append(("class", dev.device_class))
        tags += [("level", str(int(t.level))), ("policy", t.policy), ("status", t.status)]
        breached = sum(1 for c in t.clocks if c.breached_at is not None)
        fields = [
            f"breached={breached}",
            f"id={t.id}",
            f"level={int(t.level)}",
            f"open={0 if t.status == 'closed' else 1}",
            f"paused={1 if t.paused else 0}",
        ]
        if self.cfg.titles and t.title:
            fields.append(f'title="{escape_string(t.title)}"')
        return self._line(self._ticket_m, tags, fields, t.updated_at)

    def _line(self, meas: str, tags: list[tuple[str, str]], fields: list[str], ts: float) -> str:
        """Assemble a point from unescaped tags and formatted fields (tags sorted, empty ones left out)."""
        escaped = sorted((k, escape_key(v)) for k, v in tags)
        head = meas + "".join(f",{k}={v}" for k, v in escaped if v)
        return f"{head} {','.join(sorted(fields))} {timestamp(ts, self.precision)}"


# ====================================================================== HTTP outcomes


def classify_status(status: int) -> tuple[bool, str]:
    """Map a write response status to ``(retryable, reason)`` (the one place that decides).

    408, 429 and 5xx are worth retrying; any other 4xx would fail the same way again, so the
    batch is dropped and counted as rejected.
    """
    if status in (408, 429) or 500 <= status <= 599:
        return True, {408: "timeout", 429: "throttled", 503: "unavailable"}.get(status, "server error")
    return False, {
        400: "bad request (malformed or partly written batch)",
        401: "unauthorized (check the token)",
        403: "forbidden (the token cannot write to this bucket)",
        404: "not found (bucket/org unknown, or not an InfluxDB v2 write endpoint)",
        413: "batch too large (lower batch_size)",
        422: "unprocessable (points outside the retention period?)",
    }.get(status, "refused")


class _WriteFailed(Exception):
    """One write attempt failed; ``retryable`` says whether the same batch may be resent."""

    def __init__(
        self, retryable: bool, reason: str, detail: str = "", retry_after: float | None = None, status: int = 0
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.status = status
        self.retryable = retryable
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


# ====================================================================== the sink


@dataclass(slots=True)
class TimeseriesStats:
    """Counters for ``/metrics`` (points unless stated otherwise).

    Attributes:
        offered: telemetry events accepted into the buffer.
        transitions: alarm and ticket points buffered.
        dropped: points pushed out of a full buffer (oldest first).
        written: points the server accepted.
        rejected: points in batches the server refused with a permanent 4xx.
        write_errors: failed write attempts (each batch retried after a backoff).
        batches: successful write requests.
        empty: telemetry events that produced no point (no numeric field, or not encodable).
        abandoned: points still buffered when ``stop()`` gave up.
    """

    offered: int = 0
    transitions: int = 0
    dropped: int = 0
    written: int = 0
    rejected: int = 0
    write_errors: int = 0
    batches: int = 0
    empty: int = 0
    abandoned: int = 0


class TimeseriesSink:
    """Buffers telemetry and transitions and writes them in the background; never blocks.

    Use as ``async with TimeseriesSink(cfg) as sink:`` or call :meth:`start` / :meth:`stop`.
    :meth:`offer_event` and :meth:`on_commit` must be called on the event loop's thread.

    Args:
        cfg: the ``[timeseries]`` section.
        resolve: device id → :class:`Device` (the inventory's ``resolve``), used to tag
            alarm and ticket points with site, region and class; optional.
    """

    def __init__(self, cfg: TimeseriesConfig, *, resolve: Callable[[str], Device] | None = None) -> None:
        self.cfg = cfg
        self.builder = LineBuilder(cfg)
        self.counters = TimeseriesStats()
        self.healthy = True
        self.last_error = ""
        self._resolve = resolve
        self._names = frozenset(cfg.event_names)
        self._cap = cfg.buffer_size
        self._batch = cfg.batch_size
        self._events: deque[tuple[Event, Device]] = deque()
        self._marks: deque[str] = deque()
        self._inflight: list[str] = []
        self._inflight_n = 0  # buffer slots the batch in flight holds
        self._wake: asyncio.Event | None = None
        self._stop_evt: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._exec: concurrent.futures.ThreadPoolExecutor | None = None
        self._client: Any = None
        self._write_api: Any = None
        self._write_precision: Any = None
        self._stopping = False
        self._failures = 0
        self._failing_since = 0.0
        self._last_reason = ""
        self._last_reject_log = (0, 0.0)  # (status, monotonic time)
        self._rejects_unlogged = 0

    # -- hot path ----------------------------------------------------------------------
    def offer_event(self, event: Event, device: Device) -> bool:
        """Buffer a telemetry event; O(1), never waits. Line protocol is built later.

        Returns:
            ``True`` when buffered; ``False`` when the event is not telemetry (its name is
            not in ``event_names``, or it has no attributes). When the buffer is full the
            oldest point is dropped and counted.
        """
        if event.name not in self._names or not event.attrs:
            return False
        q = self._events
        if len(q) + self._inflight_n >= self._cap:
            self.counters.dropped += 1
            if not q:  # the batch in flight holds every slot
                return False
            q.popleft()
        q.append((event, device))
        self.counters.offered += 1
        if len(q) >= self._batch:
            w = self._wake
            if w is not None and not w.is_set():
                w.set()
        return True

    def on_commit(self, alarms: Sequence[Any], tickets: Sequence[Ticket], changes: Iterable[Any]) -> None:
        """Pipeline listener: buffer the alarm changes and ticket changes of a commit.

        Repeats of an open alarm are not transitions and are not written (the ``count``
        field of the next transition carries them); ``alarms`` (every alarm touched) is
        not needed for that.
        """
        lines: list[str] = []
        for ch in changes:
            if isinstance(ch, AlarmChange) and ch.kind != REPEATED:
                lines.append(self.builder.alarm_line(ch, self._device(ch.alarm.device)))
        for t in tickets:
            lines.append(self.builder.ticket_line(t, self._device(t.device)))
        if not lines:
            return
        q = self._marks
        for line in lines:
            if len(q) >= self._cap:
                q.popleft()
                self.counters.dropped += 1
            q.append(line)
        self.counters.transitions += len(lines)
        if len(q) >= self._batch and self._wake is not None:
            self._wake.set()

    def _device(self, device_id: str) -> Device | None:
        if self._resolve is None:
            return None
        try:
            return self._resolve(device_id)
        except Exception:  # noqa: BLE001 - tags are a nicety; the point still goes out
            return None

    # -- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Create the client and start the writer task (no connection is made yet)."""
        # Imported here: the client library takes ~0.5 s to import, and loading the config
        # (which holds TimeseriesConfig) must not pay for it.
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision

        cfg = self.cfg
        self._exec = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="timeseries")
        self._client = InfluxDBClient(
            url=cfg.url,
            token=cfg.token.get_secret_value(),  # empty: no Authorization header
            org=cfg.org,
            timeout=int(cfg.timeout * 1000),
            enable_gzip=cfg.gzip,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._write_precision = {"s": WritePrecision.S, "ms": WritePrecision.MS,
                                 "us": WritePrecision.US, "ns": WritePrecision.NS}[cfg.precision]
        self._wake = asyncio.Event()
        self._stop_evt = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="timeseries")
        log.info("time series: writing to %s bucket %r every %.3g s (batches of %d, buffer %d)",
                 cfg.url, cfg.bucket, cfg.flush_interval, cfg.batch_size, cfg.buffer_size)

    async def stop(self) -> None:
        """Write what is buffered (for at most ``stop_timeout``), then close the client.

        Points still buffered after that are counted as ``abandoned``.
        """
        if self._task is None:
            return
        self._stopping = True
        assert self._wake is not None and self._stop_evt is not None
        self._wake.set()
        self._stop_evt.set()
        task, self._task = self._task, None
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.cfg.stop_timeout + self.cfg.timeout)
        except TimeoutError:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        left = self.buffered
        if left:
            self.counters.abandoned += left
            log.warning("time series: %d points not written at shutdown (%s)", left, self.last_error or "no time left")
        self._events.clear()
        self._marks.clear()
        self._inflight, self._inflight_n = [], 0
        client, self._client = self._client, None
        ex, self._exec = self._exec, None
        if ex is not None:
            if client is not None:
                ex.submit(client.close)
            ex.shutdown(wait=False, cancel_futures=False)

    async def flush(self, timeout: float | None = None) -> bool:
        """Write what is buffered now instead of at the next ``flush_interval``.

        Args:
            timeout: how long to wait for the buffer to empty; ``None`` waits up to the
                configured ``timeout`` + ``flush_interval``.

        Returns:
            ``True`` once nothing is buffered; ``False`` when time ran out (the server is
            down or slow; the points stay buffered and keep being retried).
        """
        if self._wake is None:
            return not self.buffered
        limit = timeout if timeout is not None else self.cfg.timeout + self.cfg.flush_interval
        deadline = time.monotonic() + limit
        while self.buffered:
            self._wake.set()
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # -- state -------------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Points waiting to be written (the batch in flight included)."""
        return len(self._events) + len(self._marks) + self._inflight_n

    def stats(self) -> dict[str, int]:
        """Counters and gauges by name for ``/metrics`` (``buffered`` and ``healthy`` are gauges)."""
        out = asdict(self.counters)
        out["buffered"] = self.buffered
        out["healthy"] = int(self.healthy)
        return out

    # -- the writer ----------------------------------------------------------------------
    def _full(self) -> bool:
        return len(self._events) >= self._batch or len(self._marks) >= self._batch

    async def _run(self) -> None:
        while True:
            try:
                await self._cycle()
                return
            except Exception:  # a bug must not end the writer silently; the buffer stays bounded
                log.exception("time series writer failed; restarting it in 1 s")
                self._inflight, self._inflight_n = [], 0
                await asyncio.sleep(1.0)

    async def _cycle(self) -> None:
        """Wait for work, write it, retry failures; returns once stopping and done (or out of time)."""
        assert self._wake is not None and self._stop_evt is not None
        loop = asyncio.get_running_loop()
        delay = self.cfg.retry_min
        deadline: float | None = None
        while True:
            if not self._stopping and not self._full():
                try:
                    await asyncio.wait_for(self._wake.wait(), self.cfg.flush_interval)
                except TimeoutError:
                    pass
            self._wake.clear()
            # Write what was buffered at wake-up plus any full batches; a partial batch that
            # arrives meanwhile waits for the next interval (no stream of tiny requests).
            budget = self.buffered
            while self._inflight or self._full() or (self.buffered and (budget > 0 or self._stopping)):
                if self._stopping and deadline is None:
                    deadline = loop.time() + self.cfg.stop_timeout
                if not self._inflight:
                    budget -= await self._fill()
                    if not self._inflight:
                        continue
                try:
                    await self._send()
                    delay = self.cfg.retry_min
                    continue
                except _WriteFailed as e:
                    self._failed(e)
                    wait = delay * random.uniform(0.8, 1.2)  # jitter: gateways restarting together spread out
                    if e.retry_after is not None:
                        wait = max(wait, min(e.retry_after, self.cfg.retry_max))
                    delay = min(self.cfg.retry_max, delay * 2)
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        return
                    await asyncio.sleep(min(wait, left))
                else:
                    # stop() cuts the backoff short: shutdown has its own deadline.
                    try:
                        await asyncio.wait_for(self._stop_evt.wait(), wait)
                    except TimeoutError:
                        pass
            if self._stopping:
                return

    async def _fill(self) -> int:
        """Take the next batch (alarm/ticket points first) and build its lines off the loop.

        Returns:
            How many buffered points were taken.
        """
        lines = self._take(self._marks, self._batch)
        items = self._take(self._events, self._batch - len(lines))
        taken = len(lines) + len(items)
        self._inflight_n = taken
        if items:
            built = await asyncio.get_running_loop().run_in_executor(self._exec, self._build, items)
            self.counters.empty += len(items) - len(built)
            lines += built
        self._inflight = lines
        self._inflight_n = len(lines)
        return taken

    async def _send(self) -> None:
        """Send the batch in flight; a permanent refusal drops it, a retryable one raises."""
        batch = self._inflight
        try:
            await asyncio.get_running_loop().run_in_executor(self._exec, self._post, batch)
        except _WriteFailed as e:
            if e.retryable:
                raise
            self._inflight, self._inflight_n = [], 0
            self._rejected(len(batch), e)
            return
        self._inflight, self._inflight_n = [], 0
        self.counters.written += len(batch)
        self.counters.batches += 1
        if not self.healthy:
            log.warning("time series: writes to %s succeed again after %d failed attempts over %.0f s; "
                        "%d points still buffered, %d dropped so far",
                        self.cfg.url, self._failures, time.monotonic() - self._failing_since,
                        self.buffered, self.counters.dropped)
        self.healthy = True
        self.last_error = ""
        self._last_reason = ""
        self._failures = 0

    @staticmethod
    def _take(q: deque[Any], n: int) -> list[Any]:
        n = min(n, len(q))
        return [q.popleft() for _ in range(n)]

    def _build(self, items: list[tuple[Event, Device]]) -> list[str]:
        """Line protocol for buffered events (on the worker thread); unencodable ones are skipped."""
        line = self.builder.event_line
        out = []
        for ev, dev in items:
            try:
                s = line(ev, dev)
            except Exception:
                log.debug("time series: cannot encode %r", ev, exc_info=True)
                continue
            if s is not None:
                out.append(s)
        return out

    def _post(self, lines: list[str]) -> None:
        """One write request (on the worker thread); raises :class:`_WriteFailed`."""
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self._write_api.write(bucket=self.cfg.bucket, org=self.cfg.org, record=lines,
                                  write_precision=self._write_precision)
        except ApiException as e:
            status = int(e.status or 0)
            retryable, reason = classify_status(status)
            body = e.body.decode("utf-8", "replace") if isinstance(e.body, bytes) else str(e.body or e.reason or "")
            retry_after = _seconds(getattr(e, "retry_after", None))
            raise _WriteFailed(retryable, f"HTTP {status} {reason}", body.strip()[:300], retry_after, status) from e
        except (HTTPError, OSError) as e:
            raise _WriteFailed(True, "unreachable", f"{type(e).__name__}: {e}") from e
        except Exception as e:
            raise _WriteFailed(True, "client error", f"{type(e).__name__}: {e}") from e

    def _failed(self, e: _WriteFailed) -> None:
        self.counters.write_errors += 1
        self._failures += 1
        if self.healthy:
            self._failing_since = time.monotonic()
            log.error("time series: write to %s failed (%s); %d points buffered, retrying with backoff",
                      self.cfg.url, e, self.buffered)
        elif e.reason != self._last_reason:
            log.error("time series: writes to %s still failing, now: %s", self.cfg.url, e)
        self.healthy = False
        self.last_error = str(e)
        self._last_reason = e.reason

    def _rejected(self, n: int, e: _WriteFailed) -> None:
        self.counters.rejected += n
        status = e.status
        now = time.monotonic()
        last_status, last_t = self._last_reject_log
        if status != last_status or now - last_t >= 60.0:
            more = f" ({self._rejects_unlogged} more rejected batches not logged)" if self._rejects_unlogged else ""
            log.error("time series: %s rejected a batch of %d points, dropped it: %s%s", self.cfg.url, n, e, more)
            self._last_reject_log = (status, now)
            self._rejects_unlogged = 0
        else:
            self._rejects_unlogged += 1


def _seconds(v: Any) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
