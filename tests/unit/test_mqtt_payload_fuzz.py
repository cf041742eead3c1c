"""MQTT payloads and topics, fuzzed: ``PayloadDecoder.decode`` returns an Event of flat
scalars or raises Rejected/Ignored with a documented reason, never anything else."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.mqtt import Ignored, MqttConfig, PayloadDecoder, Rejected
from gateway.model import Event
from tests.mqtt_payloads import IGNORED, REJECTED, json_values, payloads

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SUBS = [
    {"topic": "s/{site}/d/{device}/hb"},
    {"topic": "+/{device}/status", "kind": "status", "qos": 1},
    {"topic": "lwt/{device}", "kind": "lwt"},
    {"topic": "bus/#", "kind": "alarm"},
]


def decoder(unknown_devices: str = "accept", **kw: Any) -> PayloadDecoder:
    cfg = MqttConfig(subscriptions=SUBS, unknown_devices=unknown_devices, **kw)
    return PayloadDecoder(cfg, lambda raw: {"known": "INV-known"}.get(raw))


DECODERS = [decoder(), decoder("ignore"), decoder(max_payload_bytes=64, max_attrs=3)]

_level = st.one_of(st.sampled_from(["", "known", "pump-7", "+", "#", "ü", " "]), st.text(max_size=6))
topics = st.one_of(
    st.text(max_size=40),
    st.builds("s/{}/d/{}/hb".format, _level, _level),
    st.builds("{}/{}/status".format, _level, _level),
    st.builds("lwt/{}".format, _level),
    st.builds("bus/{}".format, st.text(max_size=20)),
)


def check_event(ev: Event) -> None:
    """What the rule engine may rely on: a device id, a known name, flat scalar attributes."""
    assert isinstance(ev, Event)
    assert isinstance(ev.device, str) and ev.device
    assert ev.name in {"heartbeat", "status", "alarm", "heartbeat.lost"}
    assert isinstance(ev.ts, float) and math.isfinite(ev.ts)
    assert ev.source == "mqtt"  # the default adapter name
    for k, v in ev.attrs.items():
        assert isinstance(k, str) and type(v) in (str, int, float, bool), (k, v)


def outcome(dec: PayloadDecoder, topic: str, payload: bytes, now: float, retained: bool) -> str:
    try:
        ev = dec.decode(topic, payload, now, retained)
    except Rejected as e:
        assert e.reason in REJECTED, e.reason
        return f"rejected.{e.reason}"
    except Ignored as e:
        assert e.reason in IGNORED, e.reason
        return f"ignored.{e.reason}"
    check_event(ev)
    return "accepted"


@settings(max_examples=600, deadline=None)
@given(
    dec=st.sampled_from(DECODERS),
    topic=topics,
    payload=payloads(),
    now=st.floats(min_value=0, max_value=4e9),
    retained=st.booleans(),
)
def test_decode_returns_an_event_or_a_known_reason(
    dec: PayloadDecoder, topic: str, payload: bytes, now: float, retained: bool
) -> None:
    outcome(dec, topic, payload, now, retained)


@settings(max_examples=300, deadline=None)
@given(payload=payloads(), retained=st.booleans())
def test_on_a_valid_topic_the_payload_alone_decides(payload: bytes, retained: bool) -> None:
    """With a topic that names a device, no payload makes the outcome a topic problem."""
    got = outcome(DECODERS[0], "s/hq/d/pump-7/hb", payload, NOW, retained)
    assert got not in ("rejected.bad_topic", "rejected.no_device"), got


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b'{"v": NaN}', "not_json"),
        (b'{"v": [1]}', "bad_type"),
        (b'{"a": {"b": {"c": 1}}}', "bad_type"),
        (b'"offline"', "not_object"),
        (b"\xff\xfe", "not_json"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not_json"),
    ],
    ids=["nan", "array", "deep-object", "string", "not-utf8", "huge-int"],
)
def test_documented_rejections(payload: bytes, reason: str) -> None:
    assert outcome(DECODERS[0], "s/hq/d/pump-7/hb", payload, NOW, False) == f"rejected.{reason}"


def test_deeply_nested_payload_is_rejected() -> None:
    payload = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert outcome(DECODERS[0], "s/hq/d/pump-7/hb", payload, NOW, False) == "rejected.not_json"


@pytest.mark.parametrize("literal", [b"1e400", b"-1e400"])
def test_float_overflow_literal_is_rejected(literal: bytes) -> None:
    got = outcome(DECODERS[0], "s/hq/d/pump-7/hb", b'{"v": ' + literal + b"}", NOW, False)
    assert got == "rejected.not_json"


def _outcome(fn: Any, text: str) -> Any:
    try:
        return ("ok", fn(text))
    except (ValueError, RecursionError) as e:
        return ("error", type(e).__name__)


_json_texts = st.one_of(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4),
        max_leaves=12,
    ).map(lambda v: __import__("json").dumps(v)),
    st.text(max_size=40),
    st.sampled_from(['{"a": NaN}', '{"a": 1e400}', "[1] x", "{} ", "\t{}", '"s"', "-", "01", '{"a":1}{}', "[" * 3000]),
)


@given(_json_texts)
@settings(max_examples=400, deadline=None)
def test_the_json_shortcut_reads_as_json_decoder_decode(text: str) -> None:
    """The decoder calls the C scanner directly on the stripped payload; for any text without
    surrounding whitespace that is exactly ``JSONDecoder.decode`` (value or error class)."""
    from adapters.mqtt import decode as dec

    text = text.strip()
    assert _outcome(dec._json_document, text) == _outcome(dec._JSON.decode, text)


# -- orjson reads the payload, json (the standard library) is the reference -------------------

_number_texts = st.from_regex(r"\A-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?\Z")


def _strict(v: Any) -> Any:
    """A value in a form where 1, 1.0 and True differ, as do 0.0 and -0.0, and dict order counts."""
    if isinstance(v, dict):
        return ("dict", [(k, _strict(x)) for k, x in v.items()])
    if isinstance(v, list):
        return ("list", [_strict(x) for x in v])
    if isinstance(v, float):
        return ("float", v.hex())
    return (type(v).__name__, v)


def _reference_document(body: bytes) -> tuple[Any, bool]:
    from adapters.mqtt import decode as dec

    return dec._json_document(body.decode()), False


def _decoded(dec: PayloadDecoder, topic: str, payload: bytes) -> Any:
    try:
        ev = dec.decode(topic, payload, NOW, False)
    except (Rejected, Ignored) as e:
        return (type(e).__name__, e.reason, getattr(e, "detail", ""))
    return ("event", ev.ts, ev.device, ev.name, _strict(dict(ev.attrs)))


_payload_texts = st.one_of(
    payloads(),
    st.builds('{{"v": {}, "w": {{"x": {}}}}}'.format, _number_texts, _number_texts).map(str.encode),
    st.sampled_from([b'{"v": 123456789012345678901234567890}', b'{"v": -9223372036854775809}',
                     b'{"v": 18446744073709551615}', b'{"a": {"b": 99999999999999999999}}',
                     b'{"v": "\\ud800"}', b'{"v": 1.5, "v": 2}', b'{"v": 1e308, "w": 1e309}',
                     b'{"v": 9.3e18}', b'{"v": "a\\u0000b"}']),
)


@given(payload=_payload_texts, topic=st.sampled_from(["s/hq/d/pump-7/hb", "x/known/status", "lwt/known"]))
@settings(max_examples=800, deadline=None)
def test_payloads_read_by_orjson_decode_as_with_the_json_reference(payload: bytes, topic: str) -> None:
    """orjson reads payloads on the hot path; the standard library's ``json`` stays the
    reference: every payload gives the same event (values, their types, field order) or the
    same rejection as the decoder reading it with ``json`` alone. Big integers, which orjson
    turns into floats, must come out as the reference's ints."""
    from unittest import mock

    from adapters.mqtt import decode as dec

    for d in DECODERS:
        got = _decoded(d, topic, payload)
        with mock.patch.object(dec, "_document", _reference_document):
            want = _decoded(d, topic, payload)
        assert got == want, payload


@given(text=st.one_of(_number_texts, json_values.map(json.dumps)))
@settings(max_examples=600, deadline=None)
def test_where_orjson_reads_a_text_it_reads_it_as_json_does(text: str) -> None:
    """Value for value (ints, floats to the bit, strings, order) wherever orjson accepts a text
    — except integer literals beyond 64 bits, which the decoder sends back to ``json``."""
    import orjson

    try:
        fast = orjson.loads(text)
    except orjson.JSONDecodeError:
        return
    if _strict(fast) != _strict(json.loads(text)):
        assert _has_big_float(fast), text


def _has_big_float(v: Any) -> bool:
    if isinstance(v, dict):
        return any(_has_big_float(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_big_float(x) for x in v)
    return isinstance(v, float) and abs(v) >= 2.0**63
