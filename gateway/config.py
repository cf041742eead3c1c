"""Configuration: TOML → pydantic models (extra="forbid"); errors read "file: dotted.key: problem"."""

from __future__ import annotations

import functools
import math
import operator
import tomllib
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from types import GenericAlias
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from adapters import REGISTRY as ADAPTERS
from adapters import AdapterSpec
from gateway.core.escalation import ACTIONS as ESCALATION_ACTIONS
from gateway.core.escalation import EscalationStep, Staffing
from gateway.core.oncall import Override, Shift, Team, parse_days, parse_hhmm
from gateway.core.sla import CLOCK_KINDS, ClockTarget, PenaltyTerms, Policy
from gateway.delivery.helpdesk import CONNECTORS, ConnectorConfig, ConnectorSpec
from gateway.durations import parse_duration
from gateway.errors import ConfigError
from gateway.forward.config import ForwardConfig
from gateway.model import Device, parse_poll_spec
from gateway.service_config import ServiceSection, check_service
from gateway.timeseries.config import TimeseriesConfig

__all__ = [
    "Config",
    "build_devices",
    "build_policies",
    "build_staffing",
    "format_loc",
    "load_config",
    "parse_duration",
]

Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class GatewaySection(_Strict):
    #: Identifies this gateway in idempotency keys and help-desk tickets.
    instance: str = "gw1"
    #: Where the SQLite database and state files live (relative to the config file).
    data_dir: str = "var"
    #: Time zone for calendars, reports, the board and the times the CLI prints.
    timezone: str = "Asia/Shanghai"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (an IANA name, e.g. 'Asia/Shanghai' or 'UTC')"
            ) from None
        return v


class PipelineSection(_Strict):
    #: Bound of the ingest queue; events beyond it are shed and counted.
    queue_size: int = Field(default=100_000, ge=10)
    #: Most events folded into one store transaction.
    batch_max: int = Field(default=4096, ge=1)
    #: Record every ingested event to this JSON-lines file (for `rules replay`); empty = off.
    record: str = ""


class StoreSection(_Strict):
    #: "sqlite" (embedded, one file in data_dir) or "postgresql" (a server; needed to run
    #: two or more gateways on one state).
    backend: Literal["sqlite", "postgresql"] = "sqlite"
    #: SQLite file, relative to data_dir.
    path: str = "gateway.db"
    #: SQLite synchronous mode: "full" survives power loss, "normal" survives process crashes.
    synchronous: Literal["normal", "full"] = "normal"
    #: PostgreSQL: libpq connection string or URI, better without the password.
    dsn: str = ""
    #: PostgreSQL: a file whose first line is the password (relative to the config file).
    #: Else the environment variable GATEWAY_STORE_PASSWORD, else libpq's own (~/.pgpass).
    password_file: str = ""
    #: PostgreSQL: the schema holding the gateway's tables (created on first start);
    #: empty: the server's search_path (normally "public").
    db_schema: str = Field(default="", alias="schema", pattern=r"^([a-z_][a-z0-9_]{0,62})?$")
    #: PostgreSQL: most connections one gateway opens.
    pool_size: int = Field(default=8, ge=1, le=100)


class AdaptersBase(_Strict):
    """``[adapters]``: a list of entries per kind in ``adapters.REGISTRY`` (``[[adapters.snmp]]``, ...).

    The model with one field per kind is :data:`AdaptersSection`, assembled from the table.
    """

    def by_kind(self) -> list[tuple[str, list[Any]]]:
        """``(kind, entries)`` for every adapter kind, in the table's order (empty lists included)."""
        return [(kind, getattr(self, kind)) for kind in type(self).model_fields]

    if TYPE_CHECKING:

        def __getattr__(self, kind: str) -> list[Any]: ...


def adapters_section(specs: Iterable[AdapterSpec]) -> type[AdaptersBase]:
    """The ``[adapters]`` model: ``<name>: list[<config_model>]`` for each spec, in order."""
    fields: dict[str, Any] = {s.name: (GenericAlias(list, (s.config_model,)), Field(default_factory=list)) for s in specs}
    return create_model("AdaptersSection", __base__=AdaptersBase, __module__=__name__, **fields)


if TYPE_CHECKING:
    AdaptersSection = AdaptersBase
else:
    AdaptersSection = adapters_section(ADAPTERS.values())


