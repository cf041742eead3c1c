"""Hypothesis strategies for MQTT payloads a broker may hand the adapter: raw bytes, JSON of
every shape (nested, huge numbers, NaN text, unicode), near-misses of the accepted format,
and the decoder's own outcomes (reasons it may report)."""

from __future__ import annotations

import json

from hypothesis import strategies as st

__all__ = ["IGNORED", "REJECTED", "json_values", "payloads"]

#: ``Rejected.reason`` values the decoder documents (counted as ``rejected.<reason>``).
REJECTED = frozenset(
    {"oversized", "bad_topic", "not_json", "not_object", "too_many_fields", "bad_type", "empty", "no_device"}
)
#: ``Ignored.reason`` values (counted as ``ignored.<reason>``).
IGNORED = frozenset({"retained_heartbeat", "unknown_device"})

_keys = st.one_of(
    st.sampled_from(["ts", "device", "state", "battery", "level", "", "a.b"]),
    st.text(max_size=12),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["offline", "OFFLINE", "online", "2026-01-01T00:00:00Z", "1767225600000", "NaN"]),
)
#: JSON-serialisable values, a few levels deep.
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=20,
)


def _dumps(v: object) -> bytes:
    return json.dumps(v, ensure_ascii=False).encode()


#: Text a JSON parser sees differently from ``json.dumps`` output.
_near_json = st.sampled_from(
    [
        b'{"v": NaN}', b'{"v": Infinity}', b'{"v": -Infinity}', b'{"v": 1e400}',
        b'{"v": ' + b"9" * 5000 + b"}", b'{"a": 1,}', b'{"a": 1', b"{'a': 1}", b'{"a": "\\ud800"}',
        b'{"a": 1, "a": 2}', b"\xef\xbb\xbf{}", b'"offline"', b"null", b"[]", b"0", b"  ",
        b"offline", b"Online", b'{"state": "offline"}', b'{"device": ""}', b'{"device": 5}',
        b'{"ts": "9999-12-31T23:59:59-14:00"}', b'{"ts": 1e308}', b'{"ts": -1}', b'{"ts": true}',
        b'{"a": ' + b"[" * 200 + b"]" * 200 + b"}", b'{"a": {"b": {"c": 1}}}', b'{"a": {"b": null}}',
    ]
)


def payloads() -> st.SearchStrategy[bytes]:
    """Bytes of any kind, JSON of any shape, objects of scalars, and known near-misses."""
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=100).map(str.encode),
        json_values.map(_dumps),
        st.dictionaries(_keys, _scalars, max_size=70).map(_dumps),
        _near_json,
    )
