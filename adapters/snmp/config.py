"""Configuration of an SNMP trap/INFORM listener (lives next to the adapter)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["SnmpListenerConfig", "SnmpV3User", "StormConfig"]

AuthProto = Literal["none", "MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512"]
PrivProto = Literal["none", "DES", "AES", "AES-128", "AES-192", "AES-256"]


class SnmpV3User(BaseModel):
    """One USM user accepted by a listener."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1)
    auth_protocol: AuthProto = "none"
    auth_key: SecretStr | None = None
    priv_protocol: PrivProto = "none"
    priv_key: SecretStr | None = None
    #: Engine IDs (hex, e.g. "0x8000000001020304") whose traps are accepted for this user.
    engine_ids: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _keys(self) -> SnmpV3User:
        # USM derives keys from pass phrases of at least 8 octets (RFC 3414 §11.2).
        for what, proto, key in (("auth", self.auth_protocol, self.auth_key), ("priv", self.priv_protocol, self.priv_key)):
            if proto == "none":
                continue
            n = len(key.get_secret_value().encode()) if key is not None else 0
            if n == 0:
                raise ValueError(f"{what}_protocol {proto} needs a {what}_key (at least 8 characters)")
            if n < 8:
                raise ValueError(f"{what}_key too short ({n} characters; USM needs at least 8)")
        if self.priv_protocol != "none" and self.auth_protocol == "none":
            raise ValueError("priv_protocol needs an auth_protocol (USM has no privacy without authentication)")
        return self


class StormConfig(BaseModel):
    """Per-sender storm control: above ``rate`` traps/s, traps are counted and summarised."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    rate: float = Field(default=500.0, gt=0)
    rearm_rate: float = Field(default=100.0, gt=0)
    window: float = Field(default=10.0, gt=0)


class SnmpListenerConfig(BaseModel):
    """A UDP listener for traps and INFORMs."""

    model_config = ConfigDict(extra="forbid")

    name: str = "snmp"
    host: str = "127.0.0.1"
    #: 162 is the standard trap port but needs root (or CAP_NET_BIND_SERVICE).
    port: int = Field(default=1162, ge=0, le=65535)
    #: Community strings accepted from v1/v2c senders.
    communities: list[str] = Field(default_factory=lambda: ["public"])
    #: Source networks allowed to send (empty = any).
    allowed_sources: list[str] = Field(default_factory=list)
    #: Networks of trap relays (forwarders) whose snmpTrapAddress.0 (an IpAddress) names the
    #: originating device; from anyone else it is ignored and counted (empty = no relays).
    trusted_relays: list[str] = Field(default_factory=list)
    #: SNMPv3 discovery Reports per second per source (an unauthenticated probe gets one;
    #: beyond the rate they are dropped and counted), with this burst.
    report_rate: float = Field(default=1.0, gt=0)
    report_burst: int = Field(default=5, ge=1)
    #: SNMPv3 discovery Reports per second in all (spoofed sources share this budget).
    report_rate_total: float = Field(default=50.0, gt=0)
    #: Reject v1/v2c entirely (accept only SNMPv3 USM).
    v3_only: bool = False
    users: list[SnmpV3User] = Field(default_factory=list)
    learn_engine_ids: bool = True
    #: SNMPv3 USM implementation: "lean" (hashlib/cryptography; messages it does not take go
    #: to pysnmp and are counted) or "pysnmp" (pysnmp for every message).
    v3_engine: Literal["lean", "pysnmp"] = "lean"
    #: Requested SO_RCVBUF in bytes; the kernel caps it at net.core.rmem_max.
    receive_buffer: int = Field(default=8 * 1024 * 1024, ge=65536)
    #: Accept traps from senders not in the inventory ("accept") or drop them ("drop").
    unknown_devices: Literal["accept", "drop"] = "accept"
    #: Extra directories of compiled (pysnmp) MIB modules.
    mib_dirs: list[str] = Field(default_factory=list)
    storm: StormConfig = Field(default_factory=StormConfig)

    @field_validator("allowed_sources", "trusted_relays")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"not a network address: {net!r}") from None
        return v
