"""The notifier: an outbox connector that turns ticket events into chat and e-mail messages.

It takes the due outbox rows of its queue together (:meth:`Notifier.deliver_batch`), keeps
those its config wants (event, level, contract) and sends them — one by one while the rate
limit allows (``burst`` per ``window``), else as one digest once the window ends, so a storm of
a thousand tickets is a handful of messages. Rows not worth a notice are delivered as
*skipped*. Delivery goes through apprise (e-mail, generic JSON webhooks and the rest of
apprise's services) and, for DingTalk, WeCom and Feishu bots, through the gateway's own signed
senders (``bots``: those services refuse with HTTP 200 and an error code, which apprise takes
for success).

Guarantees come from the outbox: a row is leased before the send and marked delivered after
it, so a crash in between sends it again after the restart (at least once); a failure is
retried with backoff and, after :data:`MAX_ATTEMPTS`, parked as ``failed`` (visible).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import re
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import apprise
import httpx

from gateway.delivery.helpdesk.base import DeliveryResult, OutboxMessage, RemoteChange
from gateway.delivery.helpdesk.notify.bots import ENDPOINTS, Bot, check, parse_bot, request
from gateway.delivery.helpdesk.notify.config import NotifyConfig
from gateway.delivery.helpdesk.notify.templates import Notice, digest, event_of, render
from gateway.errors import DeliveryError

__all__ = ["MAX_ATTEMPTS", "Notifier"]

log = logging.getLogger("gateway.notify")

#: A message still failing after this many attempts is parked as ``failed``.
MAX_ATTEMPTS = 8

#: Messages addressed to one notifier (sent as they are, never filtered, held or digested):
#: a ticket's incident report and a scheduled service report (no ticket: ``ticket_id`` 0).
_ADDRESSED = frozenset({"report", "service_report"})

#: What :meth:`Notifier.deliver_batch` says of one row: delivered (``None``), held for a
#: digest until a time (``float``), or failed (``DeliveryError``).
Outcome = float | DeliveryError | None


class Notifier:
    """``[[helpdesk]]`` with ``type = "notify"`` (see :class:`NotifyConfig`)."""

    def __init__(self, cfg: NotifyConfig, clock: Any = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._tz = ZoneInfo(cfg.timezone)
        self._now = clock.now if clock is not None else time.time
        self._sent: deque[float] = deque()
        self._apprise = apprise.Apprise()
        self._bots: list[Bot] = []
        for i, secret_url in enumerate(cfg.urls):
            url = secret_url.get_secret_value()
            bot = parse_bot(url)
            if bot is not None:
                self._bots.append(bot)
            elif not self._apprise.add(url):
                raise ValueError(f"{cfg.name}: urls[{i}] is not a notification URL apprise knows")
        for plugin in self._apprise:
            # The burst/window limit above paces this notifier; apprise's own per-request pause
            # would only hold a worker thread (and retries) for seconds.
            plugin.request_rate_per_sec = 0
        self._http = httpx.AsyncClient(timeout=cfg.timeout)
        self.sent_messages = 0
        self.digests = 0

    # -- what is worth a notice ------------------------------------------------------------

    def wants(self, msg: OutboxMessage) -> bool:
        p = msg.payload
        if msg.kind in _ADDRESSED:
            return True  # written for this notifier only (TicketDesk.queue_report, scheduled reports)
        if event_of(msg.kind, p) not in self.cfg.events:
            return False
        if int(p.get("level") or 0) not in self.cfg.levels:
            return False
        pol = str(p.get("policy") or "")
        return not self.cfg.policies or any(fnmatch.fnmatchcase(pol, g) for g in self.cfg.policies)

    def _budget(self, now: float) -> int:
        while self._sent and self._sent[0] <= now - self.cfg.window:
            self._sent.popleft()
        return self.cfg.burst - len(self._sent)

    # -- the outbox connector ------------------------------------------------------------

    async def deliver_batch(self, msgs: Sequence[OutboxMessage]) -> dict[int, Outcome]:
        """Send what is due: singles within the rate limit, else one digest, else hold."""
        now = self._now()
        out: dict[int, Outcome] = {}
        wanted = [m for m in msgs if self.wants(m) and m.kind not in _ADDRESSED]
        for m in msgs:
            if m.kind == "report":  # a contract's clock waits on it: never held, never digested
                out[m.id] = await self._send_report(m, now)
            elif m.kind == "service_report":  # the customer's periodic report: never digested either
                out[m.id] = await self._send_service_report(m, now)
            elif m not in wanted:
                out[m.id] = None  # not worth a notice: delivered as skipped
        if not wanted:
            return out
        budget = self._budget(now)
        if budget <= 0:
            until = self._sent[0] + self.cfg.window
            for m in wanted:
                out[m.id] = until
            return out
        if len(wanted) <= budget:
            for m in wanted:
                out[m.id] = await self._send(render(m.kind, m.payload, self.cfg.language, self._tz), [m], now)
            return out
        items = [(m.kind, m.payload, self._at(m, now)) for m in wanted]
        err = await self._send(digest(items, self.cfg.language, self._tz), wanted, now)
        if err is None:
            self.digests += 1
            log.info("%s: %d notices sent as one digest", self.name, len(wanted))
        for m in wanted:
            out[m.id] = err
        return out

    async def deliver(self, msg: OutboxMessage) -> DeliveryResult:
        """One message (the generic worker path): same rules as a batch of one."""
        res = (await self.deliver_batch([msg]))[msg.id]
        if isinstance(res, DeliveryError):
            raise res
        if isinstance(res, float):
            raise DeliveryError("rate_limited", True, "held for the next digest")
        return DeliveryResult(None)

    async def find_remote(self, key: str) -> str | None:
        return None

    async def poll_changes(self, remote_ids: Sequence[str], since: float) -> list[RemoteChange]:
        return []

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- sending ---------------------------------------------------------------------------

    @staticmethod
    def _at(m: OutboxMessage, now: float) -> float:
        p = m.payload
        for v in ((p.get("sla") or {}).get("at"), (p.get("escalation") or {}).get("at"), p.get("updated_at")):
            if isinstance(v, (int, float)):
                return float(v)
        return now

    async def _send_report(self, m: OutboxMessage, now: float) -> DeliveryError | None:
        """The post-incident report: the text as the body, the PDF attached (where the service
        takes attachments: e-mail)."""
        from gateway.delivery.helpdesk.notify.pdf import report_pdf

        p = m.payload
        ref = p.get("ticket_key") or f"#{m.ticket_id}"
        label = "故障报告" if self.cfg.language == "zh-CN" else "Incident report"
        notice = Notice(f"{label} {ref}: {p.get('title', '')}", str(p.get("report_text") or ""))
        with tempfile.TemporaryDirectory(prefix="gw-report-") as d:
            path = os.path.join(d, f"{ref}.pdf")

            def write() -> None:
                with open(path, "wb") as f:
                    f.write(report_pdf(notice.body, notice.title))

            await asyncio.to_thread(write)
            return await self._send(notice, [m], now, attach=path)

    async def _send_service_report(self, m: OutboxMessage, now: float) -> DeliveryError | None:
        """A scheduled service report: the summary as the body, the report page attached as
        HTML and/or PDF (the PDF rendered now, from the page queued with the message)."""
        from gateway.delivery.helpdesk.notify.pdf import html_pdf

        p = m.payload
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"service-report-{p.get('contract', '')}-{p.get('period', '')}")
        html = str(p.get("html") or "")
        formats = list(p.get("formats") or ["html", "pdf"])
        with tempfile.TemporaryDirectory(prefix="gw-service-report-") as d:
            paths: list[str] = []

            def write() -> None:
                if "html" in formats:
                    paths.append(os.path.join(d, stem + ".html"))
                    with open(paths[-1], "w", encoding="utf-8") as f:
                        f.write(html)
                if "pdf" in formats:
                    paths.append(os.path.join(d, stem + ".pdf"))
                    with open(paths[-1], "wb") as f:
                        f.write(html_pdf(html))

            await asyncio.to_thread(write)
            return await self._send(Notice(str(p.get("title") or stem), str(p.get("text") or "")), [m], now,
                                    attach=paths)

    async def _send(
        self, notice: Notice, msgs: Sequence[OutboxMessage], now: float, attach: str | list[str] | None = None
    ) -> DeliveryError | None:
        self._sent.append(now)  # an attempt spends the budget too: a failing channel is not hammered
        attempts = max(m.attempts for m in msgs) + 1
        try:
            if len(self._apprise):
                await self._apprise_send(notice, attach)
            for bot in self._bots:
                await self._bot_send(bot, notice)
        except DeliveryError as e:
            if attempts >= MAX_ATTEMPTS:
                return DeliveryError(e.reason, False, f"{e.detail} (after {attempts} attempts)")
            return e
        self.sent_messages += 1
        return None

    async def _apprise_send(self, notice: Notice, attach: str | list[str] | None = None) -> None:
        def send() -> tuple[bool, str]:
            with apprise.LogCapture(level=logging.WARNING) as logs:  # type: ignore[no-untyped-call]
                ok = self._apprise.notify(body=notice.body, title=notice.title, attach=attach)
                return bool(ok), str(logs.getvalue()).strip().replace("\n", "; ")[-300:]

        ok, why = await asyncio.to_thread(send)
        if not ok:
            raise DeliveryError("notify_failed", True, why or "a notification service refused the message")

    async def _bot_send(self, bot: Bot, notice: Notice) -> None:
        url, params, body = request(bot, self.cfg.endpoints.get(bot.kind, ENDPOINTS[bot.kind]),  # type: ignore[call-overload]
                                    notice.title, notice.body, self._now())
        try:
            r = await self._http.post(url, params=params, json=body)
        except httpx.HTTPError as e:
            raise DeliveryError("network", True, f"{bot.kind}: {type(e).__name__}: {e}") from None
        try:
            answer: Any = r.json()
        except ValueError:
            answer = None
        refused = check(bot, r.status_code, answer)
        if refused is not None:
            raise DeliveryError("notify_refused", refused.retryable, refused.detail)
