"""Two-way: what the central sends each site, and the edge applying it once (DESIGN §9).

* **Per-site actions** (maintenance windows; acknowledge, arrive, resolve of the site's
  tickets) go on ``<prefix>.ctl.<site>`` in the stream ``<stream>_CTL`` (kept
  ``control_retention``). Each edge reads them through its own durable consumer filtered on
  its site: an edge that was cut off gets them when the link returns. The edge applies a
  message and records its stream sequence in the same commit (:class:`Applier`), then acks;
  a redelivered message at or below that sequence is only acknowledged.
* **Rule packs and policies** go on ``<prefix>.rules`` in ``<stream>_RULES`` (the last one
  only), each with a version number: the central reads the last message and publishes
  version + 1 when its content differs (``Nats-Expected-Last-Subject-Sequence``, so two
  central instances never both publish the same version). The edge applies a newer version
  as a reload would and reports the version it runs in its heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import APIError, BadRequestError, NotFoundError

from gateway.forward.config import ForwardConfig
from gateway.forward.connect import connect, shut_down

__all__ = ["Applier", "ControlPublisher", "EdgeControl", "rules_digest"]

log = logging.getLogger("gateway.forward")

#: Ticket actions at the central a site needs (the timeline's kinds; ``restore`` = resolve).
TICKET_ACTIONS = frozenset({"acknowledge", "arrive", "restore"})


def ctl_stream(cfg: ForwardConfig) -> StreamConfig:
    return StreamConfig(name=f"{cfg.stream}_CTL", subjects=[f"{cfg.subject_prefix}.ctl.>"],
                        max_age=cfg.control_retention, duplicate_window=min(cfg.dedup_window, cfg.control_retention))


def rules_stream(cfg: ForwardConfig) -> StreamConfig:
    return StreamConfig(name=f"{cfg.stream}_RULES", subjects=[f"{cfg.subject_prefix}.rules"],
                        max_msgs_per_subject=1)


def rules_digest(content: dict[str, Any]) -> str:
    """What identifies a rule set's content (the version number is given on top of it)."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


async def _ensure(js: Any, stream: StreamConfig) -> None:
    try:
        await js.add_stream(stream)
    except BadRequestError:
        await js.update_stream(stream)


