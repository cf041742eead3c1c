"""HA failover with real processes: kill -9 the leader while devices send INFORMs (real
``snmpinform``, retrying) through an address that follows the leader; the standby leads
within the lease, and every INFORM that was answered is stored exactly once.

The "virtual IP" is a small UDP relay in the test that forwards to whichever instance holds
the lease (what keepalived/VRRP does in a deployment; VRRP itself cannot run here). It keeps
one upstream socket per device, so a device's retransmissions keep their source address
across the failover, as they would through a VIP.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from tests.e2e.test_ha_fencing import LEASE, Instance, _holder
from tests.helpers import wait_until
from tests.store_contract.backends import POSTGRESQL, pg_dsn, pg_schema

pytestmark = pytest.mark.skipif(shutil.which("snmpinform") is None, reason="net-snmp snmpinform not installed")


class Relay:
    """UDP relay: clients → the current target port; answers back to each client."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.up: dict[tuple[str, int], socket.socket] = {}
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._down, daemon=True).start()

    def switch(self, target: int) -> None:
        with self.lock:
            self.target = target
            for s in self.up.values():
                s.connect(("127.0.0.1", target))

    def _down(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped:
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                up = self.up.get(peer)
                if up is None:
                    up = self.up[peer] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    up.connect(("127.0.0.1", self.target))
                    threading.Thread(target=self._back, args=(up, peer), daemon=True).start()
            try:
                up.send(data)
            except OSError:
                pass  # nobody listens there (yet): the device retransmits

    def _back(self, up: socket.socket, peer: tuple[str, int]) -> None:
        up.settimeout(0.2)
        while not self.stopped:
            try:
                data = up.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                continue  # ICMP port unreachable from a dead/standby instance
            self.sock.sendto(data, peer)

    def close(self) -> None:
        self.stopped = True
        self.sock.close()
        with self.lock:
            for s in self.up.values():
                s.close()


@pytest.fixture
def location(tmp_path: Path) -> Iterator[str]:
    loc = POSTGRESQL.location(tmp_path)
    yield loc
    POSTGRESQL.drop(loc)


def _counts(location: str) -> dict[str, int]:
    with psycopg.connect(pg_dsn(), autocommit=True, options=f"-c search_path={pg_schema(location)}") as db:
        return {str(k): int(c) for k, c in db.execute("SELECT key, count FROM alarms").fetchall()}


def _inform(port: int, n: int) -> bool:
    r = subprocess.run(["snmpinform", "-v", "2c", "-c", "public", "-r", "20", "-t", "1", f"127.0.0.1:{port}", "",
                        "1.3.6.1.6.3.1.1.5.3", f"1.3.6.1.2.1.2.2.1.1.{n}", "i", str(n),
                        f"1.3.6.1.2.1.2.2.1.8.{n}", "i", "2"], capture_output=True, timeout=60)
    return r.returncode == 0


@pytest.mark.parametrize("death", ["kill-9", "after-commit"])
def test_the_leader_dies_under_inform_load(tmp_path: Path, location: str, death: str) -> None:
    """``kill-9``: SIGKILL at a random point of the load. ``after-commit``: the leader dies
    right after committing a batch of INFORMs and before answering them (failpoint
    ``before_commit_callbacks=exit``, as abrupt as kill -9): the retransmissions reach the
    new leader, which must answer them without recording them again."""
    env = {"GATEWAY_FAILPOINTS": "before_commit_callbacks=exit"} if death == "after-commit" else None
    a = Instance(tmp_path, "gw-a", location, env=env)
    b: Instance | None = None
    relay: Relay | None = None
    try:
        wait_until(lambda: "gateway ready" in a.text() or a.proc.poll() is not None, 60)
        assert a.proc.poll() is None, a.text()
        b = Instance(tmp_path, "gw-b", location)
        wait_until(lambda: "standby: gw-a holds the leader lease" in b.text(), 60)  # type: ignore[union-attr]
        relay = Relay(a.port)

        answered: dict[int, bool] = {}
        with ThreadPoolExecutor(6) as pool:
            futures = {}
            for n in range(1, 121):
                futures[n] = pool.submit(_inform, relay.port, n)
                if n == 40:
                    if death == "kill-9":
                        wait_until(lambda: len(_counts(location)) >= 20, 60)  # the leader is committing
                        os.kill(a.proc.pid, signal.SIGKILL)
                    wait_until(lambda: a.proc.poll() is not None, 60)
                    killed = time.monotonic()
                    wait_until(lambda: _holder(location) == "gw-b", 4 * LEASE + 20)
                    took_over = time.monotonic() - killed
                    wait_until(lambda: "gateway ready" in b.text(), 60)  # type: ignore[union-attr]
                    relay.switch(b.port)  # the VIP follows the leader (keepalived's health check)
            for n, f in futures.items():
                answered[n] = f.result()

        assert a.proc.wait(5) == (-signal.SIGKILL if death == "kill-9" else 137)
        if death == "after-commit":
            assert "failpoint before_commit_callbacks: exiting" in a.text()
        assert took_over <= 2 * LEASE + 2, took_over  # expiry + one quarter-lease poll, on a busy machine
        counts = _counts(location)
        ok = [n for n, v in answered.items() if v]
        assert len(ok) == 120, sorted(set(answered) - set(ok))  # every device got its answer in the end
        by_if = {int(k.rsplit("/", 1)[1]): c for k, c in counts.items()}
        assert {n: by_if.get(n) for n in ok} == {n: 1 for n in ok}  # stored, and exactly once
    finally:
        if relay is not None:
            relay.close()
        a.stop()
        if b is not None:
            b.stop()
