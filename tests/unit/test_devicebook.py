"""The inventory as rows: CSV/JSON parsing, one clear line per bad row (row and column), the
config file winning on conflict, replace mode, parent checks, and export → import round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.core.devicebook import (
    check_rows,
    device_to_row,
    merge_devices,
    parse_csv,
    parse_json,
    to_csv,
    to_json,
)
from gateway.model import Device

POLICIES = ["mine-monitoring", "network-equipment"]
CFG = {"core-1": Device("core-1", "network.switch", site="hq", policy="network-equipment", addresses=("10.0.0.1",))}


def _check(text: str, fmt: str = "csv", stored: dict[str, Device] | None = None, replace: bool = False) -> Any:
    rows, errors = parse_csv(text) if fmt == "csv" else parse_json(text)
    return check_rows(rows, config=CFG, stored=stored or {}, policies=POLICIES, default_policy="mine-monitoring",
                      replace=replace, errors=errors)


GOOD = (
    "id,name,class,site,policy,parent,addresses,heartbeat_interval,poll\n"
    "sw-1,Switch 1,network.switch,hq,network-equipment,core-1,10.0.1.1;10.0.1.2,30s,snmp:core-v3\n"
    "sw-2,,network.switch,hq,,sw-1,10.0.1.3:1161,,icmp\n"
)


def test_a_good_csv_adds_its_devices() -> None:
    c = _check(GOOD)
    assert c.ok and c.summary() == {"added": 2, "updated": 0, "removed": 0, "unchanged": 0}
    sw1, sw2 = c.added
    assert sw1 == Device("sw-1", "network.switch", site="hq", policy="network-equipment", parent="core-1",
                         addresses=("10.0.1.1", "10.0.1.2"), heartbeat_interval=30.0, name="Switch 1", poll="snmp:core-v3")
    assert sw2.policy == "mine-monitoring" and sw2.parent == "sw-1" and sw2.addresses == ("10.0.1.3:1161",)


BAD_ROWS = [
    pytest.param("id,class\n,network.switch\n", ["row 2, column id: empty (every device needs an id)"], id="empty-id"),
    pytest.param("id,policy\na,nope\n", ["row 2, column policy: no policy named 'nope'"], id="unknown-policy"),
    pytest.param("id,heartbeat_interval\na,soon\n", ["row 2, column heartbeat_interval: "], id="bad-duration"),
    pytest.param("id,poll\na,telnet\n", ["row 2, column poll: "], id="bad-poll"),
    pytest.param("id,addresses\na,10.0.0.1:99999\n", ["row 2, column addresses: '10.0.0.1:99999': port must be 1-65535"], id="bad-port"),
    pytest.param("id,parent\na,ghost\n", ["row 2, column parent: no device with id 'ghost'"], id="unknown-parent"),
    pytest.param("id,parent\na,b\nb,a\n", ["row 2, column parent: the parent chain of 'a' loops",
                                           "row 3, column parent: the parent chain of 'b' loops"], id="parent-loop"),
    pytest.param("id\na\na\n", ["row 3, column id: 'a' is also on row 2"], id="duplicate-id"),
    pytest.param("id,colour\na,red\n", ["row 1, column colour: unknown column"], id="unknown-column"),
    pytest.param("name\nx\n", ["row 1, column id: the header has no id column"], id="no-id-column"),
    pytest.param("id,class\na,b,c\n", ["row 2: 3 values for 2 columns"], id="too-many-values"),
    pytest.param("id,class\ncore-1,network.router\n", ["row 2, column id: 'core-1' is defined in the config file"],
                 id="config-wins"),
    pytest.param("", ["file: empty file"], id="empty-file"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_ROWS)
def test_each_bad_row_is_one_line_naming_row_and_column(text: str, expected: list[str]) -> None:
    c = _check(text)
    assert not c.ok and not (c.added or c.updated or c.removed)
    lines = [str(e) for e in c.errors]
    assert len(lines) == len(expected), lines
    for line, want in zip(lines, expected, strict=True):
        assert line.startswith(want), (line, want)


def test_one_bad_row_among_many_stops_all_and_every_problem_is_listed() -> None:
    rows = ["id,policy"] + [f"d{i},mine-monitoring" for i in range(1000)]
    rows[501] = "d500,nope"
    rows[801] = "d800,"
    rows[802] = ",mine-monitoring"
    c = _check("\n".join(rows) + "\n")
    assert [str(e) for e in c.errors] == ["row 502, column policy: no policy named 'nope'",
                                          "row 803, column id: empty (every device needs an id)"]
    assert c.added == []


def test_json_rows_are_numbered_from_one() -> None:
    c = _check(json.dumps([{"id": "a"}, {"id": "b", "addresses": "x y"}, 3]), fmt="json")
    assert [str(e) for e in c.errors] == ["row 2, column addresses: 'x y' is not an address", "row 3: not an object"]
    assert str(_check("{", fmt="json").errors[0]).startswith("file: not JSON")


def test_updates_unchanged_and_replace() -> None:
    stored = {"a": Device("a", policy="mine-monitoring"), "b": Device("b", policy="mine-monitoring"),
              "c": Device("c", policy="mine-monitoring", parent="b")}
    c = _check("id,name\na,\nb,renamed\n", stored=stored)
    assert c.summary() == {"added": 0, "updated": 1, "removed": 0, "unchanged": 1}
    c = _check("id,parent\nb,\nc,b\n", stored=stored, replace=True)
    assert c.ok and c.removed == ["a"]
    c = _check("id,parent\na,\nc,b\n", stored=stored, replace=True)  # b would go, but c names it as parent
    assert [str(e) for e in c.errors] == ["row 3, column parent: no device with id 'b'"]


def test_an_export_imports_again_unchanged_config_devices_included() -> None:
    first = _check(GOOD)
    stored = {d.id: d for d in first.added}
    rows = [device_to_row(d) for d in [*CFG.values(), *stored.values()]]
    for text, fmt in ((to_csv(rows), "csv"), (to_json(rows), "json")):
        c = _check(text, fmt=fmt, stored=stored)
        assert c.ok and c.summary() == {"added": 0, "updated": 0, "removed": 0, "unchanged": 3}, fmt


def test_the_config_file_wins_when_merging() -> None:
    devices, shadowed = merge_devices(list(CFG.values()), [Device("core-1", "x"), Device("sw-9")])
    assert [d.id for d in devices] == ["core-1", "sw-9"] and devices[0].device_class == "network.switch"
    assert shadowed == ["core-1"]


def test_a_spreadsheet_bom_and_blank_lines_are_fine() -> None:
    c = _check("\ufeffid,site\n\na,hq\n\n")
    assert c.ok and c.added[0].site == "hq"
