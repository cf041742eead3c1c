"""Persistence: the Store protocols, the batch a pipeline commits in one transaction, and row types.

Two protocols, by who may call them:

* :class:`StoreReader`: queries. Safe on a read-only opening (``gateway alarms``, reports,
  the API's reads) and from any thread while the daemon writes.
* :class:`Store` (a ``StoreReader``): the writes. ``commit`` is the pipeline's (the single
  writer of alarms, tickets and timeline); the outbox methods are the delivery worker's;
  maintenance windows and failed-message triage are operator writes (API, CLI).

A backend (``sqlite.SqliteStore``, the embedded default, and ``postgresql.PostgresStore``;
both run the shared SQL of ``sql.SqlStore``) passes ``tests/store_contract/``: the same suite
runs against every backend, so the behaviour documented here is the behaviour tested there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypedDict

from gateway.core.alarms import Alarm
from gateway.core.tickets import Ticket, TimelineEntry
from gateway.model import OutboxMessage

__all__ = [
    "INVENTORY_VERSION",
    "OUTBOX_STATES",
    "RULES_RELOADS",
    "BatchWrite",
    "DeviceChange",
    "ForwardQueue",
    "ForwardRow",
    "OutboxEntry",
    "OutboxRow",
    "Store",
    "StoreReader",
    "TimelineRow",
]

#: Outbox message states. ``pending`` waits (``next_attempt``); ``sending`` is leased by a
#: delivery in flight; ``delivered`` and ``discarded`` are final; ``failed`` is parked until an
#: operator retries (back to ``pending``) or discards it.
OUTBOX_STATES = ("pending", "sending", "delivered", "failed", "discarded")

#: Counters (:meth:`StoreReader.counter`) that processes sharing a store watch to follow each
#: other's changes without re-reading everything (a partitioned central's leaders, docs/scaling.md):
#: bumped by every :meth:`Store.save_devices`, in its transaction;
INVENTORY_VERSION = "inventory.version"
#: bumped once per rules reload asked for through the API (:meth:`Store.bump_counter`).
RULES_RELOADS = "rules.reloads"


#: A message to write with its batch: the decision core's :class:`~gateway.model.OutboxMessage`.
OutboxRow = OutboxMessage


class OutboxEntry(TypedDict):
    """A stored outbox message, as the worker and operators see it."""

    id: int
    connector: str
    ticket_id: int
    key: str
    kind: str
    payload: dict[str, Any]
    state: str
    #: Delivery attempts started (recorded before each request goes out).
    attempts: int
    #: Not handed out before this time: the retry time, or the end of the lease while sending.
    next_attempt: float
    remote_id: str | None
    last_error: str | None
    created_at: float
    delivered_at: float | None


class DeviceChange(TypedDict):
    """One inventory change: ``action`` is ``add``, ``update``, ``adopt`` or ``remove``;
    ``data`` the device's row (``gateway.core.devicebook.device_to_row``), ``None`` for a removal."""

    device: str
    action: str
    data: dict[str, Any] | None


class ForwardRow(NamedTuple):
    """An event an edge forwards to the central (``gateway.forward``): its original time,
    whether it is a fault event (never dropped) or a reading, and the JSON-able message."""

    ts: float
    fault: bool
    payload: dict[str, Any]


class TimelineRow(TypedDict):
    """A stored timeline line (:class:`~gateway.core.tickets.TimelineEntry` as a mapping)."""

    ticket_id: int
    ts: float
    actor: str
    kind: str
    note: str
    #: Whom the caller (``actor``, the authenticated identity) said it acted for; ``""`` if nobody.
    on_behalf_of: str


