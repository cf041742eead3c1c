"""The generic signed-webhook connector, its wire schema and signature check.

Every outbox message becomes one ``POST`` of a JSON document to ``url``::

    {
      "schema": "gateway.delivery.helpdesk.webhook/v1",
      "idempotency_key": "gw-noc1-t42",        # same as the Idempotency-Key header
      "message_id": 17,                        # outbox row id (increases per ticket)
      "ticket_id": 42,                         # the gateway's ticket id
      "ticket_key": "gw-noc1-t42",             # stable per ticket (the open's key)
      "kind": "open",                          # open|update|comment|resolve|close|reopen|level|ack
      "remote_id": null,                       # the receiver's id once it told us one
      "attempt": 1,                            # 1 for the first try
      "sent_at": "2025-01-01T00:00:00Z",
      "ticket": { ...the ticket snapshot: title, device, site, region, level, alarm_key,
                  first_event, count, opened_at, clocks, status, note, resolution... }
    }

:data:`WEBHOOK_SCHEMA` is the JSON Schema of that document.

Headers:

- ``X-Gateway-Timestamp``: Unix seconds when it was signed.
- ``X-Gateway-Signature``: ``sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``
  over the exact body bytes; receivers check it with :func:`verify_signature`
  (constant-time compare, and a maximum age against replays).
- ``Idempotency-Key``: the message key. A retry carries the same key and ticket
  snapshot (``attempt``, ``sent_at``, timestamp and signature change); receivers must
  treat a repeated key as already done and answer 2xx.

Answer: any 2xx is delivered. A JSON answer may carry ``{"remote_id": "..."}`` (or
``"id"``), the receiver's ticket id, which later messages then carry as ``remote_id``;
without one the ticket key stands in for it.
3xx and 4xx other than 408/429 are permanent; timeouts, 408, 429 and 5xx are retried.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from gateway.delivery.helpdesk.base import (
    KINDS,
    DeliveryResult,
    HttpConnector,
    OutboxMessage,
    RemoteChange,
    send,
    ticket_key_of,
    to_json,
)
from gateway.delivery.helpdesk.webhook.config import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookConfig,
)
from gateway.errors import DeliveryError

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

SCHEMA_ID = "gateway.delivery.helpdesk.webhook/v1"

#: JSON Schema (draft 2020-12) of the document POSTed to the receiver.
WEBHOOK_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "Device alarm gateway help-desk message",
    "type": "object",
    "required": [
        "schema",
        "idempotency_key",
        "message_id",
        "ticket_id",
        "ticket_key",
        "kind",
        "remote_id",
        "attempt",
        "sent_at",
        "ticket",
    ],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "idempotency_key": {"type": "string", "minLength": 1},
        "message_id": {"type": "integer"},
        "ticket_id": {"type": "integer"},
        "ticket_key": {"type": "string", "minLength": 1},
        "kind": {"enum": sorted(KINDS)},
        "remote_id": {"type": ["string", "null"]},
        "attempt": {"type": "integer", "minimum": 1},
        "sent_at": {"type": "string", "format": "date-time"},
        "ticket": {
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "device": {"type": "string"},
                "site": {"type": "string"},
                "region": {"type": "string"},
                "level": {"type": "integer", "minimum": 1, "maximum": 4},
                "alarm_key": {"type": "string"},
                "count": {"type": "integer", "minimum": 0},
                "opened_at": {"type": "string"},
                "status": {"type": "string"},
                "clocks": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["kind"],
                        "properties": {
                            "kind": {"type": "string"},
                            "due_at": {"type": ["number", "string", "null"]},
                            "state": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}


def _key_bytes(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes | SecretStr, timestamp: str | int, body: bytes | str) -> str:
    """The ``X-Gateway-Signature`` value: ``sha256=`` + hex HMAC-SHA256 over ``f"{timestamp}.{body}"``."""
    raw = body.encode() if isinstance(body, str) else body
    mac = hmac.new(_key_bytes(secret), f"{timestamp}.".encode() + raw, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str | bytes | SecretStr,
    timestamp: str | None,
    body: bytes | str,
    header: str | None,
    *,
    max_age: float = 300.0,
    now: float | None = None,
) -> bool:
    """Check a received webhook, for receivers.

    Args:
        secret: the shared secret.
        timestamp: the ``X-Gateway-Timestamp`` header as received.
        body: the raw request body, exactly as received (not re-serialised JSON).
        header: the ``X-Gateway-Signature`` header as received.
        max_age: reject timestamps further than this many seconds from ``now``
            (either way), against replays.
        now: the receiver's time (epoch seconds); the system clock if ``None``.

    Returns:
        ``True`` only for a fresh timestamp and a matching signature.
    """
    if not timestamp or not header or not header.startswith("sha256="):
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > max_age:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), header.encode())


class Webhook(HttpConnector):
    """POSTs each message, signed, to one URL (see the module docstring for the contract)."""

    def __init__(
        self,
        config: WebhookConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.name = config.name
        self._clock = clock
        self._client = httpx.AsyncClient(
            timeout=config.timeout,
            headers={"User-Agent": "device-alarm-gateway", **config.headers},
            transport=transport,
        )

    def document(self, msg: OutboxMessage, now: float) -> dict[str, Any]:
        """The JSON document for ``msg`` (see :data:`WEBHOOK_SCHEMA`)."""
        return {
            "schema": SCHEMA_ID,
            "idempotency_key": msg.key,
            "message_id": msg.id,
            "ticket_id": msg.ticket_id,
            "ticket_key": ticket_key_of(msg),
            "kind": msg.kind,
            "remote_id": msg.remote_id,
            "attempt": msg.attempts + 1,
            "sent_at": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ticket": dict(msg.payload),
        }

    async def deliver(self, msg: OutboxMessage) -> DeliveryResult:
        if msg.kind not in KINDS:
            raise DeliveryError("mapping", False, f"unknown message kind {msg.kind!r}")
        now = self._clock()
        body = to_json(self.document(msg, now))
        timestamp = str(int(now))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.config.secret, timestamp, body),
            IDEMPOTENCY_HEADER: msg.key,
        }
        response = await send(
            self._client, "POST", self.config.url, content=body, headers=headers, ok=tuple(range(200, 300))
        )
        remote_id = msg.remote_id or ticket_key_of(msg)
        if response.content and response.headers.get("content-type", "").startswith("application/json"):
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if isinstance(answer, Mapping):
                told = answer.get("remote_id") or answer.get("id")
                if told not in (None, ""):
                    remote_id = str(told)
        return DeliveryResult(remote_id, f"HTTP {response.status_code}")

    async def find_remote(self, key: str) -> str | None:
        """A webhook cannot be asked; receivers deduplicate by ``Idempotency-Key``."""
        return None

    async def poll_changes(self, remote_ids: Sequence[str], since: float) -> list[RemoteChange]:
        """Push only: changes come back (if at all) through the gateway's own API."""
        return []
