"""The rule engine: rule packs as data, compiled matchers, classification. No I/O here."""

from rules.engine import Classification, CompiledRule, RuleEngine
from rules.inhibit import ParentDown, counts_as_down
from rules.schema import PackModel, RuleModel, parse_pack, parse_seconds

__all__ = [
    "Classification",
    "CompiledRule",
    "PackModel",
    "ParentDown",
    "RuleEngine",
    "RuleModel",
    "counts_as_down",
    "parse_pack",
    "parse_seconds",
]
