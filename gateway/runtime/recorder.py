"""Event recording: every ingested event to a JSON-lines file, and reading such a file back.

``gateway run --record FILE`` (or ``[pipeline] record``) installs a :class:`JsonlRecorder`
as the pipeline's recorder hook; ``gateway rules replay FILE`` reads it with
:func:`read_events`. One line per event::

    {"ts": 1767225600.0, "source": "snmp", "device": "sw-1", "name": "IF-MIB::linkDown",
     "attrs": {"ifIndex": 7}, "peer": "10.0.0.5"}

The hook runs inside the single writer, so it only appends to a buffer; the buffer goes
to the file when it is full, from a periodic flush, and when the gateway stops. A write
error (disk full) is counted and logged once per distinct error: recording is a
diagnostic, it never stops the pipeline.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from gateway.model import Event

__all__ = ["JsonlRecorder", "event_from_dict", "event_to_dict", "read_events"]

log = logging.getLogger("gateway.recorder")


def event_to_dict(ev: Event) -> dict[str, Any]:
    d: dict[str, Any] = {
        "ts": ev.ts,
        "source": ev.source,
        "device": ev.device,
        "name": ev.name,
        "attrs": dict(ev.attrs),
    }
    if ev.peer is not None:
        d["peer"] = ev.peer
    return d


def event_from_dict(d: dict[str, Any], default_ts: float = 0.0) -> Event:
    """An Event from a recorded line or a hand-written test event (``ts``/``source`` optional).

    Raises:
        ValueError: ``name`` or ``device`` is missing, or ``attrs`` is not an object.
    """
    if not isinstance(d, dict):
        raise ValueError("an event must be a JSON object")
    for k in ("name", "device"):
        if not isinstance(d.get(k), str) or not d[k]:
            raise ValueError(f"an event needs a non-empty string {k!r}")
    attrs = d.get("attrs", {})
    if not isinstance(attrs, dict):
        raise ValueError("'attrs' must be an object")
    ts = d.get("ts", default_ts)
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        raise ValueError("'ts' must be epoch seconds")
    return Event(float(ts), str(d.get("source", "file")), d["device"], d["name"], attrs, d.get("peer"))


def read_events(path: str | Path) -> Iterator[Event]:
    """The events of a JSON-lines capture, in file order (blank lines skipped).

    Raises:
        ValueError: a line is not a valid event (the message names the line number).
    """
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield event_from_dict(json.loads(line))
            except ValueError as e:
                raise ValueError(f"{path}:{n}: {e}") from None


class JsonlRecorder:
    """The pipeline's recorder hook: ``recorder(event)`` buffers one line.

    Args:
        path: the file; appended to (a restart continues the same capture).
        buffer_lines: lines kept in memory before a write.
    """

    def __init__(self, path: str | Path, buffer_lines: int = 1000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)  # not for other users
        self._fh: IO[str] | None = os.fdopen(fd, "a", encoding="utf-8")
        self._buf: list[str] = []
        self._max = buffer_lines
        self.recorded = 0
        self.errors = 0
        self._last_error = ""

    def __call__(self, ev: Event) -> None:
        try:
            line = json.dumps(event_to_dict(ev), default=str, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as e:  # an attribute json cannot express even as str
            self.errors += 1
            self._failed(e)
            return
        self._buf.append(line)
        if len(self._buf) >= self._max:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered (and push it to the OS)."""
        if not self._buf or self._fh is None:
            return
        lines, self._buf = self._buf, []
        try:
            self._fh.write("\n".join(lines) + "\n")
            self._fh.flush()
            self.recorded += len(lines)
        except OSError as e:
            self.errors += len(lines)
            self._failed(e)

    def close(self) -> None:
        self.flush()
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError as e:
                self._failed(e)
            self._fh = None

    def _failed(self, e: BaseException) -> None:
        msg = str(e)
        if msg != self._last_error:
            log.error("event recording to %s failed (events are still processed): %s", self.path, msg)
            self._last_error = msg
