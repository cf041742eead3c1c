"""Protocol adapters. Each turns bytes from devices into ``gateway.model.Event``s.

``REGISTRY`` is a static table (no registration by import side effect); only the
composition root (``gateway.app``) reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["REGISTRY"]


def _snmp(cfg: Any, *, clock: Any, resolver: Any = None, state_dir: Any = None, **_: Any) -> Any:
    from adapters.snmp.receiver import SnmpAdapter

    return SnmpAdapter(cfg, clock, resolver=resolver, state_dir=state_dir)


def _mqtt(cfg: Any, *, clock: Any, instance: str, **_: Any) -> Any:
    from adapters.mqtt import MqttAdapter, default_client_id

    return MqttAdapter(cfg, clock, default_client_id=default_client_id(instance, cfg.name))


REGISTRY: dict[str, Callable[..., Any]] = {
    "snmp": _snmp,
    "mqtt": _mqtt,
}
