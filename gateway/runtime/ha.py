"""Leader election of gateways sharing one PostgreSQL store (``[ha] enabled``).

Every instance runs the same config. At start an instance waits (standby) until it holds
the leader lease (:class:`gateway.store.lease.Lease`); only then does it load the state and
start the decision core, timers, the outbox worker and its adapters. From then on its store
is fenced: every write transaction proves the lease first. The lease is renewed every
quarter of its length. If the database says another instance holds it (this one was
paused or cut off for longer than the lease), the instance stops at once without another
write (exit status 75, for the supervisor to restart it as a standby): its in-memory state
is no longer the truth. While the database cannot be reached, the lease simply is not
renewed: writes wait (INFORMs unanswered, QoS 1 unacknowledged) and resume with the same
token when it answers, if nobody took over meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from gateway.store.lease import Lease

__all__ = ["LOST_EXIT", "LeaderElection", "StoppedWhileStandby", "advertise_url", "default_holder"]

log = logging.getLogger("gateway.ha")

#: Exit status of an instance that lost the lease to another one (EX_TEMPFAIL).
LOST_EXIT = 75


class StoppedWhileStandby(Exception):
    """The instance was told to stop (SIGTERM) while it waited as a standby: it never led,
    so there is nothing to drain; the start ends here, cleanly."""


def default_holder(instance: str) -> str:
    return f"{instance}@{socket.gethostname()}:{os.getpid()}"


def advertise_url(configured: str, host: str, port: int) -> str:
    """Where the other instances reach this one's API while it leads: ``[ha] advertise_url``,
    else ``[api]`` host and port (this machine's name for a wildcard host)."""
    if configured:
        return configured.rstrip("/")
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class LeaderElection:
    def __init__(self, lease: Lease, on_lost: Callable[[str], None]) -> None:
        self.lease = lease
        self.on_lost = on_lost
        self.token = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._unreachable = False

    @property
    def role(self) -> str:
        return "leader" if self.lease.held() else ("standby" if self.token == 0 else "leader-unconfirmed")

    def stats(self) -> dict[str, Any]:
        return {"leader": 1 if self.lease.held() else 0, "lease_age_seconds": round(self.lease.age(), 3),
                "lease_token": self.token}

    async def wait_for_lease(self) -> None:
        """Block (standby) until this instance holds the lease."""
        told = False
        while not await asyncio.to_thread(self.lease.try_acquire):
            if not told:
                cur = await asyncio.to_thread(_current, self.lease)
                log.warning("standby: %s holds the leader lease; taking over when it lapses", cur or "another instance")
                told = True
            await asyncio.sleep(self.lease.ttl / 4)  # why: polling the lease row at a quarter of its length
        self.token = self.lease.token
        log.warning("leader: holding the lease as %s (token %d)", self.lease.holder, self.token)

    async def start(self) -> None:
        """Renew from a thread of its own: the event loop may be busy (loading the state at
        takeover, a long batch) for longer than the lease's local margin."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew, name="ha-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease.ttl / 4):  # renewing at a quarter of the lease length
            ok = self.lease.try_acquire()
            if self._stop.is_set():
                return
            if self.lease.token != self.token or (not ok and self.lease.reachable):
                self.on_lost(f"another instance holds the leader lease (token {self.lease.token}, ours {self.token})")
                return
            if not ok and not self._unreachable:
                log.error("leader lease not renewed: the database does not answer; writes wait until it does")
            self._unreachable = not ok

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, self.lease.ttl)
        await asyncio.to_thread(self.lease.release)
        await asyncio.to_thread(self.lease.close)


def _current(lease: Lease) -> str | None:
    try:
        cur = Lease.current(lease.conninfo, lease.name)
    except Exception:  # noqa: BLE001 - only for the log line
        return None
    return cur[0] if cur else None
