"""Compiled matchers: attribute conditions and name globs turned into fast predicates."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Any

from rules.schema import Cond

__all__ = ["compile_conditions", "compile_glob", "is_glob", "Predicate"]

Predicate = Callable[[Mapping[str, Any]], bool]

_MISSING = object()


def is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def compile_glob(patterns: str | list[str] | None) -> Callable[[str], bool] | None:
    """A predicate over one string for exact names or globs; ``None`` means "any"."""
    if patterns is None:
        return None
    pats = [patterns] if isinstance(patterns, str) else list(patterns)
    exact = frozenset(p for p in pats if not is_glob(p))
    globs = [re.compile(fnmatch.translate(p)) for p in pats if is_glob(p)]
    if not globs:
        return exact.__contains__
    return lambda s: s in exact or any(g.match(s) for g in globs)


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
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


def _compile_one(attr: str, cond: Cond | Any) -> Predicate:
    if not isinstance(cond, Cond):
        want = cond
        return lambda attrs: _same(attrs.get(attr, _MISSING), want)
    checks: list[Callable[[Any], bool]] = []
    if cond.exists is not None:
        if cond.exists:
            checks.append(lambda v: v is not _MISSING)
        else:
            return lambda attrs: attr not in attrs
    else:
        checks.append(lambda v: v is not _MISSING)
    if cond.eq is not None:
        eq = cond.eq
        checks.append(lambda v: _same(v, eq))
    if cond.ne is not None:
        ne = cond.ne
        checks.append(lambda v: not _same(v, ne))
    if cond.in_ is not None:
        opts = list(cond.in_)
        checks.append(lambda v: any(_same(v, o) for o in opts))
    if cond.not_in is not None:
        nopts = list(cond.not_in)
        checks.append(lambda v: not any(_same(v, o) for o in nopts))
    if cond.regex is not None:
        rx = re.compile(cond.regex)
        checks.append(lambda v: rx.search(v if isinstance(v, str) else str(v)) is not None)
    for op, bound in (("gt", cond.gt), ("ge", cond.ge), ("lt", cond.lt), ("le", cond.le)):
        if bound is None:
            continue
        b = float(bound)
        if op == "gt":
            checks.append(lambda v, b=b: (n := _num(v)) is not None and n > b)
        elif op == "ge":
            checks.append(lambda v, b=b: (n := _num(v)) is not None and n >= b)
        elif op == "lt":
            checks.append(lambda v, b=b: (n := _num(v)) is not None and n < b)
        else:
            checks.append(lambda v, b=b: (n := _num(v)) is not None and n <= b)

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
    return lambda attrs: all(p(attrs) for p in preds)
