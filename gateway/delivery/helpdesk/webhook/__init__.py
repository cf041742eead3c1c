"""The generic signed-webhook connector (wire schema and signature check in ``connector``).

:mod:`~gateway.delivery.helpdesk.webhook.config` holds the ``[[helpdesk]]`` model (what
``gateway.config`` imports); :mod:`~gateway.delivery.helpdesk.webhook.connector` the
connector. The connector's names load on first use, so importing the config does not
load the HTTP client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gateway.delivery.helpdesk.webhook.config import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookConfig,
)

if TYPE_CHECKING:
    from gateway.delivery.helpdesk.webhook.connector import (
        SCHEMA_ID,
        WEBHOOK_SCHEMA,
        Webhook,
        sign,
        verify_signature,
    )

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SCHEMA_ID",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WEBHOOK_SCHEMA",
    "Webhook",
    "WebhookConfig",
    "sign",
    "verify_signature",
]

_CONNECTOR = frozenset({"SCHEMA_ID", "WEBHOOK_SCHEMA", "Webhook", "sign", "verify_signature"})


def __getattr__(name: str) -> Any:
    if name in _CONNECTOR:
        return getattr(importlib.import_module(f"{__name__}.connector"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
