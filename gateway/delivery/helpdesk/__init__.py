"""Help-desk connectors: the contract, the connectors and the static table of them.

``CONNECTORS`` maps the ``type`` of a ``[[helpdesk]]`` config entry to its config model
and connector class; the composition root validates the entry with the model and
builds the connector with ``cls(config)``. Nothing registers itself on import.
"""

from __future__ import annotations

from pydantic import BaseModel

from gateway.delivery.helpdesk.base import (
    DeliveryResult,
    HelpDesk,
    OutboxMessage,
    RemoteChange,
    classify_http_error,
)
from gateway.delivery.helpdesk.django_helpdesk import DjangoHelpdesk, DjangoHelpdeskConfig
from gateway.delivery.helpdesk.pagerduty import PagerDuty, PagerDutyConfig
from gateway.delivery.helpdesk.webhook import Webhook, WebhookConfig, verify_signature

__all__ = [
    "CONNECTORS",
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

CONNECTORS: dict[str, tuple[type[BaseModel], type]] = {
    "django-helpdesk": (DjangoHelpdeskConfig, DjangoHelpdesk),
    "webhook": (WebhookConfig, Webhook),
    "pagerduty": (PagerDutyConfig, PagerDuty),
}