@dataclass(slots=True)
class BatchWrite:
    """Everything one pipeline batch changed; committed atomically or not at all."""

    #: Upserted by id; the full current state of each alarm (behaviour state included).
    alarms: list[Alarm] = field(default_factory=list)
    #: Upserted by id; the full current state of each ticket (clocks included).
    tickets: list[Ticket] = field(default_factory=list)
    #: Appended in list order (the timeline keeps insertion order within a ticket).
    timeline: list[TimelineEntry] = field(default_factory=list)
    #: Appended in list order; per (connector, ticket) this is the delivery order.
    outbox: list[OutboxRow] = field(default_factory=list)
    #: Upserted key/value pairs (read back with ``get_meta``).
    meta: dict[str, str] = field(default_factory=dict)
    #: Delivery keys of submitted events recorded by this batch (key, time), and the time
    #: before which older keys may be forgotten (see ``Pipeline.submit(key=...)``).
    delivery_keys: list[tuple[str, float]] = field(default_factory=list)
    forget_keys_before: float | None = None
    #: Edge mode: rows appended to the forward queue (see :class:`ForwardQueue`), and the
    #: queue's bound: beyond it the oldest readings are deleted (counted), never faults.
    forward: list[ForwardRow] = field(default_factory=list)
    forward_limit: int = 0

    def __bool__(self) -> bool:
        return bool(self.alarms or self.tickets or self.timeline or self.outbox or self.meta or self.delivery_keys
                    or self.forward)


