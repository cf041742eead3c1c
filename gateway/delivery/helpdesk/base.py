"""The help-desk connector contract: messages, results, remote changes, and HTTP error mapping.

Everything a connector needs to know about the outbox lives here, and
:func:`classify_http_error` is the one place where a transport failure or an HTTP status
becomes a :class:`~gateway.errors.DeliveryError` with ``retryable`` and a ``reason``
label (as Alertmanager's ``notify/util.go`` does for its notifiers).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, Self, runtime_checkable

import httpx

from gateway.errors import DeliveryError

__all__ = [
    "KINDS",
    "REMOTE_STATUSES",
    "DeliveryResult",
    "HelpDesk",
    "HttpConnector",
    "OutboxMessage",
    "RemoteChange",
    "RemoteTicket",
    "classify_http_error",
    "due_of",
    "epoch_of",
    "iso_utc",
    "send",
    "ticket_key_of",
    "to_json",
]

#: Message kinds the outbox produces. ``ack`` (the NOC acknowledged) is accepted too.
KINDS = frozenset({"open", "update", "comment", "resolve", "close", "reopen", "level", "ack"})

#: ``RemoteChange.status`` values.
REMOTE_STATUSES = frozenset({"acknowledged", "resolved", "closed", "reopened", "comment"})


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One thing that must reach the help desk.

    Attributes:
        id: the outbox row id (messages of one ticket are delivered in id order).
        ticket_id: the gateway's ticket id.
        key: stable idempotency key. For ``open`` it is the ticket's key
            (``gw-<instance>-t<ticket_id>``); for every later message it is that key plus
            ``-m<id>``, so a retried update can be recognised too.
        kind: ``open`` | ``update`` | ``comment`` | ``resolve`` | ``close`` | ``reopen`` |
            ``level`` (| ``ack``).
        payload: a snapshot of the ticket when the message was written: ``title``,
            ``device``, ``site``, ``region``, ``level`` (1-4), ``alarm_key``,
            ``first_event``, ``count``, ``opened_at`` (ISO UTC), ``clocks``
            (``[{kind, due_at, state}]``, ``due_at`` epoch seconds or ISO UTC), ``status``,
            ``note`` / ``comment``, ``resolution``; optionally ``description`` (free text
            put first in the help-desk description) and ``ticket_key``.
        remote_id: the help desk's id for the ticket once known, else ``None``.
        attempts: delivery attempts of this message already *started* before this one.
    """

    id: int
    ticket_id: int
    key: str
    kind: str
    payload: Mapping[str, Any]
    remote_id: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """A delivered message: the help desk's ticket id (if it has one) and a log detail."""

    remote_id: str | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RemoteChange:
    """A change made in the help desk, for the two-way sync.

    Attributes:
        remote_id: the help desk's ticket id.
        status: ``acknowledged`` | ``resolved`` | ``closed`` | ``reopened`` | ``comment``.
        at: when it happened, epoch seconds by the help desk's clock (or the time it
            was noticed, when the help desk records no time for it).
        actor: who did it, in the help desk's terms (e.g. ``user:7``).
        note: the comment or resolution text that came with it.
    """

    remote_id: str
    status: str
    at: float
    actor: str
    note: str


@dataclass(frozen=True, slots=True)
class RemoteTicket:
    """A ticket a person created in the help desk, to be picked up as a gateway ticket.

    A connector that can find them has ``async poll_new(linked, now) -> list[RemoteTicket]``
    (optional: the two-way sync asks only connectors that have it).

    Attributes:
        remote_id: the help desk's ticket id.
        title: its title (a ``[device]`` prefix removed).
        device: the device it names (inventory id, address or alias).
        level: the fault level its priority maps to (1-4).
        reported_by: who created it (submitter e-mail, or the help-desk user).
        reported_at: when it was created there, epoch seconds.
    """

    remote_id: str
    title: str
    device: str
    level: int
    reported_by: str
    reported_at: float


