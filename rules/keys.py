"""Key and title templates: ``{device}/if/{ifIndex}`` compiled once, filled per event.

A template is rendered for every classified event (a storm renders the same key thousands
of times a second), so compiling does the work once: the literal text becomes a
``str.format`` pattern and each placeholder a direct getter — a device field, the rule id,
the event name, or one attribute lookup — so rendering builds no mappings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from string import Formatter
from typing import Any

from gateway.model import Device

__all__ = ["FIELDS", "Template", "compile_template"]

#: render(device, rule id, event name, event attributes) → text
Template = Callable[[Device, str, str, Mapping[str, Any]], str]

_Getter = Callable[[Device, str, str, Mapping[str, Any]], Any]

#: Names a template can use besides the event's attributes (they win over attributes).
FIELDS: dict[str, _Getter] = {
    "device": lambda d, r, e, a: d.id,
    "rule": lambda d, r, e, a: r,
    "event": lambda d, r, e, a: e,
    "site": lambda d, r, e, a: d.site,
    "region": lambda d, r, e, a: d.region,
    "class": lambda d, r, e, a: d.device_class,
}

_MISSING = object()


def _attr(name: str, missing: str) -> _Getter:
    def get(d: Device, r: str, e: str, a: Mapping[str, Any]) -> Any:
        v = a.get(name, _MISSING)
        if v is _MISSING:
            return missing
        if type(v) is float and v.is_integer():
            return int(v)  # 7.0 from JSON names the same interface as 7 from SNMP
        return v

    return get


@functools.lru_cache(maxsize=4096)
def compile_template(template: str, missing: str = "?") -> Template:
    """Compile a template once. At render time device fields (``device``, ``rule``,
    ``event``, ``site``, ``region``, ``class``) come first, then the event's attributes;
    unknown names render as ``missing``. Format specs and conversions are not supported
    (``{x:>4}`` reads as the name ``x``). Rules with the same template share one compiled
    renderer (packs repeat ``{device}/...`` keys; fewer objects stay in the CPU's caches)."""
    pattern: list[str] = []
    getters: list[_Getter] = []
    for literal, name, _spec, _conv in Formatter().parse(template):
        if literal:
            pattern.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is not None:
            pattern.append("{}")
            getters.append(FIELDS.get(name) or _attr(name, missing))
    fmt = "".join(pattern).format
    if not getters:
        const = template.replace("{{", "{").replace("}}", "}")

        def constant(d: Device, r: str, e: str, a: Mapping[str, Any]) -> str:
            return const

        return constant
    if len(getters) == 1:
        g0 = getters[0]

        def render1(d: Device, r: str, e: str, a: Mapping[str, Any]) -> str:
            return fmt(g0(d, r, e, a))

        return render1
    if len(getters) == 2:
        g0, g1 = getters

        def render2(d: Device, r: str, e: str, a: Mapping[str, Any]) -> str:
            return fmt(g0(d, r, e, a), g1(d, r, e, a))

        return render2

    def render(d: Device, r: str, e: str, a: Mapping[str, Any]) -> str:
        return fmt(*[g(d, r, e, a) for g in getters])

    return render
