"""Failpoints: named places where the process can be made to fail on purpose, to test crash
safety at an exact point (the pattern of fail-rs and Go's failpoint). Off unless the
environment variable ``GATEWAY_FAILPOINTS`` names some, e.g.
``GATEWAY_FAILPOINTS="before_commit_callbacks=exit"``; when it is unset, :data:`ARMED` is
empty and a call site costs one truth test of a module global.

Places (searched for ``failpoints.hit``):

* ``before_commit_callbacks``: the pipeline committed a batch that holds events whose
  senders wait for durability (INFORMs, QoS 1), and has not yet called back (answered).
* ``forward_after_ack``: an edge's message was acknowledged by JetStream and its row is
  not deleted yet from the forward queue (it is published again after a restart).
* ``report_delivered_before_close``: a ticket's incident report is recorded delivered and
  the ticket is not closed yet (start-up closes it at the delivery time).
* ``service_report_queued``: a scheduled service report and its once-marker are committed
  to the outbox and not yet sent (the restart sends it, once).

Actions: ``exit`` (``os._exit(137)``, as abrupt as kill -9 for the store and the peers),
``raise`` (:class:`FailpointError`).
"""

from __future__ import annotations

import os

__all__ = ["ARMED", "FailpointError", "hit", "parse"]


class FailpointError(RuntimeError):
    """Raised at a failpoint armed with ``raise``."""


def parse(spec: str) -> dict[str, str]:
    """``"a=exit,b=raise"`` -> ``{"a": "exit", "b": "raise"}``."""
    out: dict[str, str] = {}
    for part in spec.split(","):
        name, _, action = part.strip().partition("=")
        if name:
            out[name.strip()] = action.strip() or "exit"
    return out


ARMED: dict[str, str] = parse(os.environ.get("GATEWAY_FAILPOINTS", ""))


def hit(name: str) -> None:
    """Fail here if ``name`` is armed."""
    action = ARMED.get(name)
    if action is None:
        return
    if action == "raise":
        raise FailpointError(name)
    os.write(2, f"failpoint {name}: exiting\n".encode())
    os._exit(137)