class LivenessSection(_Strict):
    #: Expected heartbeat interval for devices that name none and whose class has none.
    default_interval: Duration = 60.0
    #: Missed intervals before a device counts as lost (deadline = last seen + interval × tolerance).
    tolerance: int = Field(default=3, ge=1, le=100)
    #: Ceiling of the restart grace. After a gateway restart each device waits its own deadline
    #: (interval × tolerance), or this long if that is shorter; after a broker reconnect every
    #: deadline is re-armed in full. Unset: no ceiling.
    grace: Duration | None = None
    #: Learn each device's interval from its observed cadence when none is configured.
    learn: bool = False
    #: Interval per device class, e.g. { "mine.gas-sensor" = "30s" }.
    class_intervals: dict[str, Duration] = Field(default_factory=dict)
    #: Event names that count as a sign of life.
    events: list[str] = Field(default_factory=lambda: ["heartbeat", "status"])
    #: Devices not in the inventory seen on a heartbeat: "track" them with the default interval, or "ignore".
    unknown_devices: Literal["track", "ignore"] = "track"


class RulesSection(_Strict):
    #: Built-in packs by name (network, mine, medical) or paths to pack files.
    packs: list[str] = Field(default_factory=lambda: ["network", "mine", "medical"])
    #: Directories whose *.toml files are loaded as packs too.
    dirs: list[str] = Field(default_factory=list)
    #: Level for events no rule matches (none = they are only counted as unclassified).
    default_level: int | None = Field(default=None, ge=1, le=4)


class TargetTable(_Strict):
    target: Duration
    calendar: str | None = None


Target = Duration | TargetTable
LevelKey = Literal["1", "2", "3", "4"]


class LevelTargets(_Strict):
    response: Target | None = None
    dispatch: Target | None = None
    solution: Target | None = None
    on_site: Target | None = None
    restore: Target | None = None
    report: Target | None = None


class PenaltySection(_Strict):
    """A contract's penalty clause: percentages of the contract value."""

    #: The amount the percentages apply to.
    contract_value: float = Field(ge=0)
    #: Currency of contract_value (shown in reports).
    currency: str = "CNY"
    #: Percent of the contract value per ticket not responded to in time.
    response_missed_pct: float = Field(default=0.0, ge=0, le=100)
    #: Percent of the contract value per started day beyond the restore deadline.
    restore_per_started_day_pct: float = Field(default=0.0, ge=0, le=100)
    #: Upper bound of one contract's penalties per month, percent of the contract value.
    cap_pct: float | None = Field(default=None, gt=0, le=100)
    #: Penalty threshold: no response within this long (the response clock's business time)
    #: owes response_missed_pct; unset = when the response clock is breached.
    response_missed_after: Duration | None = None
    #: The restore overrun is counted beyond this; unset = the restore clock's target.
    restore_late_after: Duration | None = None


class EscalationStepSection(_Strict):
    """One escalation tier: at a fraction of a clock (clock + at) or a time after opening (after)."""

    #: Unique within its policy (the ticket records it as fired).
    id: str = Field(min_length=1, max_length=64)
    #: Whom it reaches: owner (or the on-call when nobody owns the ticket), on_call, team_lead,
    #: team, service_manager, experts, or a user name.
    notify: str = Field(default="owner", min_length=1)
    #: notify, dispatch_on_site, expert_consultation or escalate.
    action: Literal["notify", "dispatch_on_site", "expert_consultation", "escalate"] = "notify"
    #: The SLA clock whose fraction ``at`` triggers the step (with ``at``).
    clock: Literal["response", "solution", "on_site", "restore", "report"] | None = None
    #: Fraction of the clock's target (1.0 = the breach).
    at: float | None = Field(default=None, gt=0, le=1)
    #: Or: this long after the ticket opened (wall time), unless one of ``unless`` happened.
    after: Duration | None = None
    unless: list[str] = Field(default_factory=lambda: ["restore", "close"])
    #: Fault levels the step applies to.
    levels: list[Annotated[int, Field(ge=1, le=4)]] = Field(default_factory=lambda: [1, 2, 3, 4])
    #: Free text added to the timeline line and the notice.
    note: str = ""

    @model_validator(mode="after")
    def _one_trigger(self) -> EscalationStepSection:
        if (self.clock is None) == (self.after is None):
            raise ValueError("give either clock (with at) or after")
        if self.clock is not None and self.at is None:
            raise ValueError("a clock step needs at (a fraction of the target, 0 < at <= 1)")
        if self.after is not None and self.after < 0:
            raise ValueError("after must not be negative")
        return self


