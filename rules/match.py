"""Compiled matchers: attribute conditions and name globs turned into fast predicates."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Any

from rules.schema import Cond

__all__ = ["Predicate", "compile_conditions", "compile_glob", "is_glob"]

Predicate = Callable[[Mapping[str, Any]], bool]

_MISSING = object()
_GLOB_MEMO = 4096


def is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def compile_glob(patterns: str | list[str] | None) -> Callable[[str], bool] | None:
    """A predicate over one string for exact names or globs; ``None`` means "any"."""
    if patterns is None:
        return None
    pats = [patterns] if isinstance(patterns, str) else list(patterns)
    exact = frozenset(p for p in pats if not is_glob(p))
    globs = [fnmatch.translate(p) for p in pats if is_glob(p)]
    if not globs:
        return exact.__contains__
    # One alternation instead of a loop over patterns, and the answer remembered per value:
    # device classes, sites and regions are a small set of strings seen over and over.
    match = re.compile("|".join(f"(?:{g})" for g in globs)).match
    seen: dict[str, bool] = {}

    def pred(s: str) -> bool:
        r = seen.get(s)
        if r is None:
            r = s in exact or match(s) is not None
            if len(seen) < _GLOB_MEMO:
                seen[s] = r
        return r

    return pred


_NUM_START = frozenset("0123456789+-. ")


def _compare(op: str, b: float) -> Callable[[Any], bool]:
    """A numeric comparison against ``b``; a value that is not a number never matches."""
    if op == "gt":
        return lambda v: (n := _num(v)) is not None and n > b
    if op == "ge":
        return lambda v: (n := _num(v)) is not None and n >= b
    if op == "lt":
        return lambda v: (n := _num(v)) is not None and n < b
    return lambda v: (n := _num(v)) is not None and n <= b


def _num(v: Any) -> float | None:
    """``v`` as a number, if it is one (a numeric string counts; ``True`` is 1)."""
    t = type(v)
    if t is int or t is float or t is bool:
        return float(v)
    if t is str:
        # Most attribute strings are words ("minor", "failed"): reject them without the cost
        # of a float() exception.
        if v and v[0] in _NUM_START:
            try:
                return float(v)
            except ValueError:
                return None
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _same(a: Any, b: Any) -> bool:
    """Equality that lets ``7`` match ``"7"`` (varbinds and JSON disagree on types)."""
    if a == b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return na == nb
    return str(a) == str(b)


def _member(options: list[Any]) -> Callable[[Any], bool]:
    """A predicate "``v`` is ``_same`` as one of ``options``", precomputed: a set lookup
    instead of a loop over the options with number parsing for each."""
    raw = list(options)
    try:
        exact: frozenset[Any] = frozenset(raw)
    except TypeError:  # an unhashable option: fall back to the plain loop
        return lambda v: v is not _MISSING and any(_same(v, o) for o in raw)
    nums = frozenset(n for o in raw if not isinstance(o, bool) and (n := _num(o)) is not None)
    strs = frozenset(str(o) for o in raw if not isinstance(o, bool))

    def member(v: Any) -> bool:
        if v is _MISSING:
            return False
        try:
            if v in exact:
                return True
        except TypeError:
            return any(_same(v, o) for o in raw)
        if isinstance(v, bool):
            return False  # a bool only ever equals, and it did not
        n = _num(v)
        # Both numbers: the numbers decide. Otherwise the texts do (a number's text never
        # equals a non-numeric option's).
        return n in nums if n is not None else str(v) in strs

    return member


def _compile_one(attr: str, cond: Cond | Any) -> Predicate:
    if not isinstance(cond, Cond):
        is_want = _member([cond])
        return lambda attrs: is_want(attrs.get(attr, _MISSING))
    if cond.exists is False:
        return lambda attrs: attr not in attrs
    checks: list[Callable[[Any], bool]] = [lambda v: v is not _MISSING]
    if cond.eq is not None:
        checks.append(_member([cond.eq]))
    if cond.ne is not None:
        is_ne = _member([cond.ne])
        checks.append(lambda v: not is_ne(v))
    if cond.in_ is not None:
        checks.append(_member(list(cond.in_)))
    if cond.not_in is not None:
        is_out = _member(list(cond.not_in))
        checks.append(lambda v: not is_out(v))
    if cond.regex is not None:
        rx = re.compile(cond.regex)
        checks.append(lambda v: rx.search(v if isinstance(v, str) else str(v)) is not None)
    for op, bound in (("gt", cond.gt), ("ge", cond.ge), ("lt", cond.lt), ("le", cond.le)):
        if bound is not None:
            checks.append(_compare(op, float(bound)))
    if len(checks) == 2:  # the common case: one operator (after the presence test)
        only = checks[1]
        return lambda attrs: (v := attrs.get(attr, _MISSING)) is not _MISSING and only(v)
    if len(checks) == 1:
        return lambda attrs: attr in attrs

    def pred(attrs: Mapping[str, Any]) -> bool:
        v = attrs.get(attr, _MISSING)
        for c in checks:
            if not c(v):
                return False
        return True

    return pred


def compile_conditions(when: Mapping[str, Cond | Any]) -> Predicate | None:
    """All conditions must hold; ``None`` when there are none (always true)."""
    preds = [_compile_one(k, c) for k, c in when.items()]
    if not preds:
        return None
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        p0, p1 = preds
        return lambda attrs: p0(attrs) and p1(attrs)

    def every(attrs: Mapping[str, Any]) -> bool:
        for p in preds:
            if not p(attrs):
                return False
        return True

    return every
