"""MibResolver (OID ↔ names) and the RFC 3584 v1 trap mapping."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.snmp.mibs import DEFAULT_MODULES, MibResolver, pysmi_available
from adapters.snmp.rfc3584 import GENERIC_TRAP_NAMES, v1_trap_oid


@pytest.fixture(scope="module")
def mibs() -> MibResolver:
    return MibResolver()


NAMES = [
    ("1.3.6.1.6.3.1.1.5.1", "SNMPv2-MIB::coldStart"),
    ("1.3.6.1.6.3.1.1.5.3", "IF-MIB::linkDown"),
    ("1.3.6.1.6.3.1.1.5.4", "IF-MIB::linkUp"),
    ("1.3.6.1.2.1.2.2.1.1.15", "IF-MIB::ifIndex.15"),
    ("1.3.6.1.2.1.2.2.1.2.7", "IF-MIB::ifDescr.7"),
    ("1.3.6.1.2.1.2.2.1.8.7", "IF-MIB::ifOperStatus.7"),
    ("1.3.6.1.2.1.1.3.0", "SNMPv2-MIB::sysUpTime.0"),
    ("1.3.6.1.6.3.1.1.4.1.0", "SNMPv2-MIB::snmpTrapOID.0"),
    ("1.3.6.1.2.1.33.2.1", "UPS-MIB::upsTrapOnBattery"),
    ("1.3.6.1.2.1.33.1.2.1.0", "UPS-MIB::upsBatteryStatus.0"),
    ("1.3.6.1.2.1.99.1.1.1.4.3", "ENTITY-SENSOR-MIB::entPhySensorValue.3"),
    ("1.3.6.1.2.1.99.1.1.1.5.3", "ENTITY-SENSOR-MIB::entPhySensorOperStatus.3"),
    ("1.3.6.1.2.1.47.2.0.1", "ENTITY-MIB::entConfigChange"),
    ("1.3.6.1.2.1.47.1.1.1.1.7.1001", "ENTITY-MIB::entPhysicalName.1001"),
    ("1.3.6.1.2.1.25.1.1.0", "HOST-RESOURCES-MIB::hrSystemUptime.0"),
    ("1.3.6.1.4.1.9.9.1", "SNMPv2-SMI::enterprises.9.9.1"),
    ("1.3.6.1.4.1", "SNMPv2-SMI::enterprises"),
]


@pytest.mark.parametrize(("oid", "expected"), NAMES)
def test_name(mibs: MibResolver, oid: str, expected: str) -> None:
    assert mibs.name(oid) == expected


@pytest.mark.parametrize("oid", ["9.9.9", "1.2.840.10045.1", "2.25.7", "not.an.oid", ""])
def test_unknown_stays_as_given(mibs: MibResolver, oid: str) -> None:
    assert mibs.name(oid) == oid
    assert mibs.split(oid) == ("", oid, "")


def test_split(mibs: MibResolver) -> None:
    assert mibs.split("1.3.6.1.6.3.1.1.5.3") == ("IF-MIB", "linkDown", "")
    assert mibs.split("1.3.6.1.2.1.2.2.1.1.15") == ("IF-MIB", "ifIndex", "15")
    assert mibs.split("1.3.6.1.4.1.9.9.1") == ("SNMPv2-SMI", "enterprises", "9.9.1")


def test_resolution_is_memoised(mibs: MibResolver) -> None:
    oid = "1.3.6.1.2.1.2.2.1.7.4242"
    first = mibs.split(oid)
    assert mibs.split(oid) is first
    assert mibs._memo[oid] is first


def test_memo_is_bounded() -> None:
    small = MibResolver(modules=("SNMPv2-MIB",), memo_size=3)
    for i in range(10):
        assert small.name(f"1.3.6.1.2.1.1.9.1.2.{i}") == f"SNMPv2-MIB::sysORID.{i}"
        assert small.memo_len <= 3


@pytest.mark.parametrize(("oid", "name"), NAMES)
def test_reverse(mibs: MibResolver, oid: str, name: str) -> None:
    assert mibs.oid(name) == oid


def test_reverse_accepts_dotted(mibs: MibResolver) -> None:
    assert mibs.oid(".1.3.6.1.6.3.1.1.5.3") == "1.3.6.1.6.3.1.1.5.3"


@pytest.mark.parametrize(
    "bad", ["IF-MIB::noSuchThing", "NOPE-MIB::x", "IF-MIB::ifIndex.x", "linkDown", "::x"]
)
def test_reverse_unknown(mibs: MibResolver, bad: str) -> None:
    with pytest.raises(KeyError):
        mibs.oid(bad)


def test_loads_default_modules(mibs: MibResolver) -> None:
    assert set(DEFAULT_MODULES) <= set(mibs.loaded)
    assert mibs.failed == {}
    assert mibs.load_seconds > 0


def test_missing_module_is_reported_not_fatal() -> None:
    r = MibResolver(modules=("SNMPv2-MIB", "NO-SUCH-MIB"))
    assert "NO-SUCH-MIB" in r.failed
    assert r.name("1.3.6.1.6.3.1.1.5.1") == "SNMPv2-MIB::coldStart"


ACME_MIB = textwrap.dedent(
    """
    (enterprises, MibIdentifier, NotificationType, MibScalar, Integer32) = mibBuilder.import_symbols(
        "SNMPv2-SMI", "enterprises", "MibIdentifier", "NotificationType", "MibScalar", "Integer32"
    )
    acme = MibIdentifier((1, 3, 6, 1, 4, 1, 99999))
    acmeTraps = MibIdentifier((1, 3, 6, 1, 4, 1, 99999, 0))
    acmeFanFail = NotificationType((1, 3, 6, 1, 4, 1, 99999, 0, 1))
    acmeFanSpeed = MibScalar((1, 3, 6, 1, 4, 1, 99999, 1, 1), Integer32())
    mibBuilder.export_symbols(
        "ACME-MIB", acme=acme, acmeTraps=acmeTraps, acmeFanFail=acmeFanFail, acmeFanSpeed=acmeFanSpeed
    )
    """
)


def test_extra_dir_of_compiled_mibs(tmp_path) -> None:
    (tmp_path / "ACME-MIB.py").write_text(ACME_MIB)
    (tmp_path / "BROKEN-MIB.py").write_text("raise RuntimeError('bad vendor MIB')\n")
    r = MibResolver(extra_dirs=[tmp_path], modules=("SNMPv2-MIB", "IF-MIB"))
    assert "ACME-MIB" in r.loaded
    assert "BROKEN-MIB" in r.failed
    assert r.name("1.3.6.1.4.1.99999.0.1") == "ACME-MIB::acmeFanFail"
    assert r.name("1.3.6.1.4.1.99999.1.1.0") == "ACME-MIB::acmeFanSpeed.0"
    assert r.name("1.3.6.1.4.1.99999.7") == "ACME-MIB::acme.7"
    assert r.oid("ACME-MIB::acmeFanFail") == "1.3.6.1.4.1.99999.0.1"
    assert r.name("1.3.6.1.6.3.1.1.5.3") == "IF-MIB::linkDown"


def test_extra_dir_must_exist(tmp_path) -> None:
    with pytest.raises(ValueError):
        MibResolver(extra_dirs=[tmp_path / "absent"])


def test_pysmi_probe_answers() -> None:
    assert pysmi_available() in (True, False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**32 - 1), min_size=1, max_size=20))
def test_any_numeric_oid_resolves_consistently(mibs: MibResolver, arcs: list[int]) -> None:
    oid = ".".join(map(str, arcs))
    mod, sym, suffix = mibs.split(oid)
    name = mibs.name(oid)
    if not mod:
        assert (sym, suffix, name) == (oid, "", oid)
    else:
        assert name.startswith(f"{mod}::{sym}")
        assert oid.endswith(suffix)
        assert mibs.oid(name) == oid


# -- RFC 3584 §3.1 ----------------------------------------------------------------------

RFC3584 = [
    ("1.3.6.1.4.1.9", 0, 0, "1.3.6.1.6.3.1.1.5.1"),
    ("1.3.6.1.4.1.9", 1, 0, "1.3.6.1.6.3.1.1.5.2"),
    ("1.3.6.1.4.1.9", 2, 0, "1.3.6.1.6.3.1.1.5.3"),
    ("1.3.6.1.4.1.9", 3, 0, "1.3.6.1.6.3.1.1.5.4"),
    ("1.3.6.1.4.1.9", 4, 0, "1.3.6.1.6.3.1.1.5.5"),
    ("1.3.6.1.4.1.9", 5, 0, "1.3.6.1.6.3.1.1.5.6"),
    ("1.3.6.1.4.1.9", 2, 99, "1.3.6.1.6.3.1.1.5.3"),
    ("1.3.6.1.4.1.9.9.41.2", 6, 1, "1.3.6.1.4.1.9.9.41.2.0.1"),
    (".1.3.6.1.4.1.318.0", 6, 5, "1.3.6.1.4.1.318.0.0.5"),
    ("1.3.6.1.2.1.33.2", 6, 1, "1.3.6.1.2.1.33.2.0.1"),
]


@pytest.mark.parametrize(("enterprise", "generic", "specific", "expected"), RFC3584)
def test_v1_trap_oid(enterprise: str, generic: int, specific: int, expected: str) -> None:
    assert v1_trap_oid(enterprise, generic, specific) == expected


@pytest.mark.parametrize(
    ("generic", "name"),
    [
        (0, "SNMPv2-MIB::coldStart"),
        (1, "SNMPv2-MIB::warmStart"),
        (2, "IF-MIB::linkDown"),
        (3, "IF-MIB::linkUp"),
        (4, "SNMPv2-MIB::authenticationFailure"),
    ],
)
def test_generic_traps_name_their_v2_notifications(mibs: MibResolver, generic: int, name: str) -> None:
    assert mibs.name(v1_trap_oid("1.3.6.1.4.1.9", generic, 0)) == name
    assert GENERIC_TRAP_NAMES[generic] == name.split("::")[1]


@pytest.mark.parametrize(
    ("enterprise", "generic", "specific"),
    [("1.3.6.1.4.1.9", 7, 0), ("1.3", -1, 0), ("1.3", 6, -1), ("", 6, 1)],
)
def test_v1_trap_oid_rejects(enterprise: str, generic: int, specific: int) -> None:
    with pytest.raises(ValueError):
        v1_trap_oid(enterprise, generic, specific)
