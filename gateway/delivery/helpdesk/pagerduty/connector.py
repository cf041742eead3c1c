"""The PagerDuty Events API v2 connector.

===========================================  ==============================================
message                                      event
===========================================  ==============================================
open, update, level, reopen                  ``trigger`` (same ``dedup_key``: PagerDuty
                                             folds it into the open alert and updates it)
ack; update whose ticket status is           ``acknowledge``
``acknowledged``
resolve, close; update/level of a ticket     ``resolve``
already resolved or closed
comment                                      nothing (the Events API has no comments)
===========================================  ==============================================

``dedup_key`` is the ticket key (the ``open`` message's key), so PagerDuty itself makes
a repeated event harmless: a repeated trigger updates the same alert, a repeated
resolve is a no-op. There is nothing to look up (``find_remote`` returns ``None``) and
nothing to poll. Severity comes from the fault level: 1 critical, 2 error, 3 warning,
4 info. PagerDuty answers 202 when it has queued the event; 400 (invalid event) is
permanent, 429 and 5xx are retried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from gateway.delivery.helpdesk.base import (
    KINDS,
    DeliveryResult,
    HttpConnector,
    OutboxMessage,
    RemoteChange,
    classify_http_error,
    iso_utc,
    send,
    ticket_key_of,
    to_json,
)
from gateway.delivery.helpdesk.pagerduty.config import PagerDutyConfig
from gateway.errors import DeliveryError
from gateway.model import FaultLevel

__all__ = ["DEDUP_KEY_MAX", "SEVERITY", "SUMMARY_MAX", "PagerDuty", "PagerDutyConfig"]

#: Fault level -> PagerDuty severity.
SEVERITY = {1: "critical", 2: "error", 3: "warning", 4: "info"}
SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
_DONE = ("resolved", "closed")


class PagerDuty(HttpConnector):
    """Sends trigger / acknowledge / resolve events keyed by the ticket key."""

    def __init__(self, config: PagerDutyConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.name = config.name
        self._client = httpx.AsyncClient(timeout=config.timeout, transport=transport)

    @staticmethod
    def action(msg: OutboxMessage) -> str | None:
        """The event action for ``msg``, or ``None`` when PagerDuty has nothing to receive."""
        status = str(msg.payload.get("status") or "").lower()
        if msg.kind in ("resolve", "close"):
            return "resolve"
        if msg.kind == "ack" or (msg.kind == "update" and status == "acknowledged"):
            return "acknowledge"
        if msg.kind == "comment":
            return None
        if msg.kind in ("update", "level") and status in _DONE:
            return "resolve"
        return "trigger"

    def event(self, msg: OutboxMessage) -> dict[str, Any] | None:
        """The Events API v2 body for ``msg`` (``None``: nothing to send)."""
        action = self.action(msg)
        if action is None:
            return None
        dedup_key = ticket_key_of(msg)
        if len(dedup_key) > DEDUP_KEY_MAX:
            raise ValueError(f"dedup_key longer than {DEDUP_KEY_MAX} characters")
        body: dict[str, Any] = {
            "routing_key": self.config.routing_key.get_secret_value(),
            "event_action": action,
            "dedup_key": dedup_key,
        }
        if action != "trigger":
            return body
        p = msg.payload
        level = FaultLevel.parse(p["level"])
        title = str(p.get("title") or p.get("alarm_key") or dedup_key)
        summary = f"[L{int(level)} {level.label}] {title}"
        payload: dict[str, Any] = {
            "summary": summary[:SUMMARY_MAX],
            "source": str(p.get("device") or "unknown"),
            "severity": SEVERITY[int(level)],
        }
        if iso_utc(p.get("opened_at")):
            payload["timestamp"] = iso_utc(p.get("opened_at"))
        optional = {
            "component": p.get("alarm_key"),
            "group": p.get("site"),
            "class": p.get("class") or level.label,
        }
        payload.update({k: str(v) for k, v in optional.items() if v})
        payload["custom_details"] = {
            "ticket_id": msg.ticket_id,
            "ticket_key": dedup_key,
            "level": int(level),
            "level_name": level.label,
            "site": p.get("site"),
            "region": p.get("region"),
            "first_event": p.get("first_event"),
            "occurrences": p.get("count"),
            "status": p.get("status"),
            "note": p.get("note") or p.get("comment"),
            "sla_due": {
                str(c.get("kind")): iso_utc(c.get("due_at"))
                for c in p.get("clocks") or ()
                if isinstance(c, Mapping)
            },
        }
        body["payload"] = payload
        body["client"] = self.config.client
        if self.config.client_url:
            body["client_url"] = self.config.client_url
        return body

    async def deliver(self, msg: OutboxMessage) -> DeliveryResult:
        if msg.kind not in KINDS:
            raise DeliveryError("mapping", False, f"unknown message kind {msg.kind!r}")
        try:
            body = self.event(msg)
        except (KeyError, TypeError, ValueError) as exc:
            raise classify_http_error(None, exc) from exc
        if body is None:
            return DeliveryResult(msg.remote_id or ticket_key_of(msg), f"{msg.kind}: nothing to send")
        response = await send(
            self._client,
            "POST",
            self.config.url,
            content=to_json(body),
            headers={"Content-Type": "application/json"},
            ok=(200, 201, 202),
        )
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        dedup_key = answer.get("dedup_key") if isinstance(answer, Mapping) else None
        return DeliveryResult(
            str(dedup_key or body["dedup_key"]), f"{body['event_action']}: HTTP {response.status_code}"
        )

    async def find_remote(self, key: str) -> str | None:
        """The Events API cannot be queried; ``dedup_key`` makes repeats harmless instead."""
        return None

    async def poll_changes(self, remote_ids: Sequence[str], since: float) -> list[RemoteChange]:
        """Push only (reading incidents back would need the REST API and another key)."""
        return []
