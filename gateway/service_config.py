"""``[service.<contract>]``: warranty, planned work, spare parts and the replacement rule of
each contract (pydantic models, their cross-checks, and the build into core values).

``gateway.config`` owns the file as a whole; this module owns the after-sales sections and
the device dates (``acceptance``, ``installation``, ``final_acceptance``, ``warranty``,
``warranty_until`` on ``[[devices]]``). Errors read ``file: dotted.key: problem``.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from gateway.core.aftersales import AfterSales, ContractService
from gateway.core.periods import BASES, PeriodError, Term, parse_term
from gateway.core.schedules import KINDS, Schedule, ScheduleError, parse_rule
from gateway.core.spares import ACTIONS, ReplacementRule, SpareClock
from gateway.core.warranty import DeviceDates, OutOfWarranty, WarrantyError, WarrantyTerms, coverage
from gateway.durations import parse_duration
from gateway.errors import ConfigError

__all__ = ["ReportScheduleSection", "ServiceSection", "build_aftersales", "check_service", "device_dates"]

Duration = Annotated[float, BeforeValidator(parse_duration)]
Action = Literal[
    "spare_requested", "spare_shipped", "repaired", "replacement_received", "part_replaced",
    "part_returned", "part_failed", "loaner_out", "loaner_back",
]
assert set(Action.__args__) == set(ACTIONS)  # type: ignore[attr-defined]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _term(v: Any) -> Any:
    if v is None:
        return v
    try:
        parse_term(str(v))
    except PeriodError as e:
        raise ValueError(str(e)) from None
    return str(v)


TermText = Annotated[str, BeforeValidator(_term)]


class SpareTarget(_Strict):
    target: Duration
    calendar: str | None = None


class OutOfWarrantySection(_Strict):
    """What changes for tickets of devices out of warranty (or past the service period)."""

    #: Another policy whose clocks apply then (empty: the contract's own).
    policy: str = ""
    #: Whether the penalty terms still apply.
    penalties: bool = True
    #: On-site visits and parts are paid service (有偿服务).
    paid_service: bool = False
    note: str = ""


class ReplacementSection(_Strict):
    """The replacement rule: a unit unrepaired this long after the report, or whose same main
    part failed this many times, is due for replacement (a level-4 notice)."""

    unrepaired_after: Duration | None = None
    same_part_failures: int | None = Field(default=None, ge=2)


class ScheduleSection(_Strict):
    """One schedule of planned work (巡检 / 回访 / preventive maintenance)."""

    #: Unique within the contract; default: the kind.
    id: str = ""
    kind: Literal["inspection", "visit", "maintenance"]
    #: e.g. "months 1-12 monthly, 13-24 every 2 months, then every 3 months".
    rule: str
    #: The device date it counts from.
    from_: Literal["acceptance", "installation", "final_acceptance"] = Field(default="acceptance", alias="from")
    #: Due dates move to the next working day of this calendar; early/late count its days.
    calendar: str = "24x7"
    #: The window: days before the due date it may be done, days after it before it is overdue.
    early: int = Field(default=0, ge=0, le=366)
    late: int = Field(default=0, ge=0, le=366)
    checklist: list[str] = Field(default_factory=list)
    title: str = ""
    #: Device-id globs (default: every device of the contract).
    devices: list[str] = Field(default_factory=list)
    #: Occurrences before this date are not generated (planned work tracked from then on).
    since: date | None = None

    @field_validator("rule")
    @classmethod
    def _rule(cls, v: str) -> str:
        try:
            parse_rule(v)
        except ScheduleError as e:
            raise ValueError(str(e)) from None
        return v


class SpareSection(_Strict):
    """One spare-part clock: started by one ticket action, met by others."""

    clock: str = Field(min_length=1)
    starts: Action
    stops: list[Action] = Field(min_length=1)
    target: Duration | SpareTarget
    party: Literal["vendor", "customer"] = "vendor"
    #: A reminder this long (on the clock's calendar) before the due instant.
    remind_before: Duration | None = None


ReportFormat = Literal["html", "pdf"]


class ReportScheduleSection(_Strict):
    """``[[service.<contract>.reports]]``: the contract's service report e-mailed by itself
    after each period (in the gateway's time zone), once per period and notifier."""

    #: The period each report covers: a calendar month, quarter or year.
    every: Literal["monthly", "quarterly", "yearly"]
    #: The ``[[helpdesk]]`` notifier (``type = "notify"``) that delivers it, e.g. the
    #: customer's contacts by e-mail.
    to: str = Field(min_length=1)
    #: How long after the period ends the report is built ("2d": two days after the quarter).
    delay: Duration = 0.0
    #: Subject and text language; default: the notifier's.
    language: Literal["zh-CN", "en"] | None = None
    #: Attachments: the self-contained HTML page and/or its PDF.
    formats: list[ReportFormat] = Field(default_factory=lambda: list[ReportFormat](["html", "pdf"]), min_length=1)
    #: Also send the reports of the periods from this date on that ended before the schedule
    #: was set up; without it only the latest ended period's report goes out.
    since: date | None = None


class ServiceSection(_Strict):
    """``[service.<contract>]``: after-sales terms of one contract (its name is a policy)."""

    #: Dates for the contract's devices that carry none of their own.
    acceptance: date | None = None
    installation: date | None = None
    final_acceptance: date | None = None
    #: e.g. "12 months from acceptance", "3 years", "12 months from installation".
    warranty: TermText | None = None
    #: e.g. "1 year from final acceptance".
    service_period: TermText | None = None
    #: An explicit warranty end for all its devices (the first day no longer covered).
    warranty_until: date | None = None
    #: A replaced part's warranty restarts on the day it was replaced.
    part_warranty_restarts: bool = False
    out_of_warranty: OutOfWarrantySection | None = None
    #: Days before a warranty ends at which a level-4 notice is raised (0: none).
    warranty_notice_days: int = Field(default=0, ge=0, le=3660)
    replacement: ReplacementSection | None = None
    schedules: list[ScheduleSection] = Field(default_factory=list)
    spares: list[SpareSection] = Field(default_factory=list)
    reports: list[ReportScheduleSection] = Field(default_factory=list)


def _parse_term(v: str | None) -> Term | None:
    return parse_term(v) if v else None


def device_dates(d: Any) -> DeviceDates:
    """The dates of a ``[[devices]]`` entry (or a ``[service.X]`` section as defaults)."""
    return DeviceDates(
        acceptance=getattr(d, "acceptance", None),
        installation=getattr(d, "installation", None),
        final_acceptance=getattr(d, "final_acceptance", None),
        warranty=_parse_term(getattr(d, "warranty", None)),
        warranty_until=getattr(d, "warranty_until", None),
    )


def _terms(s: ServiceSection) -> WarrantyTerms:
    oow = None
    if s.out_of_warranty is not None:
        o = s.out_of_warranty
        oow = OutOfWarranty(o.policy or None, o.penalties, o.paid_service, o.note)
    return WarrantyTerms(
        warranty=_parse_term(s.warranty),
        service_period=_parse_term(s.service_period),
        part_warranty_restarts=s.part_warranty_restarts,
        out_of_warranty=oow,
        notice_days=s.warranty_notice_days,
        defaults=device_dates(s),
    )


def _contract(name: str, s: ServiceSection, policy_calendar: str) -> ContractService:
    schedules = tuple(
        Schedule(
            id=sc.id or sc.kind, contract=name, kind=sc.kind, rule=parse_rule(sc.rule), basis=sc.from_,
            calendar=sc.calendar, early=sc.early, late=sc.late, checklist=tuple(sc.checklist),
            title=sc.title, devices=tuple(sc.devices), since=sc.since,
        )
        for sc in s.schedules
    )
    spares = []
    for sp in s.spares:
        if isinstance(sp.target, SpareTarget):
            seconds, cal = sp.target.target, sp.target.calendar or policy_calendar
        else:
            seconds, cal = float(sp.target), policy_calendar
        spares.append(SpareClock(sp.clock, sp.starts, tuple(sp.stops), seconds, cal, sp.party,
                                 float(sp.remind_before or 0.0)))
    rep = None
    if s.replacement is not None:
        rep = ReplacementRule(s.replacement.unrepaired_after, s.replacement.same_part_failures)
    return ContractService(name, _terms(s), schedules, tuple(spares), rep)


def build_aftersales(cfg: Any) -> AfterSales:
    """The after-sales terms of every contract with a ``[service.X]`` section, and the
    devices' dates (config already checked by :func:`check_service`)."""
    contracts = {
        name: _contract(name, s, cfg.policies[name].calendar if name in cfg.policies else "24x7")
        for name, s in cfg.service.items()
    }
    dates = {d.id: device_dates(d) for d in cfg.devices}
    return AfterSales(contracts, dates, cfg.gateway.timezone)


def check_service(cfg: Any, file: str, known_cals: set[str]) -> list[ConfigError]:
    """Cross-checks of the after-sales sections and the device dates."""
    errs: list[ConfigError] = []
    for name, s in cfg.service.items():
        where = f"service.{name}"
        if name not in cfg.policies:
            errs.append(ConfigError(file, where, f"no policy named {name!r} (a service section belongs to a policy)"))
        if s.out_of_warranty is not None and s.out_of_warranty.policy and s.out_of_warranty.policy not in cfg.policies:
            errs.append(ConfigError(file, f"{where}.out_of_warranty.policy", f"no policy named {s.out_of_warranty.policy!r}"))
        terms = _terms(s)
        try:
            coverage(terms.defaults, terms)
        except WarrantyError as e:
            errs.append(ConfigError(file, f"{where}.warranty_until", str(e)))
        ids: set[str] = set()
        for i, sc in enumerate(s.schedules):
            key = f"{where}.schedules[{i}]"
            sid = sc.id or sc.kind
            if sid in ids:
                errs.append(ConfigError(file, f"{key}.id", f"duplicate schedule id {sid!r} (give each schedule its own id)"))
            ids.add(sid)
            if sc.calendar not in known_cals:
                errs.append(ConfigError(file, f"{key}.calendar", f"unknown calendar {sc.calendar!r}"))
            until = parse_rule(sc.rule).until
            if until == "service_period" and terms.service_period is None and terms.warranty is None:
                errs.append(ConfigError(file, f"{key}.rule", "never fires: 'within the service period' but the contract has no service_period or warranty"))
            if until == "warranty" and terms.warranty is None and terms.service_period is None:
                errs.append(ConfigError(file, f"{key}.rule", "never fires: 'within the warranty' but the contract has no warranty"))
        notifiers = {h.name for h in cfg.helpdesk if getattr(h, "type", "") == "notify"}
        seen: set[tuple[str, str]] = set()
        for i, rs in enumerate(s.reports):
            if rs.to not in notifiers:
                errs.append(ConfigError(file, f"{where}.reports[{i}].to",
                                        f"no [[helpdesk]] notifier named {rs.to!r} (type = \"notify\")"))
            if (rs.every, rs.to) in seen:
                errs.append(ConfigError(file, f"{where}.reports[{i}]", f"a second {rs.every} report to {rs.to!r}"))
            seen.add((rs.every, rs.to))
        for i, sp in enumerate(s.spares):
            cal = sp.target.calendar if isinstance(sp.target, SpareTarget) else None
            if cal is not None and cal not in known_cals:
                errs.append(ConfigError(file, f"{where}.spares[{i}].target.calendar", f"unknown calendar {cal!r}"))
            secs = sp.target.target if isinstance(sp.target, SpareTarget) else float(sp.target)
            if secs <= 0:
                errs.append(ConfigError(file, f"{where}.spares[{i}].target", "must be longer than 0"))
            if sp.remind_before is not None and sp.remind_before >= secs:
                errs.append(ConfigError(file, f"{where}.spares[{i}].remind_before", "must be shorter than the target"))
    for i, d in enumerate(cfg.devices):
        try:
            dd = device_dates(d)
        except PeriodError as e:
            errs.append(ConfigError(file, f"devices[{i}].warranty", str(e)))
            continue
        policy = d.policy or cfg.inventory.default_policy
        s = cfg.service.get(policy)
        terms = _terms(s) if s is not None else WarrantyTerms()
        try:
            coverage(dd, terms)
        except WarrantyError as e:
            errs.append(ConfigError(file, f"devices[{i}].warranty_until" if dd.warranty_until else f"devices[{i}].warranty", str(e)))
    return errs


# The bases a schedule may count from are the device dates' names.
assert set(BASES) == {"acceptance", "installation", "final_acceptance"}
assert set(KINDS) == {"inspection", "visit", "maintenance"}
