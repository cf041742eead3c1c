"""MQTT payload decoding: one message (topic + payload) -> one Event, validated at the edge."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters.mqtt.config import MqttConfig
from gateway.model import Event

__all__ = ["LOST", "Ignored", "PayloadDecoder", "Rejected", "parse_ts"]

_EVENT_NAME: dict[str, str] = {
    "heartbeat": "heartbeat",
    "status": "status",
    "alarm": "alarm",
    "lwt": "status",
}
LOST = "heartbeat.lost"
_LWT_TEXT_MAX = 64
#: Topics remembered by :meth:`PayloadDecoder.route` before the memo starts over.
ROUTE_MEMO = 100_000


class Rejected(Exception):
    """A message the adapter refuses; ``reason`` is the counter suffix (``rejected.<reason>``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Ignored(Exception):
    """A well-formed message the adapter drops on purpose; counted as ``ignored.<reason>``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _no_constants(token: str) -> Any:
    raise ValueError(f"{token} is not a number")


# One decoder for all messages: json.loads(..., parse_constant=...) would build a new one
# per call, which costs as much as the parse of a small heartbeat.
_JSON = json.JSONDecoder(parse_constant=_no_constants)
_SCAN: Callable[[str, int], tuple[Any, int]] = _JSON.scan_once  # type: ignore[attr-defined]  # the C scanner json.loads ends in


def _json_document(text: str) -> Any:
    """``_JSON.decode(text)`` for a text without leading or trailing whitespace (the payload
    is stripped first): the scanner called directly, without decode's two Python frames and
    whitespace regexes — the same result and the same errors (tested against ``decode``)."""
    try:
        obj, end = _SCAN(text, 0)
    except StopIteration as e:
        raise json.JSONDecodeError("Expecting value", text, e.value) from None
    if end != len(text) and text[end:].strip(" \t\n\r"):
        raise json.JSONDecodeError("Extra data", text, end)
    return obj


#: orjson reads an integer literal beyond 64 bits as a float where ``json`` keeps the int:
#: a float this large from orjson may have been one, so such a document is read again by
#: ``json``, the reference.
_BIG = 2.0**63


class _Inexact(Exception):
    """orjson's reading may differ from ``json``'s: read the document again with ``json``."""


def _document(body: bytes) -> tuple[Any, bool]:
    """The JSON document in ``body`` (stripped) and whether orjson read it.

    orjson (about 4x faster on a heartbeat) where it accepts the text; everything it
    refuses — invalid UTF-8, NaN/Infinity, numbers beyond a double, lone surrogates, deep
    nesting — goes to ``json`` (the reference), whose value or error is the answer. Where both
    accept a text they give the same value (tested), except the big integers above.
    """
    try:
        return orjson.loads(body), True
    except orjson.JSONDecodeError:
        return _json_document(body.decode()), False


_SCALARS = frozenset((str, int, float, bool))


def _flatten(obj: dict[str, Any], fast: bool) -> dict[str, Any]:
    """The payload's fields as flat scalars (``a.b`` for one level of nesting; ``null`` left
    out); ``obj`` itself when it is flat already (the usual heartbeat).

    Raises:
        Rejected: a non-finite number (``not_json``) or a list/deep object (``bad_type``).
        _Inexact: ``fast`` (orjson read it) and a float may have been a big integer.
    """
    for v in obj.values():  # the usual case first: flat and finite, taken as it is
        t = type(v)
        if t is float:
            if v - v != 0.0 or v >= _BIG or v <= -_BIG:
                break
        elif t is not str and t is not int and t is not bool:
            break
    else:
        return obj
    attrs: dict[str, Any] = {}
    for k, v in obj.items():
        if type(v) is float:
            if v - v != 0.0:  # 1e400 parses to inf (inf - inf is nan, as is nan - nan)
                raise Rejected("not_json", f"{k} is not a finite number")
            if fast and (v >= _BIG or v <= -_BIG):
                raise _Inexact
            attrs[k] = v
        elif type(v) in _SCALARS:
            attrs[k] = v
        elif v is None:
            continue
        elif type(v) is dict:
            for k2, v2 in v.items():
                if type(v2) is float:
                    if v2 - v2 != 0.0:
                        raise Rejected("not_json", f"{k}.{k2} is not a finite number")
                    if fast and (v2 >= _BIG or v2 <= -_BIG):
                        raise _Inexact
                if type(v2) in _SCALARS:
                    attrs[f"{k}.{k2}"] = v2
                elif v2 is not None:
                    raise Rejected("bad_type", f"{k}.{k2} is {type(v2).__name__}")
        else:
            raise Rejected("bad_type", f"{k} is {type(v).__name__}")
    return attrs


def parse_ts(value: object) -> float | None:
    """Epoch seconds from a device timestamp (s, ms, us or ns; or ISO-8601), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            t = float(value)
        except ValueError:
            try:
                dt = datetime.fromisoformat(value)
            except ValueError:
                return None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            return dt.timestamp()
    elif isinstance(value, (int, float)):
        t = float(value)
    else:
        return None
    if not math.isfinite(t):
        return None
    # 1e11 s is the year 5138 while 1e11 ms is 1973: magnitude tells the unit apart.
    if t > 1e17:
        t /= 1e9
    elif t > 1e14:
        t /= 1e6
    elif t > 1e11:
        t /= 1e3
    return t


