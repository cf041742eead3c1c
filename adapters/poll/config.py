"""Configuration of the liveness poller (``[[adapters.poll]]``): what to poll, how often, how politely."""

from __future__ import annotations

import fnmatch
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from gateway.durations import parse_duration

__all__ = ["Method", "PollConfig", "PollCredential", "PollTarget"]

Duration = Annotated[float, BeforeValidator(parse_duration)]
Method = Literal["snmp", "icmp"]
AuthProto = Literal["none", "MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512"]
PrivProto = Literal["none", "DES", "AES", "AES-128", "AES-192", "AES-256"]


class PollCredential(BaseModel):
    """A named set of SNMP credentials (devices and targets name it; secrets stay in the config).

    ``version = "2c"`` uses ``community``; ``version = "3"`` uses the USM ``user`` with its keys.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    version: Literal["2c", "3"] = "2c"
    community: SecretStr = SecretStr("public")
    user: str = ""
    auth_protocol: AuthProto = "none"
    auth_key: SecretStr | None = None
    priv_protocol: PrivProto = "none"
    priv_key: SecretStr | None = None
    #: The agent's context name (v3; rarely needed).
    context: str = ""

    @model_validator(mode="after")
    def _v3(self) -> PollCredential:
        if self.version == "3":
            if not self.user:
                raise ValueError("version 3 needs a user")
            if self.auth_protocol != "none" and (self.auth_key is None or len(self.auth_key.get_secret_value()) < 8):
                raise ValueError("auth_key must have at least 8 characters")
            if self.priv_protocol != "none":
                if self.auth_protocol == "none":
                    raise ValueError("privacy (priv_protocol) needs authentication (auth_protocol)")
                if self.priv_key is None or len(self.priv_key.get_secret_value()) < 8:
                    raise ValueError("priv_key must have at least 8 characters")
        return self


class PollTarget(BaseModel):
    """Which inventory devices to poll, and how. Every list given must match (globs);
    a device's own ``poll`` field (inventory) overrides the first target that matches it."""

    model_config = ConfigDict(extra="forbid")

    devices: list[str] = Field(default_factory=list)
    classes: list[str] = Field(default_factory=list)
    sites: list[str] = Field(default_factory=list)
    #: ``["snmp"]`` (GET sysUpTime.0), ``["icmp"]`` (echo) or both: either answer is a heartbeat.
    methods: list[Method] = Field(default_factory=lambda: list[Method](["snmp"]), min_length=1)
    #: Name of a ``[[adapters.poll.credentials]]`` entry (SNMP only).
    credential: str = ""
    #: Poll interval of these devices (default: the adapter's ``interval``).
    interval: Duration | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _scope(self) -> PollTarget:
        if not (self.devices or self.classes or self.sites):
            raise ValueError('give at least one of devices, classes, sites (devices = ["*"] for all)')
        return self

    def matches(self, device_id: str, device_class: str, site: str) -> bool:
        return (
            (not self.devices or any(fnmatch.fnmatchcase(device_id, g) for g in self.devices))
            and (not self.classes or any(fnmatch.fnmatchcase(device_class, g) for g in self.classes))
            and (not self.sites or any(fnmatch.fnmatchcase(site, g) for g in self.sites))
        )


class PollConfig(BaseModel):
    """An active liveness poller: answers become ``heartbeat`` events for the liveness watchdog."""

    model_config = ConfigDict(extra="forbid")

    name: str = "poll"
    #: Default poll interval. A device is lost after interval × ``[liveness] tolerance`` without an answer.
    interval: Duration = Field(default=60.0, gt=0)
    #: Each poll lands within ± jitter × interval of its slot (slots are spread over the interval).
    jitter: float = Field(default=0.1, ge=0, le=0.5)
    #: How long one request waits for its answer.
    timeout: Duration = Field(default=2.0, gt=0)
    #: Further requests after a timeout, within the same poll.
    retries: int = Field(default=1, ge=0, le=10)
    #: Requests in flight at once (SNMP and ICMP together); further polls wait their turn.
    max_in_flight: int = Field(default=256, ge=1, le=65_536)
    #: After this many failed polls in a row the device is polled less often (doubling per failure) ...
    backoff_after: int = Field(default=3, ge=1)
    #: ... up to this interval between polls.
    backoff_max: Duration = Field(default=600.0, gt=0)
    #: SNMP port used when a device address names none.
    port: int = Field(default=161, ge=1, le=65535)
    #: Local address the SNMP and ICMP sockets bind to ("" = any).
    bind: str = ""
    #: Requested receive buffer of the SNMP socket (bytes; the kernel caps it at net.core.rmem_max).
    receive_buffer: int = Field(default=4 * 1024 * 1024, ge=65536)
    #: Report a restart (``device.restarted``) when sysUpTime went back or the agent's boot time moved
    #: later by more than this (plus 1 % of the time between the two answers).
    restart_slack: Duration = 10.0
    credentials: list[PollCredential] = Field(default_factory=list)
    targets: list[PollTarget] = Field(default_factory=list)

    @model_validator(mode="after")
    def _refs(self) -> PollConfig:
        names = [c.name for c in self.credentials]
        for i, n in enumerate(names):
            if names.index(n) != i:
                raise ValueError(f"credentials[{i}].name: duplicate credential name {n!r}")
        for i, t in enumerate(self.targets):
            if t.credential and t.credential not in names:
                raise ValueError(f"targets[{i}].credential: no credential named {t.credential!r}")
        return self
