"""SNMPv1 trap header → SNMPv2 snmpTrapOID mapping (RFC 3584 §3.1); stdlib only."""

from __future__ import annotations

__all__ = ["ENTERPRISE_SPECIFIC", "GENERIC_TRAP_NAMES", "SNMP_TRAPS", "v1_trap_oid"]

#: ``snmpTraps`` (SNMPv2-MIB): the parent of the generic trap OIDs.
SNMP_TRAPS = "1.3.6.1.6.3.1.1.5"

#: The ``generic-trap`` value that says "look at ``specific-trap``".
ENTERPRISE_SPECIFIC = 6

#: RFC 1157 generic-trap values and the SNMPv2 notification each maps to.
GENERIC_TRAP_NAMES: dict[int, str] = {
    0: "coldStart",
    1: "warmStart",
    2: "linkDown",
    3: "linkUp",
    4: "authenticationFailure",
    5: "egpNeighborLoss",
    6: "enterpriseSpecific",
}

_GENERIC_OIDS = tuple(f"{SNMP_TRAPS}.{g + 1}" for g in range(6))


def v1_trap_oid(enterprise: str, generic: int, specific: int) -> str:
    """Return the snmpTrapOID.0 value for an SNMPv1 trap, per RFC 3584 §3.1.

    Generic traps 0..5 map to ``snmpTraps.(generic + 1)`` (``1.3.6.1.6.3.1.1.5.1`` is
    coldStart, ``.3`` linkDown, ...) whatever the enterprise. An enterpriseSpecific (6)
    trap maps to ``enterprise.0.specific``.

    Args:
        enterprise: the trap's ``enterprise`` field as a dotted OID (a leading dot is
            tolerated).
        generic: the ``generic-trap`` field, 0..6.
        specific: the ``specific-trap`` field (only used when ``generic`` is 6).

    Returns:
        The dotted SNMPv2 notification OID.

    Raises:
        ValueError: ``generic`` is outside 0..6, ``specific`` is negative, or an
            enterpriseSpecific trap has an empty enterprise.
    """
    if 0 <= generic < ENTERPRISE_SPECIFIC:
        return _GENERIC_OIDS[generic]
    if generic != ENTERPRISE_SPECIFIC:
        raise ValueError(f"generic-trap {generic} is outside 0..6")
    if specific < 0:
        raise ValueError(f"specific-trap {specific} is negative")
    enterprise = enterprise.strip(".")
    if not enterprise:
        raise ValueError("enterpriseSpecific trap without an enterprise OID")
    return f"{enterprise}.0.{specific}"
