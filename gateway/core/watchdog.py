"""Liveness watchdog: missed heartbeats become ``heartbeat.lost`` events (pure, takes ``now``).

The watchdog holds no task, timer or clock. The scheduler asks :meth:`Watchdog.next_deadline`
when to wake up and calls :meth:`Watchdog.due` with the time; the pipeline feeds it
heartbeats and last-will signals. Everything is a plain method call that takes ``now``, so
a day of silence is tested in microseconds.

Scale (one gateway watching up to ~1,000,000 devices) decides the data layout:

* Per-device state lives in parallel ``array('d')`` / ``bytearray`` columns indexed by a
  small integer (the device's slot), not in one object per device: about 50 bytes of
  columns per device and no objects for the garbage collector to walk. All in (id string,
  id index, heap entry) a device costs about 340 bytes: ~320 MiB for a million
  (``bench/bench_watchdog.py``).
* ONE binary heap of ``(deadline, slot)`` tuples serves every device. A heap key is only
  a *lower bound* of the device's true deadline: a heartbeat merely stores ``last_seen``
  (O(1), no heap work), and when the stale key reaches the top of the heap the true
  deadline is recomputed and the device is pushed again. So each device causes at most one
  heap operation per deadline period, not one per heartbeat, and the heap holds about one
  entry per device. A device's live entry is the one whose key equals its ``hkey`` column;
  any other entry for it is stale and skipped when popped (lazy invalidation). Slots, not
  ids, break ties between equal deadlines (a restart or a reconnect gives thousands of
  devices the same one): integer comparison halves the cost of a mass re-arm, and the
  slot's int object is the one the id index already holds.
* Restart grace and broker re-arm are two global *times* (when the gateway started, when
  the broker came back) applied when a deadline is computed, so neither walks a million
  devices; the length of each device's grace is its own, computed in the same place.

Deadline of a device that is not lost::

    span = interval * tolerance
    max(max(last_seen, rearm_from) + span, grace_from + min(span, grace))

where ``interval`` is the explicit one (from :meth:`Watchdog.track`, the device class,
or the inventory), else the learned cadence when learning is on, else the default, and
``grace`` is the configured ceiling (infinite when unset). So after a restart a 4 s gas
sensor is watched again 12 s later, not after the default device's three minutes.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from gateway.model import Event

__all__ = ["LOST", "RESTORED", "SOURCE", "DeviceLiveness", "Watchdog"]

LOST = "heartbeat.lost"
RESTORED = "heartbeat.restored"
SOURCE = "watchdog"

_SNAPSHOT_VERSION = 1
# Weight of the newest gap in the learned cadence. Low enough that one late heartbeat does
# not halve the tolerance of the next deadline, high enough to follow a re-configured device
# within a handful of beats.
_LEARN_ALPHA = 0.25
# A single gap may pull the learned cadence up by at most this factor: one long outage must
# not teach the watchdog to wait for hours, while a device that really is slower than the
# default still converges after a few beats.
_LEARN_MAX_STEP = 4.0


class DeviceLiveness(NamedTuple):
    """One device's liveness as reported by :meth:`Watchdog.devices`.

    Attributes:
        id: device id.
        interval: the effective heartbeat interval in seconds.
        last_seen: time of the newest heartbeat (or of tracking), epoch seconds.
        deadline: when the device will be declared lost; ``None`` while it is lost.
        lost: whether a ``heartbeat.lost`` has fired and no heartbeat followed it.
        learned: the learned cadence, when learning is on and a gap was observed.
    """

    id: str
    interval: float
    last_seen: float
    deadline: float | None
    lost: bool
    learned: float | None


class Watchdog:
    """Declares devices lost when their heartbeats stop; one heap for all devices.

    Args:
        default_interval: expected heartbeat interval (seconds) of a device with no
            explicit interval and no learned cadence.
        tolerance: how many intervals may pass without a heartbeat before the device is
            lost (reported as the ``missed`` attribute).
        grace: ceiling of the restart grace (:meth:`restart_grace`). After a restart each
            device has its own ``interval * tolerance`` before it can be declared lost,
            but at most ``grace`` when it is given; ``None`` means no ceiling.
        learn: learn each device's cadence from the gaps between its heartbeats and use it
            when the device has no explicit interval.
        class_intervals: explicit intervals by device class, used by :meth:`track` when
            no interval is given.
        learn_min: lower bound of a learned interval; ``None`` means
            ``default_interval / 10``.
        learn_max: upper bound of a learned interval; ``None`` means
            ``default_interval * 10``.

    Raises:
        ValueError: when an interval, the tolerance or a bound is not positive.
    """

    __slots__ = (
        "_class_intervals",
        "_default",
        "_explicit",
        "_free",
        "_grace",
        "_grace_from",
        "_heap",
        "_hkey",
        "_ids",
        "_index",
        "_last",
        "_learn",
        "_learn_max",
        "_learn_min",
        "_learned",
        "_lost",
        "_lost_at",
        "_outage_since",
        "_rearm_from",
        "_tol",
    )

    def __init__(
        self,
        default_interval: float,
        tolerance: int = 3,
        grace: float | None = None,
        learn: bool = False,
        class_intervals: Mapping[str, float] | None = None,
        *,
        learn_min: float | None = None,
        learn_max: float | None = None,
    ) -> None:
        if default_interval <= 0:
            raise ValueError("default_interval must be positive")
        if tolerance < 1:
            raise ValueError("tolerance must be at least 1")
        if grace is not None and grace < 0:
            raise ValueError("grace must not be negative")
        self._default = float(default_interval)
        self._tol = int(tolerance)
        self._grace = float(grace) if grace is not None else math.inf
        self._learn = bool(learn)
        self._class_intervals: dict[str, float] = {}
        for cls, iv in (class_intervals or {}).items():
            if iv <= 0:
                raise ValueError(f"class interval for {cls!r} must be positive")
            self._class_intervals[cls] = float(iv)
        self._learn_min = float(learn_min) if learn_min is not None else self._default / 10
        self._learn_max = float(learn_max) if learn_max is not None else self._default * 10
        if not 0 < self._learn_min <= self._learn_max:
            raise ValueError("need 0 < learn_min <= learn_max")

        self._index: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._free: list[int] = []
        # Columns indexed by slot. 0.0 means "none" in _explicit, _learned and _hkey: real
        # intervals are positive and real deadlines are epoch seconds.
        self._last = array("d")
        self._explicit = array("d")
        self._learned = array("d")
        self._hkey = array("d")
        self._lost_at = array("d")
        self._lost = bytearray()
        self._heap: list[tuple[float, int]] = []

        self._grace_from = 0.0
        self._rearm_from = 0.0
        self._outage_since: float | None = None

    # ------------------------------------------------------------------ registration

    def track(
        self,
        device: str,
        interval: float | None = None,
        device_class: str | None = None,
        *,
        now: float,
    ) -> None:
        """Start watching ``device`` (or change its interval if it is already watched).

        A newly tracked device counts as seen at ``now``: if it never sends a heartbeat it
        is lost one full deadline later. An already tracked device keeps its last-seen time.

        Args:
            device: device id.
            interval: explicit heartbeat interval in seconds; overrides the class interval,
                the learned cadence and the default.
            device_class: inventory class, looked up in ``class_intervals`` when no
                ``interval`` is given.
            now: current time, epoch seconds.

        Raises:
            ValueError: when ``interval`` is not positive.
        """
        if interval is not None and interval <= 0:
            raise ValueError(f"interval for {device!r} must be positive")
        explicit = float(interval) if interval is not None else 0.0
        if explicit == 0.0 and device_class is not None:
            explicit = self._class_intervals.get(device_class, 0.0)
        i = self._index.get(device)
        if i is None:
            self._add(device, now, explicit)
            return
        if explicit and explicit != self._explicit[i]:
            self._explicit[i] = explicit
            self._reschedule(i)

    def untrack(self, device: str) -> bool:
        """Stop watching ``device``; returns whether it was tracked.

        Its heap entry is left behind and skipped when it surfaces.
        """
        i = self._index.pop(device, None)
        if i is None:
            return False
        self._ids[i] = None
        self._hkey[i] = 0.0
        self._free.append(i)
        return True

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, device: object) -> bool:
        return device in self._index

    # ------------------------------------------------------------------ signals

    def heartbeat(self, device: str, now: float) -> Event | None:
        """Record a heartbeat; returns a ``heartbeat.restored`` event if the device was lost.

        An unknown device is tracked from this heartbeat on. A heartbeat older than the
        newest one seen does not move ``last_seen`` back (but still restores a lost device).

        Args:
            device: device id.
            now: time of the heartbeat, epoch seconds.

        Returns:
            The ``heartbeat.restored`` event, or ``None``.
        """
        i = self._index.get(device)
        if i is None:
            self._add(device, now, 0.0)
            return None
        prev = self._last[i]
        if now > prev:
            if self._learn and self._explicit[i] == 0.0:
                self._learn_gap(i, now - prev)
            self._last[i] = now
        if self._lost[i]:
            self._lost[i] = 0
            lost_at = self._lost_at[i]
            self._push(i, self._deadline(i))
            return Event(
                ts=now,
                source=SOURCE,
                device=device,
                name=RESTORED,
                attrs={
                    "interval": self._interval(i),
                    "last_seen": prev,
                    "lost_at": lost_at,
                    "down_for": max(0.0, now - lost_at),
                },
            )
        hk = self._hkey[i]
        # Without learning a heartbeat only moves the deadline later, and the heap key may
        # lag behind (it is a lower bound). Learning can shorten the interval, which can
        # move the deadline earlier than the key: then a fresh, earlier entry is needed.
        if hk == 0.0:
            self._push(i, self._deadline(i))
        elif self._learn:
            d = self._deadline(i)
            if d < hk:
                self._push(i, d)
        return None

    def lost_now(self, device: str, now: float, reason: str = "lwt") -> Event | None:
        """Declare ``device`` lost at once (its last will arrived, or it said "offline").

        Args:
            device: device id (tracked from now on if it was not).
            now: current time, epoch seconds.
            reason: the ``reason`` attribute of the event.

        Returns:
            The ``heartbeat.lost`` event, or ``None`` if the device is already lost.
        """
        i = self._index.get(device)
        if i is None:
            i = self._add(device, now, 0.0)
        if self._lost[i]:
            return None
        return self._mark_lost(i, device, now, now, reason)

    def due(self, now: float, limit: int | None = None, max_lost: int | None = None) -> list[Event]:
        """Return a ``heartbeat.lost`` event for every device whose deadline is ``<= now``.

        Each device fires once and stays lost until it heartbeats again. Events come in
        deadline order with ``ts`` = the deadline. While the broker is down
        (:meth:`broker_down`) nothing fires.

        Args:
            now: current time, epoch seconds.
            limit: handle at most this many heap entries in this call, so one call after
                a restart or a reconnect cannot hold the event loop for long; the
                scheduler calls again while :meth:`next_deadline` is ``<= now``.
            max_lost: return at most this many losses. A loss costs its caller far more
                than a heap entry costs here (an alarm, a ticket, store rows), so the
                caller bounds them separately and raises a mass loss in chunks, the
                earliest deadlines first.

        Returns:
            The new ``heartbeat.lost`` events (possibly empty).
        """
        if self._outage_since is not None:
            return []
        heap = self._heap
        out: list[Event] = []
        ids = self._ids
        hkey = self._hkey
        pop = heapq.heappop
        replace = heapq.heapreplace
        budget = -1 if limit is None else limit
        room = -1 if max_lost is None else max_lost
        while heap and heap[0][0] <= now and budget != 0 and room != 0:
            budget -= 1
            key, i = heap[0]
            device = ids[i]
            if device is None or hkey[i] != key:
                pop(heap)
                continue
            d = self._deadline(i)
            if d > now:
                # A heartbeat (or a floor) moved the deadline after this entry was pushed:
                # one sift-down instead of a pop and a push.
                hkey[i] = d
                replace(heap, (d, i))
                continue
            pop(heap)
            room -= 1
            out.append(self._mark_lost(i, device, d, now, "timeout"))
        return out

    def next_deadline(self) -> float | None:
        """Earliest true deadline of any watched device, for the scheduler to sleep until.

        Returns ``None`` when nothing can fire: no device is watched, all are lost, or the
        broker is down (call again after :meth:`broker_up`).
        """
        if self._outage_since is not None:
            return None
        heap = self._heap
        ids = self._ids
        hkey = self._hkey
        while heap:
            key, i = heap[0]
            if ids[i] is None or hkey[i] != key:
                heapq.heappop(heap)
                continue
            d = self._deadline(i)
            if d == key:
                return key
            # Normalise the lazy key so the scheduler does not wake early for nothing.
            hkey[i] = d
            heapq.heapreplace(heap, (d, i))
        return None

    # ------------------------------------------------------------------ outages and restarts

    def restart_grace(self, now: float) -> None:
        """After a restart, hold each device's deadline until at least ``now`` plus its own
        ``interval * tolerance`` (at most ``grace`` when a ceiling is configured).

        Devices that went silent while the gateway was down are then declared lost only if
        they stay silent through their grace, instead of in one storm at start-up; and a
        fast device is not left unwatched for a slow default device's deadline.
        """
        self._grace_from = max(self._grace_from, now)

    def broker_down(self, now: float) -> None:
        """The broker that carries the heartbeats is unreachable: stop declaring losses.

        Silence during an outage says nothing about the devices.
        """
        if self._outage_since is None:
            self._outage_since = now

    def broker_up(self, now: float) -> None:
        """The broker is back: every deadline is re-armed from ``now``.

        Each device then has its own full ``interval * tolerance`` to be heard again (the
        devices reconnect to the restarted broker too, each with its own backoff; that is
        what the tolerance allows for), so the reconnect raises no false "lost" storm, and a
        fast device is watched again after its own deadline, not a slow default's.
        """
        self._outage_since = None
        self._rearm_from = max(self._rearm_from, now)

    @property
    def broker_outage_since(self) -> float | None:
        """When the current broker outage began, or ``None``."""
        return self._outage_since

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> dict[str, Any]:
        """State as plain dicts and lists (JSON-serialisable), so last-seen survives a restart.

        Columnar (one list per field) because at a million devices one dict per device
        would cost hundreds of megabytes just to write the snapshot.
        """
        ids: list[str] = []
        last: list[float] = []
        explicit: list[float | None] = []
        learned: list[float | None] = []
        lost_at: list[float | None] = []
        for device, i in self._index.items():
            ids.append(device)
            last.append(self._last[i])
            explicit.append(self._explicit[i] or None)
            learned.append(self._learned[i] or None)
            lost_at.append(self._lost_at[i] if self._lost[i] else None)
        return {
            "version": _SNAPSHOT_VERSION,
            "ids": ids,
            "last_seen": last,
            "interval": explicit,
            "learned": learned,
            "lost_at": lost_at,
        }

    def restore(self, state: Mapping[str, Any]) -> int:
        """Load a :meth:`snapshot`, replacing the current state; returns the device count.

        Lost devices stay lost (no second ``heartbeat.lost`` after the restart). Call
        :meth:`restart_grace` afterwards.

        Raises:
            ValueError: when the snapshot's version or shape is not understood.
        """
        if state.get("version") != _SNAPSHOT_VERSION:
            raise ValueError(f"unsupported watchdog snapshot version {state.get('version')!r}")
        ids = state["ids"]
        cols = [state[k] for k in ("last_seen", "interval", "learned", "lost_at")]
        if any(len(c) != len(ids) for c in cols):
            raise ValueError("watchdog snapshot columns differ in length")
        self._index = {}
        self._ids = []
        self._free = []
        self._last = array("d")
        self._explicit = array("d")
        self._learned = array("d")
        self._hkey = array("d")
        self._lost_at = array("d")
        self._lost = bytearray()
        heap: list[tuple[float, int]] = []
        for device, last, explicit, learned, lost_at in zip(ids, *cols, strict=True):
            i = len(self._ids)
            self._index[device] = i
            self._ids.append(device)
            self._last.append(float(last))
            self._explicit.append(float(explicit or 0.0))
            self._learned.append(float(learned or 0.0))
            self._lost_at.append(float(lost_at or 0.0))
            self._lost.append(1 if lost_at is not None else 0)
            if lost_at is None:
                d = self._deadline(i)
                self._hkey.append(d)
                heap.append((d, i))
            else:
                self._hkey.append(0.0)
        heapq.heapify(heap)
        self._heap = heap
        return len(self._index)

    # ------------------------------------------------------------------ inspection

    def devices(self) -> Iterator[DeviceLiveness]:
        """Every watched device's liveness, in no particular order."""
        for device, i in self._index.items():
            lost = bool(self._lost[i])
            yield DeviceLiveness(
                id=device,
                interval=self._interval(i),
                last_seen=self._last[i],
                deadline=None if lost else self._deadline(i),
                lost=lost,
                learned=self._learned[i] or None,
            )

    def status(self, device: str) -> DeviceLiveness | None:
        """One device's liveness, or ``None`` when it is not watched."""
        i = self._index.get(device)
        if i is None:
            return None
        lost = bool(self._lost[i])
        return DeviceLiveness(
            device,
            self._interval(i),
            self._last[i],
            None if lost else self._deadline(i),
            lost,
            self._learned[i] or None,
        )

    def stats(self) -> dict[str, int]:
        """Counts for /metrics: watched, lost, heap entries (live plus stale)."""
        return {
            "tracked": len(self._index),
            "lost": sum(self._lost[i] for i in self._index.values()),
            "heap": len(self._heap),
        }

    # ------------------------------------------------------------------ internals

    def _add(self, device: str, now: float, explicit: float) -> int:
        if self._free:
            i = self._free.pop()
            self._ids[i] = device
            self._last[i] = now
            self._explicit[i] = explicit
            self._learned[i] = 0.0
            self._hkey[i] = 0.0
            self._lost_at[i] = 0.0
            self._lost[i] = 0
        else:
            i = len(self._ids)
            self._ids.append(device)
            self._last.append(now)
            self._explicit.append(explicit)
            self._learned.append(0.0)
            self._hkey.append(0.0)
            self._lost_at.append(0.0)
            self._lost.append(0)
        self._index[device] = i
        self._push(i, self._deadline(i))
        return i

    def _interval(self, i: int) -> float:
        return self._explicit[i] or self._learned[i] or self._default

    def _deadline(self, i: int) -> float:
        span = self._interval(i) * self._tol
        last = max(self._last[i], self._rearm_from)
        grace = span if span < self._grace else self._grace
        return max(last + span, self._grace_from + grace)

    def _push(self, i: int, deadline: float) -> None:
        self._hkey[i] = deadline
        heapq.heappush(self._heap, (deadline, i))

    def _reschedule(self, i: int) -> None:
        if self._lost[i]:
            return
        d = self._deadline(i)
        hk = self._hkey[i]
        if hk == 0.0 or d < hk:
            self._push(i, d)

    def _learn_gap(self, i: int, gap: float) -> None:
        est = self._learned[i] or self._default
        hi = min(self._learn_max, est * _LEARN_MAX_STEP)
        g = self._learn_min if gap < self._learn_min else (min(gap, hi))
        if self._learned[i] == 0.0:
            self._learned[i] = g
        else:
            self._learned[i] = est + _LEARN_ALPHA * (g - est)

    def _mark_lost(self, i: int, device: str, ts: float, now: float, reason: str) -> Event:
        self._lost[i] = 1
        self._lost_at[i] = now
        self._hkey[i] = 0.0
        return Event(
            ts=ts,
            source=SOURCE,
            device=device,
            name=LOST,
            attrs={
                "interval": self._interval(i),
                "last_seen": self._last[i],
                "missed": self._tol,
                "reason": reason,
            },
        )
