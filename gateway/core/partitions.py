"""Which central instance should lead which partition (pure: time is passed in, no I/O).

The inputs are what the lease table says (docs/scaling.md, "Partitions"): the members,
each with the time its membership row expires, and the partitions' current holders
(member name and expiry). Every instance computes the same answer from the same rows:

* a member is live while its row has not expired; with *n* live members each gets
  ``P // n`` partitions, and the ``P % n`` members holding the most (ties by name) one more,
  so a join or a leave moves as few partitions as it can;
* a member keeps the partitions it holds (lowest numbers first) up to its share;
* every other partition (free, held by a dead member, or shed) goes to the live member
  with the fewest so far that is still under its share (ties by name), in partition order.

The lease decides who actually writes: this only says who should try.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["assign", "live_members", "member_of", "next_in_series", "shares"]


def next_in_series(n: int, step: int, offset: int) -> int:
    """The smallest id >= ``n`` that is ``offset`` mod ``step``: a partition's ids (alarm and
    ticket numbers) never meet another partition's, and each new leader starts above every
    id in the store. ``step`` 1: ``n`` itself."""
    return n if step <= 1 else n + (offset - n) % step


def member_of(holder: str) -> str:
    """The member a partition lease's holder belongs to (``<member>#p<partition>:<pid>``)."""
    return holder.partition("#")[0]


def live_members(members: Mapping[str, float], now: float) -> list[str]:
    """Names of the members whose row expires after ``now``, sorted."""
    return sorted(m for m, expires in members.items() if expires > now)


def shares(partitions: int, live: list[str], held: Mapping[str, int]) -> dict[str, int]:
    """Each live member's share: ``P // n``, plus one for the ``P % n`` holding the most."""
    if not live:
        return {}
    base, extra = divmod(partitions, len(live))
    order = sorted(live, key=lambda m: (-held.get(m, 0), m))
    return {m: base + (1 if i < extra else 0) for i, m in enumerate(order)}


def assign(
    partitions: int,
    members: Mapping[str, float],
    holders: Mapping[int, tuple[str, float]],
    now: float,
) -> dict[int, str]:
    """Who should lead each partition.

    Args:
        partitions: P.
        members: member name → the time its membership row expires.
        holders: partition → (member holding its lease, the time the lease expires).
        now: the time the rows were read at (same clock as the expiries).

    Returns:
        partition → member, for every partition in ``range(partitions)``; empty when no
        member is live.
    """
    live = live_members(members, now)
    if not live:
        return {}
    held: dict[str, list[int]] = {m: [] for m in live}
    for p in range(partitions):
        h = holders.get(p)
        if h is not None and h[1] > now and h[0] in held:
            held[h[0]].append(p)
    quota = shares(partitions, live, {m: len(ps) for m, ps in held.items()})
    out: dict[int, str] = {}
    count = dict.fromkeys(live, 0)
    for m in live:
        for p in sorted(held[m])[:quota[m]]:
            out[p] = m
            count[m] += 1
    for p in range(partitions):
        if p in out:
            continue
        m = min((m for m in live if count[m] < quota[m]), key=lambda m: (count[m], m))
        out[p] = m
        count[m] += 1
    return out