class ShiftSection(_Strict):
    """A weekly on-call shift: ``user`` on ``days`` from ``start`` to ``end`` (over midnight if end <= start)."""

    days: str = "daily"
    start: str = "00:00"
    end: str = "24:00"
    user: str = Field(min_length=1)

    @model_validator(mode="after")
    def _parse(self) -> ShiftSection:
        parse_days(self.days)
        parse_hhmm(self.start)
        parse_hhmm(self.end)
        return self


class OverrideSection(_Strict):
    """``user`` is on call from ``start`` to ``end`` whatever the weekly shifts say."""

    start: datetime
    end: datetime
    user: str = Field(min_length=1)


class TeamSection(_Strict):
    name: str = Field(min_length=1)
    lead: str = ""
    members: list[str] = Field(default_factory=list)
    #: Globs of the sites and contracts whose tickets the team takes (empty: any).
    sites: list[str] = Field(default_factory=list)
    policies: list[str] = Field(default_factory=list)
    rota: list[ShiftSection] = Field(default_factory=list)
    overrides: list[OverrideSection] = Field(default_factory=list)


class PeopleSection(_Strict):
    #: The user the ``service_manager`` escalation role names.
    service_manager: str = ""
    #: The users of the ``experts`` role.
    experts: list[str] = Field(default_factory=list)
    #: Outbox connector escalation notices are written for (a notifier delivers them); empty: none.
    notify_connector: str = ""
    #: How long a board sign-in lasts.
    session_ttl: Duration = 12 * 3600.0


class PolicySection(_Strict):
    description: str = ""
    #: The customer this contract is with (the board shows and filters by it).
    customer: str = ""
    #: Calendar the clocks run on unless a target names its own: "24x7", "business-cn", ...
    calendar: str = "24x7"
    #: Levels whose alarms open tickets.
    ticket_levels: list[Annotated[int, Field(ge=1, le=4)]] = Field(default_factory=lambda: [1, 2, 3, 4])
    #: Fractions of a target at which warnings fire.
    warn_at: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=lambda: [0.5, 0.8])
    #: Levels whose tickets are urgent: their response target is urgent_response.
    urgent_levels: list[Annotated[int, Field(ge=1, le=4)]] = Field(default_factory=list)
    #: Response target of urgent tickets (replaces the level's response).
    urgent_response: Target | None = None
    levels: dict[LevelKey, LevelTargets] = Field(default_factory=dict)
    regions: dict[str, dict[LevelKey, LevelTargets]] = Field(default_factory=dict)
    #: Device-class variants: class glob → level → targets, laid over levels (regions over them).
    classes: dict[str, dict[LevelKey, LevelTargets]] = Field(default_factory=dict)
    #: Clocks only a person's action stops (a device clearing by itself does not), e.g. ["response"].
    human_only: list[Literal["response", "dispatch", "solution", "on_site", "restore", "report"]] = Field(default_factory=list)
    #: Penalty terms; none = the contract has no penalties.
    penalties: PenaltySection | None = None
    #: A fault that comes back after its ticket was restored: "new" ticket, or "reopen" the previous one.
    reraise: Literal["new", "reopen"] = "new"
    #: With reraise = "reopen": only a ticket restored less than this long ago is reopened.
    reopen_within: Duration = 3600.0
    #: Escalation tiers of this contract (besides the top-level [[escalation]] steps).
    escalation: list[EscalationStepSection] = Field(default_factory=list)


