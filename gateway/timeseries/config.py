"""The ``[timeseries]`` section's model (pydantic + stdlib + leaf modules only: loading a
config never imports the sink or its client library)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from gateway.durations import parse_duration

__all__ = ["Precision", "TimeseriesConfig"]

Precision = Literal["s", "ms", "us", "ns"]

Duration = Annotated[float, BeforeValidator(parse_duration)]


class TimeseriesConfig(BaseModel):
    """The ``[timeseries]`` section.

    Attributes:
        enabled: write anything at all (off by default).
        url: base URL of the server; the sink posts to ``<url>/api/v2/write``.
        token: API token (InfluxDB 2: a token with write access to the bucket; InfluxDB 3:
            a database token). Sent as ``Authorization: Token …``.
        org: InfluxDB 2 organisation (name or id); ignored by InfluxDB 3 and VictoriaMetrics.
        bucket: InfluxDB 2 bucket; for InfluxDB 3 the database name.
        precision: timestamp precision of the written points.
        batch_size: most points per write request; a full batch is written at once.
        flush_interval: write what is buffered at least this often.
        buffer_size: most points held while the server is slow or gone (the batch in
            flight included); beyond it the oldest are dropped and counted.
        timeout: HTTP timeout of one write request.
        retry_min: first delay after a failed write; doubled per failure.
        retry_max: cap of the delay between retries.
        stop_timeout: how long ``stop()`` keeps trying to write what is buffered.
        gzip: compress write requests.
        event_names: event names whose numeric attributes are telemetry.
        include: attribute name globs to write (default all).
        exclude: attribute name globs never written (wins over ``include``).
        tag_attributes: attribute name globs written as tags (string values included)
            instead of fields. Every distinct value is a new series: use sparingly.
        measurement: ``"event"`` (measurement = event name, e.g. ``heartbeat``) or
            ``"class"`` (measurement = device class, with an ``event`` tag).
        alarm_measurement: measurement of alarm transitions.
        ticket_measurement: measurement of ticket changes.
        alarm_key_tag: write the alarm key as a tag (else as a string field).
        titles: write alarm and ticket titles, and why an alarm changed, as string fields
            ``title`` and ``note`` (Grafana annotation text). VictoriaMetrics stores string
            fields as 0.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    url: str = "http://127.0.0.1:8086"
    token: SecretStr = SecretStr("")
    org: str = ""
    bucket: str = "gateway"
    precision: Precision = "ms"
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    flush_interval: Duration = Field(default=5.0, gt=0)
    buffer_size: int = Field(default=100_000, ge=1)
    timeout: Duration = Field(default=10.0, gt=0)
    retry_min: Duration = Field(default=1.0, gt=0)
    retry_max: Duration = Field(default=60.0, gt=0)
    stop_timeout: Duration = Field(default=10.0, ge=0)
    gzip: bool = False
    event_names: list[str] = Field(default_factory=lambda: ["heartbeat", "status", "alarm"])
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    tag_attributes: list[str] = Field(default_factory=list)
    measurement: Literal["event", "class"] = "event"
    alarm_measurement: str = Field(default="gateway_alarm", min_length=1)
    ticket_measurement: str = Field(default="gateway_ticket", min_length=1)
    alarm_key_tag: bool = True
    titles: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> TimeseriesConfig:
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) cannot exceed buffer_size ({self.buffer_size})")
        if self.retry_min > self.retry_max:
            raise ValueError(f"retry_min ({self.retry_min}) cannot exceed retry_max ({self.retry_max})")
        if self.alarm_measurement == self.ticket_measurement:
            raise ValueError("alarm_measurement and ticket_measurement must differ")
        if self.measurement == "event":
            clash = {self.alarm_measurement, self.ticket_measurement} & set(self.event_names)
            if clash:
                raise ValueError(f"measurement {min(clash)!r} is both an event name and a transition measurement")
        return self
