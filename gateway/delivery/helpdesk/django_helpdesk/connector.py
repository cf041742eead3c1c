"""The django-helpdesk connector (REST API of django-helpdesk 2.6).

Mapping:

==========  ===================================================================
kind        what the help desk sees
==========  ===================================================================
open        ``POST tickets/``: queue, title, description (device, site, level,
            fault key, first event, count, SLA due times), priority (from the
            level), ``due_date`` (the restore clock's due time, UTC) and
            ``custom_<key_field>`` = the ticket key
update      ``PATCH`` due date, then a follow-up with the note
comment     a follow-up with the comment
ack         a follow-up "acknowledged by the NOC" (the help desk has no such status)
level       ``PATCH`` priority and due date, then a follow-up naming the new level
resolve     a follow-up with ``new_status`` 3 (Resolved), then ``PATCH`` resolution
close       a follow-up with ``new_status`` 4 (Closed)
reopen      a follow-up with ``new_status`` 2 (Reopened)
==========  ===================================================================

Idempotency. django-helpdesk has no server-side deduplication and its list filters
ignore custom fields, so :meth:`DjangoHelpdesk.find_remote` pages through the ticket
list (newest page first) and compares ``custom_<key_field>`` itself. An ``open`` that
may repeat an earlier attempt (``attempts > 0``) looks through every ticket first; a
first attempt looks through the open and reopened ones only (a ticket created moments
ago by a lost attempt is still open; scanning closed history on every new ticket
would cost the help desk a query per ticket per page). Follow-ups carry the message
key as ``(ref <key>)``; a repeated follow-up whose ref is already on the ticket is
not posted again. PATCHes are idempotent as they are.

Our follow-ups start with ``marker`` (``[gateway]``), which is how
:meth:`DjangoHelpdesk.poll_changes` tells them from people's; the ticket's first
follow-up (written by the help desk when we created the ticket) is ours as well.
Status changes made with a follow-up carry their time and author; a status changed
by ``PATCH`` leaves no follow-up, so it is reported once per process when noticed,
with ``actor`` ``unknown`` and the time it was noticed. django-helpdesk has no
"acknowledged" status: taking the ticket counts, i.e. a follow-up titled like an
assignment (the web UI's) or, failing that, ``assigned_to`` becoming set (noticed once
per process, at the time noticed).

django-helpdesk renders follow-up comments as Django templates, so ``{{``, ``{%`` and
``{#`` in our text are broken up with an invisible U+2060 before sending.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import httpx

from gateway.delivery.helpdesk.base import (
    KINDS,
    DeliveryResult,
    HttpConnector,
    OutboxMessage,
    RemoteChange,
    RemoteTicket,
    classify_http_error,
    due_of,
    epoch_of,
    iso_utc,
    send,
    ticket_key_of,
)
from gateway.delivery.helpdesk.django_helpdesk.config import DjangoHelpdeskConfig
from gateway.errors import DeliveryError
from gateway.model import FaultLevel

__all__ = [
    "STATUS_CLOSED",
    "STATUS_DUPLICATE",
    "STATUS_OPEN",
    "STATUS_REOPENED",
    "STATUS_RESOLVED",
    "DjangoHelpdesk",
    "DjangoHelpdeskConfig",
]

log = logging.getLogger("gateway.helpdesk.django_helpdesk")

STATUS_OPEN, STATUS_REOPENED, STATUS_RESOLVED, STATUS_CLOSED, STATUS_DUPLICATE = 1, 2, 3, 4, 5

_REMOTE_STATUS = {
    STATUS_OPEN: "reopened",
    STATUS_REOPENED: "reopened",
    STATUS_RESOLVED: "resolved",
    STATUS_CLOSED: "closed",
    STATUS_DUPLICATE: "closed",
}
_NEW_STATUS = {"resolve": STATUS_RESOLVED, "close": STATUS_CLOSED, "reopen": STATUS_REOPENED}
_TITLE_MAX = 200  # Ticket.title max_length
_TEMPLATE_OPENERS = re.compile(r"\{(?=[{%#])")
# A picked-up ticket names its device at the start of its title: "[edge-7] no network".
_DEVICE_PREFIX = re.compile(r"^\[([^\]\s]{1,200})\]")


def _clean(text: str) -> str:
    return _TEMPLATE_OPENERS.sub("{\u2060", text)


#: django-helpdesk renders descriptions, follow-ups and resolutions as Markdown (raw HTML
#: escaped, but links, images and autolinks kept): text from devices and people is made
#: inert here, so a device cannot put a link or a remote image in front of an agent.
_MD_INERT = str.maketrans({"\\": "\\\\", "`": "\\`", "[": "\\[", "]": "\\]", "<": "&lt;"})


def _inert(text: Any) -> str:
    """``text`` shown as it is by the help desk's Markdown (no link, image, code or tag)."""
    return str(text).translate(_MD_INERT)


