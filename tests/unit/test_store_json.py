"""The store's JSON documents (``gateway.store.sql.to_json``): orjson on the hot path,
``json`` the reference. Whatever a row may hold, the document reads back as the reference's
does; where orjson would differ (dataclasses and datetimes as objects, non-text keys, big
integers, lone surrogates) ``json``'s text is used."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import FaultLevel
from gateway.store.sql import _ENCODE, to_json


@dataclass
class _Thing:
    a: int


_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from([FaultLevel.MAJOR, Decimal("1.50"), b"\x00raw", _Thing(3), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                     datetime(2026, 1, 2), (1, "two"), "\ud800", "中文", 1e16, -0.0, 2**64, -(2**63) - 1]),
)
_keys = st.one_of(st.text(max_size=8), st.integers(), st.sampled_from([1.5, True, None]))
values = st.recursive(
    _leaves,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_keys, kids, max_size=5),
    max_leaves=25,
)


@given(values)
@settings(max_examples=800, deadline=None)
def test_documents_read_back_as_the_references(v: Any) -> None:
    got = to_json(v)
    assert isinstance(got, str)
    assert json.loads(got) == json.loads(_ENCODE(v))


@given(st.dictionaries(st.text(max_size=6), st.floats(allow_nan=False, allow_infinity=False), max_size=6))
@settings(max_examples=300, deadline=None)
def test_floats_keep_every_bit(d: dict[str, float]) -> None:
    back = json.loads(to_json(d))
    assert [math.copysign(1, x) for x in back.values()] == [math.copysign(1, x) for x in d.values()]
    assert back == d


def test_what_orjson_would_write_differently_is_written_as_json_does() -> None:
    doc = {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "thing": _Thing(1), 7: "int key", "big": 2**70,
           "level": FaultLevel.CRITICAL}
    assert json.loads(to_json(doc)) == {"when": "2026-01-02 03:04:05+00:00", "thing": "_Thing(a=1)", "7": "int key",
                                        "big": 2**70, "level": 1}
    assert to_json({"s": "\ud800"}) == _ENCODE({"s": "\ud800"})


def test_a_non_finite_float_is_null_not_nan() -> None:
    """``json`` writes ``NaN``, which is no JSON: PostgreSQL's ``::json`` refuses it."""
    assert json.loads(to_json({"v": math.nan, "w": math.inf})) == {"v": None, "w": None}
