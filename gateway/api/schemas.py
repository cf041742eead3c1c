"""API wire types (pydantic): request bodies and responses, apart from the domain types."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ACTION_MAP",
    "ActionIn",
    "ActionName",
    "AlarmOut",
    "BoardOut",
    "ClockOut",
    "DeviceDetailOut",
    "DeviceOut",
    "ErrorOut",
    "LinkIn",
    "MaintenanceIn",
    "ReportFields",
    "TicketDetailOut",
    "TicketIn",
    "TicketOut",
    "TimelineEntryOut",
    "WhoAmI",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ErrorOut(_Out):
    """Every error: a short code and a message that says what and, for input, which field."""

    error: str
    message: str
    detail: Any = None


class ActionName(StrEnum):
    """Ticket actions as they appear in ``POST /api/v1/tickets/{id}/{action}``."""

    acknowledge = "acknowledge"
    arrive = "arrive"
    propose_solution = "propose_solution"
    restore = "restore"
    resolve = "resolve"
    close = "close"
    reopen = "reopen"
    pause = "pause"
    resume = "resume"
    comment = "comment"
    level = "level"
    report = "report"
    dispatch = "dispatch"
    no_on_site = "no_on_site"
    take = "take"
    assign = "assign"
    hand_over = "hand_over"


#: URL action → TicketDesk action.
ACTION_MAP = {
    "acknowledge": "acknowledge",
    "arrive": "arrive",
    "propose_solution": "propose_solution",
    "restore": "restore",
    "resolve": "restore",
    "close": "close",
    "reopen": "reopen",
    "pause": "pause",
    "resume": "resume",
    "comment": "comment",
    "level": "set_level",
    "report": "set_report",
    "dispatch": "dispatch",
    "no_on_site": "no_on_site",
    "take": "take",
    "assign": "assign",
    "hand_over": "hand_over",
}


class TicketIn(_In):
    """A ticket a person reported (a customer's call, e-mail or help-desk ticket).

    Its clocks start at ``reported_at`` (default: now). A ``reported_at`` more than a minute
    before now is a back-dated start and needs a ``reason``; one in the future is refused.
    A ``reported_at`` without a UTC offset is in the gateway's time zone.
    """

    device: str = Field(min_length=1, max_length=200, description="inventory device id, address or alias")
    level: int = Field(ge=1, le=4)
    title: str = Field(min_length=1, max_length=500)
    reported_by: str = Field(min_length=1, max_length=200, description="who reported it (name, phone, e-mail)")
    channel: Literal["phone", "email", "helpdesk"]
    reported_at: datetime | None = None
    reason: str = Field(default="", max_length=1000, description="why the start is back-dated")
    actor: str | None = Field(default=None, min_length=1, max_length=100)


class LinkIn(_In):
    """Link an alarm and a ticket: the alarm's clear and escalations then act on the ticket."""

    alarm: int | None = Field(default=None, ge=1, description="alarm id (POST /tickets/{id}/link)")
    ticket: int | None = Field(default=None, ge=1, description="ticket id (POST /alarms/{id}/link)")
    note: str = Field(default="", max_length=4000)
    actor: str | None = Field(default=None, min_length=1, max_length=100)


class ReportFields(_In):
    """Parts of the post-incident report written by people."""

    symptoms: str | None = Field(default=None, max_length=10_000)
    cause: str | None = Field(default=None, max_length=10_000)
    solution: str | None = Field(default=None, max_length=10_000)
    follow_up: str | None = Field(default=None, max_length=10_000)

    @model_validator(mode="after")
    def _some(self) -> ReportFields:
        if not any(v is not None for v in (self.symptoms, self.cause, self.solution, self.follow_up)):
            raise ValueError("give at least one of symptoms, cause, solution, follow_up")
        return self


class ActionIn(_In):
    """Body of a ticket action (all optional; ``level`` for level, ``fields`` for report)."""

    note: str = Field(default="", max_length=4000)
    #: Whom the caller acts for. The timeline's ``actor`` is always the caller's own
    #: identity (token name, or the control socket's user); this is kept as ``on_behalf_of``.
    actor: str | None = Field(default=None, min_length=1, max_length=100)
    level: int | None = Field(default=None, ge=1, le=4)
    fields: ReportFields | None = None
    #: assign / hand_over: the account taking the ticket.
    to: str | None = Field(default=None, min_length=1, max_length=64)
    #: assign: the team the ticket moves to.
    team: str | None = Field(default=None, min_length=1, max_length=64)


class MaintenanceIn(_In):
    """A maintenance window: alarms of matching devices are suppressed while it lasts.

    ``devices``, ``sites`` and ``classes`` are globs; a device matches when it matches every
    list that is given. ``start`` defaults to now.
    """

    devices: list[str] = Field(default_factory=list, max_length=10_000)
    sites: list[str] = Field(default_factory=list, max_length=1000)
    classes: list[str] = Field(default_factory=list, max_length=1000)
    start: datetime | None = None
    end: datetime
    reason: str = Field(default="", max_length=1000)
    id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$", description="window id (default: generated)"
    )

    @model_validator(mode="after")
    def _check(self) -> MaintenanceIn:
        if not self.devices and not self.sites and not self.classes:
            raise ValueError("name at least one device, site or device class (devices ['*'] for all)")
        for name in ("start", "end"):
            v = getattr(self, name)
            if v is not None and v.tzinfo is None:
                raise ValueError(f"{name} needs a time zone (e.g. 2026-05-01T08:00:00+08:00 or ...Z)")
        if self.start is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class WhoAmI(_Out):
    name: str
    role: Literal["viewer", "operator", "admin", "customer"]
    #: service (a shared token from the config), user (a named account) or local (the CLI).
    kind: Literal["service", "user", "local"] = "service"
    display_name: str = ""
    #: A customer's sites and contracts (what it may see).
    sites: list[str] = Field(default_factory=list)
    policies: list[str] = Field(default_factory=list)


