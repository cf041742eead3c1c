"""Two-way between a central and its edges, on the gateway's side (gateway.forward.control
moves the messages).

* :class:`CentralSide` — at the central: maintenance windows and the operator's
  acknowledge / arrive / resolve of a site's tickets become per-site control messages; the
  rule set is published at the start and after each reload (``distribute_rules``).
* :class:`EdgeSide` — at the edge: applies them through the single writer, recording the
  message's stream sequence in the same commit (``meta`` key ``forward.control_seq``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.core.maintenance import Window
from gateway.core.tickets import TicketError, is_person
from gateway.errors import ConfigError
from gateway.forward.control import TICKET_ACTIONS, ControlPublisher
from gateway.rulebook import central_rules_version, restore_central_rules, rule_set, store_central_rules

__all__ = ["CentralSide", "EdgeSide"]

log = logging.getLogger("gateway.forward")

SEQ_KEY = "forward.control_seq"


class CentralSide:
    """Args:
        gw: the central gateway (its inventory, maintenance book, config).
        publisher: sends the messages.
    """

    def __init__(self, gw: Any, publisher: ControlPublisher) -> None:
        self.gw = gw
        self.publisher = publisher

    def _edge_sites(self) -> set[str]:
        return {d.site for d in self.gw.inventory if d.device_class == "gateway.edge" and d.site}

    def window(self, w: Window) -> None:
        """A window created or ended here goes to every site with an edge it covers a device of."""
        sites = {d.site for d in self.gw.inventory if d.site and w.covers(d)} & self._edge_sites()
        for site in sorted(sites):
            self.publisher.site(site, f"mw/{site}/{w.id}/{w.end}/{w.ended_by}",
                                {"kind": "maintenance", "window": w.to_dict()})

    def on_timeline(self, entries: list[Any], tickets: list[Any]) -> None:
        """The pipeline's timeline tap: a person's acknowledge, arrive or resolve of a ticket
        of a site with an edge goes to that edge (it applies it to its own ticket of the
        same alarm)."""
        acts = [e for e in entries if e.kind in TICKET_ACTIONS and is_person(e.actor)]
        if not acts:
            return
        by_id = {t.id: t for t in tickets}
        sites = self._edge_sites()
        for e in acts:
            t = by_id.get(e.ticket_id)
            if t is not None and t.site in sites:
                self._ticket_action(t, e.kind, e.ts, e.actor, e.note)

    def _ticket_action(self, t: Any, kind: str, ts: float, actor: str, note: str) -> None:
        # The message id is the action's own: JetStream drops a republished one within its
        # window, and the edge finds an action it already applied done (TicketError, logged).
        self.publisher.site(t.site, f"tk/{t.site}/{t.id}/{kind}/{ts}", {
            "kind": "ticket", "action": kind, "device": t.device, "alarm_key": t.alarm_key,
            "at": ts, "actor": actor, "note": note, "ticket": t.id,
        })

    def resend_ticket_actions(self, now: float) -> int:
        """At the start: the people's ticket actions of the last ``control_retention`` again,
        from the store. One committed here but not yet published when the central stopped
        (or crashed: the publisher's queue is in memory) reaches its edge this way."""
        store = self.gw.store
        sites = self._edge_sites()
        rows = [r for r in store.timeline_since(now - self.gw.cfg.forward.control_retention, sorted(TICKET_ACTIONS))
                if is_person(r["actor"])]
        tickets: dict[int, Any] = {}
        n = 0
        for r in rows:
            tid = r["ticket_id"]
            if tid not in tickets:
                tickets[tid] = store.load_ticket(tid)
            t = tickets[tid]
            if t is not None and t.site in sites:
                self._ticket_action(t, r["kind"], r["ts"], r["actor"], r["note"])
                n += 1
        return n

    def resend(self) -> None:
        """At the start and after a reload: current and future windows again (JetStream and
        the edge drop what they had), and the rule set if it is distributed."""
        now = self.gw.clock.now()
        for w in self.gw.maintenance.windows(now, include_past=False):
            self.window(w)
        if self.gw.cfg.forward.distribute_rules:
            try:
                self.publisher.rules(rule_set(self.gw.cfg))
            except ConfigError as e:
                log.error("rule set not distributed: %s", e)


class EdgeSide:
    """:class:`gateway.forward.control.Applier` for an edge gateway."""

    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self._version = central_rules_version(gw.cfg.data_path())

    def control_seq(self) -> int:
        return int(self.gw.store.get_meta(SEQ_KEY) or 0)

    def rules_version(self) -> int:
        return self._version

    async def apply_control(self, seq: int, body: dict[str, Any]) -> None:
        gw = self.gw
        kind = body.get("kind")
        if kind == "maintenance":
            try:
                w = Window.from_dict({**body["window"], "source": "central"})
            except (KeyError, TypeError, ValueError) as e:
                log.warning("control message %d: a window that cannot be read: %s", seq, e)
                w = None
            if w is not None:
                await asyncio.to_thread(gw.store.save_maintenance, w.to_dict())

            def add(_now: float) -> None:
                if w is not None:
                    gw.maintenance.add(w)
                    gw.book.recheck_suppressed()
                gw.pipeline.meta[SEQ_KEY] = str(seq)

            await gw.pipeline.execute(add)
            if w is not None:
                log.info("maintenance window %s from the central (%s, until %s)", w.id, w.scope_text(), w.end)
        elif kind == "ticket":
            await gw.pipeline.execute(lambda now: self._ticket(seq, body, now))
        else:
            log.warning("control message %d of unknown kind %r: skipped", seq, kind)
            await gw.pipeline.execute(lambda _now: gw.pipeline.meta.__setitem__(SEQ_KEY, str(seq)))

    def _ticket(self, seq: int, body: dict[str, Any], now: float) -> None:
        """In the writer: the central's action on this edge's ticket of the same alarm."""
        gw = self.gw
        gw.pipeline.meta[SEQ_KEY] = str(seq)
        key, action = str(body.get("alarm_key", "")), str(body.get("action", ""))
        t = next((t for t in gw.desk.open.values() if t.alarm_key == key), None)
        if t is None:
            log.info("central %s of ticket %s (%s): no open ticket of that alarm here", action, body.get("ticket"), key)
            return
        at = min(max(float(body.get("at", now)), t.opened_at), now)
        try:
            gw.desk.act(t.id, action, at, f"central:{body.get('actor', '')}", str(body.get("note", "")))
        except TicketError as e:
            log.info("central %s of ticket %s not applied to ticket %d here: %s", action, body.get("ticket"), t.id, e)
            return
        if action == "acknowledge":
            alarm = gw.book.open.get(t.alarm_key)
            if alarm is not None and alarm.ticket_id == t.id and not alarm.acked:
                alarm.acked = True
                gw.book.touch(alarm)

    async def apply_rules(self, body: dict[str, Any]) -> None:
        data_dir = self.gw.cfg.data_path()
        old = await asyncio.to_thread(store_central_rules, data_dir, body)
        try:
            await self.gw.reload()
        except ConfigError as e:
            await asyncio.to_thread(restore_central_rules, data_dir, old)
            raise ValueError(str(e)) from None
        self._version = int(body["version"])