class ControlPublisher:
    """The central's side: publishes per-site actions and the rule set, in order, retrying
    until JetStream acknowledges each (an action waits in memory while JetStream is away).

    Args:
        cfg: ``[forward]`` (mode ``central``).
        resolve: resolves file paths of the config.
        name: the connection's name.
    """

    def __init__(self, cfg: ForwardConfig, resolve: Callable[[str], Any], name: str) -> None:
        self.cfg = cfg
        self.resolve = resolve
        self.name = name
        self.published = 0
        #: The version of the rule set last published or found in JetStream (0: none yet).
        self.rules_version = 0
        self._queue: deque[tuple[str, str, dict[str, Any]]] = deque()
        self._rules: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self._nc: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="forward-control")]

    async def stop(self) -> None:
        await shut_down(self._tasks, self._nc)

    @property
    def pending(self) -> int:
        return len(self._queue) + (self._rules is not None)

    def site(self, site: str, msg_id: str, body: dict[str, Any]) -> None:
        """Queue an action for ``site`` (``msg_id``: JetStream drops a republished one)."""
        self._queue.append((site, msg_id, body))
        self._wake.set()

    def rules(self, content: dict[str, Any]) -> None:
        """Publish this rule set (packs, policies, default level) as the next version unless
        the last one published has the same content."""
        self._rules = content
        self._wake.set()

    async def _run(self) -> None:
        delay = 0.2
        js: Any = None
        failing = False
        while True:
            try:
                if js is None:
                    if self._nc is None or self._nc.is_closed:
                        self._nc = await connect(self.cfg, self.resolve, f"{self.name}-control")
                    jsc = self._nc.jetstream()
                    await _ensure(jsc, ctl_stream(self.cfg))
                    await _ensure(jsc, rules_stream(self.cfg))
                    js = jsc
                if self._rules is not None:
                    await self._publish_rules(js, self._rules)
                    self._rules = None
                while self._queue:
                    site, msg_id, body = self._queue[0]
                    await js.publish(self.cfg.subject("ctl", site), json.dumps(body).encode(), timeout=5.0,
                                     headers={"Nats-Msg-Id": msg_id})
                    self._queue.popleft()
                    self.published += 1
                delay = 0.2
                if failing:
                    log.warning("%s: control messages flow again", self.name)
                    failing = False
            except Exception as e:  # noqa: BLE001 - JetStream away: keep the actions, retry
                if not failing:
                    log.warning("%s: control publish failed (%s); %d waiting, retrying", self.name,
                                e or type(e).__name__, self.pending)
                    failing = True
                if self._nc is not None and self._nc.is_closed:
                    self._nc = js = None
                await asyncio.sleep(delay)  # why: backoff while JetStream does not answer
                delay = min(5.0, delay * 2)
                continue
            self._wake.clear()
            if not (self._queue or self._rules is not None):
                await self._wake.wait()

    async def _publish_rules(self, js: Any, content: dict[str, Any]) -> None:
        subject = f"{self.cfg.subject_prefix}.rules"
        digest = rules_digest(content)
        while True:
            try:
                last = await js.get_last_msg(f"{self.cfg.stream}_RULES", subject)
                prev = json.loads(last.data)
                last_seq, last_version, last_digest = int(last.seq), int(prev["version"]), str(prev["digest"])
            except NotFoundError:
                last_seq, last_version, last_digest = 0, 0, ""
            if last_digest == digest:
                self.rules_version = last_version
                return
            body = {"version": last_version + 1, "digest": digest, **content}
            try:
                await js.publish(subject, json.dumps(body).encode(), timeout=5.0,
                                 headers={"Nats-Expected-Last-Subject-Sequence": str(last_seq)})
            except BadRequestError as e:  # another central published meanwhile: read again
                log.info("%s: rule set raced another publisher (%s); reading again", self.name, e)
                continue
            self.rules_version = last_version + 1
            log.info("%s: rule set version %d published (%d packs, %d policies)", self.name,
                     self.rules_version, len(content.get("packs", [])), len(content.get("policies", {})))
            return


class Applier(Protocol):
    """What the edge does with the central's messages (the composition root implements it)."""

    def control_seq(self) -> int:
        """The stream sequence of the last per-site action applied (0: none)."""
        ...

    async def apply_control(self, seq: int, body: dict[str, Any]) -> None:
        """Apply one action and record ``seq`` in the same commit."""
        ...

    def rules_version(self) -> int:
        """The version of the central's rule set this edge runs (0: its own config's)."""
        ...

    async def apply_rules(self, body: dict[str, Any]) -> None:
        """Run this rule set (as a reload would); raises ``ValueError`` if it is refused."""
        ...


