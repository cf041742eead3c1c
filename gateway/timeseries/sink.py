"""The time series sink: bounded buffers, a background writer and influxdb-client's
synchronous ``WriteApi`` on a worker thread (shape and decisions: :mod:`gateway.timeseries`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Self

from gateway.core.alarms import REPEATED, AlarmChange
from gateway.core.tickets import Ticket
from gateway.model import Device, Event
from gateway.timeseries.config import TimeseriesConfig
from gateway.timeseries.lines import LineBuilder

__all__ = ["TimeseriesSink", "TimeseriesStats", "classify_status"]

log = logging.getLogger("gateway.timeseries")


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
