"""The Store contract for after-sales rows, run against every backend: planned work items are
inserted once per id (generating twice, or after a restart, never duplicates), replaced by
id, filtered and ordered by due date; service records are appended in order and filtered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.store import Store
from tests.store_contract import samples as s

T0 = s.T0


def item(n: int, device: str = "d1", status: str = "planned", **kw: Any) -> dict[str, Any]:
    return {"id": f"c/inspection:{device}:{n}", "schedule": "c/inspection", "contract": "c", "device": device,
            "kind": "inspection", "seq": n, "due": T0 + n * 86400, "window_start": T0 + n * 86400 - 3600,
            "deadline": T0 + n * 86400 + 3600, "status": status, "checklist": ["a", "b"], "title": "巡检", **kw}


def test_planned_work_is_inserted_once_per_id(store: Store, open_store: Callable[..., Store]) -> None:
    assert store.insert_planned([item(1), item(2)]) == 2
    assert store.insert_planned([item(1, title="changed"), item(3)]) == 1  # 1 exists: left as it is
    again = open_store()  # a restart: a new connection sees the same rows
    assert again.insert_planned([item(1), item(2), item(3)]) == 0
    rows = again.list_planned()
    assert [r["id"] for r in rows] == ["c/inspection:d1:1", "c/inspection:d1:2", "c/inspection:d1:3"]
    assert rows[0]["title"] == "巡检" and rows[0]["checklist"] == ["a", "b"]


def test_planned_work_is_replaced_by_id_and_filtered(store: Store) -> None:
    store.insert_planned([item(1), item(2), item(1, device="d2")])
    store.save_planned([item(2, status="done", report={"text": "ok", "files": []})])
    assert store.get_planned("c/inspection:d1:2")["report"] == {"text": "ok", "files": []}  # type: ignore[index]
    assert store.get_planned("nope") is None
    assert [r["id"] for r in store.list_planned(statuses=["planned"], devices=["d1"])] == ["c/inspection:d1:1"]
    assert len(store.list_planned(contracts=["c"])) == 3
    assert store.list_planned(contracts=[]) == []
    assert [r["device"] for r in store.list_planned(due_before=T0 + 86400 + 1)] == ["d1", "d2"]
    assert len(store.list_planned(limit=1)) == 1
    store.save_planned([])  # nothing to do


def test_service_records_are_appended_in_order(store: Store) -> None:
    a = store.add_service_record({"device": "d1", "ticket_id": 4, "kind": "spare_requested", "ts": T0,
                                  "actor": "user:li", "data": {"part": "psu", "note": "电源"}})
    b = store.add_service_record({"device": "d1", "ticket_id": None, "kind": "part_replaced", "ts": T0 + 5,
                                  "data": {"part": "psu"}})
    c = store.add_service_record({"device": "d2", "ticket_id": 9, "kind": "loaner_out", "ts": T0 - 5})
    assert a < b < c
    rows = store.list_service_records(device="d1")
    assert [(r["kind"], r["ticket_id"], r["actor"]) for r in rows] == [
        ("spare_requested", 4, "user:li"), ("part_replaced", None, "")]
    assert rows[0]["data"] == {"part": "psu", "note": "电源"}
    assert [r["kind"] for r in store.list_service_records()] == ["loaner_out", "spare_requested", "part_replaced"]
    assert [r["id"] for r in store.list_service_records(ticket_id=9)] == [c]
    assert [r["id"] for r in store.list_service_records(kinds=["part_replaced", "loaner_out"])] == [c, b]
