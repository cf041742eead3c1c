"""Prometheus exposition from components' stats objects, read at scrape time (no global registry).

:class:`GatewayCollector` reads the pipeline's ``stats``, each adapter's ``stats()``, the
open alarms and tickets, the change bus and (when the store can count them) the outbox
each time it is collected; nothing is registered globally and nothing is incremented on
the hot path. :func:`render` builds a private registry per scrape and returns the text
format.

Families (all prefixed ``gateway_``):

* ``adapter_received_total``, ``adapter_decoded_total``, ``adapter_rejected_total{reason}``,
  ``adapter_shed_total``, ``adapter_dropped_total{reason}``, ``adapter_counter_total{counter}``
  (every raw counter) and ``adapter_gauge{name}``: per ``adapter``.
* ``pipeline_received_total``, ``pipeline_shed_total``, ``queue_depth``, ``queue_capacity``,
  ``pipeline_batches_total``, ``pipeline_committed_events_total``, ``pipeline_commands_total``,
  ``pipeline_classified_total``, ``pipeline_unclassified_total``, ``store_errors_total``,
  ``store_healthy``, ``pipeline_max_batch``, ``pipeline_counter_total{name}`` (every counter
  of the pipeline's stats), ``pipeline_latency_seconds`` (histogram of batch time).
* ``alarms_raised_total``, ``alarms_cleared_total``, ``tickets_opened_total``,
  ``sla_warnings_total``, ``sla_breaches_total``, ``tickets_held_total`` (ticket circuit
  breaker), ``unknown_refused_total`` (unknown devices over the cap or the new-id rate).
* ``alarms{level,state}`` (open alarms), ``tickets_open{level,status}``,
  ``sla_clocks{clock,state}`` (clocks of open tickets).
* ``outbox_messages{state}`` (``pending``, ``failed``, ... when the store counts them).
* ``bus_subscribers``, ``bus_published_total``, ``bus_dropped_messages_total``,
  ``bus_dropped_subscribers_total``.
* ``component_stat{component,name}`` for extra components with ``stats`` (a method, a
  dataclass or a mapping; nested maps flatten to dotted names).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "GatewayCollector", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Adapter stats keys that are levels, not counts.
_GAUGE_KEYS = frozenset({"connected", "inflight", "receive_buffer_bytes", "queue_depth", "subscriptions"})
_LEVELS = ("1", "2", "3", "4")
_NAME_OK = re.compile(r"[^a-zA-Z0-9_.:-]")


def _label(v: Any) -> str:
    return _NAME_OK.sub("_", str(v))[:120]


class GatewayCollector(Collector):
    """Collects the gateway's metrics from its components when scraped.

    Args:
        pipeline: the ``Pipeline`` (``stats``, ``depth``, ``queue_size``, ``healthy``,
            ``book``, ``desk``).
        adapters: objects with ``name`` and ``stats() -> dict[str, int]``.
        bus: the ``ChangeBus`` (optional).
        outbox: outbox message counts by state, read from the store before the scrape
            (``None`` when the store cannot count them).
        components: extra objects with ``stats()`` by name (e.g. a watchdog).
    """

    def __init__(
        self,
        pipeline: Any,
        adapters: Iterable[Any] = (),
        bus: Any = None,
        outbox: Mapping[str, int] | None = None,
        components: Mapping[str, Any] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.adapters = list(adapters)
        self.bus = bus
        self.outbox = outbox
        self.components = dict(components or {})

    def collect(self) -> Iterator[Metric]:
        yield from self._adapters()
        yield from self._pipeline()
        yield from self._state()
        if self.outbox is not None:
            g = GaugeMetricFamily(
                "gateway_outbox_messages", "Help-desk outbox messages by state.", labels=["state"]
            )
            for state in sorted(set(self.outbox) | {"pending", "failed"}):
                g.add_metric([_label(state)], float(self.outbox.get(state, 0)))
            yield g
        if self.bus is not None:
            s = self.bus.stats
            yield _gauge(
                "gateway_bus_subscribers", "Live change-feed subscribers (SSE streams).", self.bus.subscribers
            )
            yield _counter("gateway_bus_published", "Change messages published to the feed.", s.published)
            yield _counter(
                "gateway_bus_dropped_messages",
                "Change messages a full subscriber queue could not take.",
                s.dropped_messages,
            )
            yield _counter(
                "gateway_bus_dropped_subscribers",
                "Subscribers cut off because they fell behind.",
                s.dropped_subscribers,
            )
        if self.components:
            g = GaugeMetricFamily(
                "gateway_component_stat", "Other components' stats by name.", labels=["component", "name"]
            )
            for cname, comp in sorted(self.components.items()):
                try:
                    stats = _flat(_stats_of(comp))
                except Exception:  # noqa: BLE001 - a broken component must not break the scrape
                    continue
                for k, v in sorted(stats.items()):
                    g.add_metric([_label(cname), _label(k)], v)
            yield g

    # -- parts -----------------------------------------------------------------------------
    def _adapters(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "gateway_adapter_received", "Messages received by an adapter.", labels=["adapter"]
        )
        decoded = CounterMetricFamily(
            "gateway_adapter_decoded",
            "Messages an adapter decoded (its own count, else received minus rejected).",
            labels=["adapter"],
        )
        rejected = CounterMetricFamily(
            "gateway_adapter_rejected",
            "Messages rejected by an adapter, by reason.",
            labels=["adapter", "reason"],
        )
        shed = CounterMetricFamily(
            "gateway_adapter_shed",
            "Events an adapter could not hand to a full pipeline queue.",
            labels=["adapter", "where"],
        )
        dropped = CounterMetricFamily(
            "gateway_adapter_dropped",
            "Messages an adapter dropped on purpose, by reason.",
            labels=["adapter", "reason"],
        )
        raw = CounterMetricFamily(
            "gateway_adapter_counter",
            "Every counter an adapter reports, by name.",
            labels=["adapter", "counter"],
        )
        gauges = GaugeMetricFamily(
            "gateway_adapter_gauge",
            "Adapter levels (connected, in flight, buffers).",
            labels=["adapter", "name"],
        )
        for ad in self.adapters:
            try:
                stats = dict(ad.stats())
            except Exception:  # noqa: BLE001
                continue
            name = _label(getattr(ad, "name", type(ad).__name__))
            n_rejected = 0
            for key, value in sorted(stats.items()):
                v = float(value)
                if key in _GAUGE_KEYS:
                    gauges.add_metric([name, _label(key)], v)
                    continue
                raw.add_metric([name, _label(key)], v)
                head, _, tail = key.partition(".")
                if head == "rejected":
                    rejected.add_metric([name, _label(tail or "unknown")], v)
                    n_rejected += int(value)
                elif head == "shed":
                    shed.add_metric([name, _label(tail or "sink")], v)
                elif head == "dropped":
                    dropped.add_metric([name, _label(tail or "unknown")], v)
            rec = int(stats.get("received", 0))
            received.add_metric([name], float(rec))
            dec = stats.get("decoded", stats.get("accepted"))
            decoded.add_metric([name], float(dec if dec is not None else max(0, rec - n_rejected)))
        yield from (received, decoded, rejected, shed, dropped, raw, gauges)

    def _pipeline(self) -> Iterator[Metric]:
        p = self.pipeline
        s = p.stats
        yield _counter(
            "gateway_pipeline_received", "Events offered to the pipeline.", getattr(s, "received", 0)
        )
        yield _counter(
            "gateway_pipeline_shed", "Events shed because the ingest queue was full.", getattr(s, "shed", 0)
        )
        yield _gauge("gateway_queue_depth", "Items waiting in the ingest queue.", p.depth)
        yield _gauge("gateway_queue_capacity", "Bound of the ingest queue.", p.queue_size)
        yield _counter("gateway_pipeline_batches", "Batches committed.", getattr(s, "batches", 0))
        yield _counter(
            "gateway_pipeline_committed_events",
            "Events whose effects were committed.",
            getattr(s, "committed_events", 0),
        )
        yield _counter(
            "gateway_pipeline_commands",
            "Commands (NOC actions) run by the writer.",
            getattr(s, "commands", 0),
        )
        yield _counter(
            "gateway_pipeline_classified", "Events a rule classified.", getattr(s, "classified", 0)
        )
        yield _counter(
            "gateway_pipeline_unclassified", "Events no rule classified.", getattr(s, "unclassified", 0)
        )
        yield _counter(
            "gateway_store_errors", "Failed store commits (retried).", getattr(s, "store_errors", 0)
        )
        yield _gauge("gateway_store_healthy", "1 while store commits succeed.", 1 if p.healthy else 0)
        yield _counter("gateway_alarms_raised", "Alarms raised.", getattr(s, "alarms_raised", 0))
        yield _counter("gateway_alarms_cleared", "Alarms cleared.", getattr(s, "alarms_cleared", 0))
        yield _counter("gateway_alarms_pending", "Alarms held pending (hold-for).", getattr(s, "alarms_pending", 0))
        yield _counter("gateway_alarms_suppressed", "Alarms suppressed (parent down or maintenance).",
                       getattr(s, "alarms_suppressed", 0))
        yield _counter("gateway_alarms_flapping", "Alarms turned into intermittent (flapping) alarms.",
                       getattr(s, "alarms_flapping", 0))
        yield _counter("gateway_tickets_opened", "Tickets opened.", getattr(s, "tickets_opened", 0))
        yield _counter("gateway_sla_warnings", "SLA warnings fired.", getattr(s, "sla_warnings", 0))
        yield _counter("gateway_sla_breaches", "SLA breaches fired.", getattr(s, "sla_breaches", 0))
        yield _counter("gateway_tickets_held", "Tickets the circuit breaker held back (alarms recorded).",
                       getattr(s, "tickets_held", 0))
        yield _counter("gateway_unknown_refused", "Events of unknown devices refused (cap or new-id rate).",
                       getattr(s, "unknown_refused", 0))
        yield _gauge("gateway_pipeline_max_batch", "Largest batch so far.", getattr(s, "max_batch", 0))
        every = CounterMetricFamily(
            "gateway_pipeline_counter", "Every counter the pipeline keeps, by name.", labels=["name"]
        )
        if dataclasses.is_dataclass(s):
            for f in dataclasses.fields(s):
                v = getattr(s, f.name)
                if (
                    f.name not in ("max_batch", "latency_count")
                    and isinstance(v, int)
                    and not isinstance(v, bool)
                ):
                    every.add_metric([f.name], float(v))
        yield every
        h = HistogramMetricFamily("gateway_pipeline_latency_seconds", "Time to process and commit one batch.")
        buckets: list[tuple[str, float]] = []
        acc = 0
        for bound, n in sorted(s.latency_buckets.items()):
            acc += n
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(acc)))
        if not buckets or buckets[-1][0] != "+Inf":
            buckets.append(("+Inf", float(s.latency_count)))
        h.add_metric([], buckets, sum_value=s.latency_sum)
        yield h

    def _state(self) -> Iterator[Metric]:
        p = self.pipeline
        alarms = GaugeMetricFamily(
            "gateway_alarms", "Open alarms by level and state.", labels=["level", "state"]
        )
        counts: dict[tuple[str, str], int] = {}
        for a in list(p.book.open.values()):
            k = (str(int(a.level)), a.state)
            counts[k] = counts.get(k, 0) + 1
        for lvl in _LEVELS:
            for state in ("active", "pending", "suppressed"):
                counts.setdefault((lvl, state), 0)
        for (lvl, state), n in sorted(counts.items()):
            alarms.add_metric([lvl, _label(state)], float(n))
        yield alarms
        tickets = GaugeMetricFamily(
            "gateway_tickets_open", "Open tickets by level and status.", labels=["level", "status"]
        )
        clocks = GaugeMetricFamily(
            "gateway_sla_clocks", "SLA clocks of open tickets by clock and state.", labels=["clock", "state"]
        )
        tcounts: dict[tuple[str, str], int] = {(lvl, "open"): 0 for lvl in _LEVELS}
        ccounts: dict[tuple[str, str], int] = {}
        for t in list(p.desk.open.values()):
            k = (str(int(t.level)), t.status)
            tcounts[k] = tcounts.get(k, 0) + 1
            for c in t.clocks:
                ck = (c.kind, c.state)
                ccounts[ck] = ccounts.get(ck, 0) + 1
        for (lvl, status), n in sorted(tcounts.items()):
            tickets.add_metric([lvl, _label(status)], float(n))
        for (kind, state), n in sorted(ccounts.items()):
            clocks.add_metric([_label(kind), _label(state)], float(n))
        yield tickets
        yield clocks


def _stats_of(comp: Any) -> Mapping[str, Any]:
    """A component's stats: a ``stats()`` method or a ``stats`` dataclass or mapping."""
    s = comp.stats
    if callable(s):
        s = s()
    if dataclasses.is_dataclass(s) and not isinstance(s, type):
        s = dataclasses.asdict(s)
    return s if isinstance(s, Mapping) else {}


def _flat(stats: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in stats.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=float(value))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def render(collector: Collector) -> bytes:
    """The Prometheus text format of one collector, from a private registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