class MaintenanceSection(_Strict):
    """A planned maintenance window: alarms of devices in scope are recorded, no tickets."""

    #: Unique id (alarms name it in suppressed_by); empty = "cfg-<n>".
    id: str = ""
    #: Scope: device-id, site and device-class globs; every list given must match.
    devices: list[str] = Field(default_factory=list)
    sites: list[str] = Field(default_factory=list)
    classes: list[str] = Field(default_factory=list)
    #: Start and end: TOML date-times (without an offset: gateway.timezone) or epoch seconds.
    start: datetime
    end: datetime
    author: str = ""
    reason: str = ""

    @model_validator(mode="after")
    def _window(self) -> MaintenanceSection:
        if not (self.devices or self.sites or self.classes):
            raise ValueError("give at least one of devices, sites, classes (devices = [\"*\"] for everything)")
        if (self.start.tzinfo is None) != (self.end.tzinfo is None):
            raise ValueError("start and end must both have a UTC offset or both be local times")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class DeviceSection(_Strict):
    id: str = Field(min_length=1)
    name: str = ""
    device_class: str = Field(default="unknown", alias="class")
    site: str = ""
    region: str = ""
    policy: str = ""
    parent: str | None = None
    addresses: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    heartbeat_interval: Duration | None = None
    #: After-sales dates (see [service.<policy>]): acceptance, installation, final acceptance,
    #: the device's own warranty term, or an explicit warranty end.
    acceptance: date | None = None
    installation: date | None = None
    final_acceptance: date | None = None
    warranty: str | None = None
    warranty_until: date | None = None

    #: Active polling of this device: "" (the poller's targets decide), "none", or methods and a
    #: credential name, e.g. "snmp:core-v3", "icmp", "snmp+icmp:public" (see [[adapters.poll]]).
    poll: str = ""

    @field_validator("poll")
    @classmethod
    def _poll_spec(cls, v: str) -> str:
        parse_poll_spec(v)
        return v


class InventorySection(_Strict):
    #: Policy for devices that name none (and for unknown devices).
    default_policy: str = "mine-monitoring"
    #: Whether alarms of devices not in the inventory open tickets (they are always shown).
    unknown_tickets: bool = False
    #: Most unknown devices admitted; events of further new ids are counted and not decided.
    unknown_max: int = Field(default=10_000, ge=0, le=1_000_000)
    #: New unknown device ids admitted per minute per source (adapter), with a burst.
    unknown_new_per_minute: float = Field(default=600.0, gt=0)
    unknown_burst: int = Field(default=1000, ge=1)


class TicketBreakerSection(_Strict):
    """The ticket circuit breaker: a flood of new tickets becomes one storm ticket."""

    enabled: bool = True
    #: More than this many new tickets within `window` trips it; further alarms are recorded
    #: without tickets until a whole window passes without one held back.
    limit: int = Field(default=200, ge=1)
    window: Duration = Field(default=60.0, gt=0)


class CalendarsSection(_Strict):
    #: Directories with holiday data files (one <year>.toml per year) that extend the shipped ones.
    holiday_dirs: list[str] = Field(default_factory=list)


def helpdesk_entry(specs: Iterable[ConnectorSpec]) -> Any:
    """The model of one ``[[helpdesk]]`` entry: the connectors' models, told apart by ``type``."""
    models = [s.config_model for s in specs]
    if len(models) == 1:
        return models[0]
    return Annotated[functools.reduce(operator.or_, models), Field(discriminator="type")]


if TYPE_CHECKING:
    HelpdeskEntry = ConnectorConfig
else:
    HelpdeskEntry = helpdesk_entry(CONNECTORS.values())


class HaSection(_Strict):
    #: Run as one of several instances sharing one PostgreSQL store: only the holder of the
    #: leader lease ingests, runs timers and delivers; the others wait as standbys.
    enabled: bool = False
    #: Lease length: a standby takes over at most this long after the leader died.
    lease: Duration = Field(default=10.0, ge=1.0, le=300.0)
    #: This instance's name in the lease (default: instance@host:pid).
    name: str = ""
    #: The URL other instances forward operator actions to while this one leads (default:
    #: http://[api] host:port, with this machine's name for a wildcard host).
    advertise_url: str = ""


class OutboxSection(_Strict):
    #: First retry delay after a retryable failure; doubles per attempt (with jitter).
    retry_base: Duration = 1.0
    #: Longest delay between retries.
    retry_max: Duration = 300.0
    #: Deliveries in flight at once (different tickets; one ticket's messages stay in order).
    concurrency: int = Field(default=8, ge=1, le=256)
    #: How often changes made in the help desk are read back (two-way sync).
    poll_interval: Duration = 30.0


