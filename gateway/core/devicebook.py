"""The inventory as rows: CSV and JSON in and out, checked row by row, merged with the config
file's ``[[devices]]`` (pure: text in, values out; no files, no store).

Columns (CSV header, JSON keys): ``id, name, class, site, region, policy, parent, addresses,
aliases, heartbeat_interval, poll``. Only ``id`` is required. In CSV, ``addresses`` and
``aliases`` hold several values separated by ``;``; in JSON they are lists (a string is split
like CSV). ``heartbeat_interval`` is a duration (``"30s"``, ``"5m"``, seconds) or empty.

Which wins on conflict: **the config file**. A device listed in ``[[devices]]`` belongs to
the file; the store (API, import, adoption) cannot change or remove it — a row that differs
from the file's entry is refused with one line, an identical row is "unchanged" (so an
export can be imported again). A stored device that later appears in the file is shadowed
by it (the file's entry is used and the stored one ignored, with a warning at load).

Every problem is one line naming the row (CSV: the line of the file, header = row 1; JSON:
the position in the array, from 1) and the column; an import with any problem changes nothing.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.durations import parse_duration
from gateway.model import UNKNOWN_CLASS, Device, parse_poll_spec

__all__ = [
    "COLUMNS",
    "Checked",
    "RowError",
    "check_rows",
    "device_from_row",
    "device_to_row",
    "merge_devices",
    "parse_csv",
    "parse_json",
    "to_csv",
    "to_json",
]

COLUMNS = (
    "id", "name", "class", "site", "region", "policy", "parent", "addresses", "aliases",
    "heartbeat_interval", "poll",
)
_LISTS = ("addresses", "aliases")
_MAX_ID = 200
_MAX_TEXT = 500
_MAX_INTERVAL = 366 * 86400.0
#: Rows one import may hold (a million-device gateway imports in parts).
MAX_ROWS = 200_000


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem: ``row`` (CSV line / JSON position, from 1; 0 = the whole file), ``column``
    ('' = the row as a whole) and what is wrong."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        where = "file" if self.row == 0 else f"row {self.row}"
        return f"{where}, column {self.column}: {self.message}" if self.column else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}


# -- parsing ---------------------------------------------------------------------------------
def parse_csv(text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    """``(row number, raw row)`` pairs of a CSV text with a header line, and file-level problems."""
    if text.startswith("\ufeff"):  # a spreadsheet's byte-order mark
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return [], [RowError(0, "", "empty file (a header line naming the columns comes first)")]
    except csv.Error as e:
        return [], [RowError(1, "", f"not CSV: {e}")]
    names = [h.strip() for h in header]
    errors = [RowError(1, n or f"#{i + 1}", f"unknown column (known: {', '.join(COLUMNS)})")
              for i, n in enumerate(names) if n not in COLUMNS]
    dup = sorted({n for n in names if names.count(n) > 1})
    errors += [RowError(1, n, "column given twice") for n in dup]
    if "id" not in names:
        errors.append(RowError(1, "id", "the header has no id column"))
    if errors:
        return [], errors
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        for values in reader:
            line = reader.line_num
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) > len(names):
                errors.append(RowError(line, "", f"{len(values)} values for {len(names)} columns"))
                continue
            rows.append((line, dict(zip(names, values, strict=False))))
            if len(rows) > MAX_ROWS:
                return [], [RowError(0, "", f"more than {MAX_ROWS} rows; import in parts")]
    except csv.Error as e:
        errors.append(RowError(reader.line_num, "", f"not CSV: {e}"))
    return rows, errors


def parse_json(text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    """Rows of a JSON array of objects (or ``{"devices": [...]}``)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:
        return [], [RowError(0, "", f"not JSON: {e}")]
    if isinstance(doc, dict) and isinstance(doc.get("devices"), list):
        doc = doc["devices"]
    if not isinstance(doc, list):
        return [], [RowError(0, "", "expected an array of device objects (or {\"devices\": [...]})")]
    if len(doc) > MAX_ROWS:
        return [], [RowError(0, "", f"more than {MAX_ROWS} rows; import in parts")]
    rows: list[tuple[int, dict[str, Any]]] = []
    errors: list[RowError] = []
    for i, item in enumerate(doc, start=1):
        if not isinstance(item, dict):
            errors.append(RowError(i, "", "not an object"))
            continue
        unknown = [k for k in item if k not in COLUMNS and k != "source"]
        errors += [RowError(i, str(k), f"unknown column (known: {', '.join(COLUMNS)})") for k in unknown]
        rows.append((i, item))
    return rows, errors