@runtime_checkable
class HelpDesk(Protocol):
    """A connector that pushes outbox messages to one help desk and reads changes back.

    Ordering: the outbox worker delivers one ticket's messages one at a time in outbox
    id order; message ``n+1`` of a ticket is not handed over until message ``n`` was
    delivered or failed permanently. Different tickets may be in flight concurrently,
    so a connector must be safe for concurrent ``deliver`` calls on distinct tickets.
    The ``open`` message comes first; the worker fills ``remote_id`` on later messages
    from the ``DeliveryResult`` of the ``open``.

    Idempotency: delivery is at least once, so ``deliver`` must make a repeat of the
    same message (same ``key``) invisible in the help desk. A repeat happens when the
    process died between the help desk accepting a message and the worker marking it
    delivered, or when a response was lost (timeout). Each connector says how it holds
    this: by asking the help desk (:meth:`find_remote` before creating, a marker on
    follow-ups), or by the help desk's own deduplication (PagerDuty ``dedup_key``, a
    webhook receiver's ``Idempotency-Key``). The worker must persist the increment of
    ``attempts`` *before* calling ``deliver`` so that a repeat after a crash arrives
    with ``attempts > 0``.

    Errors: ``deliver`` raises only :class:`~gateway.errors.DeliveryError`; transport
    failures and HTTP statuses go through :func:`classify_http_error`. ``retryable``
    means the same message may succeed later (timeouts, refused connections, 429,
    5xx); a permanent error (other 4xx, a payload that cannot be mapped) will fail the
    same way again and needs a person. Anything else escaping is a bug.

    Lifetime: a connector owns its HTTP client; ``aclose`` releases it and is safe to
    call twice. Connectors are async context managers as well.
    """

    name: str

    async def deliver(self, msg: OutboxMessage) -> DeliveryResult:
        """Make the help desk reflect ``msg``; return the remote ticket id.

        Raises:
            DeliveryError: with ``retryable`` and a ``reason`` label.
        """
        ...

    async def find_remote(self, key: str) -> str | None:
        """The remote id of the ticket created for ``key`` (an ``open`` key), if any.

        ``None`` when the help desk holds none, or cannot be asked (push-only
        connectors, whose help desk deduplicates by key itself).

        Raises:
            DeliveryError: the help desk could not be asked.
        """
        ...

    async def poll_changes(self, remote_ids: Sequence[str], since: float) -> list[RemoteChange]:
        """Changes made in the help desk to these tickets after ``since`` (epoch), by
        others than the gateway, oldest first. ``[]`` for push-only connectors.

        At least once: callers pass the latest ``at`` they applied (minus a margin for
        clock skew) and apply changes idempotently.

        Raises:
            DeliveryError: the help desk could not be asked.
        """
        ...

    async def aclose(self) -> None:
        """Release the HTTP client."""
        ...


class HttpConnector:
    """What every HTTP connector shares: it owns ``self._client`` (an ``httpx.AsyncClient``),
    closes it in ``aclose`` (safe twice) and is an async context manager."""

    _client: httpx.AsyncClient

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()


