"""``[[helpdesk]]`` with ``type = "webhook"``: the config model and the headers it may not set
(pydantic + stdlib only: loading a config does not load the HTTP client)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["IDEMPOTENCY_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookConfig"]

TIMESTAMP_HEADER = "X-Gateway-Timestamp"
SIGNATURE_HEADER = "X-Gateway-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_RESERVED = {h.lower() for h in (TIMESTAMP_HEADER, SIGNATURE_HEADER, IDEMPOTENCY_HEADER, "content-type")}


class WebhookConfig(BaseModel):
    """``[[helpdesk]]`` with ``type = "webhook"``.

    Attributes:
        type: connector type (``webhook``).
        name: this connector's name in logs, metrics and the outbox.
        url: where to POST.
        secret: shared HMAC key; the receiver verifies the signature with it.
        timeout: seconds per request (connect, read, write, pool each).
        headers: extra headers (e.g. an ``Authorization``); may not replace the
            signature, timestamp, idempotency or content-type headers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["webhook"] = "webhook"
    name: str = "webhook"
    url: str
    secret: SecretStr = Field(min_length=16)
    timeout: float = Field(default=10.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    @field_validator("headers")
    @classmethod
    def _not_reserved(cls, v: dict[str, str]) -> dict[str, str]:
        clash = sorted(h for h in v if h.lower() in _RESERVED)
        if clash:
            raise ValueError(f"headers set by the connector cannot be configured: {', '.join(clash)}")
        return v
