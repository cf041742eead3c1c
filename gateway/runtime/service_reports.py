"""Scheduled service reports: after each month, quarter or year (``[[service.<contract>.reports]]``)
the contract's service report is built and queued for a notifier in the help-desk outbox,
which e-mails it (text, HTML and PDF attached) with retries like every other message.

Once means once: the report's marker (``service_reports_sent``, keyed by contract, period and
notifier) is written in the same transaction as its outbox row, so neither a restart nor a
kill -9 between the two queues it twice, and the outbox sends what was committed (a kill
before the send sends it after the restart). Which periods are due is
:func:`gateway.core.report_schedule.due_periods` (pure).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway import failpoints
from gateway.clock import Clock
from gateway.core.report import fmt_duration
from gateway.core.report_schedule import due_periods
from gateway.core.service_report import period_bounds, render_html, service_report
from gateway.runtime.background import Background
from gateway.store import Store

__all__ = ["KIND", "ReportSchedule", "ServiceReportScheduler", "report_key", "report_payload", "schedules_of"]

log = logging.getLogger("gateway.service_reports")

#: The outbox message kind (a message of no ticket: ``ticket_id`` 0).
KIND = "service_report"


@dataclass(frozen=True, slots=True)
class ReportSchedule:
    """One ``[[service.<contract>.reports]]`` entry, resolved."""

    contract: str
    every: str
    to: str
    delay: float = 0.0
    language: str = "en"
    formats: tuple[str, ...] = ("html", "pdf")
    #: Epoch seconds (from the config's ``since`` date at midnight in the gateway's zone).
    since: float | None = None


def schedules_of(cfg: Any) -> list[ReportSchedule]:
    """Every report schedule of the config (language: the entry's, else its notifier's)."""
    tz = ZoneInfo(cfg.gateway.timezone)
    langs = {h.name: getattr(h, "language", "en") for h in cfg.helpdesk}
    out = []
    for contract, s in cfg.service.items():
        for r in getattr(s, "reports", []):
            since = None
            if r.since is not None:
                since = datetime(r.since.year, r.since.month, r.since.day, tzinfo=tz).timestamp()
            out.append(ReportSchedule(contract, r.every, r.to, float(r.delay), r.language or langs.get(r.to, "en"),
                                      tuple(r.formats), since))
    return out


def report_key(contract: str, period: str, to: str) -> str:
    """The once-marker and outbox key of one report."""
    return f"service-report:{contract}:{period}:{to}"


_TEXT = {
    "en": {"title": "Service report {period}: {contract}", "tickets": "Tickets", "sla": "SLA attainment",
           "breaches": "Breaches", "attached": "The full report with charts is attached (HTML and PDF).",
           "period": "Period", "customer": "Customer"},
    "zh-CN": {"title": "服务报告 {period}:{contract}", "tickets": "工单数", "sla": "SLA 达成率",
              "breaches": "超时", "attached": "完整报告(含图表)见附件(HTML 与 PDF)。",
              "period": "周期", "customer": "客户"},
}


def report_payload(report: Mapping[str, Any], language: str, formats: Sequence[str]) -> dict[str, Any]:
    """The outbox payload of a built :func:`service_report`: subject, text body, the HTML page."""
    t = _TEXT.get(language, _TEXT["en"])
    done = [c for c in report["clocks"] if c["met"] + c["breached"]]
    met = sum(c["met"] for c in done)
    total = sum(c["met"] + c["breached"] for c in done)
    title = t["title"].format(period=report["period"], contract=report["contract"])
    if report.get("customer"):
        title += f" — {report['customer']}"
    lines = [
        f"{t['period']}: {report['period']} ({report['kind']}, {report['timezone']})",
        f"{t['customer']}: {report.get('customer') or '-'}",
        f"{t['tickets']}: {report['tickets']}",
        f"{t['sla']}: {100 * met / total:.1f} %" if total else f"{t['sla']}: -",
        f"MTTA: {fmt_duration(report['mtta']) if report['mtta'] is not None else '-'} · "
        f"MTTR: {fmt_duration(report['mttr']) if report['mttr'] is not None else '-'}",
        f"{t['breaches']}: {len(report['breaches'])}",
        "",
        t["attached"],
    ]
    return {
        "contract": report["contract"], "period": report["period"], "kind": report["kind"],
        "customer": report.get("customer", ""), "language": language, "formats": list(formats),
        "title": title, "text": "\n".join(lines), "html": render_html(report),
    }


class ServiceReportScheduler(Background):
    """Queues due scheduled reports at start and every ``interval`` seconds."""

    task_name = "service-reports"

    def __init__(self, store: Store, clock: Clock, schedules: Sequence[ReportSchedule], tz: str,
                 policy_of: Callable[[str], Any], calendars: Mapping[str, Any], customers: Callable[[str], str],
                 on_queued: Callable[[], None] | None = None, interval: float = 60.0) -> None:
        super().__init__()
        self.store, self.clock, self.schedules, self.tz = store, clock, list(schedules), tz
        self.policy_of, self.calendars, self.customers = policy_of, calendars, customers
        self.on_queued, self.interval = on_queued, interval
        self.queued = 0
        self._done: set[str] = set()

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as e:  # noqa: BLE001 - tried again at the next interval
                log.error("scheduled service reports: %s: %s (tried again in %g s)", type(e).__name__, e, self.interval)
            await asyncio.sleep(self.interval)

    async def sweep(self) -> list[str]:
        """Queue every due report not queued yet; return their keys."""
        now = self.clock.now()
        out = []
        sent: set[str] | None = None
        for s in self.schedules:
            policy = self.policy_of(s.contract)
            if policy is None:
                continue
            for period in due_periods(now, self.tz, s.every, s.delay, s.since):
                key = report_key(s.contract, period, s.to)
                if key in self._done:
                    continue
                if sent is None:
                    sent = {r["key"] for r in await asyncio.to_thread(self.store.service_reports_sent)}
                if key in sent:
                    self._done.add(key)
                    continue
                start, end, _ = period_bounds(period, self.tz)
                tickets = await asyncio.to_thread(self.store.tickets_opened, s.contract, start, end)
                rep = service_report(tickets, policy, self.calendars, period=period, tz=self.tz, now=now,
                                     customer=self.customers(s.contract))
                payload = report_payload(rep, s.language, s.formats)

                def queue(key: str = key, s: ReportSchedule = s, period: str = period,
                          payload: dict[str, Any] = payload) -> int | None:
                    msg_id = self.store.queue_service_report(key, s.contract, period, s.to, payload, now)
                    if msg_id is not None and failpoints.ARMED:
                        failpoints.hit("service_report_queued")  # committed, nothing sent yet
                    return msg_id

                msg_id = await asyncio.to_thread(queue)
                self._done.add(key)
                if msg_id is None:
                    continue  # queued by another instance (HA) in the meantime
                self.queued += 1
                out.append(key)
                log.info("service report %s of %s queued for %s", period, s.contract, s.to)
        if out and self.on_queued is not None:
            self.on_queued()
        return out
