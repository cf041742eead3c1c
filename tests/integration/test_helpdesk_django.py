"""Integration tests of the django-helpdesk connector against a real django-helpdesk 2.6.1.

The server is the session's ``helpdesk_server`` (tests/fixtures/helpdesk.py). Tests share
it, so each one uses its own gateway instance name in its keys and looks only at its
own tickets. The outage test stops and restarts the same server (same database).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from gateway.delivery.helpdesk import DjangoHelpdesk, DjangoHelpdeskConfig, OutboxMessage
from gateway.delivery.helpdesk.base import iso_utc
from gateway.errors import DeliveryError
from tests.fixtures.helpdesk import HelpdeskServer

RESTORE_DUE = 1_767_254_400.0  # 2026-01-01T08:00:00Z
RESPONSE_DUE = 1_767_229_200.0  # 2026-01-01T01:00:00Z


def snapshot(**over: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "title": "Switch sw-7 down",
        "device": "sw-7",
        "site": "Datong mine, shaft 2",
        "region": "shanxi",
        "level": 1,
        "alarm_key": "linkDown:sw-7:ifIndex=3",
        "first_event": "IF-MIB::linkDown",
        "count": 4,
        "opened_at": "2026-01-01T00:00:00Z",
        "clocks": [
            {"kind": "response", "due_at": RESPONSE_DUE, "state": "running"},
            {"kind": "restore", "due_at": RESTORE_DUE, "state": "running"},
        ],
        "status": "open",
    }
    payload.update(over)
    return payload


class Ticket:
    """Builds one gateway ticket's outbox messages with keys unique to the test."""

    def __init__(self, ticket_id: int = 1) -> None:
        self.instance = uuid.uuid4().hex[:10]
        self.ticket_id = ticket_id
        self.key = f"gw-{self.instance}-t{ticket_id}"
        self._next = 1

    def msg(
        self, kind: str, remote_id: str | None = None, attempts: int = 0, **payload: Any
    ) -> OutboxMessage:
        mid = self._next
        self._next += 1
        key = self.key if kind == "open" else f"{self.key}-m{mid}"
        return OutboxMessage(mid, self.ticket_id, key, kind, snapshot(**payload), remote_id, attempts)


def config(server: HelpdeskServer, **over: Any) -> DjangoHelpdeskConfig:
    base: dict[str, Any] = {
        "url": server.url,
        "token": server.token,
        "queue": server.queue_id,
        "timeout": 5.0,
    }
    base.update(over)
    return DjangoHelpdeskConfig(**base)


@pytest.fixture
async def desk(helpdesk_server: HelpdeskServer) -> AsyncIterator[DjangoHelpdesk]:
    async with DjangoHelpdesk(config(helpdesk_server)) as connector:
        yield connector


