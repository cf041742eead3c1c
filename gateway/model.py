"""Shared vocabulary: fault levels, events and devices (leaf module, stdlib only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple, TypeVar, dataclass_transform

__all__ = ["UNKNOWN_CLASS", "Device", "Event", "FaultLevel", "OutboxMessage", "parse_poll_spec"]

UNKNOWN_CLASS = "unknown"

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value(cls: type[_T]) -> type[_T]:
    """A frozen dataclass to the type checker (mypy refuses assignments to its fields), a
    plain slotted one at run time: ``frozen=True`` costs an ``object.__setattr__`` per field
    on creation — a microsecond per event, a tenth of what a heartbeat may cost in all."""
    return dataclass(slots=True)(cls)


class FaultLevel(IntEnum):
    """The four contractual fault levels (DESIGN §2). Lower number = more severe."""

    CRITICAL = 1
    MAJOR = 2
    MINOR = 3
    WARNING = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def label_zh(self) -> str:
        return ("一级故障", "二级故障", "三级故障", "四级故障")[self.value - 1]

    @classmethod
    def parse(cls, value: int | str | FaultLevel) -> FaultLevel:
        """Accept 1..4, "1".."4" or a name such as "critical"."""
        if isinstance(value, FaultLevel):
            return value
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return cls(int(value))
        try:
            return cls[str(value).upper()]
        except KeyError:
            raise ValueError(f"unknown fault level {value!r} (use 1-4 or critical/major/minor/warning)") from None


@value
class Event:
    """One observation from a device. Cheap and immutable: the hot path makes many.

    Attributes:
        ts: when it happened (epoch seconds, UTC); the receive time unless the
            source carried a sane timestamp of its own.
        source: the adapter instance that produced it (e.g. ``snmp``, ``mqtt``).
        device: device id (inventory id, or ``unknown:<address>`` / the raw id).
        name: what happened, e.g. ``IF-MIB::linkDown``, ``heartbeat``, ``heartbeat.lost``.
        attrs: named values (varbinds by name, payload fields).
        peer: network address of the sender, when there is one.
    """

    ts: float
    source: str
    device: str
    name: str
    attrs: Mapping[str, Any] = field(default_factory=dict)
    peer: str | None = None


@dataclass(frozen=True, slots=True)
class Device:
    """An inventory entry. Devices not in the inventory are represented with ``known=False``."""

    id: str
    device_class: str = UNKNOWN_CLASS
    site: str = ""
    region: str = ""
    policy: str = ""
    parent: str | None = None
    addresses: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    heartbeat_interval: float | None = None
    name: str = ""
    known: bool = True
    #: How the poller checks it: "" (its poll targets decide), "none", or e.g. "snmp:cred", "icmp", "snmp+icmp".
    poll: str = ""


class OutboxMessage(NamedTuple):
    """A message one help desk must see, written in the same transaction as the change that
    caused it (the decision core makes them; the store keeps them; the outbox worker sends them).

    ``key`` is the message's idempotency key at the help desk: ``gw-<instance>-t<ticket>`` for
    an ``open``, that plus ``-m<unique>`` otherwise; ``payload`` must be JSON-serialisable.
    """

    connector: str
    ticket_id: int
    key: str
    kind: str
    payload: dict[str, Any]


def parse_poll_spec(spec: str) -> tuple[tuple[str, ...], str] | None:
    """A device's ``poll`` field: ``""`` (the poller's targets decide), ``"none"`` (never
    polled), or methods joined by ``+`` with an optional credential name: ``"snmp:core-v3"``,
    ``"icmp"``, ``"snmp+icmp:public"``. Returns ``(methods, credential)``, ``((), "")`` for
    ``"none"`` and ``None`` for ``""``.

    Raises:
        ValueError: an unknown method.
    """
    spec = spec.strip()
    if not spec:
        return None
    if spec == "none":
        return (), ""
    methods, _, cred = spec.partition(":")
    out = tuple(m.strip() for m in methods.split("+") if m.strip())
    if not out or any(m not in ("snmp", "icmp") for m in out):
        raise ValueError(f"poll {spec!r}: use snmp and/or icmp joined by '+' and an optional ':credential' "
                         "(e.g. 'snmp+icmp:core-v3'), or 'none'")
    return out, cred.strip()
