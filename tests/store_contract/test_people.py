"""The Store contract for people: accounts, personal API tokens and board sessions (digests
only), and tickets found by owner, team and contract; owner and escalations survive a reopen
of the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gateway.store import BatchWrite, Store
from gateway.store.sqlite import SqliteStore
from tests.store_contract import samples as s
from tests.store_contract.backends import Backend
from tests.store_contract.test_migrations import FIXTURES, _load_dump

T0 = s.T0


def _user(name: str, role: str = "operator", **kw: object) -> dict[str, object]:
    return {"name": name, "role": role, "display_name": name.title(), "password_hash": "scrypt$x",
            "created_at": T0, "updated_at": T0, **kw}


def test_accounts_are_upserted_by_name_and_listed_by_name(store: Store, open_store: Callable[..., Store]) -> None:
    store.save_user(_user("zoe", "viewer"))
    store.save_user(_user("amy", "customer", scope={"sites": ["north"], "policies": ["gold"]}))
    store.save_user(_user("zoe", "admin", disabled=True, updated_at=T0 + 5))
    again = open_store()
    assert [u["name"] for u in again.list_users()] == ["amy", "zoe"]
    zoe = again.get_user("zoe")
    assert zoe is not None
    assert (zoe["role"], zoe["disabled"], zoe["created_at"], zoe["updated_at"]) == ("admin", True, T0, T0 + 5)
    amy = again.get_user("amy")
    assert amy is not None and amy["scope"] == {"sites": ["north"], "policies": ["gold"]} and not amy["disabled"]
    assert again.get_user("nobody") is None


def test_personal_tokens_are_found_by_digest_and_revoked(store: Store) -> None:
    store.save_user(_user("amy"))
    a = store.add_user_token("amy", "script", "d1", T0)
    b = store.add_user_token("amy", "cron", "d2", T0 + 1)
    assert a != b
    assert store.user_token("d2") == {"id": b, "user": "amy", "label": "cron", "created_at": T0 + 1}
    assert [t["label"] for t in store.list_user_tokens("amy")] == ["script", "cron"]
    assert store.revoke_user_token("bob", a) is False  # not bob's
    assert store.revoke_user_token("amy", a) is True
    assert store.user_token("d1") is None
    assert store.revoke_user_tokens("amy") == 1
    assert store.list_user_tokens("amy") == []


def test_sessions_expire_and_end(store: Store) -> None:
    store.add_session("s1", "amy", T0, T0 + 100)
    store.add_session("s2", "amy", T0, T0 + 200)
    store.add_session("s3", "bob", T0, T0 + 200)
    assert store.get_session("s1", T0 + 50) == {"user": "amy", "created_at": T0, "expires_at": T0 + 100}
    assert store.get_session("s1", T0 + 100) is None  # expired
    store.drop_session("s2")
    assert store.get_session("s2", T0) is None
    assert store.drop_sessions("bob") == 1
    assert store.get_session("s3", T0) is None


def test_tickets_filter_by_owner_team_and_contract(store: Store, open_store: Callable[..., Store]) -> None:
    t1, t2, t3 = s.ticket(1), s.ticket(2, alarm_id=2, policy="silver"), s.ticket(3, alarm_id=3)
    t1.owner, t1.team, t1.escalations = "amy", "noc", {"owner-50": T0 + 450}
    t2.team = "field"
    store.commit(BatchWrite(alarms=[s.alarm(1), s.alarm(2), s.alarm(3)], tickets=[t1, t2, t3]))
    again = open_store()
    assert [t["id"] for t in again.find_tickets(owners=["amy"])] == [1]
    assert [t["id"] for t in again.find_tickets(owners=[""])] == [3, 2]  # nobody owns them
    assert [t["id"] for t in again.find_tickets(teams=["field", "noc"])] == [2, 1]
    assert [t["id"] for t in again.find_tickets(policies=["silver"])] == [2]
    assert again.find_tickets(owners=[]) == []
    t1.owner = "bob"
    store.commit(BatchWrite(tickets=[t1]))
    assert [t["id"] for t in again.find_tickets(owners=["bob"])] == [1]
    loaded = again.load_ticket(1)
    assert loaded is not None and loaded.owner == "bob" and loaded.escalations == {"owner-50": T0 + 450}


def test_a_store_from_before_people_is_upgraded(tmp_path: Path, backend: Backend) -> None:
    """Tickets written before migration 8 have no owner row: they are nobody's, and the
    people tables take writes at once."""
    backend.require("legacy_sqlite")
    dump = sorted(FIXTURES.glob("legacy_4_*.sql"))[-1]
    path = tmp_path / "gateway.db"
    _load_dump(dump, path)
    store = SqliteStore(path)
    try:
        assert [t["id"] for t in store.find_tickets(owners=[""])] == [2, 1]
        assert store.find_tickets(owners=["amy"]) == []
        store.save_user(_user("amy"))
        store.add_session("s", "amy", T0, T0 + 60)
        assert store.get_session("s", T0) is not None
    finally:
        store.close()
