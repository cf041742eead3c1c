"""``[[helpdesk]]`` with ``type = "django-helpdesk"``: the config model (pydantic + stdlib only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["DjangoHelpdeskConfig"]


class DjangoHelpdeskConfig(BaseModel):
    """``[[helpdesk]]`` with ``type = "django-helpdesk"``.

    Attributes:
        type: connector type (``django-helpdesk``).
        name: this connector's name in logs, metrics and the outbox.
        url: base URL of the Django site, e.g. ``https://helpdesk.example.com``.
        api_path: where django-helpdesk's API is mounted under ``url``.
        token: DRF token of a staff account used only by the gateway.
        queue: id of the queue new tickets go to.
        timeout: seconds per HTTP request (connect, read, write, pool each).
        key_field: name of the varchar custom field that holds the gateway's ticket key.
        priority: fault level (1-4) -> django-helpdesk priority (1-5, 1 highest).
        marker: prefix of every follow-up the gateway writes.
        public_followups: make the gateway's follow-ups visible to the submitter.
        page_size: tickets per page when looking a key up.
        lookup_on_first_attempt: look among open tickets before a first ``open``.
        poll_concurrency: tickets fetched at once by ``poll_changes``.
        ack_titles: follow-up title prefixes that mean someone took the ticket
            (django-helpdesk writes them in the server's language).
        adopt: pick up tickets people create in ``queue`` (open, without the gateway's
            key) as gateway tickets whose clocks start when they were created there.
        adopt_max_age: seconds; older tickets in the queue are not picked up.
        device_field: custom field naming the device of a picked-up ticket; without it,
            the title must start with ``[device-id]``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["django-helpdesk"] = "django-helpdesk"
    name: str = "django-helpdesk"
    url: str
    api_path: str = "/helpdesk/api"
    token: SecretStr
    queue: int = Field(gt=0)
    timeout: float = Field(default=10.0, gt=0)
    key_field: str = Field(default="dedup_key", pattern=r"^[A-Za-z0-9_]+$")
    priority: dict[int, int] = Field(default_factory=lambda: {1: 1, 2: 2, 3: 3, 4: 4})
    marker: str = Field(default="[gateway]", min_length=1)
    public_followups: bool = False
    # django-helpdesk loads the custom fields of every matching ticket for each list
    # page it serves, whatever the page size: fewer, larger pages cost it far less.
    page_size: int = Field(default=500, ge=1, le=5000)
    lookup_on_first_attempt: bool = True
    poll_concurrency: int = Field(default=4, ge=1, le=64)
    ack_titles: tuple[str, ...] = ("Assigned to", "Ticket Opened & Assigned")
    adopt: bool = False
    adopt_max_age: float = Field(default=86400.0, gt=0)
    device_field: str = Field(default="device", pattern=r"^[A-Za-z0-9_]+$")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @field_validator("api_path")
    @classmethod
    def _path(cls, v: str) -> str:
        return "/" + v.strip("/")

    @field_validator("priority")
    @classmethod
    def _priorities(cls, v: dict[int, int]) -> dict[int, int]:
        for level, prio in v.items():
            if level not in (1, 2, 3, 4):
                raise ValueError(f"level {level} is not 1-4")
            if not 1 <= prio <= 5:
                raise ValueError(f"priority {prio} for level {level} is not 1-5")
        return v