class PayloadDecoder:
    """Turns one message (topic parts + payload) into an Event; pure apart from ``lookup``.

    Args:
        config: the adapter configuration.
        lookup: maps a raw device id to an inventory id (``None`` when unknown).
    """

    __slots__ = (
        "_cfg",
        "_offline",
        "_offline_max",
        "_routes",
        "_source",
        "_subs",
        "lookup",
        "ts_insane",
        "unknown",
    )

    def __init__(self, config: MqttConfig, lookup: Callable[[str], str | None]) -> None:
        self._cfg = config
        self._subs = [(s.template, s.kind) for s in config.subscriptions]
        self._offline = frozenset(p.strip().lower() for p in config.offline_payloads)
        self._offline_max = max((len(p.encode()) for p in self._offline), default=0)
        self._source = config.name
        self.lookup = lookup
        # topic (str or raw bytes) -> (kind, raw device, captures) or the Rejected it raises;
        # devices repeat their topics, so the split and the template walk run once per topic.
        self._routes: dict[str | bytes, tuple[str, str | None, tuple[tuple[str, str], ...]] | Rejected] = {}
        self.ts_insane = 0
        self.unknown = 0

    def route(self, topic: str | bytes) -> tuple[str, str | None, tuple[tuple[str, str], ...]]:
        """What a topic means: (subscription kind, raw device id or ``None``, captured levels).

        Memoised per topic (bounded: the memo starts over at ``ROUTE_MEMO`` entries).

        Raises:
            Rejected: ``bad_topic`` (no subscription matches, empty device level, not UTF-8).
        """
        r = self._routes.get(topic)
        if r is None:
            try:
                r = self._route(topic)
            except Rejected as rej:
                r = rej
            if len(self._routes) >= ROUTE_MEMO:
                self._routes.clear()
            self._routes[topic] = r
        if type(r) is Rejected:
            raise Rejected(r.reason, r.detail)
        return r  # type: ignore[return-value]

    def _route(self, topic: str | bytes) -> tuple[str, str | None, tuple[tuple[str, str], ...]]:
        if isinstance(topic, bytes):
            try:
                topic = topic.decode()
            except UnicodeDecodeError:
                raise Rejected("bad_topic", "topic is not UTF-8") from None
        parts = topic.split("/")
        for tmpl, kind in self._subs:  # noqa: B007 - the matching one's kind is used below
            if tmpl.match(parts):
                break
        else:
            raise Rejected("bad_topic", "matches no subscription")
        raw_device: str | None = None
        if tmpl.device_pos is not None:
            raw_device = parts[tmpl.device_pos]
            if not raw_device:
                raise Rejected("bad_topic", "empty device level")
        return kind, raw_device, tuple((cap, parts[pos]) for pos, cap in tmpl.captures)

    def decode(self, topic: str | bytes, payload: bytes, now: float, retained: bool = False) -> Event:
        """Decode one message received at ``now``.

        Args:
            topic: the message's topic (str, or the raw UTF-8 bytes from the wire).
            payload: the message's payload.
            now: receive time, epoch seconds.
            retained: the broker replayed it from its retained store (on subscribe).

        Returns:
            The event. Events from retained messages carry ``retained=True``.

        Raises:
            Rejected: the message is bad; ``reason`` says why.
            Ignored: the device is unknown and ``unknown_devices`` is ``ignore``
                (``unknown_device``), or it is a retained heartbeat without a trustworthy
                device timestamp (``retained_heartbeat``): it says the device was alive at
                some unknown past time, which is no liveness signal now.
        """
        cfg = self._cfg
        if len(payload) > cfg.max_payload_bytes:
            raise Rejected("oversized", f"{len(payload)} bytes")
        kind, raw_device, captures = self.route(topic)
        attrs: dict[str, Any] = {}
        name = _EVENT_NAME[kind]
        ts = now
        device_time = False
        body = payload.strip()

        if (kind == "lwt" or kind == "status") and (
            (not body and kind == "lwt")
            or (len(body) <= self._offline_max and body.decode("utf-8", "replace").lower() in self._offline)
        ):
            name = LOST
            attrs["reason"] = "lwt"
            body = b""
        if body:
            try:
                obj, fast = _document(body)
            except (ValueError, RecursionError):  # UnicodeDecodeError included; RecursionError: absurd nesting
                if kind == "lwt" and len(body) <= _LWT_TEXT_MAX and body.isascii() and body.isalnum():
                    obj, fast = {"state": body.decode().lower()}, False
                else:
                    raise Rejected("not_json") from None
            if not isinstance(obj, dict):
                if fast:  # named as the reference reads it (orjson: a big int is a float)
                    obj = _json_document(body.decode())
                raise Rejected("not_object", type(obj).__name__)
            if len(obj) > cfg.max_attrs:
                raise Rejected("too_many_fields", str(len(obj)))
            ts_field = cfg.ts_field
            try:
                attrs = _flatten(obj, fast)
            except _Inexact:
                attrs = _flatten(_json_document(body.decode()), False)
            if len(attrs) > cfg.max_attrs:
                raise Rejected("too_many_fields", str(len(attrs)))
            if ts_field in attrs:
                t = parse_ts(attrs.pop(ts_field))
                if t is not None and now - cfg.ts_max_age_s <= t <= now + cfg.ts_max_future_s:
                    ts = t
                    device_time = True
                else:
                    self.ts_insane += 1
            if name != LOST and (kind == "status" or kind == "lwt") and attrs.get("state") == "offline":
                name = LOST
                attrs["reason"] = "lwt"
            if raw_device is None:
                dev = attrs.get("device")
                if isinstance(dev, str) and dev:
                    raw_device = dev
            elif cfg.identity == "topic" and "device" in attrs and attrs["device"] != raw_device:
                # The topic's device is the connection's (broker ACLs): a payload may not name another.
                raise Rejected("identity_mismatch", f"payload names device {str(attrs['device'])[:64]!r}")
        elif kind in ("status", "alarm") and name != LOST:
            raise Rejected("empty", f"empty {kind} payload")
        if raw_device is None:
            raise Rejected("no_device", "no {device} level and no device field")
        if retained:
            if name == "heartbeat" and not device_time:
                raise Ignored("retained_heartbeat")
            attrs["retained"] = True
        for cap, value in captures:
            attrs[cap] = value
        device = self.lookup(raw_device)
        if device is None:
            if cfg.unknown_devices == "ignore":
                raise Ignored("unknown_device")
            self.unknown += 1
            device = raw_device
        return Event(ts, self._source, device, name, attrs)
