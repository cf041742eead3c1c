"""``[[helpdesk]]`` with ``type = "pagerduty"``: the config model (pydantic + stdlib only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["PagerDutyConfig"]


class PagerDutyConfig(BaseModel):
    """``[[helpdesk]]`` with ``type = "pagerduty"``.

    Attributes:
        type: connector type (``pagerduty``).
        name: this connector's name in logs, metrics and the outbox.
        routing_key: the integration key of a PagerDuty service (Events API v2).
        url: the Events API v2 enqueue endpoint.
        timeout: seconds per request (connect, read, write, pool each).
        client: shown in PagerDuty as the monitoring client that sent the event.
        client_url: optional link back (e.g. the NOC board).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["pagerduty"] = "pagerduty"
    name: str = "pagerduty"
    routing_key: SecretStr = Field(min_length=1)
    url: str = "https://events.pagerduty.com/v2/enqueue"
    timeout: float = Field(default=10.0, gt=0)
    client: str = "device-alarm-gateway"
    client_url: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v
