"""The rule engine: classify(event, device) → Classification, rules indexed by event name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from gateway.model import Device, Event, FaultLevel
from rules.keys import Template, compile_template
from rules.match import Predicate, compile_conditions, compile_glob, is_glob
from rules.schema import PackModel, RuleModel

__all__ = ["Classification", "CompiledRule", "RuleEngine"]

_NAME_CACHE_MAX = 50_000


@dataclass(slots=True)
class Classification:
    """What the engine says an event means. A value: nothing changes one after it is made.

    Not ``frozen``: a frozen dataclass pays ``object.__setattr__`` per field on creation,
    which is most of the engine's cost per event in a storm.
    """

    rule_id: str
    action: str  # "raise" | "clear"
    key: str
    level: FaultLevel | None
    #: The title, or a function that renders it: only new alarms need a title, so a storm
    #: of repeats never pays for rendering one.
    title_src: str | Callable[[], str] = ""
    hold_for: float = 0.0
    hold_count: int = 0
    escalate: tuple[tuple[float, FaultLevel], ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    flap_count: int = 0
    flap_window: float = 0.0

    @property
    def title(self) -> str:
        t = self.title_src
        if not isinstance(t, str):
            t = self.title_src = t()
        return t


@dataclass(slots=True)
class CompiledRule:
    id: str
    pack: str
    order: tuple[int, int]
    action: str
    level: FaultLevel | None
    key: Template
    title: Template
    cond: Predicate | None
    device_class: Callable[[str], bool] | None
    site: Callable[[str], bool] | None
    region: Callable[[str], bool] | None
    policy: Callable[[str], bool] | None
    hold_for: float
    hold_count: int
    escalate: tuple[tuple[float, FaultLevel], ...]
    labels: Mapping[str, str]
    events: tuple[str, ...]
    source: RuleModel
    cont: bool = False
    flap_count: int = 0
    flap_window: float = 0.0

    def matches(self, event: Event, device: Device) -> bool:
        return self.matches_device(device) and (self.cond is None or self.cond(event.attrs))

    def matches_device(self, device: Device) -> bool:
        """The device filters alone (class, site, region, contract)."""
        if self.device_class is not None and not self.device_class(device.device_class):
            return False
        if self.site is not None and not self.site(device.site):
            return False
        if self.policy is not None and not self.policy(device.policy):
            return False
        return self.region is None or self.region(device.region)

    @property
    def by_contract(self) -> bool:
        """The rule names the contracts it applies under (its ``policy`` filter)."""
        return self.policy is not None


def _compile(rule: RuleModel, pack: str, order: tuple[int, int]) -> list[CompiledRule]:
    key = compile_template(rule.key)
    title = compile_template(rule.title or rule.id)
    escalate = tuple(sorted((float(s), FaultLevel(lvl)) for s, lvl in rule.escalate))
    events = (rule.event,) if isinstance(rule.event, str) else tuple(rule.event)
    common = dict(
        pack=pack,
        key=key,
        title=title,
        device_class=compile_glob(rule.device_class),
        site=compile_glob(rule.site),
        region=compile_glob(rule.region),
        policy=compile_glob(rule.policy),
        labels=dict(rule.labels),
        source=rule,
        cont=rule.continue_,
    )
    out = [
        CompiledRule(
            id=rule.id,
            order=order,
            action=rule.action,
            level=FaultLevel(rule.level) if rule.level is not None else None,
            cond=compile_conditions(rule.when),
            hold_for=rule.hold_for,
            hold_count=rule.hold_count,
            escalate=escalate,
            events=events,
            flap_count=rule.flap_count,
            flap_window=rule.flap_window,
            **common,  # type: ignore[arg-type]
        )
    ]
    if rule.clear_on:
        out.append(
            CompiledRule(
                id=rule.id,  # the clear acts on the same rule's fault
                order=order,
                action="clear",
                level=None,
                cond=compile_conditions(rule.clear_when),
                hold_for=0.0,
                hold_count=0,
                escalate=(),
                events=tuple(rule.clear_on),
                **common,  # type: ignore[arg-type]
            )
        )
    return out


class RuleEngine:
    """Classifies events. Rules are compiled once; candidates per event name are cached,
    so the cost for one event does not grow with the number of rules for other events.

    Order: lower ``priority`` first, then pack order, then order in the pack; first match wins.
    """

    def __init__(self, packs: Iterable[PackModel] = (), default_level: FaultLevel | None = None) -> None:
        self.default_level = default_level
        self.rules: list[CompiledRule] = []
        self.packs: list[str] = []
        seq = 0
        for pack in packs:
            self.packs.append(pack.pack.name)
            for r in pack.rules:
                self.rules.extend(_compile(r, pack.pack.name, (r.priority, seq)))
                seq += 1
        self._exact: dict[str, list[CompiledRule]] = {}
        self._wild: list[tuple[Callable[[str], bool], CompiledRule]] = []
        for cr in self.rules:
            for ev in cr.events:
                if is_glob(ev):
                    g = compile_glob(ev)
                    assert g is not None
                    self._wild.append((g, cr))
                else:
                    self._exact.setdefault(ev, []).append(cr)
        self._by_name: dict[str, tuple[CompiledRule, ...]] = {}
        # (name, class, site, region, policy) -> the candidates whose device filters pass: a
        # device's class, site, region and contract are fixed, so only the attribute
        # conditions vary per event.
        self._by_scope: dict[tuple[str, str, str, str, str], tuple[CompiledRule, ...]] = {}
        self.unclassified = 0

    def candidates(self, name: str) -> tuple[CompiledRule, ...]:
        cands = self._by_name.get(name)
        if cands is None:
            found = list(self._exact.get(name, ()))
            found.extend(cr for g, cr in self._wild if g(name))
            found.sort(key=lambda cr: cr.order)
            cands = tuple(found)
            if len(self._by_name) < _NAME_CACHE_MAX:
                self._by_name[name] = cands
        return cands

    def classify(self, event: Event, device: Device) -> list[Classification]:
        """What the event means: the first matching rule's classification — and, for
        rules marked ``continue``, later matches on other fault keys too."""
        out: list[Classification] = []
        name = event.name
        scope = (name, device.device_class, device.site, device.region, device.policy)
        cands = self._by_scope.get(scope)
        if cands is None:
            cands = tuple(cr for cr in self.candidates(name) if cr.matches_device(device))
            if len(self._by_scope) >= _NAME_CACHE_MAX:
                self._by_scope.clear()
            self._by_scope[scope] = cands
        attrs = event.attrs
        for cr in cands:
            if cr.cond is None or cr.cond(attrs):
                c = self._classification(cr, event, device)
                if out and any(o.key == c.key for o in out):
                    continue
                out.append(c)
                if not cr.cont:
                    break
        if out:
            return out
        self.unclassified += 1
        if self.default_level is not None:
            return [
                Classification(
                    rule_id="unclassified",
                    action="raise",
                    key=f"{device.id}/unclassified/{event.name}",
                    level=self.default_level,
                    title_src=f"Unclassified event {event.name}",
                    labels={"unclassified": "true"},
                )
            ]
        return out

    def explain(self, event: Event, device: Device) -> list[tuple[CompiledRule, bool]]:
        """Every candidate rule and whether it matched, in evaluation order (dry runs)."""
        return [(cr, cr.matches(event, device)) for cr in self.candidates(event.name)]

    @staticmethod
    def _classification(cr: CompiledRule, event: Event, device: Device) -> Classification:
        attrs, name = event.attrs, event.name
        return Classification(
            cr.id, cr.action, cr.key(device, cr.id, name, attrs), cr.level,
            lambda: cr.title(device, cr.id, name, attrs),
            cr.hold_for, cr.hold_count, cr.escalate, cr.labels, cr.flap_count, cr.flap_window,
        )