def ours(followups: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [f for f in followups if (f.get("comment") or "").startswith("[gateway]")]


async def test_open_creates_one_ticket_with_the_mapped_fields(
    desk: DjangoHelpdesk, helpdesk_server: HelpdeskServer
) -> None:
    t = Ticket()
    result = await desk.deliver(t.msg("open"))

    assert result.remote_id is not None
    assert [x["id"] for x in helpdesk_server.tickets_with_key(t.key)] == [int(result.remote_id)]
    got = helpdesk_server.get_ticket(result.remote_id)
    assert got["title"] == "Switch sw-7 down"
    assert got["queue"] == helpdesk_server.queue_id
    assert got["priority"] == 1
    assert got["status"] == 1
    assert got["due_date"] == iso_utc(RESTORE_DUE) == "2026-01-01T08:00:00Z"
    assert got["custom_dedup_key"] == t.key
    for line in (
        "Device: sw-7",
        "Site: Datong mine, shaft 2 (region shanxi)",
        "Fault level: 1 (critical)",
        "Fault key: linkDown:sw-7:ifIndex=3",
        "First event: IF-MIB::linkDown",
        "Occurrences: 4",
        "Opened at: 2026-01-01T00:00:00Z",
        "  - response: 2026-01-01T01:00:00Z (running)",
        "  - restore: 2026-01-01T08:00:00Z (running)",
        f"Gateway key: {t.key}",
    ):
        assert line in got["description"].splitlines()


@pytest.mark.parametrize(("level", "priority"), [(2, 2), (4, 4)], ids=["major", "warning"])
async def test_priority_follows_the_level(
    desk: DjangoHelpdesk, helpdesk_server: HelpdeskServer, level: int, priority: int
) -> None:
    t = Ticket()
    result = await desk.deliver(t.msg("open", level=level))
    assert helpdesk_server.get_ticket(result.remote_id or "")["priority"] == priority


async def test_repeated_open_after_a_crash_does_not_create_a_second_ticket(
    desk: DjangoHelpdesk, helpdesk_server: HelpdeskServer
) -> None:
    t = Ticket()
    first = await desk.deliver(t.msg("open"))
    # The worker died before marking the open delivered: same key, remote id unknown.
    again = await desk.deliver(OutboxMessage(1, t.ticket_id, t.key, "open", snapshot(), None, attempts=1))

    assert again.remote_id == first.remote_id
    assert len(helpdesk_server.tickets_with_key(t.key)) == 1


async def test_repeated_open_finds_a_ticket_closed_meanwhile(
    desk: DjangoHelpdesk, helpdesk_server: HelpdeskServer
) -> None:
    t = Ticket()
    first = await desk.deliver(t.msg("open"))
    helpdesk_server.post_followup(first.remote_id or "", "duplicate of a phone call", new_status=4)

    again = await desk.deliver(OutboxMessage(1, t.ticket_id, t.key, "open", snapshot(), None, attempts=2))

    assert again.remote_id == first.remote_id
    assert len(helpdesk_server.tickets_with_key(t.key)) == 1


async def test_find_remote_pages_through_the_list(helpdesk_server: HelpdeskServer) -> None:
    async with DjangoHelpdesk(
        config(helpdesk_server, page_size=2, lookup_on_first_attempt=False)
    ) as small_pages:
        tickets = [Ticket(i) for i in range(1, 6)]
        remote = [(await small_pages.deliver(t.msg("open"))).remote_id for t in tickets]

        assert await small_pages.find_remote(tickets[0].key) == remote[0]
        assert await small_pages.find_remote(tickets[3].key) == remote[3]
        assert await small_pages.find_remote(f"gw-{uuid.uuid4().hex}-t1") is None


async def test_update_adds_one_followup_even_when_repeated(
    desk: DjangoHelpdesk, helpdesk_server: HelpdeskServer
) -> None:
    t = Ticket()
    rid = (await desk.deliver(t.msg("open"))).remote_id
    update = t.msg("update", remote_id=rid, note="occurrences now 9; {{ ticket.id }} stays literal", count=9)

    assert (await desk.deliver(update)).remote_id == rid
    repeat = OutboxMessage(update.id, update.ticket_id, update.key, "update", update.payload, rid, attempts=1)
    await desk.deliver(repeat)

    got = helpdesk_server.get_ticket(rid or "")
    mine = ours(got["followup_set"])
    assert len(mine) == 1
    assert "occurrences now 9" in mine[0]["comment"]
    assert "ticket.id" in mine[0]["comment"]  # not rendered as a template by the help desk
    assert f"(ref {update.key})" in mine[0]["comment"]
    assert got["status"] == 1


async def test_level_change_sets_priority_and_due_date(
    desk: DjangoHelpdesk, helpdesk_server: HelpdeskServer
) -> None:
    t = Ticket()
    rid = (await desk.deliver(t.msg("open"))).remote_id
    later = [{"kind": "restore", "due_at": RESTORE_DUE + 3600, "state": "running"}]

    await desk.deliver(t.msg("level", remote_id=rid, level=3, clocks=later))

    got = helpdesk_server.get_ticket(rid or "")
    assert got["priority"] == 3
    assert got["due_date"] == "2026-01-01T09:00:00Z"
    assert "Fault level changed to 3 (minor)" in ours(got["followup_set"])[-1]["comment"]


async def test_resolve_close_reopen_set_the_status(
    desk: DjangoHelpdesk, helpdesk_server: HelpdeskServer
) -> None:
    t = Ticket()
    rid = (await desk.deliver(t.msg("open"))).remote_id

    await desk.deliver(t.msg("resolve", remote_id=rid, resolution="replaced the line card"))
    got = helpdesk_server.get_ticket(rid or "")
    assert (got["status"], got["resolution"]) == (3, "replaced the line card")

    await desk.deliver(t.msg("close", remote_id=rid))
    assert helpdesk_server.get_ticket(rid or "")["status"] == 4

    await desk.deliver(t.msg("reopen", remote_id=rid, note="fault came back"))
    assert helpdesk_server.get_ticket(rid or "")["status"] == 2


async def test_message_without_remote_id_finds_the_ticket_by_key(
    desk: DjangoHelpdesk, helpdesk_server: HelpdeskServer
) -> None:
    t = Ticket()
    rid = (await desk.deliver(t.msg("open"))).remote_id
    result = await desk.deliver(t.msg("comment", remote_id=None, note="engineer dispatched"))
    assert result.remote_id == rid


async def test_changes_made_in_the_help_desk_come_back(
    desk: DjangoHelpdesk, helpdesk_server: HelpdeskServer
) -> None:
    t = Ticket()
    since = time.time() - 1
    rid = (await desk.deliver(t.msg("open"))).remote_id or ""
    await desk.deliver(t.msg("comment", remote_id=rid, note="gateway note, not a change"))
    assert await desk.poll_changes([rid], since) == []

    helpdesk_server.post_followup(rid, "on my way")
    helpdesk_server.post_followup(rid, "swapped the PSU", new_status=3)
    changes = await desk.poll_changes([rid], since)

    assert [(c.remote_id, c.status, c.note) for c in changes] == [
        (rid, "comment", "on my way"),
        (rid, "resolved", "swapped the PSU"),
    ]
    assert {c.actor for c in changes} == {f"user:{helpdesk_server.agent_user_id}"}
    assert changes[0].at <= changes[1].at
    assert await desk.poll_changes([rid], changes[-1].at) == []


async def test_status_patched_without_followup_is_reported_once(
    desk: DjangoHelpdesk, helpdesk_server: HelpdeskServer
) -> None:
    t = Ticket()
    rid = (await desk.deliver(t.msg("open"))).remote_id or ""
    helpdesk_server.patch_ticket(rid, status=4)

    first = await desk.poll_changes([rid], time.time())
    assert [(c.status, c.actor) for c in first] == [("closed", "unknown")]
    assert await desk.poll_changes([rid], time.time()) == []


async def test_assignment_is_an_acknowledgement(
    desk: DjangoHelpdesk, helpdesk_server: HelpdeskServer
) -> None:
    t = Ticket()
    rid = (await desk.deliver(t.msg("open"))).remote_id or ""
    helpdesk_server.patch_ticket(rid, assigned_to=helpdesk_server.agent_user_id)

    changes = await desk.poll_changes([rid], time.time())
    assert [(c.status, c.actor) for c in changes] == [
        ("acknowledged", f"user:{helpdesk_server.agent_user_id}")
    ]
    assert await desk.poll_changes([rid], time.time()) == []


async def test_help_desk_down_is_a_retryable_connect_error(helpdesk_server: HelpdeskServer) -> None:
    t = Ticket()
    async with DjangoHelpdesk(config(helpdesk_server)) as connector:
        rid = (await connector.deliver(t.msg("open"))).remote_id
        helpdesk_server.stop()
        try:
            with pytest.raises(DeliveryError) as caught:
                await connector.deliver(t.msg("comment", remote_id=rid, note="during the outage"))
            assert (caught.value.reason, caught.value.retryable) == ("connect", True)
            with pytest.raises(DeliveryError) as polled:
                await connector.poll_changes([rid or ""], 0.0)
            assert polled.value.retryable
        finally:
            helpdesk_server.start()
        # Back with the same database: the ticket is still there and the retry lands.
        retry = t.msg("comment", remote_id=rid, attempts=1, note="after the outage")
        assert (await connector.deliver(retry)).remote_id == rid
    assert helpdesk_server.tickets_with_key(t.key)[0]["id"] == int(rid or 0)


async def test_unknown_queue_is_a_permanent_client_error(helpdesk_server: HelpdeskServer) -> None:
    async with DjangoHelpdesk(config(helpdesk_server, queue=99_999)) as connector:
        with pytest.raises(DeliveryError) as caught:
            await connector.deliver(Ticket().msg("open"))
    assert (caught.value.reason, caught.value.retryable) == ("http_4xx", False)
    assert "queue" in caught.value.detail


async def test_bad_token_is_a_permanent_auth_error(helpdesk_server: HelpdeskServer) -> None:
    async with DjangoHelpdesk(config(helpdesk_server, token="not-a-token")) as connector:
        with pytest.raises(DeliveryError) as caught:
            await connector.deliver(Ticket().msg("open"))
    assert (caught.value.reason, caught.value.retryable) == ("http_auth", False)


async def test_missing_custom_field_is_reported_as_config(
    desk: DjangoHelpdesk, helpdesk_server: HelpdeskServer
) -> None:
    await desk.deliver(Ticket().msg("open"))  # at least one ticket to look at
    async with DjangoHelpdesk(config(helpdesk_server, key_field="no_such_field")) as connector:
        with pytest.raises(DeliveryError) as caught:
            await connector.find_remote("gw-x-t1")
    assert (caught.value.reason, caught.value.retryable) == ("config", False)
