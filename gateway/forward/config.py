"""``[forward]``: edge or central mode over NATS JetStream (a pydantic model, no client imported)."""

from __future__ import annotations

import zlib
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from gateway.durations import parse_duration

__all__ = ["ForwardConfig", "partition_of"]

_NAME = r"^[A-Za-z0-9_-]{1,64}$"
Duration = Annotated[float, BeforeValidator(parse_duration)]


class ForwardConfig(BaseModel):
    """Empty ``mode`` (the default): a standalone gateway, nothing forwarded or consumed."""

    model_config = ConfigDict(extra="forbid")

    #: "" standalone; "edge": forward to JetStream; "central": consume from JetStream.
    mode: Literal["", "edge", "central"] = ""
    #: JetStream server URL(s), e.g. ["nats://noc-1:4222", "nats://noc-2:4222"].
    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    #: Authentication: a token, or user + password, or an NKEY seed file, or a .creds file.
    token: SecretStr | None = None
    user: str = ""
    password: SecretStr | None = None
    nkeys_seed: str = ""
    credentials: str = ""
    #: TLS: a CA bundle to verify the server (and a client cert/key for mutual TLS).
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    #: The JetStream stream (created by the central if missing) and the subject prefix:
    #: events on ``<prefix>.ev.<site>``, heartbeats on ``<prefix>.hb.<site>`` (with
    #: ``partitions`` > 1: ``<prefix>.ev.<partition>.<site>`` and ``<prefix>.hb.<partition>.<site>``);
    #: the way back (two-way) in the streams ``<stream>_CTL`` (``<prefix>.ctl.<site>``) and
    #: ``<stream>_RULES`` (``<prefix>.rules``).
    stream: str = Field(default="GATEWAY", pattern=_NAME)
    subject_prefix: str = Field(default="gw", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    #: Partitions of the sites (docs/scaling.md): a site belongs to ``crc32(site) mod
    #: partitions``; each partition has one leader among the central instances. Every edge
    #: and central of one NOC must use the same number; 1 is one leader for all sites.
    partitions: int = Field(default=1, ge=1, le=256)
    # -- edge -----------------------------------------------------------------------------
    #: This site's id (edge): the subject token and the site of every forwarded event.
    site: str = Field(default="", pattern=r"^([A-Za-z0-9_-]{1,64})?$")
    #: This edge's id (edge; default ``edge-<site>``): its device id at the central and the
    #: first half of every ``Nats-Msg-Id``.
    edge_id: str = Field(default="", pattern=r"^([A-Za-z0-9_.-]{1,64})?$")
    #: Most rows the durable forward queue keeps on disk; a gateway alarm at 80 %, then the
    #: oldest readings are dropped (counted), never fault events.
    queue_size: int = Field(default=100_000, ge=10)
    #: Forward sampled readings (status messages without a fault) too.
    readings: bool = False
    #: The edge's own heartbeat towards the central.
    heartbeat: Duration = Field(default=5.0, gt=0, le=300)
    #: Messages published before their acks are awaited (in order; a failure resends the
    #: whole window, JetStream drops what had arrived as duplicates).
    publish_window: int = Field(default=128, ge=1, le=4096)
    #: With ``readings``: at most one reading per device per this interval crosses the WAN.
    reading_every: Duration = Field(default=300.0, ge=0)
    #: Most queued events in one JetStream message (1: one event per message, as before).
    batch: int = Field(default=64, ge=1, le=1024)
    # -- both: the way back ---------------------------------------------------------------
    #: Two-way: the central sends each site the operator actions it needs (maintenance
    #: windows; acknowledge, arrive, resolve of its devices' tickets) on a durable per-site
    #: subject, and the edge applies each once.
    control: bool = True
    #: Central: how long the per-site control stream keeps actions for an edge that is cut off.
    control_retention: Duration = Field(default=7 * 86400.0, ge=60.0)
    #: Central: publish its rule packs and policies, with a version number, for the edges to
    #: run (each edge applies them as a reload would and reports the version it runs).
    distribute_rules: bool = False
    # -- central --------------------------------------------------------------------------
    #: The durable consumer's name (every central instance of one NOC uses the same).
    durable: str = Field(default="central", pattern=_NAME)
    #: Flow control: messages delivered and not yet acknowledged.
    max_ack_pending: int = Field(default=4096, ge=1)
    #: Redelivery when a message is not acknowledged within this time (the central's
    #: events; at an edge, the central's control messages, at most 5 s there).
    ack_wait: Duration = Field(default=30.0, ge=1.0)
    #: JetStream's duplicate window (Nats-Msg-Id); the store's delivery keys cover beyond.
    dedup_window: Duration = Field(default=600.0, ge=1.0)
    #: Events arriving later than this after their own time are marked late (``late_s``).
    late_after: Duration = Field(default=10.0, ge=0)
    #: The edge's heartbeat interval the central expects (its loss: "site unreachable").
    edge_interval: Duration = Field(default=5.0, gt=0, le=300)

    @model_validator(mode="after")
    def _edge_needs_site(self) -> ForwardConfig:
        if self.mode == "edge" and not self.site:
            raise ValueError("forward.mode = 'edge' needs forward.site")
        if not self.servers:
            raise ValueError("forward.servers needs at least one URL")
        return self

    @property
    def edge_name(self) -> str:
        return self.edge_id or f"edge-{self.site}"

    def subject(self, kind: str, site: str) -> str:
        """``<prefix>.<kind>.<site>``, or ``<prefix>.<kind>.<partition>.<site>`` with partitions."""
        if self.partitions > 1:
            return f"{self.subject_prefix}.{kind}.{partition_of(site, self.partitions)}.{site}"
        return f"{self.subject_prefix}.{kind}.{site}"

    def filter_subject(self, kind: str, partition: int | None) -> str:
        """What a central consumes: every site's subject, or one partition's."""
        if self.partitions == 1:
            return f"{self.subject_prefix}.{kind}.>" if kind == "ev" else f"{self.subject_prefix}.{kind}.*"
        if partition is None:
            return f"{self.subject_prefix}.{kind}.>"
        return f"{self.subject_prefix}.{kind}.{partition}.*"


def partition_of(site: str, partitions: int) -> int:
    """The partition of a site: CRC-32 (zlib) of its id in UTF-8, mod ``partitions``. Stable
    across processes, machines and releases (unlike Python's salted ``hash``)."""
    return zlib.crc32(site.encode("utf-8")) % partitions if partitions > 1 else 0
