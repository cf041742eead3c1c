"""The scheduler of service reports on a real SQLite store with a manual clock: nothing before
the period and its delay have passed; then the report is queued once for its notifier (with
the period's tickets counted), not again on the next sweep, nor by a restarted scheduler, nor
by a second one racing it; the next quarter's follows when it has ended. The config names a
notifier that exists, and the language comes from the notifier unless given."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.clock import ManualClock
from gateway.config import build_policies, config_from_dict
from gateway.core.calendars import default_calendars
from gateway.errors import ConfigError
from gateway.runtime.service_reports import ReportSchedule, ServiceReportScheduler, schedules_of
from gateway.store import BatchWrite
from gateway.store.sqlite import SqliteStore
from tests.helpers import base_config
from tests.store_contract import samples

SH = "Asia/Shanghai"


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=ZoneInfo(SH)).timestamp()  # type: ignore[misc]


def _scheduler(store: SqliteStore, clock: ManualClock, tmp_path: Path) -> ServiceReportScheduler:
    cfg = config_from_dict(base_config(tmp_path / "var"), str(tmp_path / "c.toml"), str(tmp_path))
    policies = build_policies(cfg)
    sched = [ReportSchedule("mine-monitoring", "quarterly", "mail", delay=2 * 86400.0, language="zh-CN")]
    return ServiceReportScheduler(store, clock, sched, SH, policies.get, default_calendars(), lambda c: "Shanxi Coal")


def test_a_quarterly_report_is_queued_once_after_its_delay(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "gateway.db")
    again = SqliteStore(tmp_path / "gateway.db")
    try:
        # Two tickets opened in Q1 (one at its very start), one just before it, one just after.
        opened = [at(2025, 12, 31, 23, 59), at(2026, 1, 1), at(2026, 3, 31, 23, 59), at(2026, 4, 1)]
        tickets = []
        for i, t in enumerate(opened, 1):
            tk = samples.ticket(i, policy="mine-monitoring", opened_at=t, device=f"gas-{i}")
            for c in tk.clocks:
                c.calendar = "24x7"
            tickets.append(tk)
        store.commit(BatchWrite(tickets=tickets))
        clock = ManualClock(at(2026, 4, 2, 23, 59))
        first = _scheduler(store, clock, tmp_path)
        # The last report due is Q4 2025's (Q1 waits for its 2 days).
        assert asyncio.run(first.sweep()) == ["service-report:mine-monitoring:2025-Q4:mail"]
        clock.set(at(2026, 4, 3, 0, 0, 1))
        assert asyncio.run(first.sweep()) == ["service-report:mine-monitoring:2026-Q1:mail"]
        assert asyncio.run(first.sweep()) == []
        assert asyncio.run(_scheduler(store, clock, tmp_path).sweep()) == []  # a restart: the marker holds
        assert asyncio.run(_scheduler(again, clock, tmp_path).sweep()) == []  # another connection too
        rows = [r for r in store.outbox_list() if r["kind"] == "service_report"]
        assert [(r["key"].rsplit(":", 2)[1], r["ticket_id"], r["connector"]) for r in rows] == [
            ("2026-Q1", 0, "mail"), ("2025-Q4", 0, "mail")]
        p = rows[0]["payload"]
        assert (p["contract"], p["period"], p["kind"], p["language"], p["formats"]) == (
            "mine-monitoring", "2026-Q1", "quarterly", "zh-CN", ["html", "pdf"])
        assert p["title"] == "服务报告 2026-Q1:mine-monitoring — Shanxi Coal"
        assert "周期: 2026-Q1 (quarterly, Asia/Shanghai)" in p["text"] and "工单数: 2" in p["text"]
        assert "<title>Service report 2026-Q1: mine-monitoring — Shanxi Coal</title>" in p["html"]
        clock.set(at(2026, 7, 3, 0, 0, 1))
        assert asyncio.run(first.sweep()) == ["service-report:mine-monitoring:2026-Q2:mail"]
    finally:
        store.close()
        again.close()


def test_two_schedulers_racing_queue_it_once(tmp_path: Path) -> None:
    stores = [SqliteStore(tmp_path / "gateway.db") for _ in range(2)]
    try:
        clock = ManualClock(at(2026, 5, 1))
        a, b = (_scheduler(s, clock, tmp_path) for s in stores)

        async def both() -> list[list[str]]:
            return list(await asyncio.gather(a.sweep(), b.sweep()))

        got = asyncio.run(both())
        assert sorted(len(x) for x in got) == [0, 1], got
        assert len([r for r in stores[0].outbox_list() if r["kind"] == "service_report"]) == 1
    finally:
        for s in stores:
            s.close()


def _cfg(tmp_path: Path, **report: object) -> object:
    d = base_config(tmp_path / "var")
    d["helpdesk"] = [{"type": "notify", "name": "mail", "urls": ["mailto://127.0.0.1:2525?to=a@b.example"],
                      "language": "en"}]
    d["service"] = {"mine-monitoring": {"reports": [{"every": "yearly", "to": "mail", **report}]}}
    return config_from_dict(d, str(tmp_path / "c.toml"), str(tmp_path))


def test_the_config_resolves_language_and_since_and_names_a_missing_notifier(tmp_path: Path) -> None:
    [s] = schedules_of(_cfg(tmp_path, since="2025-01-01", delay="2d"))
    assert (s.contract, s.every, s.to, s.delay, s.language, s.formats) == (
        "mine-monitoring", "yearly", "mail", 172800.0, "en", ("html", "pdf"))
    assert s.since == datetime(2025, 1, 1, tzinfo=ZoneInfo(SH)).timestamp()
    with pytest.raises(ConfigError, match=r"service\.mine-monitoring\.reports\[0\]\.to: no \[\[helpdesk\]\] notifier named 'fax'"):
        _cfg(tmp_path, to="fax")
