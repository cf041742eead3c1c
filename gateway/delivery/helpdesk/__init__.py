"""Help-desk connectors: the contract, the connectors and the static table of them.

``CONNECTORS`` maps the ``type`` of a ``[[helpdesk]]`` config entry to its
:class:`ConnectorSpec`: the config model (``gateway.config`` validates entries with it)
and the factory, named by dotted path, that the composition root calls with the
validated entry. Nothing registers itself on import, and importing this package loads
no HTTP client: the contract (``base``) and the connectors load on first use.

Adding a connector: a package with a ``config.py`` (the model: ``type: Literal[<name>]``,
``name``, pydantic + stdlib only) and a ``connector.py`` (a :class:`HelpDesk` built from
the model), plus one row below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from pydantic import BaseModel

from gateway.delivery.helpdesk.django_helpdesk.config import DjangoHelpdeskConfig
from gateway.delivery.helpdesk.notify.config import NotifyConfig
from gateway.delivery.helpdesk.pagerduty.config import PagerDutyConfig
from gateway.delivery.helpdesk.webhook.config import WebhookConfig

if TYPE_CHECKING:
    from gateway.delivery.helpdesk.base import (
        DeliveryResult,
        HelpDesk,
        OutboxMessage,
        RemoteChange,
        classify_http_error,
    )
    from gateway.delivery.helpdesk.django_helpdesk.connector import DjangoHelpdesk
    from gateway.delivery.helpdesk.pagerduty.connector import PagerDuty
    from gateway.delivery.helpdesk.webhook.connector import Webhook, verify_signature

__all__ = [
    "CONNECTORS",
    "ConnectorConfig",
    "ConnectorSpec",
    "DeliveryResult",
    "DjangoHelpdesk",
    "DjangoHelpdeskConfig",
    "HelpDesk",
    "OutboxMessage",
    "PagerDuty",
    "PagerDutyConfig",
    "RemoteChange",
    "Webhook",
    "WebhookConfig",
    "classify_http_error",
    "verify_signature",
]


class ConnectorConfig(Protocol):
    """What every connector's config model has: the entry's ``type`` and its ``name``."""

    @property
    def type(self) -> str: ...

    @property
    def name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """One connector type.

    Attributes:
        name: the ``type`` of its ``[[helpdesk]]`` entries (the model's ``type`` literal).
        config_model: the model of one entry (must forbid unknown keys).
        factory: ``"module:callable"`` that builds the :class:`HelpDesk` from a validated
            entry (usually the connector class), imported by :meth:`load_factory` only.
    """

    name: str
    config_model: type[BaseModel]
    factory: str

    def load_factory(self) -> Callable[[Any], HelpDesk]:
        """Import and return the factory (this is where the connector's HTTP client loads)."""
        module, _, attr = self.factory.partition(":")
        return cast("Callable[[Any], HelpDesk]", getattr(importlib.import_module(module), attr))


def _table(*specs: ConnectorSpec) -> Mapping[str, ConnectorSpec]:
    return {s.name: s for s in specs}


#: Connector types by the ``type`` of their ``[[helpdesk]]`` entries.
CONNECTORS: Mapping[str, ConnectorSpec] = _table(
    ConnectorSpec(
        "django-helpdesk", DjangoHelpdeskConfig, "gateway.delivery.helpdesk.django_helpdesk.connector:DjangoHelpdesk"
    ),
    ConnectorSpec("webhook", WebhookConfig, "gateway.delivery.helpdesk.webhook.connector:Webhook"),
    ConnectorSpec("pagerduty", PagerDutyConfig, "gateway.delivery.helpdesk.pagerduty.connector:PagerDuty"),
    # Not a help desk: notices in chat and e-mail (gateway.delivery.helpdesk.notify), through the same outbox.
    ConnectorSpec("notify", NotifyConfig, "gateway.delivery.helpdesk.notify.connector:Notifier"),
)

_LAZY = {
    "DeliveryResult": "base",
    "HelpDesk": "base",
    "OutboxMessage": "base",
    "RemoteChange": "base",
    "classify_http_error": "base",
    "DjangoHelpdesk": "django_helpdesk.connector",
    "PagerDuty": "pagerduty.connector",
    "Webhook": "webhook.connector",
    "verify_signature": "webhook.connector",
}


def __getattr__(name: str) -> Any:
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
