"""The PagerDuty Events API v2 connector.

:mod:`~gateway.delivery.helpdesk.pagerduty.config` holds the ``[[helpdesk]]`` model (what
``gateway.config`` imports); :mod:`~gateway.delivery.helpdesk.pagerduty.connector` the
connector. The connector's names load on first use, so importing the config does not
load the HTTP client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gateway.delivery.helpdesk.pagerduty.config import PagerDutyConfig

if TYPE_CHECKING:
    from gateway.delivery.helpdesk.pagerduty.connector import (
        DEDUP_KEY_MAX,
        SEVERITY,
        SUMMARY_MAX,
        PagerDuty,
    )

__all__ = [
    "DEDUP_KEY_MAX",
    "SEVERITY",
    "SUMMARY_MAX",
    "PagerDuty",
    "PagerDutyConfig",
]

_CONNECTOR = frozenset({"DEDUP_KEY_MAX", "SEVERITY", "SUMMARY_MAX", "PagerDuty"})


def __getattr__(name: str) -> Any:
    if name in _CONNECTOR:
        return getattr(importlib.import_module(f"{__name__}.connector"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
