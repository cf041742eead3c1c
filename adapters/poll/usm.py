"""SNMPv3 GET of sysUpTime.0 through pysnmp's asyncio command generator.

Why pysnmp here and not the lean codec of :mod:`adapters.poll.getpdu`: a v3 GET needs the
whole User-based Security Model (engine discovery with its Report, the time window,
localized keys, HMAC and DES/AES privacy), which pysnmp implements and tests against many
agents. A v3 poll costs ~1–2 ms of CPU this way (BENCHMARKS.md); a gateway polling
thousands of devices every minute spends a few percent of a core on it, and v2c devices
take the lean path.
"""

from __future__ import annotations

from typing import Any

from pysnmp.hlapi.v3arch import asyncio as hl

from adapters.poll.config import PollCredential

__all__ = ["V3Getter"]

_AUTH = {
    "none": hl.usmNoAuthProtocol,
    "MD5": hl.usmHMACMD5AuthProtocol,
    "SHA": hl.usmHMACSHAAuthProtocol,
    "SHA-224": hl.usmHMAC128SHA224AuthProtocol,
    "SHA-256": hl.usmHMAC192SHA256AuthProtocol,
    "SHA-384": hl.usmHMAC256SHA384AuthProtocol,
    "SHA-512": hl.usmHMAC384SHA512AuthProtocol,
}
# AES-192/256 as net-snmp and most vendors do them (the Blumenthal key extension).
_PRIV = {
    "none": hl.usmNoPrivProtocol,
    "DES": hl.usmDESPrivProtocol,
    "AES": hl.usmAesCfb128Protocol,
    "AES-128": hl.usmAesCfb128Protocol,
    "AES-192": hl.usmAesBlumenthalCfb192Protocol,
    "AES-256": hl.usmAesBlumenthalCfb256Protocol,
}
_SYS_UPTIME = "1.3.6.1.2.1.1.3.0"


class V3Getter:
    """One pysnmp engine for every v3 device of a poller."""

    def __init__(self) -> None:
        self._engine = hl.SnmpEngine()
        self._users: dict[str, Any] = {}

    def _user(self, cred: PollCredential) -> Any:
        u = self._users.get(cred.name)
        if u is None:
            u = self._users[cred.name] = hl.UsmUserData(
                cred.user,
                authKey=cred.auth_key.get_secret_value() if cred.auth_key is not None else None,
                privKey=cred.priv_key.get_secret_value() if cred.priv_key is not None else None,
                authProtocol=_AUTH[cred.auth_protocol],
                privProtocol=_PRIV[cred.priv_protocol],
            )
        return u

    async def uptime(self, host: str, port: int, cred: PollCredential, timeout: float, retries: int) -> tuple[bool, int | None, str]:
        """``(answered, sysUpTime or None, problem)``: ``answered`` is ``False`` when no valid
        answer came (timeout, wrong keys: ``problem`` says which)."""
        target = await hl.UdpTransportTarget.create((host, port), timeout=timeout, retries=retries)
        err_ind, err_status, _idx, varbinds = await hl.get_cmd(
            self._engine,
            self._user(cred),
            target,
            hl.ContextData(contextName=cred.context),
            hl.ObjectType(hl.ObjectIdentity(_SYS_UPTIME)),
            lookupMib=False,
        )
        if err_ind:
            return False, None, str(err_ind)
        if err_status:
            return True, None, str(err_status.prettyPrint())
        for _oid, value in varbinds:
            try:
                return True, int(value), ""
            except (TypeError, ValueError):
                return True, None, ""
        return True, None, ""

    def forget(self, host: str, port: int) -> bool:
        """Drop what the engine learned about one agent (its engine ID, boots and time), so the
        next request discovers it again.

        pysnmp keeps a peer's engine data for minutes: an agent that restarted with a reset
        engine time (net-snmp keeps its boots count only when it can save it) is not answered
        meanwhile, and would look lost. pysnmp has no public way to forget one peer; this reaches
        into its caches by their names in 7.1 and returns ``False`` (the caller then uses a
        fresh engine) when they are not where expected.
        """
        mp = next((m for m in self._engine.message_processing_subsystems.values()
                   if hasattr(m, "_SnmpV3MessageProcessingModel__engineIdCache")), None)
        usm = next((m for m in self._engine.security_models.values()
                    if hasattr(m, "_SnmpUSMSecurityModel__timeline")), None)
        if mp is None or usm is None:
            return False
        cache: dict[Any, Any] = mp._SnmpV3MessageProcessingModel__engineIdCache
        timeline: dict[Any, Any] = usm._SnmpUSMSecurityModel__timeline
        for key in [k for k in cache if len(k) == 2 and tuple(k[1])[:2] == (host, port)]:
            entry = cache.pop(key)
            timeline.pop(entry.get("securityEngineId"), None)
        return True

    def close(self) -> None:
        dispatcher = self._engine.transport_dispatcher
        if dispatcher is not None:
            dispatcher.close_dispatcher()
