"""MQTT topic templates: ``site/{site}/device/{device}/heartbeat`` -> filter + positional matcher."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TopicTemplate"]



@dataclass(frozen=True, slots=True)
class TopicTemplate:
    """A compiled topic template: an MQTT filter plus a positional matcher.

    Attributes:
        template: the source text.
        filter: the MQTT subscription filter (placeholders replaced by ``+``).
        levels: number of levels, ``#`` included.
        tail: whether the last level is ``#``.
        literals: ``(position, text)`` of the fixed levels.
        captures: ``(position, name)`` of the placeholders other than ``device``.
        device_pos: position of ``{device}``, or ``None``.
    """

    template: str
    filter: str
    levels: int
    tail: bool
    literals: tuple[tuple[int, str], ...]
    captures: tuple[tuple[int, str], ...]
    device_pos: int | None

    @staticmethod
    def compile(template: str) -> TopicTemplate:
        """Compile ``template``.

        Raises:
            ValueError: for empty templates, ``$`` topics, placeholders that are not a whole
                level, duplicate or malformed names, ``#`` not at the end, or wildcard
                characters inside a literal level.
        """
        if not template:
            raise ValueError("empty topic template")
        if template.startswith("$"):
            raise ValueError("templates cannot start with '$' (use shared_group for $share)")
        levels = template.split("/")
        literals: list[tuple[int, str]] = []
        captures: list[tuple[int, str]] = []
        device_pos: int | None = None
        names: set[str] = set()
        filt: list[str] = []
        tail = False
        for pos, lvl in enumerate(levels):
            if lvl == "#":
                if pos != len(levels) - 1:
                    raise ValueError(f"'#' must be the last level in {template!r}")
                tail = True
                filt.append("#")
            elif lvl == "+":
                filt.append("+")
            elif lvl.startswith("{") and lvl.endswith("}"):
                name = lvl[1:-1]
                if not name.isidentifier():
                    raise ValueError(f"placeholder {lvl!r} in {template!r} is not a valid name")
                if name in names:
                    raise ValueError(f"placeholder {{{name}}} appears twice in {template!r}")
                names.add(name)
                if name == "device":
                    device_pos = pos
                else:
                    captures.append((pos, name))
                filt.append("+")
            elif any(c in lvl for c in "{}+#"):
                raise ValueError(f"level {lvl!r} of {template!r} mixes text and wildcards/placeholders")
            else:
                literals.append((pos, lvl))
                filt.append(lvl)
        return TopicTemplate(
            template=template,
            filter="/".join(filt),
            levels=len(levels),
            tail=tail,
            literals=tuple(literals),
            captures=tuple(captures),
            device_pos=device_pos,
        )

    def match(self, parts: Sequence[str]) -> bool:
        """Whether a topic, split on ``/``, matches this template's filter."""
        n = len(parts)
        if self.tail:
            # MQTT: "a/#" also matches "a" itself.
            if n < self.levels - 1:
                return False
        elif n != self.levels:
            return False
        for pos, text in self.literals:
            if parts[pos] != text:
                return False
        return True
