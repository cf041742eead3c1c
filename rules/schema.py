"""Rule-pack schema: the pydantic models a TOML rule pack must satisfy."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from gateway.durations import parse_duration

__all__ = ["Cond", "PackInfo", "PackModel", "RuleModel", "parse_seconds"]

Scalar = int | float | str | bool

def parse_seconds(v: Any) -> float:
    """A duration as a number of seconds or a string such as ``"90s"``, ``"10m"``, ``"1h30m"``
    (the config file's syntax: see gateway.durations)."""
    return parse_duration(v)


Seconds = Annotated[float, BeforeValidator(parse_seconds)]


class Cond(BaseModel):
    """Conditions on one attribute; every operator given must hold."""

    model_config = ConfigDict(extra="forbid")

    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    regex: str | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    exists: bool | None = None

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            import re

            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"invalid regular expression: {e}") from None
        return v


class RuleModel(BaseModel):
    """One rule: which events, under which conditions, mean which fault."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(min_length=1)
    #: Event name, exact (``IF-MIB::linkDown``) or a glob (``IF-MIB::*``); or a list of them.
    event: str | list[str]
    action: Literal["raise", "clear"] = "raise"
    level: int | None = Field(default=None, ge=1, le=4)
    #: Fault key template, e.g. ``{device}/if/{ifIndex}``; events with the same key are one fault.
    key: str = "{device}/{rule}"
    title: str = ""
    #: The title in Chinese (zh-CN), the same template fields as ``title``; the board shows it
    #: to Chinese readers (empty: the English title).
    title_zh: str = ""
    description: str = ""
    priority: int = 100
    #: Keep evaluating later rules after this one matched (Alertmanager's ``continue``):
    #: one message can then raise or clear several faults. A later rule never acts on a
    #: key an earlier match already produced (first match wins per fault key).
    continue_: bool = Field(default=False, alias="continue")
    device_class: str | list[str] | None = None
    site: str | list[str] | None = None
    region: str | list[str] | None = None
    #: The device's contract (policy) name or glob, or a list of them: the same event can mean
    #: another level under another contract (a fibre-line fault is level 1 under the medical
    #: contract). The first matching rule still wins, so put the contract-specific rule first
    #: (a lower ``priority``).
    policy: str | list[str] | None = None
    when: dict[str, Cond | Scalar] = Field(default_factory=dict)
    #: Events that clear this rule's fault (same key template).
    clear_on: list[str] = Field(default_factory=list)
    #: Attribute conditions on a clear_on event (e.g. gas back under the lower threshold: hysteresis).
    clear_when: dict[str, Cond | Scalar] = Field(default_factory=dict)
    #: How long a fault must persist (not cleared) before it becomes active (hold-for);
    #: 0 = at once. Until then the alarm is *pending*: recorded, no ticket.
    hold_for: Seconds = 0.0
    #: Alternatively: at least this many occurrences (within ``hold_for``, when given).
    hold_count: int = Field(default=0, ge=0)
    #: Escalation over time: [[after, level], ...] — still not cleared ``after`` (seconds or
    #: a duration string) from its first occurrence → the alarm's level becomes ``level``.
    escalate: list[tuple[Seconds, int]] = Field(default_factory=list)
    #: Flap detection: this many raise/clear transitions of one fault key within
    #: ``flap_window`` turn it into ONE level-4 "intermittent" alarm; 0 = off.
    flap_count: int = Field(default=0, ge=0)
    #: The flap window; the intermittent alarm holds until the key is quiet this long.
    flap_window: Seconds = 0.0
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _level_needed(self) -> RuleModel:
        if self.action == "raise" and self.level is None:
            raise ValueError("a raise rule needs a level (1-4)")
        if self.action == "clear" and self.clear_on:
            raise ValueError("clear_on belongs on a raise rule")
        for _, lvl in self.escalate:
            if not 1 <= lvl <= 4:
                raise ValueError("escalate levels must be 1-4")
            if self.level is not None and lvl >= self.level:
                raise ValueError(f"escalate level {lvl} is not more severe than the rule's level {self.level}")
        if self.action == "clear" and (self.hold_for or self.hold_count or self.escalate or self.flap_count):
            raise ValueError("hold_for, hold_count, escalate and flap_count belong on a raise rule")
        if self.flap_count == 1:
            raise ValueError("flap_count must be 0 (off) or at least 2 transitions")
        if self.flap_count and self.flap_window <= 0:
            raise ValueError("flap_count needs a flap_window (e.g. '10m')")
        return self


class PackInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    version: str = "1"


class PackModel(BaseModel):
    """A rule pack file: ``[pack]`` then ``[[rules]]``."""

    model_config = ConfigDict(extra="forbid")

    pack: PackInfo
    rules: list[RuleModel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> PackModel:
        seen: set[str] = set()
        for r in self.rules:
            if r.id in seen:
                raise ValueError(f"duplicate rule id {r.id!r}")
            seen.add(r.id)
        return self


def parse_pack(data: dict[str, Any]) -> PackModel:
    """Validate a parsed TOML document as a rule pack (raises pydantic.ValidationError)."""
    return PackModel.model_validate(data)
