"""Access log (one JSON line per request or piped connection) and Prometheus metrics.

Both sit on the hot path, so neither does more per event than it must: the access log is
one ``json.dumps`` and a buffered write (no ``logging`` records, the timestamp string is
reused within a second), and request/handshake/byte counts are plain integer additions
that a collector turns into Prometheus metrics only when ``/metrics`` is scraped.

With ``--workers N`` each worker counts its own connections; ``Metrics.state`` is what a
worker publishes for its siblings (see ``gateway.workershare``) and the collector adds the
siblings' states to its own, so any worker answers a scrape for all of them.
"""

from __future__ import annotations

import json
import sys
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from certstore.snapshot import Snapshot
from gateway.proxy.tunnel import TunnelStats


class AccessLog:
    """JSON lines to a text stream (stdout by default); ``enabled=False`` writes nothing."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._stream = stream
        self._second = -1
        self._stamp = ""

    def write(self, fields: dict[str, object]) -> None:
        """One line; ``time`` is added (UTC, whole seconds)."""
        if not self.enabled:
            return
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        fields["time"] = self._stamp
        stream = self._stream or sys.stdout
        stream.write(json.dumps(fields, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        """Flush the stream (at shutdown)."""
        (self._stream or sys.stdout).flush()


Counts = defaultdict[tuple[str | int, ...], int]

# prometheus-client's default buckets (seconds).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                   7.5, 10.0)


class LatencyHistogram:
    """A histogram per listener with the cost of a counter: one ``bisect`` and two list
    additions per observation (prometheus-client's ``Histogram.observe`` takes a lock and
    walks the buckets, a measurable share of a proxied request). Exported by the metrics
    collector in Prometheus' cumulative form."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        # listener -> [count per bucket..., count above the last bound]; sums apart.
        self.counts: dict[str, list[int]] = {}
        self.sums: dict[str, float] = defaultdict(float)

    def observe(self, listener: str, seconds: float) -> None:
        """Record one observation."""
        counts = self.counts.get(listener)
        if counts is None:
            counts = self.counts[listener] = [0] * (len(self.bounds) + 1)
        counts[bisect_left(self.bounds, seconds)] += 1
        self.sums[listener] += seconds

    def merged(self, others: list[dict[str, Any]]) -> LatencyHistogram:
        """This histogram plus others given as `state()`s (buckets must match)."""
        total = LatencyHistogram(self.bounds)
        for state in [self.state(), *others]:
            for listener, entry in state.items():
                counts = total.counts.setdefault(listener, [0] * (len(self.bounds) + 1))
                if len(entry["counts"]) == len(counts):
                    total.counts[listener] = [a + b for a, b in zip(counts, entry["counts"],
                                                                     strict=True)]
                    total.sums[listener] += entry["sum"]
        return total

    def state(self) -> dict[str, Any]:
        """The counts and sums as JSON-able data."""
        return {listener: {"counts": list(counts), "sum": self.sums[listener]}
                for listener, counts in list(self.counts.items())}

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        """The metric family, buckets made cumulative."""
        family = HistogramMetricFamily(name, doc, labels=["listener"])
        for listener, counts in list(self.counts.items()):
            running, buckets = 0, []
            for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
                running += count
                buckets.append((str(bound) if bound != float("inf") else "+Inf", running))
            family.add_metric([listener], buckets, self.sums[listener])
        return family


_COUNTERS = (
    ("handshakes", "certgate_handshakes", "TLS handshakes by result", ["listener", "result"]),
    ("requests", "certgate_requests", "Proxied requests by status", ["listener", "status"]),
    ("bytes", "certgate_bytes", "Body bytes by direction", ["listener", "direction"]),
    ("ipp_operations", "certgate_ipp_operations", "IPP operations by name and IPP status",
     ["listener", "operation", "status"]),
    ("lifecycle", "certgate_lifecycle_events",
     "Automatic renewals and expiry notices by outcome", ["event", "result"]),
)


def _summed(parts: list[list[list[Any]]]) -> dict[tuple[str, ...], int]:
    """Counter rows (``[[label, ...], value]``) of several workers, added up by labels."""
    total: dict[tuple[str, ...], int] = defaultdict(int)
    for rows in parts:
        for labels, value in rows:
            total[tuple(str(part) for part in labels)] += int(value)
    return total


