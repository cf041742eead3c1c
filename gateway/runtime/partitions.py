"""A partitioned central (``[forward] partitions`` > 1 with ``[ha]``): the supervisor that
keeps this instance's fair share of the partitions led by child processes.

It holds the membership row ``member/<name>`` (a :class:`~gateway.store.lease.Lease`,
renewed every quarter lease); every quarter lease it reads the members' and partitions'
rows, computes who should lead what (:func:`gateway.core.partitions.assign`), starts a child
``gateway run --partition p --member <name>`` for each partition that is its own and has
none, and sends SIGTERM to the child of each partition that is no longer its own (the child
drains, commits and releases the partition's lease for the new owner's waiting child). A
child that ends while its partition is still this instance's is started again. Children
die with the supervisor (``PR_SET_PDEATHSIG``): a supervisor killed with -9 leaves no
child holding a partition, and its rows lapse within one lease. See docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from gateway.core.partitions import assign, member_of
from gateway.store.lease import Lease

__all__ = ["MEMBER_PREFIX", "PARTITION_PREFIX", "PartitionSupervisor", "partition_lease"]

log = logging.getLogger("gateway.partitions")

MEMBER_PREFIX = "member/"
PARTITION_PREFIX = "partition/"
_PR_SET_PDEATHSIG = 1


def partition_lease(p: int) -> str:
    """The lease row of partition ``p`` (its leader's; the fencing token of its writes)."""
    return f"{PARTITION_PREFIX}{p}"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class PartitionSupervisor:
    """Args:
        conninfo: the store's connection string (the lease table lives there).
        member: this instance's name among the members (unique per instance).
        partitions: P.
        ttl: the lease length (``[ha] lease``).
        config: the config file the children run with.
    """

    def __init__(self, conninfo: str, member: str, partitions: int, ttl: float, config: str) -> None:
        self.member = member
        self.partitions = partitions
        self.ttl = ttl
        self.config = config
        self.lease = Lease(conninfo, member, ttl, name=f"{MEMBER_PREFIX}{member}")
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self._stopping: set[int] = set()
        self._started_at: dict[int, float] = {}
        #: The partitions this instance should lead, as last computed.
        self.mine: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not await asyncio.to_thread(self.lease.try_acquire):
            raise RuntimeError(f"cannot register as partition member {self.member!r} (name taken, or no database)")
        self._task = asyncio.create_task(self._run(), name="partitions")

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # one bad round must not end the supervision
                log.exception("partition round failed")
            await asyncio.sleep(self.ttl / 4)  # why: a quarter lease, as the leases are renewed

    async def tick(self) -> None:
        """One round: renew, read the rows, reconcile the children with the assignment."""
        self._reap()
        if not await asyncio.to_thread(self.lease.try_acquire):
            return  # the database does not answer: the children keep (or lose) their own leases
        got = await asyncio.to_thread(self.lease.rows, "")
        if got is None:
            return
        now, rows = got
        members: dict[str, float] = {}
        holders: dict[int, tuple[str, float]] = {}
        for name, holder, expires in rows:
            if name.startswith(MEMBER_PREFIX):
                members[name[len(MEMBER_PREFIX):]] = expires
            elif name.startswith(PARTITION_PREFIX) and name[len(PARTITION_PREFIX):].isdigit():
                holders[int(name[len(PARTITION_PREFIX):])] = (member_of(holder), expires)
        want = {p for p, m in assign(self.partitions, members, holders, now).items() if m == self.member}
        if want != self.mine:
            log.warning("partitions: %s leads %s of %d (%d live members)", self.member,
                        sorted(want) or "none", self.partitions, sum(1 for e in members.values() if e > now))
        self.mine = want
        for p in sorted(want - set(self.children)):
            self._spawn(p)
        for p in sorted(set(self.children) - want - self._stopping):
            log.warning("partition %d: handing over (SIGTERM to its child %d)", p, self.children[p].pid)
            self._stopping.add(p)
            with contextlib.suppress(ProcessLookupError):
                self.children[p].send_signal(signal.SIGTERM)

    def _reap(self) -> None:
        for p, proc in list(self.children.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.children[p]
            self._stopping.discard(p)
            if p in self.mine:
                log.warning("partition %d: its child ended (exit %d); starting another", p, code)

    def _spawn(self, p: int) -> None:
        # At most one start per partition per second: a child that cannot start is not spun.
        if time.monotonic() - self._started_at.get(p, -10.0) < 1.0:
            return
        self._started_at[p] = time.monotonic()
        # From the event loop's thread (the process's main thread): PR_SET_PDEATHSIG fires
        # when the thread that forked ends, and this one lives as long as the process.
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", self.config, "--partition", str(p), "--member", self.member],
            preexec_fn=_die_with_parent,  # only prctl between fork and exec, no Python state touched
        )
        self.children[p] = proc
        log.warning("partition %d: started child %d (waits for the partition's lease)", p, proc.pid)

    def reload(self) -> int:
        """SIGHUP: every running child reloads its config (rules, policies, devices, windows),
        as a single gateway does on SIGHUP. Returns how many were told."""
        n = 0
        for p, proc in sorted(self.children.items()):
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGHUP)
                    n += 1
                except ProcessLookupError:  # it just ended: the next tick deals with it
                    log.info("partition %d: its child ended before the reload reached it", p)
        log.warning("reload: passed to %d partition children", n)
        return n

    async def stop(self) -> None:
        """A clean leave: the member row goes first (the others start their children for this
        instance's partitions at once; they wait for the leases), then every child drains and
        releases its partition's lease."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.lease.release)
        for proc in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for p, proc in list(self.children.items()):
            try:
                await asyncio.to_thread(proc.wait, 60)
            except subprocess.TimeoutExpired:
                log.error("partition %d: child %d did not stop within 60 s; killed", p, proc.pid)
                proc.kill()
                await asyncio.to_thread(proc.wait, 10)
        self.children.clear()
        await asyncio.to_thread(self.lease.close)

    def stats(self) -> dict[str, Any]:
        return {"member": self.member, "partitions": sorted(self.mine),
                "children": {p: c.pid for p, c in self.children.items()}, "pid": os.getpid()}