#: Shortest API token accepted (a bearer token is the whole credential).
API_TOKEN_MIN = 16
#: Placeholders from the docs that must never reach a running gateway.
_PLACEHOLDER_TOKENS = frozenset({"change-me", "changeme", "…", "...", "secret", "token"})


class ApiToken(_Strict):
    token: SecretStr
    role: Literal["viewer", "operator", "admin"] = "viewer"
    name: str = ""

    @field_validator("token")
    @classmethod
    def _strong(cls, v: SecretStr) -> SecretStr:
        s = v.get_secret_value()
        if not s.strip():
            raise ValueError("empty token (remove the entry, or set a random token of at least 16 characters)")
        if s.strip().lower() in _PLACEHOLDER_TOKENS:
            raise ValueError("the placeholder from the docs is not a token; set a random one, e.g. `openssl rand -hex 16`")
        if len(s) < API_TOKEN_MIN:
            raise ValueError(f"token too short ({len(s)} characters; at least {API_TOKEN_MIN})")
        return v


class ApiSection(_Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tokens: list[ApiToken] = Field(default_factory=list)
    #: Connections and requests at once (uvicorn ``limit_concurrency``); beyond it, 503.
    max_connections: int = Field(default=256, ge=4)
    #: A request's headers must arrive complete within this (slow-header clients are dropped).
    header_timeout: Duration = Field(default=10.0, gt=0)
    #: An idle keep-alive connection is closed after this.
    idle_timeout: Duration = Field(default=5.0, gt=0)
    #: Serve Swagger UI at /api/v1/docs (it loads its scripts from a public CDN); the
    #: OpenAPI document at /api/v1/openapi.json is always served.
    docs: bool = False
    #: Reverse proxies (addresses or networks) whose ``X-Forwarded-Proto`` / ``Forwarded:
    #: proto=`` headers are believed; from any other peer those headers are ignored.
    trusted_proxies: list[str] = Field(default_factory=list)
    #: The session cookie's ``Secure`` flag: ``auto`` (when the request came over HTTPS, to
    #: us or to a trusted proxy), ``always`` or ``never``.
    cookie_secure: Literal["auto", "always", "never"] = "auto"

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for i, s in enumerate(v):
            try:
                ipaddress.ip_network(s.strip(), strict=False)
            except ValueError:
                raise ValueError(f"item {i + 1} ({s!r}) is not an IP address or network like 10.0.0.0/8") from None
        return v

    @field_validator("tokens")
    @classmethod
    def _distinct(cls, v: list[ApiToken]) -> list[ApiToken]:
        seen: dict[str, int] = {}
        for i, t in enumerate(v):
            j = seen.setdefault(t.token.get_secret_value(), i)
            if j != i:
                raise ValueError(f"tokens[{i}] repeats the token of tokens[{j}]; each entry needs its own token")
        return v


class Config(_Strict):
    gateway: GatewaySection = Field(default_factory=GatewaySection)
    pipeline: PipelineSection = Field(default_factory=PipelineSection)
    store: StoreSection = Field(default_factory=StoreSection)
    adapters: AdaptersSection = Field(default_factory=AdaptersSection)
    rules: RulesSection = Field(default_factory=RulesSection)
    inventory: InventorySection = Field(default_factory=InventorySection)
    ticket_breaker: TicketBreakerSection = Field(default_factory=TicketBreakerSection)
    calendars: CalendarsSection = Field(default_factory=CalendarsSection)
    api: ApiSection = Field(default_factory=ApiSection)
    outbox: OutboxSection = Field(default_factory=OutboxSection)
    ha: HaSection = Field(default_factory=HaSection)
    liveness: LivenessSection = Field(default_factory=LivenessSection)
    timeseries: TimeseriesConfig = Field(default_factory=TimeseriesConfig)
    forward: ForwardConfig = Field(default_factory=ForwardConfig)
    helpdesk: list[HelpdeskEntry] = Field(default_factory=list)
    policies: dict[str, PolicySection] = Field(default_factory=dict)
    devices: list[DeviceSection] = Field(default_factory=list)
    maintenance: list[MaintenanceSection] = Field(default_factory=list)
    #: After-sales terms per policy: warranty, planned work, spare parts (gateway.service_config).
    service: dict[str, ServiceSection] = Field(default_factory=dict)
    teams: list[TeamSection] = Field(default_factory=list)
    people: PeopleSection = Field(default_factory=PeopleSection)
    #: Escalation tiers every policy has.
    escalation: list[EscalationStepSection] = Field(default_factory=list)

    #: Set by load_config: the file it came from and its directory (for relative paths).
    source: str = Field(default="<memory>", exclude=True)
    base_dir: str = Field(default=".", exclude=True)

    @field_validator("policies")
    @classmethod
    def _some_policy(cls, v: dict[str, PolicySection]) -> dict[str, PolicySection]:
        return v

    def data_path(self, *parts: str) -> Path:
        base = Path(self.gateway.data_dir)
        if not base.is_absolute():
            base = Path(self.base_dir) / base
        return base.joinpath(*parts)

    def resolve_path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else Path(self.base_dir) / path


#: Discriminator tags pydantic puts into error locations (``helpdesk.0.webhook.url``).
_UNION_TAGS = frozenset(CONNECTORS)


def format_loc(loc: tuple[Any, ...]) -> str:
    """``('adapters', 'snmp', 0, 'port')`` → ``adapters.snmp[0].port``."""
    out = ""
    prev: Any = None
    for part in loc:
        skip_tag = isinstance(prev, int) and part in _UNION_TAGS
        prev = part
        if skip_tag:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            s = str(part)
            if s.startswith(("function-", "tagged-union")) or s in ("float", "TargetTable", "constrained-float"):
                continue
            out += ("." if out else "") + s
    return out


def _errors_from_validation(file: str, e: ValidationError) -> list[ConfigError]:
    out = []
    seen = set()
    for err in e.errors():
        key = format_loc(tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        msg = msg.removeprefix("Value error, ")
        if (key, msg) in seen:
            continue
        seen.add((key, msg))
        out.append(ConfigError(file, key, msg))
    return out


def _cross_check(cfg: Config, file: str) -> list[ConfigError]:
    errs: list[ConfigError] = []
    if cfg.store.backend == "postgresql" and not cfg.store.dsn.strip():
        errs.append(ConfigError(file, "store.dsn", 'required with backend = "postgresql"'))
    if cfg.ha.enabled and cfg.store.backend != "postgresql":
        errs.append(ConfigError(file, "ha.enabled", 'needs [store] backend = "postgresql" (the instances share its state)'))
    if cfg.forward.mode == "central" and cfg.forward.partitions > 1 and not cfg.ha.enabled:
        errs.append(ConfigError(file, "forward.partitions", "more than 1 on a central needs [ha] enabled = true "
                                                              "(each partition's leader holds a lease in PostgreSQL)"))
    if cfg.inventory.default_policy not in cfg.policies:
        errs.append(ConfigError(file, "inventory.default_policy", f"no policy named {cfg.inventory.default_policy!r}"))
    ids: dict[str, int] = {}
    for i, d in enumerate(cfg.devices):
        if d.id in ids:
            errs.append(ConfigError(file, f"devices[{i}].id", f"duplicate device id {d.id!r}"))
        ids[d.id] = i
        if d.policy and d.policy not in cfg.policies:
            errs.append(ConfigError(file, f"devices[{i}].policy", f"no policy named {d.policy!r}"))
    for i, d in enumerate(cfg.devices):
        if d.parent is not None and d.parent not in ids:
            errs.append(ConfigError(file, f"devices[{i}].parent", f"no device with id {d.parent!r}"))
    # parent cycles
    parents = {d.id: d.parent for d in cfg.devices}
    for i, d in enumerate(cfg.devices):
        seen, cur = {d.id}, d.parent
        while cur is not None and cur in parents:
            if cur in seen:
                errs.append(ConfigError(file, f"devices[{i}].parent", f"parent chain of {d.id!r} loops"))
                break
            seen.add(cur)
            cur = parents[cur]
    known_cals = {"24x7", "workdays-cn", "business-cn", "business-weekdays"}
    for pname, p in cfg.policies.items():
        if p.calendar not in known_cals:
            errs.append(ConfigError(file, f"policies.{pname}.calendar", f"unknown calendar {p.calendar!r}; known: {', '.join(sorted(known_cals))}"))
        if p.urgent_levels and p.urgent_response is None:
            errs.append(ConfigError(file, f"policies.{pname}.urgent_levels", "urgent levels need an urgent_response target"))
        u = p.urgent_response
        if isinstance(u, TargetTable) and u.calendar is not None and u.calendar not in known_cals:
            errs.append(ConfigError(file, f"policies.{pname}.urgent_response.calendar", f"unknown calendar {u.calendar!r}"))
        tables = [(f"policies.{pname}.levels.{lvl}", lt) for lvl, lt in p.levels.items()]
        tables += [(f"policies.{pname}.regions.{r}.{lvl}", lt) for r, m in p.regions.items() for lvl, lt in m.items()]
        tables += [(f"policies.{pname}.classes.{c}.{lvl}", lt) for c, m in p.classes.items() for lvl, lt in m.items()]
        for where, lt in tables:
            for kind in CLOCK_KINDS:
                t = getattr(lt, kind)
                if isinstance(t, TargetTable) and t.calendar is not None and t.calendar not in known_cals:
                    errs.append(ConfigError(file, f"{where}.{kind}.calendar", f"unknown calendar {t.calendar!r}"))
    errs += check_service(cfg, file, known_cals)
    errs += _check_people(cfg, file)
    hd = [h.name for h in cfg.helpdesk]
    for i, n in enumerate(hd):
        if hd.index(n) != i:
            errs.append(ConfigError(file, f"helpdesk[{i}].name", f"duplicate help-desk name {n!r}"))
    adapter_names: set[str] = set()  # one namespace across kinds: names label metrics and events
    for kind, entries in cfg.adapters.by_kind():
        for i, a in enumerate(entries):
            if a.name in adapter_names:
                errs.append(ConfigError(file, f"adapters.{kind}[{i}].name", f"duplicate adapter name {a.name!r}"))
            adapter_names.add(a.name)
    return errs


def _check_people(cfg: Config, file: str) -> list[ConfigError]:
    errs: list[ConfigError] = []
    names: set[str] = set()
    for i, t in enumerate(cfg.teams):
        if t.name in names:
            errs.append(ConfigError(file, f"teams[{i}].name", f"duplicate team name {t.name!r}"))
        names.add(t.name)
        for j, o in enumerate(t.overrides):
            if (o.start.tzinfo is None) != (o.end.tzinfo is None) or o.end <= o.start:
                errs.append(ConfigError(file, f"teams[{i}].overrides[{j}]", "end must be after start (both local or both with an offset)"))
    steps = [("escalation", cfg.escalation)] + [(f"policies.{n}.escalation", p.escalation) for n, p in cfg.policies.items()]
    for where, lst in steps:
        seen: set[str] = set()
        for i, st in enumerate(lst):
            if st.id in seen:
                errs.append(ConfigError(file, f"{where}[{i}].id", f"duplicate escalation step id {st.id!r}"))
            seen.add(st.id)
    return errs


def build_staffing(cfg: Config) -> Staffing:
    """Teams (with their rota in the gateway's time zone), roles and escalation steps."""
    tz = cfg.gateway.timezone

    def epoch(dt: datetime) -> float:
        return (dt if dt.tzinfo is not None else dt.replace(tzinfo=ZoneInfo(tz))).timestamp()

    def step(s: EscalationStepSection) -> EscalationStep:
        return EscalationStep(
            id=s.id,
            notify=s.notify,
            action=s.action if s.action in ESCALATION_ACTIONS else "notify",
            clock=s.clock or "",
            at=s.at or 0.0,
            after=s.after,
            levels=frozenset(s.levels),
            unless=tuple(s.unless),
            note=s.note,
        )

    teams = tuple(
        Team(
            name=t.name,
            lead=t.lead,
            members=tuple(t.members),
            sites=tuple(t.sites),
            policies=tuple(t.policies),
            shifts=tuple(Shift(parse_days(r.days), parse_hhmm(r.start), parse_hhmm(r.end), r.user) for r in t.rota),
            overrides=tuple(Override(epoch(o.start), epoch(o.end), o.user) for o in t.overrides),
            tz=tz,
        )
        for t in cfg.teams
    )
    steps = {"*": tuple(step(s) for s in cfg.escalation)}
    steps.update({n: tuple(step(s) for s in p.escalation) for n, p in cfg.policies.items()})
    return Staffing(teams, steps, cfg.people.service_manager, tuple(cfg.people.experts))


def load_config(path: str | Path) -> Config:
    """Read and validate a config file. Raises ConfigError (``.errors`` holds all problems)."""
    p = Path(path)
    file = str(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(file, "", f"cannot read: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(file, "", f"TOML syntax error: {e}") from None
    except RecursionError:  # tomllib recurses per nested array or inline table
        raise ConfigError(file, "", "arrays or inline tables nested too deeply") from None
    return config_from_dict(data, file, str(p.resolve().parent))


def config_from_dict(data: dict[str, Any], file: str = "<memory>", base_dir: str = ".") -> Config:
    for k in ("source", "base_dir"):
        if k in data:
            raise ConfigError(file, k, "unknown key")
    errs = [ConfigError(file, format_loc(loc), problem) for loc, problem in _unrepresentable(data)]
    if errs:
        errs[0].errors = errs  # type: ignore[attr-defined]
        raise errs[0]
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        errs = _errors_from_validation(file, e)
        first = errs[0]
        first.errors = errs  # type: ignore[attr-defined]
        raise first from None
    cfg.source = file
    cfg.base_dir = base_dir
    errs = _cross_check(cfg, file)
    if errs:
        errs[0].errors = errs  # type: ignore[attr-defined]
        raise errs[0]
    return cfg


def _unrepresentable(v: Any, loc: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """Numbers no option can mean: TOML's ``nan`` and ``inf`` (a nan limit or interval compares
    false with everything, silently turning its check off), and integers beyond TOML's 64 bits
    (tomllib reads them; sockets and SQLite overflow on them)."""
    if isinstance(v, float) and not math.isfinite(v):
        return [(loc, "must be a finite number (nan and inf are not allowed)")]
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
        return [(loc, "integer out of range (TOML integers are 64-bit)")]
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    return [bad for k, x in items for bad in _unrepresentable(x, (*loc, k))]


def _target(t: Any, default_cal: str) -> ClockTarget | None:
    if t is None:
        return None
    if isinstance(t, TargetTable):
        return ClockTarget(t.target, t.calendar or default_cal)
    return ClockTarget(float(t), default_cal)


def _level_map(levels: dict[LevelKey, LevelTargets], cal: str) -> dict[int, dict[str, ClockTarget]]:
    out: dict[int, dict[str, ClockTarget]] = {}
    for lvl, lt in levels.items():
        m = {}
        for kind in CLOCK_KINDS:
            tgt = _target(getattr(lt, kind), cal)
            if tgt is not None:
                m[kind] = tgt
        out[int(lvl)] = m
    return out


def _penalties(p: PenaltySection | None) -> PenaltyTerms | None:
    if p is None:
        return None
    return PenaltyTerms(
        contract_value=p.contract_value,
        currency=p.currency,
        response_missed_pct=p.response_missed_pct,
        restore_per_started_day_pct=p.restore_per_started_day_pct,
        cap_pct=p.cap_pct,
        response_missed_after=p.response_missed_after,
        restore_late_after=p.restore_late_after,
    )


def build_policies(cfg: Config) -> dict[str, Policy]:
    """Turn the policy sections into pure ``Policy`` values."""
    out = {}
    for name, p in cfg.policies.items():
        out[name] = Policy(
            name=name,
            calendar=p.calendar,
            ticket_levels=frozenset(p.ticket_levels),
            levels=_level_map(p.levels, p.calendar),
            regions={r.lower(): _level_map(m, p.calendar) for r, m in p.regions.items()},
            warn_at=tuple(sorted(set(p.warn_at))),
            description=p.description,
            urgent_levels=frozenset(p.urgent_levels),
            urgent_response=_target(p.urgent_response, p.calendar),
            penalties=_penalties(p.penalties),
            reraise=p.reraise,
            reopen_within=p.reopen_within,
            classes={c: _level_map(m, p.calendar) for c, m in p.classes.items()},
            human_only=frozenset(p.human_only),
        )
    return out


def build_devices(cfg: Config) -> list[Device]:
    return [
        Device(
            id=d.id,
            device_class=d.device_class,
            site=d.site,
            region=d.region,
            policy=d.policy or cfg.inventory.default_policy,
            parent=d.parent,
            addresses=tuple(d.addresses),
            aliases=tuple(d.aliases),
            heartbeat_interval=d.heartbeat_interval,
            name=d.name,
            poll=d.poll,
        )
        for d in cfg.devices
    ]
