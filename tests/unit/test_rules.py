"""Rule matching, key templates, clear rules, priorities and `continue` (pure, table-driven)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Device, Event, FaultLevel
from rules import RuleEngine, parse_pack


def engine(*rules: dict[str, Any], default_level: int | None = None) -> RuleEngine:
    pack = parse_pack({"pack": {"name": "t"}, "rules": list(rules)})
    return RuleEngine([pack], default_level=FaultLevel(default_level) if default_level else None)


SW = Device("sw-1", "network.switch", site="hq", region="beijing")
GAS = Device("gs-1", "mine.gas-sensor", site="north")


def ev(name: str, **attrs: Any) -> Event:
    return Event(0.0, "test", "x", name, attrs)


LINK = {"id": "down", "event": "IF-MIB::linkDown", "level": 3, "key": "{device}/if/{ifIndex}",
        "title": "if {ifIndex} down", "clear_on": ["IF-MIB::linkUp"]}


@pytest.mark.parametrize(
    "rules, event, device, expected",
    [
        ([LINK], ev("IF-MIB::linkDown", ifIndex=7), SW, [("down", "raise", "sw-1/if/7", 3)]),
        ([LINK], ev("IF-MIB::linkUp", ifIndex=7), SW, [("down", "clear", "sw-1/if/7", None)]),
        ([LINK], ev("IF-MIB::linkDown"), SW, [("down", "raise", "sw-1/if/?", 3)]),
        ([LINK], ev("SNMPv2-MIB::coldStart"), SW, []),
        ([{"id": "w", "event": "IF-MIB::*", "level": 4}], ev("IF-MIB::linkUp"), SW, [("w", "raise", "sw-1/w", 4)]),
        ([{"id": "a", "event": "x", "level": 2, "when": {"v": {"gt": 5}}}], ev("x", v=6), SW, [("a", "raise", "sw-1/a", 2)]),
        ([{"id": "a", "event": "x", "level": 2, "when": {"v": {"gt": 5}}}], ev("x", v=5), SW, []),
        ([{"id": "a", "event": "x", "level": 2, "when": {"v": {"ge": 5}}}], ev("x", v="5"), SW, [("a", "raise", "sw-1/a", 2)]),
        ([{"id": "a", "event": "x", "level": 2, "when": {"v": {"lt": 1, "exists": True}}}], ev("x"), SW, []),
        ([{"id": "a", "event": "x", "level": 2, "when": {"v": {"exists": False}}}], ev("x"), SW, [("a", "raise", "sw-1/a", 2)]),
        ([{"id": "a", "event": "x", "level": 2, "when": {"s": {"in": ["a", "b"]}}}], ev("x", s="b"), SW, [("a", "raise", "sw-1/a", 2)]),
        ([{"id": "a", "event": "x", "level": 2, "when": {"s": {"regex": "^err-\\d+$"}}}], ev("x", s="err-12"), SW, [("a", "raise", "sw-1/a", 2)]),
        ([{"id": "a", "event": "x", "level": 2, "when": {"s": {"ne": "ok"}}}], ev("x", s="ok"), SW, []),
        ([{"id": "a", "event": "x", "level": 2, "when": {"n": 7}}], ev("x", n="7"), SW, [("a", "raise", "sw-1/a", 2)]),
        ([{"id": "a", "event": "x", "level": 1, "device_class": "mine.*"}], ev("x"), SW, []),
        ([{"id": "a", "event": "x", "level": 1, "device_class": "mine.*"}], ev("x"), GAS, [("a", "raise", "gs-1/a", 1)]),
        ([{"id": "a", "event": "x", "level": 1, "region": "beijing"}], ev("x"), SW, [("a", "raise", "sw-1/a", 1)]),
        ([{"id": "a", "event": "x", "level": 1, "site": ["south"]}], ev("x"), SW, []),
        # lower priority number first; first match wins
        ([{"id": "late", "event": "x", "level": 4, "priority": 200}, {"id": "early", "event": "x", "level": 1, "priority": 10}],
         ev("x"), SW, [("early", "raise", "sw-1/early", 1)]),
        # continue: several faults from one message, but first match wins per key
        ([{"id": "ch4", "event": "s", "level": 1, "key": "{device}/ch4", "when": {"ch4": {"ge": 1.5}}, "continue": True},
          {"id": "ch4b", "event": "s", "level": 2, "key": "{device}/ch4", "when": {"ch4": {"ge": 1.0}}, "continue": True},
          {"id": "co", "event": "s", "level": 2, "key": "{device}/co", "when": {"co": {"ge": 24}}}],
         ev("s", ch4=1.6, co=30), GAS, [("ch4", "raise", "gs-1/ch4", 1), ("co", "raise", "gs-1/co", 2)]),
    ],
    ids=["raise", "clear-by-recovery", "missing-attr", "no-rule", "wildcard", "gt", "gt-boundary", "ge-string-number",
         "exists-missing", "exists-false", "in", "regex", "ne", "eq-coerces", "class-mismatch", "class-glob", "region",
         "site", "priority", "continue"],
)
def test_classify(rules: list[dict[str, Any]], event: Event, device: Device, expected: list[tuple[Any, ...]]) -> None:
    got = [(c.rule_id, c.action, c.key, c.level) for c in engine(*rules).classify(event, device)]
    assert got == expected


def test_unclassified_counted_and_default_level() -> None:
    e = engine(LINK)
    assert e.classify(ev("nothing"), SW) == []
    assert e.unclassified == 1
    e2 = engine(LINK, default_level=4)
    [c] = e2.classify(ev("nothing"), SW)
    assert (c.level, c.key, c.rule_id) == (FaultLevel.WARNING, "sw-1/unclassified/nothing", "unclassified")


def test_hysteresis_clear_condition() -> None:
    e = engine({"id": "hot", "event": "t", "level": 2, "when": {"temp": {"ge": 70}}, "clear_on": ["t"],
                "clear_when": {"temp": {"lt": 60}}})
    assert [c.action for c in e.classify(ev("t", temp=75), SW)] == ["raise"]
    assert e.classify(ev("t", temp=65), SW) == []  # between thresholds: neither
    assert [c.action for c in e.classify(ev("t", temp=55), SW)] == ["clear"]


def test_candidates_are_indexed_by_name() -> None:
    rules = [{"id": f"r{i}", "event": f"ev{i}", "level": 3} for i in range(500)]
    e = engine(*rules, {"id": "any", "event": "ev1*", "level": 4})
    assert [cr.id for cr in e.candidates("ev7")] == ["r7"]
    assert [cr.id for cr in e.candidates("ev12")] == ["r12", "any"]


@pytest.mark.parametrize(
    "rule, problem",
    [
        ({"id": "a", "event": "x"}, "needs a level"),
        ({"id": "a", "event": "x", "level": 5}, "less than or equal to 4"),
        ({"id": "a", "event": "x", "level": 1, "when": {"v": {"regex": "("}}}, "invalid regular expression"),
        ({"id": "a", "event": "x", "level": 1, "bogus": 1}, "Extra inputs"),
    ],
    ids=["no-level", "bad-level", "bad-regex", "unknown-key"],
)
def test_bad_rules_rejected(rule: dict[str, Any], problem: str) -> None:
    with pytest.raises(Exception, match=problem):
        parse_pack({"pack": {"name": "t"}, "rules": [rule]})


def test_shipped_packs_load_and_classify() -> None:
    import tomllib
    from importlib import resources

    packs = [parse_pack(tomllib.loads(resources.files("rules").joinpath("packs", f"{n}.toml").read_text("utf-8")))
             for n in ("network", "mine", "medical")]
    e = RuleEngine(packs)
    [c] = e.classify(ev("IF-MIB::linkDown", ifIndex=3, ifDescr="ge-0/0/3"), SW)
    assert (c.key, c.level) == ("sw-1/if/3", FaultLevel.MINOR)
    got = {(c.key, c.level) for c in e.classify(ev("status", ch4=1.2, co=30), GAS)}
    assert got == {("gs-1/gas/ch4", FaultLevel.MAJOR), ("gs-1/gas/co", FaultLevel.MAJOR)}
    [c] = e.classify(ev("heartbeat.lost"), GAS)
    assert c.level == FaultLevel.CRITICAL


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"hold_for": "90s"}, (90.0, 0, (), 0, 0.0)),
        ({"hold_for": "1h30m", "hold_count": 3}, (5400.0, 3, (), 0, 0.0)),
        ({"escalate": [["30m", 2], [7200, 1]]}, (0.0, 0, ((1800.0, FaultLevel.MAJOR), (7200.0, FaultLevel.CRITICAL)), 0, 0.0)),
        ({"flap_count": 6, "flap_window": "10m"}, (0.0, 0, (), 6, 600.0)),
    ],
    ids=["hold-duration", "hold-count", "escalate-durations", "flap"],
)
def test_time_fields_reach_the_classification(fields: dict[str, Any], expected: tuple[Any, ...]) -> None:
    [c] = engine({"id": "a", "event": "x", "level": 3, **fields}).classify(ev("x"), SW)
    assert (c.hold_for, c.hold_count, c.escalate, c.flap_count, c.flap_window) == expected


@pytest.mark.parametrize(
    "rule, problem",
    [
        ({"id": "a", "event": "x", "level": 3, "hold_for": "soon"}, "not a duration"),
        ({"id": "a", "event": "x", "level": 3, "flap_count": 1, "flap_window": "1m"}, "at least 2"),
        ({"id": "a", "event": "x", "level": 3, "flap_count": 4}, "needs a flap_window"),
        ({"id": "a", "event": "x", "level": 2, "escalate": [["1h", 3]]}, "not more severe"),
        ({"id": "a", "event": "x", "action": "clear", "hold_for": 5}, "belong on a raise rule"),
    ],
    ids=["bad-duration", "flap-count-1", "flap-no-window", "escalate-milder", "clear-with-hold"],
)
def test_bad_time_fields_rejected(rule: dict[str, Any], problem: str) -> None:
    with pytest.raises(Exception, match=problem):
        parse_pack({"pack": {"name": "t"}, "rules": [rule]})


def test_bad_pack_file_error_names_file_and_key(tmp_path: Any) -> None:
    from gateway.errors import ConfigError
    from gateway.rulebook import load_pack_file

    f = tmp_path / "site.toml"
    f.write_text('[pack]\nname = "site"\n[[rules]]\nid = "a"\nevent = "x"\nlevel = 3\n'
                 '[[rules]]\nid = "b"\nevent = "y"\nlevel = 9\n', "utf-8")
    with pytest.raises(ConfigError) as e:
        load_pack_file(f)
    assert e.value.file == str(f) and e.value.key == "rules[1].level"
    assert str(e.value).startswith(f"{f}: rules[1].level: ")


def test_wildcard_and_exact_rules_share_the_name_cache() -> None:
    """Per-event cost does not depend on how many rules other events have: the candidate
    list for a name is computed once and is only as long as the rules for that name."""
    many = [{"id": f"r{i}", "event": f"VENDOR{i % 50}-MIB::trap{i}", "level": 3} for i in range(1000)]
    many += [{"id": f"w{i}", "event": f"VENDOR{i}-MIB::*", "level": 4, "priority": 500} for i in range(50)]
    e = engine(*many, LINK)
    assert [cr.id for cr in e.candidates("IF-MIB::linkDown")] == ["down"]
    assert [cr.id for cr in e.candidates("VENDOR7-MIB::trap7")] == ["r7", "w7"]
    assert e.candidates("IF-MIB::linkDown") is e.candidates("IF-MIB::linkDown")  # cached


_scalars = st.one_of(
    st.integers(-3, 12), st.floats(-3, 12, allow_nan=False), st.booleans(),
    st.sampled_from(["7", "7.0", "07", " 7", "-1", ".5", "minor", "critical", "", "True", "1e3", "nan"]),
)


@settings(max_examples=500, deadline=None)
@given(_scalars, st.lists(_scalars, min_size=1, max_size=4))
def test_fast_membership_agrees_with_plain_equality(v: Any, options: list[Any]) -> None:
    """The precomputed ``in``/``eq`` test gives the answer of comparing one by one."""
    from rules.match import _member, _same

    assert _member(options)(v) == any(_same(v, o) for o in options)


@pytest.mark.parametrize(
    "when, attrs, expected",
    [
        ({"s": {"regex": "object"}}, {}, False),
        ({"s": {"ne": "ok"}}, {}, False),
        ({"s": {"not_in": ["ok"]}}, {}, False),
        ({"s": {"not_in": ["ok"]}}, {"s": "bad"}, True),
        ({"n": {"gt": 1, "lt": 5}}, {"n": "3"}, True),
        ({"n": {"gt": 1, "lt": 5}}, {"n": 5}, False),
        ({"a": 1, "b": {"in": ["x", 2]}, "c": {"exists": True}}, {"a": "1", "b": "2", "c": None}, True),
    ],
    ids=["regex-missing", "ne-missing", "not-in-missing", "not-in", "range", "range-edge", "three-attrs"],
)
def test_conditions_on_missing_and_combined(when: dict[str, Any], attrs: dict[str, Any], expected: bool) -> None:
    e = engine({"id": "a", "event": "x", "level": 2, "when": when})
    assert bool(e.classify(ev("x", **attrs), SW)) is expected


def test_rules_can_depend_on_the_device_contract() -> None:
    """Two switches alike in class, site and region, under two contracts: the contract-specific
    rule decides for one, the general rule for the other (the per-scope cache keeps them apart)."""
    medical = {**LINK, "id": "down-medical", "level": 1, "policy": ["medical*"], "priority": 50}
    e = engine(medical, LINK)
    ward = Device("sw-w", "network.switch", site="hq", region="beijing", policy="medical-devices")
    mine = Device("sw-m", "network.switch", site="hq", region="beijing", policy="mine-monitoring")
    for _ in range(2):  # the second round is served from the cache
        (a,) = e.classify(ev("IF-MIB::linkDown", ifIndex=1), ward)
        (b,) = e.classify(ev("IF-MIB::linkDown", ifIndex=1), mine)
        assert (a.rule_id, a.level) == ("down-medical", FaultLevel(1))
        assert (b.rule_id, b.level) == ("down", FaultLevel(3))
    # The clear of the contract rule works under its contract only, as its raise does.
    (c,) = e.classify(ev("IF-MIB::linkUp", ifIndex=1), ward)
    assert (c.rule_id, c.action) == ("down-medical", "clear")
