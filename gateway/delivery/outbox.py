"""Help-desk delivery: the outbox worker (ordered per ticket, retries with backoff and jitter,
idempotent after crashes) and the two-way sync poller that brings help-desk changes back."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway import failpoints
from gateway.clock import Clock
from gateway.delivery.helpdesk.base import HelpDesk, OutboxMessage, RemoteChange, RemoteTicket
from gateway.errors import DeliveryError
from gateway.store import OutboxEntry, Store, StoreReader

__all__ = ["OutboxStats", "OutboxWorker", "SyncPoller", "backoff"]

log = logging.getLogger("gateway.outbox")

#: A delivery in flight holds its message this long; after a crash it becomes due again.
LEASE = 60.0


def backoff(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's "full jitter")."""
    return rng.uniform(0, min(cap, base * (2 ** max(0, attempts - 1))))


@dataclass(slots=True)
class OutboxStats:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    deduplicated: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class OutboxWorker:
    """Delivers outbox rows to their connectors.

    Order: one ticket's messages go out one at a time in row order (the store only hands
    out the head of each (connector, ticket) queue); different tickets go concurrently.
    Idempotency: the attempt is recorded before the request; a message that may already
    have reached the help desk (``attempts > 0``) and whose ticket has no remote id yet is
    looked up by its key first (``find_remote``), so a crash never creates a second ticket.
    Failures: retryable ones come back with backoff and jitter; permanent ones are parked
    as ``failed`` (visible, counted, and reported through ``on_failed``) — never dropped.
    """

    def __init__(
        self,
        store: Store,
        connectors: Mapping[str, HelpDesk],
        clock: Clock,
        *,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        concurrency: int = 8,
        idle_poll: float = 0.5,
        on_failed: Callable[[str, int, DeliveryError], None] | None = None,
        on_delivered: Callable[[str, int, str], None] | None = None,
        seed: int | None = None,
        may_send: Callable[[], bool] | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.store = store
        #: A partition's worker (P, p): it claims only messages of tickets ``≡ p mod P``.
        self.shard = shard
        self.connectors = dict(connectors)
        self.clock = clock
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.concurrency = concurrency
        self.idle_poll = idle_poll
        self.on_failed = on_failed
        #: HA: asked right before each request; False (the leader lease may be gone) sends
        #: nothing and leaves the message leased for whoever leads.
        self.may_send = may_send
        #: Called with (connector, ticket id, kind) after a batched delivery is recorded (a
        #: delivered incident report stops the ticket's report clock).
        self.on_delivered = on_delivered
        self.stats = OutboxStats()
        self._rng = random.Random(seed)
        self._wake = asyncio.Event()
        self._last_reason: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """New rows were committed: look now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        await asyncio.to_thread(self.store.outbox_reset_leases)
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for c in self.connectors.values():
            try:
                await c.aclose()
            except Exception:
                log.exception("closing connector %s", getattr(c, "name", "?"))

    async def _run(self) -> None:
        while True:
            try:
                n = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox pass failed")
                n = 0
            if n == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.idle_poll)
                except TimeoutError:
                    pass

    async def run_once(self) -> int:
        """Deliver every message that is due now (one per ticket queue); returns how many were tried."""
        now = self.clock.now()
        # Due heads, leased in the same transaction (attempt counted before the request).
        rows = await asyncio.to_thread(self.store.outbox_claim, now, LEASE, sorted(self.connectors), 200, self.shard)
        if not rows:
            return 0
        batched: dict[str, list[OutboxEntry]] = {}
        for r in rows:
            if hasattr(self.connectors[r["connector"]], "deliver_batch"):
                batched.setdefault(r["connector"], []).append(r)
        single = [r for r in rows if r["connector"] not in batched]
        sem = asyncio.Semaphore(self.concurrency)

        async def one(row: OutboxEntry) -> None:
            async with sem:
                await self._deliver(row)

        await asyncio.gather(*(one(r) for r in single), *(self._deliver_batch(n, rs) for n, rs in batched.items()))
        return len(rows)

    async def _deliver_batch(self, conn_name: str, rows: list[OutboxEntry]) -> None:
        """A connector that takes its due rows together (a notifier digesting a storm): every
        row is leased first, then each is delivered, held until a time (not a failure: due
        again then, e.g. for the next digest) or failed like a single delivery."""
        conn: Any = self.connectors[conn_name]
        # The claim leased every row and counted this attempt.
        if self.may_send is not None and not self.may_send():
            log.warning("%s: not sending %d messages: this instance no longer holds the leader lease", conn_name, len(rows))
            return
        msgs = [OutboxMessage(id=int(r["id"]), ticket_id=int(r["ticket_id"]), key=r["key"], kind=r["kind"],
                              payload=r["payload"], remote_id=None, attempts=int(r["attempts"]) - 1) for r in rows]
        try:
            results = await conn.deliver_batch(msgs)
        except Exception as e:  # noqa: BLE001 - a connector bug is a permanent failure, not a crash
            results = {m.id: DeliveryError("bug", False, f"{type(e).__name__}: {e}") for m in msgs}
        for r in rows:
            res = results.get(int(r["id"]), DeliveryError("bug", False, "the connector did not answer for it"))
            if res is None:
                await asyncio.to_thread(self.store.outbox_delivered, r["id"], self.clock.now(), None, conn_name,
                                        int(r["ticket_id"]), r["key"])
                self.stats.delivered += 1
                if r["kind"] == "report":
                    failpoints.hit("report_delivered_before_close")
                if self.on_delivered is not None:
                    self.on_delivered(conn_name, int(r["ticket_id"]), r["kind"])
            elif isinstance(res, DeliveryError):
                await self._failed(r, conn_name, res)
            else:
                await asyncio.to_thread(self.store.outbox_retry_later, r["id"], float(res), "held for a digest (rate limit)")

    async def _deliver(self, row: OutboxEntry) -> None:
        conn_name = row["connector"]
        conn = self.connectors[conn_name]
        ticket_id = int(row["ticket_id"])
        payload = row["payload"]
        ticket_key = str(payload.get("ticket_key") or row["key"])
        remote = await asyncio.to_thread(self.store.remote_id, conn_name, ticket_id)
        earlier = int(row["attempts"]) - 1  # the claim counted this attempt
        if self.may_send is not None and not self.may_send():
            log.warning("%s: not sending message %d: this instance no longer holds the leader lease", conn_name, row["id"])
            return
        try:
            if remote is None and earlier > 0 and row["kind"] == "open":
                # It may have been created before a crash or a lost response.
                remote = await conn.find_remote(ticket_key)
                if remote is not None:
                    self.stats.deduplicated += 1
                    await asyncio.to_thread(
                        self.store.outbox_delivered, row["id"], self.clock.now(), remote, conn_name, ticket_id, ticket_key
                    )
                    log.info("%s: ticket %d already in the help desk as %s (found by key)", conn_name, ticket_id, remote)
                    return
            msg = OutboxMessage(
                id=int(row["id"]), ticket_id=ticket_id, key=row["key"], kind=row["kind"], payload=payload,
                remote_id=remote, attempts=earlier,
            )
            result = await conn.deliver(msg)
        except DeliveryError as e:
            await self._failed(row, conn_name, e)
            return
        except Exception as e:  # noqa: BLE001 - a connector bug is a permanent failure, not a crash
            await self._failed(row, conn_name, DeliveryError("bug", False, f"{type(e).__name__}: {e}"))
            return
        await asyncio.to_thread(
            self.store.outbox_delivered, row["id"], self.clock.now(), result.remote_id or remote, conn_name, ticket_id, ticket_key
        )
        self.stats.delivered += 1
        if self._last_reason.pop(conn_name, None) is not None:
            log.warning("%s: deliveries succeed again", conn_name)

    async def _failed(self, row: OutboxEntry, conn_name: str, e: DeliveryError) -> None:
        self.stats.by_reason[e.reason] = self.stats.by_reason.get(e.reason, 0) + 1
        if e.retryable:
            self.stats.retried += 1
            delay = backoff(int(row["attempts"]), self.base_delay, self.max_delay, self._rng)
            await asyncio.to_thread(self.store.outbox_retry_later, row["id"], self.clock.now() + delay, str(e))
            if self._last_reason.get(conn_name) != e.reason:  # log on change, not on every retry
                log.warning("%s: delivery failing (%s), retrying with backoff: %s", conn_name, e.reason, e)
                self._last_reason[conn_name] = e.reason
            return
        self.stats.failed += 1
        await asyncio.to_thread(self.store.outbox_failed, row["id"], str(e))
        log.error("%s: message %d for ticket %d failed permanently (%s); parked as failed: %s",
                  conn_name, row["id"], row["ticket_id"], e.reason, e)
        if self.on_failed is not None:
            self.on_failed(conn_name, int(row["ticket_id"]), e)


#: help-desk status → gateway ticket action
_ACTIONS = {"acknowledged": "acknowledge", "resolved": "restore", "closed": "close", "reopened": "reopen", "comment": "comment"}


class SyncPoller:
    """Brings changes made in the help desk back: every ``interval`` it asks each connector
    for changes to the tickets it holds and applies them through ``apply`` (a pipeline
    command, so the single writer moves the ticket and stops its clocks).

    Connectors that can (``poll_new``) are also asked for tickets people created in the
    help desk; each is handed once to ``adopt``, which opens a gateway ticket for it (its
    ``open`` message then marks the help-desk ticket with the gateway's key and links
    the two, so later changes flow both ways like any other ticket's).

    Where it got to survives a restart: after each poll that read a connector's changes,
    ``save`` (a pipeline command, committed by the single writer after the changes it
    applied) records ``sync.since.<name>`` — the poll's start, or the newest change's time
    if later — and ``sync.seen.<name>``, the changes of the last ``skew`` seconds already
    applied. A gateway that starts again asks from there (so what people did in the help
    desk while it was down comes back) and does not apply a change twice."""

    def __init__(
        self,
        store: StoreReader,
        connectors: Mapping[str, HelpDesk],
        clock: Clock,
        apply: Callable[[str, int, RemoteChange], Awaitable[None]],
        interval: float = 30.0,
        skew: float = 5.0,
        adopt: Callable[[str, RemoteTicket], Awaitable[None]] | None = None,
        save: Callable[[dict[str, str]], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.save = save
        self.connectors = dict(connectors)
        self.clock = clock
        self.apply = apply
        self.interval = interval
        self.skew = skew
        self.applied = 0
        self.errors = 0
        self._since: dict[str, float] = {}
        self._seen: set[tuple[str, str, str, float]] = set()
        self.adopt = adopt
        self.adopted = 0
        self.polls = 0
        self._adopted: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        now = self.clock.now()
        for name in self.connectors:
            since = await asyncio.to_thread(self.store.get_meta, f"sync.since.{name}")
            seen = await asyncio.to_thread(self.store.get_meta, f"sync.seen.{name}")
            try:
                self._since[name] = float(since) if since else now
                for rid, status, at in json.loads(seen or "[]"):
                    self._seen.add((name, str(rid), str(status), float(at)))
            except (ValueError, TypeError) as e:
                log.warning("%s: saved help-desk sync position unreadable (%s); syncing from now", name, e)
                self._since[name] = now
        self._task = asyncio.create_task(self._run(), name="helpdesk-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.errors += 1
                log.exception("help-desk sync failed")

    async def poll_once(self) -> int:
        self.polls += 1
        n = 0
        for name, conn in self.connectors.items():
            links = await asyncio.to_thread(self.store.remote_links, name)
            n += await self._poll_new(name, conn, links)
            if not links:
                continue
            started = self.clock.now()
            since = self._since.get(name, started) - self.skew
            try:
                changes = await conn.poll_changes(list(links), since)
            except DeliveryError as e:
                self.errors += 1
                log.warning("%s: cannot read changes from the help desk: %s", name, e)
                continue
            latest = max(self._since.get(name, 0.0), started)
            for ch in changes:
                ident = (name, ch.remote_id, ch.status, ch.at)
                if ident in self._seen or ch.remote_id not in links:
                    continue
                self._seen.add(ident)
                await self.apply(name, links[ch.remote_id], ch)
                self.applied += 1
                n += 1
                latest = max(latest, ch.at)
            self._since[name] = latest
            if self.save is not None:
                recent = sorted((rid, st, at) for (c, rid, st, at) in self._seen
                                if c == name and at >= latest - 2 * self.skew)
                await self.save({f"sync.since.{name}": repr(latest), f"sync.seen.{name}": json.dumps(recent)})
        if len(self._seen) > 100_000:
            self._seen.clear()
        return n

    async def _poll_new(self, name: str, conn: HelpDesk, links: Mapping[str, int]) -> int:
        """Hand each new help-desk ticket of ``conn`` to ``adopt`` once; returns how many."""
        poll_new = getattr(conn, "poll_new", None)
        if self.adopt is None or poll_new is None:
            return 0
        try:
            fresh: list[RemoteTicket] = await poll_new(set(links), self.clock.now())
        except DeliveryError as e:
            self.errors += 1
            log.warning("%s: cannot read new tickets from the help desk: %s", name, e)
            return 0
        n = 0
        for rt in fresh:
            if (name, rt.remote_id) in self._adopted:
                continue
            await self.adopt(name, rt)
            self._adopted.add((name, rt.remote_id))
            self.adopted += 1
            n += 1
        return n

    @staticmethod
    def action_for(change: RemoteChange) -> str | None:
        return _ACTIONS.get(change.status)
