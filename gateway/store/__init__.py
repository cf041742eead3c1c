"""Persistence: the Store protocol and the batch a pipeline commits in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.alarms import Alarm
from gateway.core.tickets import Ticket, TimelineEntry

__all__ = ["BatchWrite", "OutboxRow", "Store"]


@dataclass(slots=True)
class OutboxRow:
    """A message the help desk must see, written with the change that caused it."""

    connector: str
    ticket_id: int
    key: str
    kind: str
    payload: dict[str, Any]


@dataclass(slots=True)
class BatchWrite:
    """Everything one pipeline batch changed; committed atomically or not at all."""

    alarms: list[Alarm] = field(default_factory=list)
    tickets: list[Ticket] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    #: Delivery keys of submitted events recorded by this batch (key, time), and the time
    #: before which older keys may be forgotten (see ``Pipeline.submit(key=...)``).
    delivery_keys: list[tuple[str, float]] = field(default_factory=list)
    forget_keys_before: float | None = None

    def __bool__(self) -> bool:
        return bool(self.alarms or self.tickets or self.timeline or self.outbox or self.meta or self.delivery_keys)


class Store(Protocol):
    """Durable state. One writer (the pipeline, through ``commit``); readers may be many.

    ``commit`` is atomic: after it returns, every row of the batch is durable (for
    SQLite in WAL mode with synchronous=NORMAL, durable against a process crash; FULL
    also against power loss). It raises ``StoreError`` and then nothing was written.
    Methods are blocking; async callers run them on the store's own thread.
    """

    def commit(self, batch: BatchWrite) -> None: ...

    def load_open_alarms(self) -> list[Alarm]: ...

    def load_open_tickets(self) -> list[Ticket]: ...

    def next_ids(self) -> tuple[int, int]:
        """(next alarm id, next ticket id)."""
        ...

    def list_alarms(self, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...

    def list_tickets(self, status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...

    def get_ticket(self, ticket_id: int) -> dict[str, Any] | None: ...

    def timeline(self, ticket_id: int) -> list[dict[str, Any]]: ...

    def get_meta(self, key: str) -> str | None: ...

    def close(self) -> None: ...
