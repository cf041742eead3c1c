"""The Store contract for scheduled service reports (the once-marker and its outbox row are
one transaction) and for failed sign-ins shared by every connection to the store (a second
process, another gateway in HA, a restart)."""

from __future__ import annotations

from collections.abc import Callable

from gateway.store import Store
from tests.store_contract import samples as s

T0 = s.T0


def test_a_service_report_is_queued_once_with_its_outbox_row(store: Store, open_store: Callable[..., Store]) -> None:
    payload = {"contract": "gold", "period": "2026-Q1", "title": "Service report 2026-Q1: gold", "html": "<p>x</p>"}
    first = store.queue_service_report("sr:gold:2026-Q1:mail", "gold", "2026-Q1", "mail", payload, T0)
    assert first is not None
    other = open_store()  # another process (or the same after a restart) tries again
    assert other.queue_service_report("sr:gold:2026-Q1:mail", "gold", "2026-Q1", "mail", payload, T0 + 5) is None
    assert other.queue_service_report("sr:gold:2026-Q1:cc", "gold", "2026-Q1", "cc", payload, T0 + 6) is not None
    rows = [r for r in other.outbox_list() if r["kind"] == "service_report"]
    assert sorted((r["connector"], r["ticket_id"], r["key"], r["state"]) for r in rows) == [
        ("cc", 0, "sr:gold:2026-Q1:cc", "pending"), ("mail", 0, "sr:gold:2026-Q1:mail", "pending")]
    assert next(r for r in rows if r["id"] == first)["payload"] == payload
    sent = other.service_reports_sent("gold")
    assert [(r["key"], r["period"], r["connector"], r["queued_at"]) for r in sent] == [
        ("sr:gold:2026-Q1:cc", "2026-Q1", "cc", T0 + 6), ("sr:gold:2026-Q1:mail", "2026-Q1", "mail", T0)]
    assert other.service_reports_sent("silver") == []
    # The outbox worker hands it out like any message (the head of its own queue).
    claimed = other.outbox_claim(T0 + 10, 60.0, ["mail"])
    assert [r["id"] for r in claimed] == [first]


def test_failed_sign_ins_are_counted_by_every_connection_and_forgotten(
    store: Store, open_store: Callable[..., Store]
) -> None:
    for i in range(3):
        store.add_sign_in_failure("vera", T0 + i, T0 - 60)
    other = open_store()
    other.add_sign_in_failure("vera", T0 + 3, T0 - 60)
    other.add_sign_in_failure("li.wei", T0 + 3, T0 - 60)
    assert store.sign_in_failures("vera", T0 - 60) == 4
    assert store.sign_in_failures("vera", T0 + 2) == 2  # only those in the window
    # A success clears the name's; old failures of any name go with the next write.
    other.clear_sign_in_failures("vera")
    assert store.sign_in_failures("vera", 0) == 0 and store.sign_in_failures("li.wei", 0) == 1
    store.add_sign_in_failure("zoe", T0 + 100, T0 + 50)
    assert store.sign_in_failures("li.wei", 0) == 0 and store.sign_in_failures("zoe", 0) == 1
