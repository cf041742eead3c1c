"""The django-helpdesk connector (REST API of django-helpdesk 2.6).

:mod:`~gateway.delivery.helpdesk.django_helpdesk.config` holds the ``[[helpdesk]]`` model (what
``gateway.config`` imports); :mod:`~gateway.delivery.helpdesk.django_helpdesk.connector` the
connector. The connector's names load on first use, so importing the config does not
load the HTTP client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gateway.delivery.helpdesk.django_helpdesk.config import DjangoHelpdeskConfig

if TYPE_CHECKING:
    from gateway.delivery.helpdesk.django_helpdesk.connector import (
        STATUS_CLOSED,
        STATUS_DUPLICATE,
        STATUS_OPEN,
        STATUS_REOPENED,
        STATUS_RESOLVED,
        DjangoHelpdesk,
    )

__all__ = [
    "STATUS_CLOSED",
    "STATUS_DUPLICATE",
    "STATUS_OPEN",
    "STATUS_REOPENED",
    "STATUS_RESOLVED",
    "DjangoHelpdesk",
    "DjangoHelpdeskConfig",
]

_CONNECTOR = frozenset(
    {"STATUS_CLOSED", "STATUS_DUPLICATE", "STATUS_OPEN", "STATUS_REOPENED", "STATUS_RESOLVED", "DjangoHelpdesk"}
)


def __getattr__(name: str) -> Any:
    if name in _CONNECTOR:
        return getattr(importlib.import_module(f"{__name__}.connector"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
