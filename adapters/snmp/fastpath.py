"""Repeat-trap fast path: a v2c trap whose varbinds (after sysUpTime) were seen before is
turned into an Event without decoding them again.

Traps repeat: a flapping port, a storm, a sensor re-sending the same alarm send byte-for-byte
the same VarBindList but for ``sysUpTime.0``. The header is walked here with strict checks
(every length must close exactly where the message, the PDU and the list end); the bytes after
the sysUpTime varbind key a bounded memo filled by the full decoder (``ber.decode``), which stays
the only judge of new bytes. Anything unusual — another version or PDU, a non-zero error field,
long lengths beyond two octets, a first varbind that is not sysUpTime.0 with an unsigned
TimeTicks — goes to the full decoder. A differential test holds the two paths equal.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RepeatCache", "split_v2c_trap"]

_SYS_UPTIME_OID = b"\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00"
_ZERO_FIELDS = b"\x02\x01\x00\x02\x01\x00"


def _tl(data: bytes, i: int) -> tuple[int, int]:
    """(length, index after the length octets), or (-1, i) for forms we do not take."""
    b = data[i]
    if b < 0x80:
        return b, i + 1
    if b == 0x81:
        return data[i + 1], i + 2
    if b == 0x82:
        return (data[i + 1] << 8) | data[i + 2], i + 3
    return -1, i


def split_v2c_trap(data: bytes) -> tuple[bytes, int, bytes] | None:
    """``(community, sysUpTime, rest)`` of a plain v2c Trap-PDU, else ``None``.

    ``rest`` is every varbind after ``sysUpTime.0`` exactly as received.
    """
    try:
        n = len(data)
        if data[0] != 0x30:
            return None
        ln, i = _tl(data, 1)
        if ln < 0 or i + ln != n or data[i:i + 3] != b"\x02\x01\x01" or data[i + 3] != 0x04:
            return None
        cl, i = _tl(data, i + 4)
        if cl < 0:
            return None
        community = data[i:i + cl]
        i += cl
        if i >= n or data[i] != 0xA7:
            return None
        pl, i = _tl(data, i + 1)
        if pl < 0 or i + pl != n or data[i] != 0x02:
            return None
        rl, i = _tl(data, i + 1)
        if not 1 <= rl <= 4:
            return None
        i += rl
        if data[i:i + 6] != _ZERO_FIELDS or data[i + 6] != 0x30:
            return None
        vl, i = _tl(data, i + 7)
        if vl < 0 or i + vl != n or data[i] != 0x30:
            return None
        v1, j = _tl(data, i + 1)
        if v1 < 0:
            return None
        end1 = j + v1
        if data[j:j + 10] != _SYS_UPTIME_OID or data[j + 10] != 0x43:
            return None
        tl, k = _tl(data, j + 11)
        if not 1 <= tl <= 4 or k + tl != end1 or data[k] & 0x80:
            return None  # empty, long or "negative" TimeTicks: the full decoder decides
        return community, int.from_bytes(data[k:end1], "big"), data[end1:]
    except IndexError:
        return None


class RepeatCache:
    """``rest`` bytes → (event name, attributes after sysUpTime, device named in the trap or
    ``None``). Bounded: when full it is emptied and refills from live traffic."""

    def __init__(self, max_entries: int = 4096, max_key: int = 1024, idle_after: int = 4096,
                 rest_for: int = 16384) -> None:
        self.max_entries = max_entries
        self.max_key = max_key
        self._memo: dict[bytes, tuple[str, dict[str, Any], str | None]] = {}
        self.hits = 0
        #: Traffic in which nothing repeats (every trap different) pays for the split and the
        #: memo entry and never gains: after ``idle_after`` lookups in a row without a hit the
        #: cache rests for ``rest_for`` packets (:meth:`awake` says False), then tries again.
        self.idle_after = idle_after
        self.rest_for = rest_for
        self.resting = 0
        self.rests = 0
        self._misses = 0

    def awake(self) -> bool:
        """Whether to try the fast path for this packet (False while resting; counts down)."""
        if self.resting:
            self.resting -= 1
            return False
        return True

    def get(self, rest: bytes) -> tuple[str, dict[str, Any], str | None] | None:
        hit = self._memo.get(rest)
        if hit is not None:
            self.hits += 1
            self._misses = 0
        else:
            self._misses += 1
            if self._misses >= self.idle_after:
                self._misses = 0
                self.resting = self.rest_for
                self.rests += 1
        return hit

    def put(self, rest: bytes, name: str, attrs: dict[str, Any], device: str | None) -> None:
        if len(rest) > self.max_key:
            return
        if len(self._memo) >= self.max_entries:
            self._memo.clear()
        self._memo[rest] = (name, attrs, device)

    def __len__(self) -> int:
        return len(self._memo)