def classify_http_error(status: int | None, exc: Exception | None) -> DeliveryError:
    """Map an HTTP status or a transport exception to a :class:`DeliveryError`.

    ==============================================  ================  =========
    cause                                           reason            retryable
    ==============================================  ================  =========
    ``httpx.TimeoutException`` (any phase)          ``timeout``       yes
    ``httpx.ConnectError``, ``httpx.ProxyError``    ``connect``       yes
    other ``httpx.TransportError``                  ``network``       yes
    ``httpx.UnsupportedProtocol``, ``InvalidURL``   ``config``        no
    ``httpx.TooManyRedirects``                      ``redirect``      no
    other ``httpx.HTTPError`` (decoding, ...)       ``bad_response``  yes
    ``KeyError`` / ``TypeError`` / ``ValueError``   ``mapping``       no
    HTTP 408                                        ``http_408``      yes
    HTTP 429                                        ``http_429``      yes
    HTTP 5xx                                        ``http_5xx``      yes
    HTTP 401, 403                                   ``http_auth``     no
    other HTTP 4xx                                  ``http_4xx``      no
    HTTP 1xx-3xx (not a success here)               ``http_3xx`` ...  no
    nothing known                                   ``unknown``       yes
    ==============================================  ================  =========

    Connectors add ``config`` (the help desk is set up wrong, e.g. the key field is
    missing), ``bad_response`` (an unreadable success) and ``no_remote_id``
    (an update before its ticket exists remotely; retryable) themselves.

    Args:
        status: the HTTP status received, or ``None`` if no response arrived.
        exc: the exception raised, if any (used when ``status`` is ``None``).

    Returns:
        The error to raise (the caller chains it with ``raise … from exc``).
    """
    if status is not None:
        detail = f"HTTP {status}"
        if status in (408, 429):
            return DeliveryError(f"http_{status}", True, detail)
        if 500 <= status <= 599:
            return DeliveryError("http_5xx", True, detail)
        if status in (401, 403):
            return DeliveryError("http_auth", False, detail)
        if 400 <= status <= 499:
            return DeliveryError("http_4xx", False, detail)
        return DeliveryError(f"http_{status // 100}xx", False, detail)
    if exc is None:
        return DeliveryError("unknown", True, "no status and no exception")
    detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
    # Order matters: UnsupportedProtocol is a TransportError, ConnectTimeout a TimeoutException.
    if isinstance(exc, httpx.TimeoutException):
        return DeliveryError("timeout", True, detail)
    if isinstance(exc, (httpx.ConnectError, httpx.ProxyError)):
        return DeliveryError("connect", True, detail)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return DeliveryError("config", False, detail)
    if isinstance(exc, httpx.TransportError):
        return DeliveryError("network", True, detail)
    if isinstance(exc, httpx.TooManyRedirects):
        return DeliveryError("redirect", False, detail)
    if isinstance(exc, httpx.HTTPError):
        return DeliveryError("bad_response", True, detail)
    if isinstance(exc, (KeyError, TypeError, ValueError)):
        return DeliveryError("mapping", False, detail)
    return DeliveryError("unknown", True, detail)


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    ok: tuple[int, ...] = (200, 201, 202, 204),
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; any transport failure or status not in ``ok`` becomes a DeliveryError.

    The response body (first 300 characters) goes into the error's detail, since help
    desks explain a 400 there.

    Raises:
        DeliveryError: see :func:`classify_http_error`.
    """
    try:
        response = await client.request(method, url, **kwargs)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise classify_http_error(None, exc) from exc
    if response.status_code not in ok:
        err = classify_http_error(response.status_code, None)
        body = response.text[:300].strip()
        retry_after = response.headers.get("Retry-After")
        extra = "; ".join(
            p
            for p in (
                f"{method} {response.request.url.path}",
                body,
                f"retry-after={retry_after}" if retry_after else "",
            )
            if p
        )
        raise DeliveryError(err.reason, err.retryable, f"{err.detail}: {extra}")
    return response


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(document: Any) -> bytes:
    """Compact UTF-8 JSON of a document built from a payload (nested mappings allowed).

    Raises:
        DeliveryError: ``mapping`` (permanent) when something in it is not JSON.
    """
    try:
        return json.dumps(
            document, default=_jsonable, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (TypeError, ValueError) as exc:
        raise DeliveryError("mapping", False, f"payload is not JSON: {exc}") from exc


_MESSAGE_SUFFIX = re.compile(r"-m\d+$")


def ticket_key_of(msg: OutboxMessage) -> str:
    """The ``open`` key of the message's ticket (``payload["ticket_key"]`` or ``key`` less ``-m<id>``)."""
    explicit = msg.payload.get("ticket_key")
    if explicit:
        return str(explicit)
    return msg.key if msg.kind == "open" else _MESSAGE_SUFFIX.sub("", msg.key)


def epoch_of(value: Any) -> float | None:
    """Epoch seconds from an epoch number or an ISO-8601 string (naive means UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def iso_utc(value: Any) -> str | None:
    """ISO-8601 UTC with a ``Z`` (seconds precision) from an epoch number or ISO string."""
    ts = epoch_of(value)
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def due_of(
    payload: Mapping[str, Any], kinds: Sequence[str] = ("restore", "solution", "on_site", "response")
) -> str | None:
    """Due time (ISO UTC) of the first clock in ``kinds`` order that has one."""
    by_kind = {c.get("kind"): c for c in payload.get("clocks") or () if isinstance(c, Mapping)}
    for kind in kinds:
        clock = by_kind.get(kind)
        if clock and clock.get("due_at"):
            return iso_utc(clock["due_at"])
    return None