# -- checking --------------------------------------------------------------------------------
def _text(v: Any, col: str, limit: int = _MAX_TEXT) -> str:
    if v is None:
        return ""
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise ValueError("must be text")
    s = str(v).strip()
    if len(s) > limit:
        raise ValueError(f"longer than {limit} characters")
    if any(ord(c) < 32 for c in s):
        raise ValueError("contains control characters")
    return s


def _list(v: Any) -> tuple[str, ...]:
    if v is None or v == "":
        return ()
    items: list[Any]
    if isinstance(v, str):
        items = [p for p in v.replace(",", ";").split(";")]
    elif isinstance(v, list):
        items = v
    else:
        raise ValueError("must be a list (CSV: values separated by ';')")
    out = []
    for x in items:
        s = _text(x, "")
        if s:
            out.append(s)
    return tuple(dict.fromkeys(out))


def _address(a: str) -> None:
    host, sep, port = a.rpartition(":")
    if sep and host and "]" not in port and ":" not in host:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{a!r}: port must be 1-65535")
        a = host
    try:
        ipaddress.ip_address(a.strip("[]"))
    except ValueError:
        if not a or any(c.isspace() for c in a) or len(a) > 253:
            raise ValueError(f"{a!r} is not an address") from None


def device_from_row(raw: Mapping[str, Any], default_policy: str) -> tuple[Device | None, list[tuple[str, str]]]:
    """One raw row as a Device, or the ``(column, problem)`` pairs that stop it."""
    problems: list[tuple[str, str]] = []
    vals: dict[str, Any] = {}
    for col in ("id", "name", "class", "site", "region", "policy", "parent", "poll"):
        try:
            vals[col] = _text(raw.get(col), col, _MAX_ID if col in ("id", "parent") else _MAX_TEXT)
        except ValueError as e:
            problems.append((col, str(e)))
    for col in _LISTS:
        try:
            vals[col] = _list(raw.get(col))
        except ValueError as e:
            problems.append((col, str(e)))
    interval: float | None = None
    hb = raw.get("heartbeat_interval")
    if hb not in (None, ""):
        try:
            interval = parse_duration(hb.strip() if isinstance(hb, str) else hb)
            if interval <= 0:
                raise ValueError("must be more than 0")
            if interval > _MAX_INTERVAL:
                raise ValueError("at most 366 days")
        except ValueError as e:
            problems.append(("heartbeat_interval", str(e)))
    if "id" in vals and not vals["id"]:
        problems.append(("id", "empty (every device needs an id)"))
    if vals.get("poll"):
        try:
            parse_poll_spec(vals["poll"])
        except ValueError as e:
            problems.append(("poll", str(e)))
    for a in vals.get("addresses", ()):
        try:
            _address(a)
        except ValueError as e:
            problems.append(("addresses", str(e)))
            break
    if problems:
        return None, problems
    return Device(
        id=vals["id"],
        name=vals["name"],
        device_class=vals["class"] or UNKNOWN_CLASS,
        site=vals["site"],
        region=vals["region"],
        policy=vals["policy"] or default_policy,
        parent=vals["parent"] or None,
        addresses=vals["addresses"],
        aliases=vals["aliases"],
        heartbeat_interval=interval,
        poll=vals["poll"],
    ), []


def device_to_row(d: Device) -> dict[str, Any]:
    """A Device as a JSON row (lists as lists; the store keeps this form)."""
    return {
        "id": d.id, "name": d.name, "class": d.device_class, "site": d.site, "region": d.region,
        "policy": d.policy, "parent": d.parent or "", "addresses": list(d.addresses),
        "aliases": list(d.aliases), "heartbeat_interval": d.heartbeat_interval, "poll": d.poll,
    }


@dataclass(slots=True)
class Checked:
    """The outcome of :func:`check_rows`: what would change, or why nothing may."""

    errors: list[RowError] = field(default_factory=list)
    added: list[Device] = field(default_factory=list)
    updated: list[Device] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, int]:
        return {"added": len(self.added), "updated": len(self.updated), "removed": len(self.removed),
                "unchanged": self.unchanged}


