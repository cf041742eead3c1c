"""Key and title templates: ``{device}/if/{ifIndex}`` compiled once, filled per event."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from string import Formatter
from typing import Any

__all__ = ["compile_template", "Template"]

Template = Callable[[Mapping[str, Any], Mapping[str, Any]], str]


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def compile_template(template: str, missing: str = "?") -> Template:
    """Compile a template once; at call time ``fields`` (device, rule, site…) are looked up
    first, then the event's attributes. Unknown names render as ``missing``."""
    parts: list[tuple[bool, str]] = []
    for literal, field, _spec, _conv in Formatter().parse(template):
        if literal:
            parts.append((False, literal))
        if field is not None:
            parts.append((True, field))
    if all(not is_field for is_field, _ in parts):
        const = template

        def constant(fields: Mapping[str, Any], attrs: Mapping[str, Any]) -> str:
            return const

        return constant

    def render(fields: Mapping[str, Any], attrs: Mapping[str, Any]) -> str:
        out = []
        for is_field, text in parts:
            if not is_field:
                out.append(text)
            elif text in fields:
                out.append(_fmt(fields[text]))
            elif text in attrs:
                out.append(_fmt(attrs[text]))
            else:
                out.append(missing)
        return "".join(out)

    return render
