"""MQTT payloads and topics, fuzzed: ``PayloadDecoder.decode`` returns an Event of flat
scalars or raises Rejected/Ignored with a documented reason, never anything else."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.mqtt import Ignored, MqttConfig, PayloadDecoder, Rejected
from gateway.model import Event
from tests.mqtt_payloads import IGNORED, REJECTED, payloads

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