class AlarmOut(_Out):
    id: int
    key: str
    level: int
    level_name: str
    state: str
    count: int
    device: str
    device_name: str = ""
    site: str = ""
    #: The device's contract (policy).
    policy: str = ""
    rule: str = ""
    title: str = ""
    event: str = ""
    first_seen: str
    last_seen: str
    cleared_at: str | None = None
    ticket_id: int | None = None
    acked: bool = False
    #: Seconds between the event and its arrival here, when it came late from an edge.
    late_s: float | None = None


class ClockOut(_Out):
    kind: str
    target_seconds: float
    calendar: str
    started_at: str | None = None
    due_at: str | None = None
    state: str
    provisional: bool = False
    stopped_at: str | None = None
    breached_at: str | None = None
    business_seconds: float | None = None
    remaining_seconds: float | None = Field(
        default=None, description="business time left at snapshot_at; negative when overdue"
    )
    ticking: bool = Field(default=False, description="whether remaining_seconds is going down right now")
    warned: list[float] = Field(default_factory=list)
    warning: bool = False
    breached: bool = False


class TicketOut(_Out):
    id: int
    level: int
    level_name: str
    status: str
    device: str
    site: str = ""
    region: str = ""
    alarm_key: str
    alarm_id: int
    policy: str
    title: str = ""
    opened_at: str
    updated_at: str
    closed_at: str | None = None
    paused: bool = False
    clocks: list[ClockOut]
    report: dict[str, str] = Field(default_factory=dict)
    remote: dict[str, str] = Field(default_factory=dict)
    snapshot_at: str | None = None
    origin: str = Field(default="alarm", description="alarm, or how a person reported it: phone, email, helpdesk")
    reported_by: str = ""
    entered_at: str | None = Field(
        default=None, description="when a back-dated report was entered (its clocks start at opened_at)"
    )
    backdate_reason: str = ""
    alarm_ids: list[int] = Field(default_factory=list)
    #: The engineer on the ticket ("" = nobody) and its team.
    owner: str = ""
    team: str = ""
    #: The opening event came late from an edge (after a WAN cut) by this many seconds.
    late_s: float | None = None
    #: Escalation steps fired: step id → when.
    escalations: dict[str, str] = Field(default_factory=dict)


class TimelineEntryOut(_Out):
    ts: str
    actor: str
    kind: str
    note: str = ""
    on_behalf_of: str = ""


class TicketDetailOut(TicketOut):
    timeline: list[TimelineEntryOut] = Field(default_factory=list)


class DeviceOut(_Out):
    id: str
    name: str = ""
    device_class: str = Field(alias="class")
    site: str = ""
    region: str = ""
    policy: str = ""
    parent: str | None = None
    known: bool = True
    liveness: Literal["alive", "lost", "unmonitored"]
    last_seen: str | None = None
    deadline: str | None = None
    heartbeat_interval: float | None = None
    open_alarms: int = 0
    worst_level: int | None = None

    model_config = ConfigDict(extra="ignore", populate_by_name=True, serialize_by_alias=True)


class DeviceDetailOut(DeviceOut):
    alarms: list[AlarmOut] = Field(default_factory=list)


class BoardOut(_Out):
    """One snapshot for the board: open alarms and tickets, devices and health counters."""

    now: str
    instance: str
    timezone: str = Field(
        description="gateway.timezone (IANA): the board shows times in it, not in the browser's zone"
    )
    alarms: list[AlarmOut]
    tickets: list[TicketOut]
    devices: list[DeviceOut]
    health: dict[str, Any] | None = None
    #: Contract (policy) → the customer it is with, for the contracts that name one.
    customers: dict[str, str] = Field(default_factory=dict)
