"""CLI commands for tickets and SLA: ticket actions, ``report``, ``sla-report``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["register"]


def register(sub: Any, ticket_sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """Add ticket actions (to ``gateway ticket``), ``report`` and ``sla-report``."""