class StoreReader(Protocol):
    """Read access to durable state. Every method is a query: it changes nothing.

    Threads: methods block; async callers run them with ``asyncio.to_thread``. A backend
    serialises calls itself, so readers on other threads may run while the writer commits.
    Consistency: each call sees committed data only (never half a batch), as of some
    moment during the call; two calls may see different batches.
    Errors: a backend failure raises :class:`~gateway.errors.StoreError`.
    Rows: alarms and tickets come back as domain objects (``load_*``) or as their
    ``to_dict()`` mappings (``list_*``, ``find_*``, ``get_*``); "newest first" means by id,
    descending; ``limit`` caps the rows returned.
    """

    def schema_version(self) -> int:
        """The schema version the store is at (migrations applied, see ``migrations``)."""
        ...

    # -- start-up state (the pipeline's in-memory books are rebuilt from these) ------------
    def load_open_alarms(self) -> list[Alarm]:
        """Alarms not ``cleared``, by id ascending, behaviour state (holds, flaps, ...) restored."""
        ...

    def load_open_tickets(self) -> list[Ticket]:
        """Tickets not ``closed``, by id ascending, SLA clocks (timers) included."""
        ...

    def load_ticket(self, ticket_id: int) -> Ticket | None:
        """One ticket, closed ones too (a reopen reads it back); ``None`` if there is none."""
        ...

    def next_ids(self) -> tuple[int, int]:
        """(next alarm id, next ticket id): one more than the largest committed id of each
        (1 for an empty store). Ids are assigned by the writer, not by the store, so a
        restart continues the sequence without reusing an id."""
        ...

    def load_delivery_keys(self, since: float) -> list[tuple[str, float]]:
        """Delivery keys committed (``BatchWrite.delivery_keys``) at or after ``since`` and
        not forgotten yet, oldest first: the pipeline's duplicate filter after a restart."""
        ...

    # -- queries (API, CLI) ---------------------------------------------------------------
    def list_alarms(self, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Alarms (``Alarm.to_dict()``), all or in one ``state``, newest first."""
        ...

    def find_alarms(
        self,
        *,
        states: Sequence[str] | None = None,
        levels: Sequence[int] | None = None,
        devices: Sequence[str] | None = None,
        limit: int = 1000,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """Alarms matching every given filter, newest first. Each filter is a list of
        accepted values; ``None`` does not filter, an empty list matches nothing.
        ``before`` (an alarm id) keeps only older alarms: the next page after that one."""
        ...

    def get_alarm(self, alarm_id: int) -> dict[str, Any] | None:
        """One alarm (``Alarm.to_dict()``), or ``None``."""
        ...

    def alarms_by_id(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """The alarms of ``ids`` that exist (as :meth:`get_alarm`), in id order."""
        ...

    def tickets_by_id(self, ids: Sequence[int]) -> list[Ticket]:
        """The tickets of ``ids`` that exist (as :meth:`load_ticket`), in id order."""
        ...

    def list_tickets(self, status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Tickets (``Ticket.to_dict()``), all or in one ``status``, newest first."""
        ...

    def find_tickets(
        self,
        *,
        statuses: Sequence[str] | None = None,
        levels: Sequence[int] | None = None,
        devices: Sequence[str] | None = None,
        sites: Sequence[str] | None = None,
        owners: Sequence[str] | None = None,
        teams: Sequence[str] | None = None,
        policies: Sequence[str] | None = None,
        limit: int = 1000,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """Tickets matching every given filter (as :meth:`find_alarms`, ``before`` too), newest first.
        ``owners`` and ``teams`` match the ticket's owner and team (``""``: nobody / none);
        ``policies`` its contract."""
        ...

    def get_ticket(self, ticket_id: int) -> dict[str, Any] | None:
        """One ticket (``Ticket.to_dict()``), or ``None``."""
        ...

    def tickets_opened(self, policy: str, start: float, end: float) -> list[Ticket]:
        """A policy's tickets opened in ``[start, end)``, by opening time then id (reports)."""
        ...

    def timeline(self, ticket_id: int) -> list[TimelineRow]:
        """A ticket's timeline in commit order (batch order, then order within the batch)."""
        ...

    def timeline_since(self, since: float, kinds: Sequence[str]) -> list[TimelineRow]:
        """Timeline lines of the given kinds at or after ``since``, every ticket's, in commit order."""
        ...

    def get_meta(self, key: str) -> str | None:
        """A value committed through ``BatchWrite.meta``, or ``None``."""
        ...

    def counter(self, key: str) -> int:
        """A counter's value (:data:`INVENTORY_VERSION`, :data:`RULES_RELOADS`); 0 if it was
        never bumped. One primary-key lookup: cheap enough to poll every few seconds."""
        ...

    def list_maintenance(self, ending_after: float | None = None) -> list[dict[str, Any]]:
        """Stored maintenance windows (``Window.to_dict()``) by start time, then id; with
        ``ending_after``, only windows whose end is later than it."""
        ...

    # -- after-sales (read side) ---------------------------------------------------------
    def list_planned(
        self,
        *,
        devices: Sequence[str] | None = None,
        contracts: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
        due_before: float | None = None,
        limit: int = 10000,
    ) -> list[dict[str, Any]]:
        """Planned work items (dicts as saved) matching every given filter (lists as in
        :meth:`find_alarms`; ``due_before``: ``due`` earlier than it), by ``due`` then id."""
        ...

    def get_planned(self, item_id: str) -> dict[str, Any] | None:
        """One planned work item, or ``None``."""
        ...

    def list_service_records(
        self,
        *,
        device: str | None = None,
        ticket_id: int | None = None,
        kinds: Sequence[str] | None = None,
        limit: int = 100000,
    ) -> list[dict[str, Any]]:
        """Service records (``id``, ``device``, ``ticket_id``, ``kind``, ``ts``, ``actor``,
        ``data``) matching every given filter, by ``ts`` then id (insertion order)."""
        ...

    # -- people (read side) ----------------------------------------------------------------
    def get_user(self, name: str) -> dict[str, Any] | None:
        """One account: ``name``, ``role``, ``display_name``, ``password_hash``, ``disabled``,
        ``scope`` (``{"sites": [...], "policies": [...]}`` for customers), ``created_at``,
        ``updated_at``; ``None`` if there is none."""
        ...

    def list_users(self) -> list[dict[str, Any]]:
        """Every account (as :meth:`get_user`), by name."""
        ...

    def user_token(self, digest: str) -> dict[str, Any] | None:
        """The personal API token with this digest: ``id``, ``user``, ``label``, ``created_at``."""
        ...

    def list_user_tokens(self, user: str) -> list[dict[str, Any]]:
        """A user's personal tokens (as :meth:`user_token`), oldest first."""
        ...

    def get_session(self, digest: str, now: float) -> dict[str, Any] | None:
        """The board session with this digest if it has not expired by ``now``: ``user``,
        ``created_at``, ``expires_at``."""
        ...

    def sign_in_failures(self, name: str, since: float) -> int:
        """Failed sign-ins recorded for account name ``name`` at or after ``since`` (by any
        process on this store: the throttle holds across restarts and HA instances)."""
        ...

    # -- scheduled service reports (read side) -------------------------------------------------
    def service_reports_sent(self, contract: str | None = None) -> list[dict[str, Any]]:
        """Scheduled service reports queued so far, all or one contract's, newest first:
        ``{"key", "contract", "period", "connector", "queued_at"}``."""
        ...

    # -- inventory --------------------------------------------------------------------------
    def list_devices(self) -> list[dict[str, Any]]:
        """Stored devices (their rows, as saved), by id."""
        ...

    def device_changes(self, device: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Inventory changes, newest first, all or one device's: ``{"id", "device", "action",
        "at", "actor", "data"}`` (``data``: the row saved, ``None`` for a removal)."""
        ...

    # -- outbox and help-desk links (read side) -------------------------------------------
    def outbox_list(self, state: str | None = None, limit: int = 500) -> list[OutboxEntry]:
        """Outbox messages, all or in one state, newest first (operators' view)."""
        ...

    def outbox_report_delivered(self, ticket_id: int) -> tuple[str, float] | None:
        """The first delivered ``report`` message of a ticket: ``(connector, delivered_at)``,
        or ``None`` when none was delivered (start-up closes a restored ticket whose report
        went out just before a crash)."""
        ...

    def outbox_counts(self) -> dict[str, int]:
        """Number of outbox messages by state; states with none are absent."""
        ...

    def remote_id(self, connector: str, ticket_id: int) -> str | None:
        """The help desk's id for a ticket, once a delivery reported one; else ``None``."""
        ...

    def remote_links(self, connector: str) -> dict[str, int]:
        """Remote id → ticket id for every linked ticket of a connector (two-way sync)."""
        ...

    def close(self) -> None:
        """Release the connection. Idempotent; no other method may be called afterwards."""
        ...


class Store(StoreReader, Protocol):
    """Durable state, writable. One writer of alarms and tickets (the pipeline, through
    ``commit``); the outbox worker and operators write only their own rows.

    Transactions: ``commit`` and every other write are each one transaction: after the
    call returns the change is durable (SQLite in WAL mode with ``synchronous=NORMAL``:
    against a process crash; ``FULL``: against power loss too); when it raises
    :class:`~gateway.errors.StoreError`, nothing of it was written and the call may be
    retried as is. Writes never partially apply.

    Outbox protocol (the worker's side; one worker per store):

    1. ``outbox_reset_leases()`` once at start: messages a crash left ``sending`` are due
       again, ``attempts`` kept.
    2. ``outbox_claim(now, lease)`` does steps 2 and 3 below atomically (what the worker
       calls; several claimers never share a message). Step by step:
       ``outbox_due(now)`` hands out, per (connector, ticket), only the oldest message not
       yet final, and only if it is due: per-ticket order holds, tickets run in parallel.
    3. ``outbox_attempt(id, now, lease)`` before the request: it leases the message
       (``sending``, not handed out again until ``now + lease``) and counts the attempt,
       so after a crash ``attempts > 0`` says "it may have arrived; look it up by key".
    4. Then exactly one of ``outbox_delivered`` (final; links the remote id; the ticket's
       next message becomes due), ``outbox_retry_later`` (back to ``pending`` at a time),
       ``outbox_failed`` (parked; the ticket's next message becomes due, since a permanent
       refusal of one message must not block the ticket's later ones).

    A delivered or discarded message is never handed out again. Operators turn a failed
    message back into a pending one (``outbox_requeue``) or drop it (``outbox_discard``).
    """

    def commit(self, batch: BatchWrite) -> None:
        """Write a whole batch in one transaction: all of it or, on ``StoreError``, none.

        Alarms and tickets are upserted by id: the later write's state wins (their
        identity — key, device, rule, policy, first seen, opened at — never changes for an
        id, and writers must not change it). Timeline and outbox rows are appended in list
        order; meta values upserted; delivery keys inserted (a repeated key takes the new
        time). If
        the batch records delivery keys and sets ``forget_keys_before``, keys older than it
        are deleted in the same transaction. An empty batch writes nothing.

        Backends call ``gateway.failpoints.hit("store_commit_mid_batch")`` after the rows
        are written and before the transaction commits, so tests can fail a batch midway.
        """
        ...

    def save_maintenance(self, window: dict[str, Any]) -> None:
        """Insert or replace (by ``window["id"]``) one maintenance window
        (``Window.to_dict()``: ``id``, ``start``, ``end`` and the rest)."""
        ...

    def insert_planned(self, items: Sequence[dict[str, Any]]) -> int:
        """Insert planned work items (dicts with ``id``, ``schedule``, ``contract``,
        ``device``, ``kind``, ``due``, ``deadline``, ``status`` and the rest) whose id is not
        stored yet, in one transaction; an item whose id exists is left as it is (so
        generating the same work twice, or from two processes, never duplicates it).
        Returns how many were inserted."""
        ...

    def save_planned(self, items: Sequence[dict[str, Any]]) -> None:
        """Insert or replace planned work items by id, in one transaction."""
        ...

    def add_service_record(self, record: dict[str, Any]) -> int:
        """Append a service record (``device``, ``ticket_id`` or ``None``, ``kind``, ``ts``,
        ``actor``, ``data``: a JSON-ready dict); returns its id (ids increase)."""
        ...

    # -- people (operator writes; only digests of secrets are ever stored) ---------------
    def save_user(self, user: dict[str, Any]) -> None:
        """Insert or update (by ``name``) an account (the keys of :meth:`get_user`)."""
        ...

    def add_user_token(self, user: str, label: str, digest: str, now: float) -> int:
        """Record a personal API token's digest; returns its id."""
        ...

    def revoke_user_token(self, user: str, token_id: int) -> bool:
        """Delete one of a user's tokens; ``False`` if the user has no such token."""
        ...

    def revoke_user_tokens(self, user: str) -> int:
        """Delete every token of a user; returns how many."""
        ...

    def add_session(self, digest: str, user: str, now: float, expires_at: float) -> None:
        """Record a board session (sessions expired by ``now`` are dropped meanwhile)."""
        ...

    def drop_session(self, digest: str) -> None:
        """End one session (sign out); no error if there is none."""
        ...

    def add_sign_in_failure(self, name: str, at: float, forget_before: float) -> None:
        """Record one failed sign-in for ``name`` at ``at``; failures (of any name) older
        than ``forget_before`` are deleted in the same transaction."""
        ...

    def clear_sign_in_failures(self, name: str) -> None:
        """Forget ``name``'s failed sign-ins (it signed in)."""
        ...

    def queue_service_report(
        self, key: str, contract: str, period: str, connector: str, payload: dict[str, Any], now: float
    ) -> int | None:
        """Queue a scheduled service report once: the marker ``key`` and an outbox row
        (``ticket_id`` 0, kind ``service_report``) in ONE transaction. Returns the outbox
        row's id, or ``None`` (nothing written) when ``key`` was queued before."""
        ...

    def drop_sessions(self, user: str) -> int:
        """End every session of a user (disabled, password reset); returns how many."""
        ...

    def save_devices(self, changes: Sequence[DeviceChange], actor: str, at: float) -> None:
        """Apply inventory changes in ONE transaction (all or none): rows are inserted or
        replaced by id, removals deleted (a missing id is not an error), and each change is
        recorded in the change log with ``actor`` and ``at``; the counter
        :data:`INVENTORY_VERSION` goes up by one in the same transaction (an empty list
        writes nothing)."""
        ...

    def bump_counter(self, key: str) -> int:
        """Add one to a counter (see :meth:`StoreReader.counter`) in its own transaction and
        return its new value. Concurrent bumps are serialised: each returns a different value
        and none is lost."""
        ...

    # -- outbox (worker) ----------------------------------------------------------------
    def outbox_due(self, now: float, limit: int = 100) -> list[OutboxEntry]:
        """The head of each (connector, ticket) queue whose ``next_attempt <= now``, oldest
        first. The head is the oldest ``pending`` or ``sending`` message: a leased head
        hides its ticket's queue until the lease ends."""
        ...

    def outbox_claim(
        self, now: float, lease: float, connectors: Sequence[str] | None = None, limit: int = 100,
        shard: tuple[int, int] | None = None,
    ) -> list[OutboxEntry]:
        """Steps 2 and 3 in ONE transaction: take the due heads (as ``outbox_due``, only of
        the given ``connectors`` when a list is given, only of tickets whose id is ``p`` mod
        ``P`` when a ``shard`` (P, p) is given: a partition's) and lease each of them (as
        ``outbox_attempt``). Returns them as they are after the claim: ``sending``,
        ``attempts`` counting this attempt, ``next_attempt = now + lease``.

        Two claimers never get the same message: a message is handed out once per lease
        (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, a row another claimer holds is skipped;
        SQLite: the write transaction is exclusive)."""
        ...

    def outbox_attempt(self, msg_id: int, now: float, lease: float) -> None:
        """Lease a message for one delivery: ``sending``, ``attempts + 1``, due again at
        ``now + lease`` (if the worker dies, the message comes back then)."""
        ...

    def outbox_delivered(
        self, msg_id: int, now: float, remote_id: str | None, connector: str, ticket_id: int, key: str
    ) -> None:
        """Mark a message delivered and, with a ``remote_id``, link the ticket to it (in
        the same transaction). The first link of a (connector, ticket) wins; later ones are
        ignored, so replays are harmless."""
        ...

    def outbox_retry_later(self, msg_id: int, next_attempt: float, error: str) -> None:
        """Release a leased message: ``pending`` again, due at ``next_attempt``; the error
        is kept (truncated to 500 characters) for operators."""
        ...

    def outbox_failed(self, msg_id: int, error: str) -> None:
        """Park a message as ``failed`` (permanent refusal), keeping the error (500 chars)."""
        ...

    def outbox_requeue(self, msg_id: int) -> bool:
        """An operator retries a ``failed`` message: ``pending``, due now, attempts kept.
        Returns ``False`` (and changes nothing) if it is not a failed message."""
        ...

    def outbox_discard(self, msg_id: int) -> bool:
        """An operator drops a ``failed`` message for good (``discarded``). Returns
        ``False`` (and changes nothing) if it is not a failed message."""
        ...

    def outbox_reset_leases(self) -> None:
        """At worker start: every ``sending`` message is ``pending`` and due now."""
        ...


class ForwardQueue(Protocol):
    """An edge's durable forward queue (schema 5; written by ``Store.commit`` through
    ``BatchWrite.forward`` in the same transaction as the batch that decided the events).

    Rows get an increasing ``seq`` that is never reused, even after deletes. The publisher
    reads the head in order, publishes, and deletes a row only after JetStream's ack; a
    crash in between republishes it (the central drops the duplicate by its message id).
    When a commit takes the queue beyond ``BatchWrite.forward_limit`` rows, the oldest
    readings (``fault`` false) are deleted in that transaction and counted in
    ``forward_stats``; fault rows are never deleted that way.
    """

    def forward_head(self, limit: int = 100) -> list[tuple[int, float, dict[str, Any]]]:
        """The oldest ``limit`` rows as (seq, ts, payload), seq ascending."""
        ...

    def forward_head_raw(self, limit: int = 100) -> list[tuple[int, str]]:
        """The oldest ``limit`` rows as (seq, payload as its stored JSON text), seq ascending:
        the publisher puts the text into a batch message without decoding it."""
        ...

    def forward_delete(self, upto_seq: int) -> int:
        """Delete every row with ``seq <= upto_seq`` (published and acknowledged); returns how many."""
        ...

    def forward_stats(self) -> tuple[int, int]:
        """(rows queued, readings dropped so far by the bound)."""
        ...
