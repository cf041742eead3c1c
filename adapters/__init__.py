"""Protocol adapters. Each turns bytes from devices into ``gateway.model.Event``s.

``REGISTRY`` is a static table of :class:`AdapterSpec` (no registration by import side
effect). ``gateway.config`` reads each kind's name and config model from it (the
``[[adapters.<name>]]`` tables); the composition root (``gateway.app``) reads the factories.
A factory is named by its dotted path and imported only when adapters are built, so
loading a config imports no client library (aiomqtt, pysnmp, ...).

Adding an adapter kind: a package with a ``config.py`` (the model: pydantic, stdlib and
leaf modules only) and an async ``build(configs, ctx)`` factory, plus one row below.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from pydantic import BaseModel

from adapters.base import AdapterFactory
from adapters.mqtt.config import MqttConfig
from adapters.poll.config import PollConfig
from adapters.snmp.config import SnmpListenerConfig

__all__ = ["REGISTRY", "AdapterSpec"]


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    """One adapter kind.

    Attributes:
        name: the kind: its config entries are ``[[adapters.<name>]]``.
        config_model: the model of one entry (must forbid unknown keys and have a ``name``).
        factory: ``"module:function"`` of its :data:`~adapters.base.AdapterFactory`,
            imported by :meth:`load_factory` only.
    """

    name: str
    config_model: type[BaseModel]
    factory: str

    def load_factory(self) -> AdapterFactory:
        """Import and return the factory (this is where the adapter's libraries load)."""
        module, _, attr = self.factory.partition(":")
        return cast(AdapterFactory, getattr(importlib.import_module(module), attr))


def _table(*specs: AdapterSpec) -> Mapping[str, AdapterSpec]:
    return {s.name: s for s in specs}


#: Adapter kinds by name, in start order.
REGISTRY: Mapping[str, AdapterSpec] = _table(
    AdapterSpec("snmp", SnmpListenerConfig, "adapters.snmp.receiver:build"),
    AdapterSpec("mqtt", MqttConfig, "adapters.mqtt.adapter:build"),
    AdapterSpec("poll", PollConfig, "adapters.poll.adapter:build"),
)
