"""The rule engine: rule packs as data, compiled matchers, classification. No I/O here."""

from rules.engine import Classification, CompiledRule, RuleEngine
from rules.schema import PackModel, RuleModel, parse_pack

__all__ = ["Classification", "CompiledRule", "RuleEngine", "PackModel", "RuleModel", "parse_pack"]