def _level(payload: Mapping[str, Any]) -> FaultLevel:
    return FaultLevel.parse(payload["level"])


class DjangoHelpdesk(HttpConnector):
    """Pushes tickets to django-helpdesk and reads people's changes back (see the module doc)."""

    def __init__(
        self, config: DjangoHelpdeskConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.name = config.name
        self._field = f"custom_{config.key_field}"
        self._client = httpx.AsyncClient(
            base_url=config.url + config.api_path + "/",
            timeout=config.timeout,
            headers={
                "Authorization": f"Token {config.token.get_secret_value()}",
                "Accept": "application/json",
            },
            transport=transport,
        )
        # remote id -> status last reported as changed without a follow-up
        self._drift: dict[str, int] = {}
        # remote id -> assignee last reported as an acknowledgement
        self._assigned: dict[str, Any] = {}
        # tickets in the queue without a device, already logged once
        self._no_device: set[str] = set()

    # -- deliver -------------------------------------------------------------------------

    async def deliver(self, msg: OutboxMessage) -> DeliveryResult:
        if msg.kind not in KINDS:
            raise DeliveryError("mapping", False, f"unknown message kind {msg.kind!r}")
        if msg.kind == "open":
            return await self._open(msg)
        remote_id = msg.remote_id or await self.find_remote(ticket_key_of(msg))
        if remote_id is None:
            # The open has not reached the help desk yet; it is ordered before this one.
            raise DeliveryError("no_remote_id", True, f"no remote ticket for {ticket_key_of(msg)}")
        if not remote_id.isdigit():
            raise DeliveryError("mapping", False, f"remote id {remote_id!r} is not a django-helpdesk id")
        try:
            before, comment, new_status, after = self._plan(msg)
        except (KeyError, TypeError, ValueError) as exc:
            raise classify_http_error(None, exc) from exc
        if before:
            await send(self._client, "PATCH", f"tickets/{remote_id}/", json=before, ok=(200,))
        ref = f"(ref {msg.key})"
        if msg.attempts == 0 or not await self._has_followup(remote_id, ref):
            body: dict[str, Any] = {
                "ticket": int(remote_id),
                "comment": f"{self.config.marker} {_clean(comment)}\n\n{ref}",
                "public": self.config.public_followups,
            }
            if new_status is not None:
                body["new_status"] = new_status
            await send(self._client, "POST", "followups/", json=body, ok=(201,))
        if after:
            await send(self._client, "PATCH", f"tickets/{remote_id}/", json=after, ok=(200,))
        return DeliveryResult(remote_id, msg.kind)

    async def _open(self, msg: OutboxMessage) -> DeliveryResult:
        if msg.remote_id:
            return DeliveryResult(msg.remote_id, "already open")
        adopt = msg.payload.get("adopt")
        if isinstance(adopt, Mapping) and adopt.get(self.name):
            # The ticket came from this help desk: mark it with the gateway's key (so it is
            # never picked up twice) instead of creating another one.
            remote_id = str(adopt[self.name])
            await send(self._client, "PATCH", f"tickets/{remote_id}/", json={self._field: msg.key}, ok=(200,))
            return DeliveryResult(remote_id, "adopted")
        if msg.attempts > 0:
            existing = await self.find_remote(msg.key)
        elif self.config.lookup_on_first_attempt:
            existing = await self._find(msg.key, f"{STATUS_OPEN},{STATUS_REOPENED}")
        else:
            existing = None
        if existing is not None:
            return DeliveryResult(existing, "found existing ticket for key")
        try:
            body = self.ticket_body(msg)
        except (KeyError, TypeError, ValueError) as exc:
            raise classify_http_error(None, exc) from exc
        response = await send(self._client, "POST", "tickets/", json=body, ok=(201,))
        try:
            created = response.json()
            remote_id = str(created["id"])
        except (ValueError, KeyError, TypeError) as exc:
            # Created, but we cannot tell its id: the retry finds it by key.
            raise DeliveryError(
                "bad_response", True, f"ticket created but response unreadable: {exc}"
            ) from exc
        if created.get(self._field) != msg.key:
            log.warning(
                "%s: ticket %s does not echo %s; is the custom field %r defined in the help desk?",
                self.name,
                remote_id,
                self._field,
                self.config.key_field,
            )
        return DeliveryResult(remote_id, "created")

    def ticket_body(self, msg: OutboxMessage) -> dict[str, Any]:
        """The JSON for ``POST tickets/`` (public for tests and dry runs)."""
        p = msg.payload
        level = _level(p)
        title = str(p.get("title") or f"[{level.label}] {p.get('alarm_key', '')} on {p.get('device', '')}")
        body: dict[str, Any] = {
            "queue": self.config.queue,
            "title": title[:_TITLE_MAX],
            "description": self.description(msg),
            "priority": self.config.priority.get(int(level), 3),
            self._field: msg.key,
        }
        due = due_of(p)
        if due:
            body["due_date"] = due
        return body

    @staticmethod
    def description(msg: OutboxMessage) -> str:
        """The ticket description: what a person needs to start work, in plain text."""
        p = msg.payload
        level = _level(p)
        lines: list[str] = []
        if p.get("description"):
            lines += [_inert(p["description"]), ""]
        site = _inert(p.get("site") or "-")
        if p.get("region"):
            site += f" (region {_inert(p['region'])})"
        lines += [
            f"Device: {_inert(p.get('device') or '-')}",
            f"Site: {site}",
            f"Fault level: {int(level)} ({level.label})",
            f"Fault key: {_inert(p.get('alarm_key') or '-')}",
            f"First event: {_inert(p.get('first_event') or '-')}",
            f"Occurrences: {_inert(p.get('count', 1))}",
            f"Opened at: {iso_utc(p.get('opened_at')) or '-'}",
        ]
        clocks = [c for c in p.get("clocks") or () if isinstance(c, Mapping)]
        if clocks:
            lines.append("SLA deadlines (UTC):")
            for c in clocks:
                due = iso_utc(c.get("due_at")) or "not started"
                lines.append(f"  - {_inert(c.get('kind'))}: {due} ({_inert(c.get('state', ''))})")
        lines.append(f"Gateway key: {msg.key}")
        return "\n".join(lines)

    def _plan(self, msg: OutboxMessage) -> tuple[dict[str, Any], str, int | None, dict[str, Any]]:
        """(PATCH before, follow-up comment, new status, PATCH after) for a non-open message."""
        p = msg.payload
        note = _inert(p.get("note") or p.get("comment") or "")
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        due = due_of(p)
        kind = msg.kind
        if kind == "update":
            if due:
                before["due_date"] = due
            comment = (
                note or f"Ticket updated: status {_inert(p.get('status', '-'))}, occurrences {_inert(p.get('count', '-'))}"
            )
        elif kind == "comment":
            if not note:
                raise ValueError("comment message without note/comment")
            comment = note
        elif kind == "ack":
            comment = "Acknowledged by the NOC" + (f": {note}" if note else "")
        elif kind == "level":
            level = _level(p)
            before["priority"] = self.config.priority.get(int(level), 3)
            if due:
                before["due_date"] = due
            comment = f"Fault level changed to {int(level)} ({level.label})" + (f": {note}" if note else "")
        elif kind == "resolve":
            resolution = _inert(p["resolution"]) if p.get("resolution") else note or "Resolved by the gateway"
            comment = f"Resolved: {resolution}"
            # The help desk copies the follow-up comment (marker and ref included) into
            # the resolution; put the plain text back afterwards.
            after["resolution"] = resolution
        elif kind == "close":
            comment = "Closed" + (f": {note}" if note else "")
        elif kind == "reopen":
            comment = "Reopened" + (f": {note}" if note else "")
        else:  # pragma: no cover - KINDS is checked first
            raise ValueError(f"unknown kind {kind!r}")
        return before, comment, _NEW_STATUS.get(kind), after

    async def _has_followup(self, remote_id: str, ref: str) -> bool:
        response = await send(self._client, "GET", f"tickets/{remote_id}/", ok=(200,))
        try:
            ticket = response.json()
        except ValueError as exc:
            raise DeliveryError("bad_response", True, f"ticket {remote_id} is not JSON: {exc}") from exc
        return any(ref in (f.get("comment") or "") for f in ticket.get("followup_set") or ())

    # -- find_remote ---------------------------------------------------------------------

    async def find_remote(self, key: str) -> str | None:
        return await self._find(key, None)

    async def _find(self, key: str, statuses: str | None) -> str | None:
        """Page through the ticket list newest page first; compare the key field ourselves."""
        size = self.config.page_size
        params: dict[str, Any] = {"page_size": size}
        if statuses:
            params["status"] = statuses
        first = await self._page(params, 1)
        pages = max(1, math.ceil(int(first.get("count") or 0) / size))
        for number in range(pages, 0, -1):
            page = first if number == 1 else await self._page(params, number)
            results = page.get("results") or []
            if results and self._field not in results[0]:
                raise DeliveryError(
                    "config",
                    False,
                    f"the help desk returns no {self._field}: define custom field "
                    f"{self.config.key_field!r} (varchar)",
                )
            for ticket in reversed(results):
                if ticket.get(self._field) == key:
                    return str(ticket["id"])
        return None

    async def _page(self, params: dict[str, Any], number: int) -> dict[str, Any]:
        response = await send(self._client, "GET", "tickets/", params={**params, "page": number}, ok=(200,))
        try:
            data: dict[str, Any] = response.json()
        except ValueError as exc:
            raise DeliveryError("bad_response", True, f"ticket list is not JSON: {exc}") from exc
        return data

    # -- poll_new: tickets people created in the queue ----------------------------------

    async def poll_new(self, linked: Collection[str], now: float) -> list[RemoteTicket]:
        """Open tickets of the queue without the gateway's key, created less than
        ``adopt_max_age`` ago, that name a device; newest last. Nothing unless ``adopt``."""
        if not self.config.adopt:
            return []
        size = self.config.page_size
        params: dict[str, Any] = {"page_size": size, "status": f"{STATUS_OPEN},{STATUS_REOPENED}"}
        first = await self._page(params, 1)
        pages = max(1, math.ceil(int(first.get("count") or 0) / size))
        oldest = now - self.config.adopt_max_age
        out: list[RemoteTicket] = []
        for number in range(pages, 0, -1):  # newest page first; ids grow with time
            page = first if number == 1 else await self._page(params, number)
            for ticket in reversed(page.get("results") or []):
                followups = sorted(ticket.get("followup_set") or (), key=lambda f: f.get("date") or "")
                created = epoch_of(followups[0].get("date")) if followups else None
                if created is not None and created < oldest:
                    return out[::-1]
                found = self._remote_ticket(ticket, created or now, linked)
                if found is not None:
                    out.append(found)
        return out[::-1]

    def _remote_ticket(self, ticket: Mapping[str, Any], created: float, linked: Collection[str]) -> RemoteTicket | None:
        remote_id = str(ticket.get("id"))
        if ticket.get("queue") != self.config.queue or ticket.get(self._field) or remote_id in linked:
            return None
        title = str(ticket.get("title") or "").strip()
        device = str(ticket.get(f"custom_{self.config.device_field}") or "").strip()
        m = _DEVICE_PREFIX.match(title)
        if m is not None:
            device = device or m.group(1)
            title = title[m.end():].strip() or title
        if not device:
            if remote_id not in self._no_device:
                self._no_device.add(remote_id)
                log.warning(
                    "%s: ticket %s names no device ([device-id] at the start of its title, or custom "
                    "field %r): not picked up", self.name, remote_id, self.config.device_field,
                )
            return None
        who = str(ticket.get("submitter_email") or "")
        if not who:
            followups = ticket.get("followup_set") or ()
            user = followups[0].get("user") if followups else None
            who = f"{self.name} user {user}" if user is not None else self.name
        return RemoteTicket(remote_id, title, device, self._level_of(ticket.get("priority")), who, created)

    def _level_of(self, priority: Any) -> int:
        """The fault level a help-desk priority stands for (the inverse of ``priority``)."""
        try:
            p = int(priority)
        except (TypeError, ValueError):
            return 3
        by_priority: dict[int, int] = {}
        for level, prio in sorted(self.config.priority.items()):
            by_priority.setdefault(prio, level)
        if p in by_priority:
            return by_priority[p]
        known = sorted(by_priority)
        below = [q for q in known if q <= p]
        return by_priority[below[-1]] if below else by_priority[known[0]]

    # -- poll_changes --------------------------------------------------------------------

    async def poll_changes(self, remote_ids: Sequence[str], since: float) -> list[RemoteChange]:
        gate = asyncio.Semaphore(self.config.poll_concurrency)

        async def fetch(remote_id: str) -> dict[str, Any] | None:
            async with gate:
                try:
                    response = await self._client.get(f"tickets/{remote_id}/")
                except httpx.HTTPError as exc:
                    raise classify_http_error(None, exc) from exc
            if response.status_code == 404:
                log.warning("%s: ticket %s is gone from the help desk", self.name, remote_id)
                return None
            if response.status_code != 200:
                raise classify_http_error(response.status_code, None)
            try:
                ticket: dict[str, Any] = response.json()
            except ValueError as exc:
                raise DeliveryError("bad_response", True, f"ticket {remote_id} is not JSON: {exc}") from exc
            return ticket

        fetched = await asyncio.gather(*(fetch(r) for r in remote_ids), return_exceptions=True)
        for result in fetched:
            if isinstance(result, BaseException):
                raise result
        changes: list[RemoteChange] = []
        now = time.time()
        for remote_id, ticket in zip(remote_ids, fetched, strict=True):
            if isinstance(ticket, dict):
                changes += self._changes_of(str(remote_id), ticket, since, now)
        changes.sort(key=lambda c: c.at)
        return changes

    def _changes_of(
        self, remote_id: str, ticket: Mapping[str, Any], since: float, now: float
    ) -> list[RemoteChange]:
        out: list[RemoteChange] = []
        implied = STATUS_OPEN  # the status the follow-ups account for
        ack_in_history = False
        followups = sorted(ticket.get("followup_set") or (), key=lambda f: f.get("date") or "")
        for index, fu in enumerate(followups):
            new_status = fu.get("new_status")
            if new_status:
                implied = int(new_status)
            comment = (fu.get("comment") or "").strip()
            if index == 0 or comment.startswith(self.config.marker):
                continue
            title = fu.get("title") or ""
            acked = any(title.startswith(t) for t in self.config.ack_titles)
            ack_in_history = ack_in_history or acked
            at = epoch_of(fu.get("date")) or now
            if at <= since:
                continue
            actor = f"user:{fu['user']}" if fu.get("user") is not None else "unknown"
            if acked:
                out.append(RemoteChange(remote_id, "acknowledged", at, actor, comment))
            if new_status:
                changed_to = _REMOTE_STATUS.get(int(new_status), "comment")
                out.append(RemoteChange(remote_id, changed_to, at, actor, comment))
            elif comment and not acked:
                out.append(RemoteChange(remote_id, "comment", at, actor, comment))
        # Changes made by PATCH leave no follow-up: report each once, when first noticed.
        assignee = ticket.get("assigned_to")
        if assignee is not None and self._assigned.get(remote_id) != assignee:
            self._assigned[remote_id] = assignee
            if not ack_in_history:
                out.append(RemoteChange(remote_id, "acknowledged", now, f"user:{assignee}", "assigned"))
        status = int(ticket.get("status") or STATUS_OPEN)
        if status == implied:
            self._drift.pop(remote_id, None)
        elif self._drift.get(remote_id) != status:
            self._drift[remote_id] = status
            note = str(ticket.get("resolution") or "") if status == STATUS_RESOLVED else ""
            out.append(
                RemoteChange(
                    remote_id,
                    _REMOTE_STATUS.get(status, "comment"),
                    now,
                    "unknown",
                    note or "status changed without a follow-up",
                )
            )
        return out
