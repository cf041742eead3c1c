"""``[[helpdesk]]`` with ``type = "notify"``: the config model (pydantic + stdlib only: loading a
config does not load apprise)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["EVENTS", "NotifyConfig"]

#: What can be worth a notice: a new ticket, an SLA warning or breach, an escalation step,
#: the service restored, a ticket closed.
EVENTS = ("open", "sla_warning", "sla_breach", "escalation", "restore", "close")
Event = Literal["open", "sla_warning", "sla_breach", "escalation", "restore", "close"]
DEFAULT_EVENTS: tuple[Event, ...] = ("open", "sla_warning", "sla_breach", "escalation")


class NotifyConfig(BaseModel):
    """``[[helpdesk]]`` with ``type = "notify"``: one audience (a team's chat group, the NOC's
    mailbox, a customer's contacts) reached through one or more URLs.

    Attributes:
        type: connector type (``notify``).
        name: this notifier's name in logs, the outbox and ``people.notify_connector``.
        urls: apprise URLs, e.g. ``mailtos://user:pass@smtp.example.com?to=noc@example.com``,
            ``json://host/path``; and the chat bots the gateway sends itself (signed when a
            secret is given): ``dingtalk://SECRET@TOKEN/``, ``wecombot://KEY``,
            ``feishu://TOKEN/?secret=SECRET``. A message is delivered when every URL took it;
            else it is retried (all of them).
        language: ``zh-CN`` or ``en``.
        timezone: times in messages are shown in this zone.
        events: which events notify (see :data:`EVENTS`).
        levels: fault levels whose tickets notify (1-4).
        policies: only tickets of these contracts (globs; empty: all) — e.g. a customer's
            notifier for the contracts that promise progress notices.
        reports: this notifier delivers post-incident reports (text and PDF) to the customer
            for the contracts in ``policies``; the delivery stops the ticket's report clock.
        auto_report: queue the incident report by itself, once, as soon as a ticket of these
            contracts is restored and its four report parts are written (needs ``reports``).
        window: seconds of the rate limit's window.
        burst: messages sent one by one per window; the rest of a storm waits for the window
            to end and goes as one digest.
        timeout: seconds per request.
        endpoints: replaces a chat bot's vendor endpoint, by scheme (``dingtalk``,
            ``wecombot``, ``feishu``), e.g. for a private deployment or a proxy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["notify"] = "notify"
    name: str = "notify"
    urls: list[SecretStr] = Field(min_length=1)
    language: Literal["zh-CN", "en"] = "zh-CN"
    timezone: str = "Asia/Shanghai"
    events: list[Event] = Field(default_factory=lambda: list(DEFAULT_EVENTS))
    levels: list[int] = Field(default_factory=lambda: [1, 2])
    policies: list[str] = Field(default_factory=list)
    reports: bool = False
    auto_report: bool = False
    window: float = Field(default=60.0, gt=0)
    burst: int = Field(default=3, ge=1)
    timeout: float = Field(default=10.0, gt=0)
    endpoints: dict[Literal["dingtalk", "wecombot", "feishu"], str] = Field(default_factory=dict)

    @field_validator("urls")
    @classmethod
    def _has_scheme(cls, v: list[SecretStr]) -> list[SecretStr]:
        for i, u in enumerate(v):
            if "://" not in u.get_secret_value():
                raise ValueError(f"url {i + 1} is not a notification URL (scheme://...)")
        return v

    @model_validator(mode="after")
    def _auto_needs_reports(self) -> NotifyConfig:
        if self.auto_report and not self.reports:
            raise ValueError("auto_report = true needs reports = true")
        return self

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[int]) -> list[int]:
        if any(not 1 <= x <= 4 for x in v):
            raise ValueError("levels are 1-4")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v
