"""What the API needs from the daemon (ApiContext, optional hooks) and bearer-token auth.

The API is handed an :class:`ApiContext`, not the whole application: the components it
reads (store, alarm book, ticket desk, inventory, calendars, adapters) and the pipeline it
sends commands to. Features that live elsewhere are optional hooks; when one is absent
the matching endpoints answer ``501 not available``:

* ``reload``: a coroutine that reloads rules (and whatever else the daemon reloads).
* ``maintenance``: a :class:`MaintenanceHooks` (create, list and end windows).
* ``outbox``: an :class:`OutboxHooks` (failed help-desk messages: list, retry, discard).
* ``watchdog``: the liveness watchdog (``status(device)``), for device liveness.
* ``devices``: an :class:`InventoryHooks` (export, import, add/update/remove, adopt, changes).

Auth: every ``/api/v1`` route needs ``Authorization: Bearer <token>``; tokens come from
``[[api.tokens]]`` with a role, ``viewer`` (read) or ``operator`` (read and act). Only
SHA-256 digests of the tokens are kept, compared in constant time, and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.store import StoreReader

__all__ = [
    "ApiContext",
    "ApiError",
    "InventoryHooks",
    "MaintenanceHooks",
    "OutboxHooks",
    "Principal",
    "TokenTable",
]


class ApiError(Exception):
    """An error answer: HTTP ``status``, a short ``code`` and a human ``message``."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class MaintenanceHooks(Protocol):
    """Maintenance windows, as the API uses them.

    Methods may be plain functions (called on the event loop: they must not block) or
    coroutine functions. A window is a dict with at least ``id`` (epoch times are shown as
    ISO); ``create`` receives ``{"devices": [...], "sites": [...], "classes": [...],
    "start": epoch, "end": epoch, "reason": str}`` and raises ``ValueError`` for a window
    it refuses. ``end`` raises ``KeyError`` for an unknown window and ``ValueError`` for
    one that already ended.
    """

    def list(self, include_ended: bool = False) -> Any: ...

    def create(self, window: dict[str, Any], actor: str) -> Any: ...

    def end(self, window_id: str, actor: str) -> Any: ...


class InventoryHooks(Protocol):
    """The inventory kept in the store, as the API changes it (``gateway.runtime.devices``).

    Writes raise ``ValueError`` with an ``errors`` list (row, column, message) when refused as a
    whole, ``KeyError`` for an unknown device.
    """

    def export(self, fmt: str = "json") -> Any: ...

    def unknown(self, limit: int = 1000) -> Any: ...

    def changes(self, device: str | None = None, limit: int = 1000) -> Any: ...

    def import_text(self, text: str, fmt: str, actor: str, replace: bool = False, dry_run: bool = False) -> Any: ...

    def put(self, device_id: str, body: Mapping[str, Any], actor: str, action: str | None = None) -> Any: ...

    def adopt(self, key: str, body: Mapping[str, Any], actor: str) -> Any: ...

    def remove(self, device_id: str, actor: str) -> Any: ...


class OutboxHooks(Protocol):
    """Help-desk outbox messages that failed permanently. Methods may be plain functions
    (called on the event loop: they must not block) or coroutine functions.

    ``retry`` and ``discard`` return ``False`` when the message is not (or no longer) failed.
    """

    def list_failed(self, limit: int = 500) -> Any: ...

    def retry(self, message_id: int) -> Any: ...

    def discard(self, message_id: int) -> Any: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a ``name`` and ``role``.

    ``kind``: ``service`` (a shared token from ``[[api.tokens]]``, named by the config),
    ``user`` (a named account: board session or personal token) or ``local`` (the data
    dir's owner on the control socket). A ``customer`` sees only ``sites`` and ``policies``.
    """

    name: str
    role: str
    kind: str = "service"
    display_name: str = ""
    sites: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()

    @property
    def can_act(self) -> bool:
        return self.role in ("operator", "admin")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" or self.kind == "local"

    @property
    def actor(self) -> str:
        """The timeline's actor: ``user:NAME`` for a person, the token's name for a service."""
        return f"user:{self.name}" if self.kind == "user" else self.name

    @property
    def scoped(self) -> bool:
        """Sees only its own sites and contracts (a customer)."""
        return self.role == "customer"

    def sees(self, site: str, policy: str) -> bool:
        """Whether a ticket, alarm or device of ``site`` under ``policy`` is this caller's to see."""
        return not self.scoped or site in self.sites or policy in self.policies


class TokenTable:
    """Bearer tokens → principals. Keeps digests only; lookups take constant time per token."""

    def __init__(self, tokens: Iterable[Any]) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        for i, t in enumerate(tokens):
            secret = t.token.get_secret_value() if hasattr(t.token, "get_secret_value") else str(t.token)
            if not secret:
                continue
            name = t.name or f"token{i + 1}-{t.role}"
            self._entries.append((hashlib.sha256(secret.encode()).digest(), Principal(name, t.role)))

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for d, p in self._entries:  # no early exit: timing does not tell which entry matched
            if hmac.compare_digest(d, digest) and found is None:
                found = p
        return found


@dataclass(slots=True)
class ApiContext:
    """The parts of the daemon the API reads and commands.

    Attributes:
        pipeline: the single writer (``execute``, ``stats``, ``depth``, ``healthy``).
        store: durable state (reads only; ``find_alarms``, ``find_tickets``, ``get_ticket``,
            ``timeline``).
        desk: the ``TicketDesk`` (actions run on it inside ``pipeline.execute``).
        book: the ``AlarmBook`` (open alarms; acks run inside ``pipeline.execute``).
        inventory: the device ``Inventory``.
        policies: contract policies by name.
        calendars: calendars by name (for remaining business time).
        adapters: running adapters (``name``, ``stats()``).
        config: the ``Config`` (``api`` section: tokens, host, port).
        clock: the daemon's clock.
        bus: the ``ChangeBus`` that feeds the event stream.
        reload: optional coroutine function reloading rules.
        maintenance: optional maintenance-window hooks.
        outbox: optional failed-outbox hooks.
        watchdog: optional liveness watchdog.
        devices: optional inventory hooks (changes through the API).
        sites: optional site rows with link state and backlog (``GET /sites``).
        components: extra objects with ``stats()`` shown on /metrics, by name.
        body_limit: largest request body accepted, in bytes (413 beyond).
        command_timeout: how long an action waits for its commit before answering 503.
    """

    pipeline: Any
    store: StoreReader
    desk: Any
    book: Any
    inventory: Any
    policies: Mapping[str, Any]
    calendars: Mapping[str, Any]
    adapters: list[Any]
    config: Any
    clock: Any
    bus: Any
    reload: Callable[[], Awaitable[Any]] | None = None
    maintenance: MaintenanceHooks | None = None
    outbox: OutboxHooks | None = None
    watchdog: Any = None
    #: optional after-sales desk (gateway.runtime.service.ServiceDesk): planned work,
    #: warranty, spare parts, repair history.
    service: Any = None
    devices: InventoryHooks | None = None
    #: optional: every site with its edge's link state and backlog, given ``now``
    #: (a partitioned central's supervisor; :mod:`gateway.api.routes.sites`).
    sites: Callable[[float], list[dict[str, Any]]] | None = None
    #: optional: ``{"rules_version": n, "edges": [...]}`` (gateway.forward: central or edge).
    edges: Callable[[], dict[str, Any]] | None = None
    components: dict[str, Any] = field(default_factory=dict)
    body_limit: int = 64 * 1024
    command_timeout: float = 15.0