class EdgeControl:
    """The edge's side: two durable pull consumers (its site's actions; the rule set).

    Args:
        cfg: ``[forward]`` (mode ``edge``).
        connection: the edge's NATS connection (shared with its publisher).
        applier: applies what arrives.
    """

    def __init__(self, cfg: ForwardConfig, connection: Callable[[], Awaitable[Any]], applier: Applier) -> None:
        self.cfg = cfg
        self.connection = connection
        self.applier = applier
        self.applied = 0
        self.skipped = 0
        #: The last rule set refused (its version and why), or None.
        self.rules_error: dict[str, Any] | None = None
        self._floor = 0
        self._tasks: list[asyncio.Task[None]] = []
        #: A test seam: applied actions are not acknowledged (as if the edge died first).
        self.hold_acks = False
        self._stopping = False

    async def start(self) -> None:
        self._floor = self.applier.control_seq()
        name = self.cfg.edge_name.replace(".", "_")
        p = self.cfg.subject_prefix
        self._tasks = [
            asyncio.create_task(self._consume(f"{self.cfg.stream}_CTL", f"ctl-{name}", self.cfg.subject("ctl", self.cfg.site),
                                              self._on_action), name="forward-control"),
            asyncio.create_task(self._consume(f"{self.cfg.stream}_RULES", f"rules-{name}", f"{p}.rules",
                                              self._on_rules), name="forward-rules"),
        ]

    async def stop(self) -> None:
        # nats-py turns a cancellation into ConnectionClosedError once the connection is
        # closed: the loops also look at this flag.
        self._stopping = True
        await shut_down(self._tasks, None)

    def status(self) -> dict[str, Any]:
        """For the edge's heartbeat: what it runs and what it applied."""
        out: dict[str, Any] = {"rules_version": self.applier.rules_version(), "control_seq": self._floor}
        if self.rules_error is not None:
            out["rules_error"] = self.rules_error
        return out

    async def _consume(self, stream: str, durable: str, subject: str, handle: Callable[[Any], Awaitable[None]]) -> None:
        delay = 0.2
        sub: Any = None
        while not self._stopping:
            try:
                nc = await self.connection()
                if sub is None:
                    js = nc.jetstream()
                    if stream.endswith("_CTL"):
                        info = await js.stream_info(stream)
                        if info.state.last_seq < self._floor:  # the stream was made anew
                            log.warning("%s: stream %s restarts at %d (applied up to %d)", self.cfg.edge_name,
                                        stream, info.state.last_seq, self._floor)
                            self._floor = 0
                    sub = await js.pull_subscribe(
                        subject, durable=durable, stream=stream,
                        config=ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                                              deliver_policy=DeliverPolicy.ALL, ack_wait=min(self.cfg.ack_wait, 5.0),
                                              filter_subject=subject,
                                              # One at a time, in order: a message that failed
                                              # comes again before any later one is applied.
                                              max_ack_pending=1))
                    delay = 0.2
                msgs = await sub.fetch(batch=1, timeout=2.0)
            except TimeoutError:
                continue
            except Exception as e:  # noqa: BLE001 - no stream yet (no central ran), link down
                log.debug("%s: %s not readable yet: %r", self.cfg.edge_name, stream, e)
                # A status from the server (e.g. 409 while pull requests made during a cut
                # arrive together) keeps the subscription: a message already on its way to it
                # would otherwise wait for its ack_wait. Anything else: subscribe again (the
                # consumer may be new after a JetStream restart).
                if sub is not None and not (isinstance(e, APIError) and not isinstance(e, NotFoundError)):
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                    sub = None
                await asyncio.sleep(delay)  # why: backoff; nats-py reconnects by itself
                delay = min(5.0, delay * 2)
                continue
            for m in msgs:
                try:
                    await handle(m)
                except Exception:
                    log.exception("%s: a message of %s not applied; it comes again", self.cfg.edge_name, stream)
                    await asyncio.sleep(delay)  # why: do not spin on a message that keeps failing

    async def _on_action(self, m: Any) -> None:
        seq = int(m.metadata.sequence.stream)
        if seq <= self._floor:
            self.skipped += 1  # applied before (redelivered after a crash or a lost ack)
            if not self.hold_acks:
                await _quiet(m.ack())
            return
        try:
            body = json.loads(m.data)
            if not isinstance(body, dict) or "kind" not in body:
                raise ValueError("no kind")
        except ValueError as e:
            log.warning("%s: dropped a malformed control message %d: %s", self.cfg.edge_name, seq, e)
            await _quiet(m.term())
            return
        await self.applier.apply_control(seq, body)
        self._floor = seq
        self.applied += 1
        if not self.hold_acks:
            await _quiet(m.ack())

    async def _on_rules(self, m: Any) -> None:
        try:
            body = json.loads(m.data)
            version = int(body["version"])
        except (ValueError, KeyError, TypeError) as e:
            log.warning("%s: dropped a malformed rule set: %s", self.cfg.edge_name, e)
            await _quiet(m.term())
            return
        if version > self.applier.rules_version():
            try:
                await self.applier.apply_rules(body)
                self.rules_error = None
                log.info("%s: now running the central's rule set version %d", self.cfg.edge_name, version)
            except ValueError as e:
                self.rules_error = {"version": version, "error": str(e)[:300]}
                log.error("%s: the central's rule set version %d refused, version %d stays: %s",
                          self.cfg.edge_name, version, self.applier.rules_version(), e)
        await _quiet(m.ack())


async def _quiet(coro: Any) -> None:
    try:
        await coro
    except Exception as e:  # noqa: BLE001 - the ack did not go out: JetStream redelivers
        log.debug("ack not sent: %s", e)