def check_rows(
    rows: Sequence[tuple[int, Mapping[str, Any]]],
    *,
    config: Mapping[str, Device],
    stored: Mapping[str, Device],
    policies: Iterable[str],
    default_policy: str,
    replace: bool = False,
    errors: Sequence[RowError] = (),
) -> Checked:
    """Check rows against each other, the config file's devices and the stored ones.

    Args:
        rows: ``(row number, raw row)`` from :func:`parse_csv` / :func:`parse_json` (or one
            row of an API call).
        config: the config file's devices by id (they win: see the module docstring).
        stored: the stored devices by id.
        policies: the policy names that exist.
        default_policy: the policy of a row that names none.
        replace: the rows are the whole stored inventory: stored devices not in them are removed.
        errors: problems found while parsing, reported with the rest.

    Returns:
        What would be added, updated, removed, or the problems (then nothing may change).
    """
    out = Checked(errors=list(errors))
    known_policies = set(policies)
    seen: dict[str, int] = {}
    devices: list[tuple[int, Device]] = []
    for rowno, raw in rows:
        dev, problems = device_from_row(raw, default_policy)
        for col, msg in problems:
            out.errors.append(RowError(rowno, col, msg))
        if dev is None:
            continue
        if dev.id in seen:
            out.errors.append(RowError(rowno, "id", f"{dev.id!r} is also on row {seen[dev.id]}"))
            continue
        seen[dev.id] = rowno
        if dev.policy not in known_policies:
            out.errors.append(RowError(rowno, "policy", f"no policy named {dev.policy!r}"))
            continue
        devices.append((rowno, dev))
    # The inventory as it would be: config devices, stored ones kept, and the rows.
    result: dict[str, Device] = {} if replace else dict(stored)
    result.update(config)
    for rowno, dev in devices:
        cfg = config.get(dev.id)
        if cfg is not None:
            if _same(cfg, dev):
                out.unchanged += 1
            else:
                out.errors.append(RowError(rowno, "id", f"{dev.id!r} is defined in the config file, which wins; "
                                           "change it there (or remove it there first)"))
            continue
        result[dev.id] = dev
        old = stored.get(dev.id)
        if old is None:
            out.added.append(dev)
        elif _same(old, dev):
            out.unchanged += 1
        else:
            out.updated.append(dev)
    if replace:
        out.removed = sorted(d for d in stored if d not in seen and d not in config)
    rownos = {dev.id: rowno for rowno, dev in devices}
    for rowno, dev in devices:
        if dev.parent is not None and dev.parent not in result:
            out.errors.append(RowError(rowno, "parent", f"no device with id {dev.parent!r}"))
    for dev_id in _in_loops(result, rownos):
        out.errors.append(RowError(rownos[dev_id], "parent", f"the parent chain of {dev_id!r} loops"))
    out.errors.sort(key=lambda e: (e.row, COLUMNS.index(e.column) if e.column in COLUMNS else 99))
    if out.errors:
        out.added, out.updated, out.removed = [], [], []
    return out


def _same(a: Device, b: Device) -> bool:
    return device_to_row(a) == device_to_row(b)


def _in_loops(devices: Mapping[str, Device], rows: Mapping[str, int]) -> list[str]:
    """Ids among ``rows`` whose parent chain comes back to them."""
    out = []
    for dev_id in rows:
        seen = {dev_id}
        cur = devices[dev_id].parent
        while cur is not None and cur in devices:
            if cur in seen:
                out.append(dev_id)
                break
            seen.add(cur)
            cur = devices[cur].parent
    return out


def merge_devices(config: Sequence[Device], stored: Sequence[Device]) -> tuple[list[Device], list[str]]:
    """The inventory: the config file's devices, then stored ones the file does not define.
    Returns the devices and the stored ids the file shadows."""
    ids = {d.id for d in config}
    shadowed = [d.id for d in stored if d.id in ids]
    return [*config, *(d for d in stored if d.id not in ids)], shadowed


# -- export ----------------------------------------------------------------------------------
def _csv_value(col: str, row: Mapping[str, Any]) -> str:
    v = row.get(col)
    if col in _LISTS:
        return ";".join(v or ())
    if col == "heartbeat_interval":
        return "" if v is None else f"{v:g}s"
    return "" if v is None else str(v)


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows (:func:`device_to_row`) as CSV with a header line."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_csv_value(c, r) for c in COLUMNS])
    return buf.getvalue()


def to_json(rows: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps(list(rows), ensure_ascii=False, indent=1) + "\n"