class _Counts(Collector):
    """Exports the plain-integer counters and live gauges at scrape time, this worker's
    added to its siblings' latest published states."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        own = m.state()
        siblings = m.siblings()
        everyone = [own, *(state for state, _fresh in siblings)]
        # Gauges describe the present: a worker that stopped publishing has none.
        live = [own, *(state for state, fresh in siblings if fresh)]
        for key, name, doc, labels in _COUNTERS:
            family = CounterMetricFamily(name, doc, labels=labels)
            for label_values, value in _summed([s.get(key, []) for s in everyone]).items():
                family.add_metric(list(label_values), value)
            yield family
        yield CounterMetricFamily("certgate_reloads", "Snapshot swaps after store changes",
                                  value=sum(int(s.get("reloads", 0)) for s in everyone))
        yield from _tunnel_families(everyone, live)
        yield m.upstream_latency.merged(
            [s.get("latency", {}) for s in everyone[1:]]
        ).family("certgate_upstream_latency_seconds", "Upstream time to response head")
        active = GaugeMetricFamily("certgate_active_connections", "Open client connections",
                                   labels=["listener"])
        by_listener: dict[str, int] = defaultdict(int)
        for state in live:
            for listener, count in state.get("active", {}).items():
                by_listener[listener] += int(count)
        for listener, count in by_listener.items():
            active.add_metric([listener], count)
        yield active
        yield GaugeMetricFamily("certgate_context_cache_size",
                                "Per-chain TLS contexts in memory",
                                value=sum(int(s.get("context_cache", 0)) for s in live))
        yield GaugeMetricFamily("certgate_store_connected",
                                "1 while the store's database answers, 0 during an outage "
                                "(TLS is served from the last snapshot meanwhile)",
                                value=1 if m.store_connected() else 0)
        yield GaugeMetricFamily("certgate_applied_change",
                                "The last store change this worker's snapshot includes",
                                value=m.snapshot().seq)
        # Every worker serves the same snapshot: the expiry gauges are this worker's alone.
        expiry = GaugeMetricFamily("certgate_chain_expiry_seconds",
                                   "Seconds until a served chain expires",
                                   labels=["chain_id", "account_id"])
        now = time.time()
        for chain in m.snapshot().chains():
            expiry.add_metric([chain.chain_id, chain.account_id], chain.not_after_ts - now)
        yield expiry
        # Counted from the store by this worker's lifecycle task: the same for every worker.
        statuses = GaugeMetricFamily("certgate_chains", "Chains by expiry status",
                                     labels=["status"])
        for status, count in m.chain_status.items():
            statuses.add_metric([status], count)
        yield statuses


def _tunnel_families(everyone: list[dict[str, Any]],
                     live: list[dict[str, Any]]) -> Iterator[Metric]:
    """Upgrade tunnels (WebSocket) per listener: opened, open now, bytes each way."""
    opened = CounterMetricFamily("certgate_tunnels_opened", "Upgrade tunnels opened (101)",
                                 labels=["listener"])
    moved = CounterMetricFamily("certgate_tunnel_bytes", "Bytes through upgrade tunnels",
                                labels=["listener", "direction"])
    active = GaugeMetricFamily("certgate_tunnels_active", "Upgrade tunnels open now",
                               labels=["listener"])
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    open_now: dict[str, int] = defaultdict(int)
    for state in everyone:
        for listener, counts in state.get("tunnels", {}).items():
            totals[listener] = [a + int(b) for a, b in zip(totals[listener], counts,
                                                            strict=True)]
            if any(state is s for s in live):
                open_now[listener] += int(counts[0]) - int(counts[1])
    for listener, (n_opened, _closed, bytes_in, bytes_out) in totals.items():
        opened.add_metric([listener], n_opened)
        moved.add_metric([listener, "in"], bytes_in)
        moved.add_metric([listener, "out"], bytes_out)
        active.add_metric([listener], open_now[listener])
    yield from (opened, moved, active)


class Metrics:
    """The gateway's metrics, in their own registry (served on the admin listener).

    Hot-path counters are ``defaultdict(int)`` keyed by label values; ``active`` and
    ``context_cache`` are read from the running gateway when scraped. ``siblings`` returns
    the other workers' published states, each with whether it is fresh (see
    ``gateway.workershare``); a single process has none.
    """

    def __init__(self, snapshot: Callable[[], Snapshot], *,
                 active: Callable[[], dict[str, int]] = dict,
                 context_cache: Callable[[], int] = lambda: 0,
                 siblings: Callable[[], list[tuple[dict[str, Any], bool]]] = list,
                 store_connected: Callable[[], bool] = lambda: True) -> None:
        self.snapshot = snapshot
        self.store_connected = store_connected
        self.active = active
        self.context_cache = context_cache
        self.siblings = siblings
        self.handshakes: Counts = defaultdict(int)
        self.requests: Counts = defaultdict(int)
        self.bytes: Counts = defaultdict(int)
        self.ipp_operations: Counts = defaultdict(int)
        # ("renewal" | "notice", "ok" | "failed") -> count, see gateway.lifecycle
        self.lifecycle: Counts = defaultdict(int)
        self.chain_status: dict[str, int] = {}
        self.reloads = 0
        self.tunnels: dict[str, TunnelStats] = {}
        self.registry = CollectorRegistry()
        self.upstream_latency = LatencyHistogram()
        self.registry.register(_Counts(self))

    def tunnels_for(self, listener: str) -> TunnelStats:
        """The tunnel counters of a listener (kept across a reload of the listener)."""
        stats = self.tunnels.get(listener)
        if stats is None:
            stats = self.tunnels[listener] = TunnelStats()
        return stats

    def state(self) -> dict[str, Any]:
        """This worker's counters and gauges as JSON-able data (what siblings read)."""
        state: dict[str, Any] = {
            key: [[list(labels), value] for labels, value in list(getattr(self, key).items())]
            for key, _name, _doc, _labels in _COUNTERS
        }
        state["reloads"] = self.reloads
        state["tunnels"] = {name: [t.opened, t.closed, t.bytes_in, t.bytes_out]
                            for name, t in list(self.tunnels.items())}
        state["latency"] = self.upstream_latency.state()
        state["active"] = self.active()
        state["context_cache"] = self.context_cache()
        return state
