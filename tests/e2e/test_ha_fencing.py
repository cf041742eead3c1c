"""HA on one PostgreSQL store, with real processes: a standby waits while the leader
works; a leader paused (SIGSTOP) past its lease is replaced by the standby, and when it
wakes (SIGCONT) it commits not one row of what it received meanwhile: it stops (exit 75)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.store.lease import Lease
from tests.helpers import ROOT, base_config, wait_until, write_config
from tests.store_contract.backends import POSTGRESQL, pg_dsn, pg_schema

pytestmark = pytest.mark.skipif(shutil.which("snmptrap") is None, reason="net-snmp snmptrap not installed")

LEASE = 2.0


def _free_udp() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Instance:
    def __init__(self, tmp: Path, name: str, location: str, env: dict[str, str] | None = None, *,
                 dsn: str | None = None, api_port: int | None = None, lease: float = LEASE,
                 extra: dict[str, Any] | None = None, instance: str | None = None) -> None:
        self.name = name
        self.port = _free_udp()
        self.api_port = api_port
        more: dict[str, Any] = {"api": {"enabled": True, "port": api_port}} if api_port else {}
        extra = dict(extra or {})
        adapters = extra.pop("adapters", None)
        cfg = base_config(tmp / name, snmp_port=self.port, store={
            "backend": "postgresql", "dsn": dsn or pg_dsn(), "schema": pg_schema(location)},
            ha={"enabled": True, "lease": f"{lease}s", "name": name, **extra.pop("ha", {})}, **more, **extra)
        if adapters:  # beside the SNMP listener
            cfg["adapters"] = {**cfg["adapters"], **adapters}
        if instance:
            cfg["gateway"]["instance"] = instance
        self.cfg = write_config(tmp / f"{name}.toml", cfg)
        self.log = tmp / f"{name}.log"
        #: Where this process's lines start in the log (a restarted instance appends to it).
        self.start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(self.cfg)],
                                         stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})})

    def text(self) -> str:
        """This process's log lines (not those of an earlier process of the same name)."""
        return self.log.read_bytes()[self.start:].decode(errors="replace")

    def trap(self, if_index: int) -> None:
        subprocess.run(["snmptrap", "-v", "2c", "-c", "public", f"127.0.0.1:{self.port}", "", "1.3.6.1.6.3.1.1.5.3",
                        f"1.3.6.1.2.1.2.2.1.1.{if_index}", "i", str(if_index),
                        f"1.3.6.1.2.1.2.2.1.8.{if_index}", "i", "2"], check=True, timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def location(tmp_path: Path) -> Iterator[str]:
    loc = POSTGRESQL.location(tmp_path)
    yield loc
    POSTGRESQL.drop(loc)


def _alarm_keys(location: str) -> list[str]:
    try:
        with psycopg.connect(pg_dsn(), autocommit=True, options=f"-c search_path={pg_schema(location)}") as db:
            return [str(r[0]) for r in db.execute("SELECT key FROM alarms ORDER BY id").fetchall()]
    except psycopg.errors.UndefinedTable:
        return []


def _holder(location: str) -> Any:
    conninfo = f"{pg_dsn()} options='-c search_path={pg_schema(location)}'"
    try:
        cur = Lease.current(conninfo)
    except psycopg.Error:
        return None
    return cur[0] if cur else None


def test_a_paused_leader_that_wakes_after_a_takeover_commits_nothing(tmp_path: Path, location: str) -> None:
    a = Instance(tmp_path, "gw-a", location)
    b: Instance | None = None
    try:
        wait_until(lambda: "gateway ready" in a.text() or a.proc.poll() is not None, 60)
        assert a.proc.poll() is None, a.text()
        assert _holder(location) == "gw-a"
        b = Instance(tmp_path, "gw-b", location)
        wait_until(lambda: "standby: gw-a holds the leader lease" in b.text(), 60)  # type: ignore[union-attr]
        assert "gateway ready" not in b.text()  # a standby loads nothing, ingests nothing

        a.trap(1)
        wait_until(lambda: any(k.endswith("/1") for k in _alarm_keys(location)), 30)

        os.kill(a.proc.pid, signal.SIGSTOP)
        wait_until(lambda: _holder(location) == "gw-b", 4 * LEASE + 20)
        wait_until(lambda: "gateway ready" in b.text(), 60)  # type: ignore[union-attr]
        a.trap(77)  # lands in the paused leader's socket buffer
        b.trap(2)   # the new leader works
        wait_until(lambda: any(k.endswith("/2") for k in _alarm_keys(location)), 30)

        os.kill(a.proc.pid, signal.SIGCONT)
        assert a.proc.wait(30) == 75, a.text()
        assert "lost the leader lease" in a.text()
        keys = _alarm_keys(location)
        assert not any(k.endswith("/77") for k in keys), keys  # nothing of what it got while paused
        assert b.proc.poll() is None and _holder(location) == "gw-b"
    finally:
        a.stop()
        if b is not None:
            b.stop()
