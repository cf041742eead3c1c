"""When a ticket's incident report is due to go out by itself (pure selection)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gateway.delivery.helpdesk.notify.config import NotifyConfig
from gateway.runtime.auto_report import auto_report_due

FULL = {"symptoms": "a", "cause": "b", "solution": "c", "follow_up": "d"}


def _t(status: str = "restored", report: dict[str, str] | None = None, policy: str = "network-equipment") -> Any:
    return SimpleNamespace(status=status, report=FULL if report is None else report, policy=policy)


def _n(name: str, **kw: Any) -> NotifyConfig:
    return NotifyConfig(name=name, urls=["json://127.0.0.1:9/x"], **kw)  # type: ignore[list-item]


HELPDESKS = [_n("noc"), _n("boss", reports=True, policies=["power-*"]),
             _n("customer", reports=True, auto_report=True, policies=["network-*"]),
             _n("archive", reports=True, policies=["network-*"])]


def test_a_restored_ticket_with_all_four_parts_goes_to_every_report_notifier_of_its_contract() -> None:
    assert auto_report_due(_t(), HELPDESKS) == ["customer", "archive"]


def test_not_before_restore_all_parts_and_an_auto_notifier() -> None:
    assert auto_report_due(_t(status="open"), HELPDESKS) == []
    assert auto_report_due(_t(status="closed"), HELPDESKS) == []
    assert auto_report_due(_t(report={**FULL, "follow_up": "  "}), HELPDESKS) == []
    assert auto_report_due(_t(report={k: v for k, v in FULL.items() if k != "cause"}), HELPDESKS) == []
    assert auto_report_due(_t(policy="power-supply"), HELPDESKS) == []  # its notifier sends by hand only
