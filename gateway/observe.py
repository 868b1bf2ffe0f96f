"""Access log (one JSON line per request or piped connection) and Prometheus metrics.

Both sit on the hot path, so neither does more per event than it must: the access log is
one ``json.dumps`` and a buffered write (no ``logging`` records, the timestamp string is
reused within a second), and request/handshake/byte counts are plain integer additions
that a collector turns into Prometheus metrics only when ``/metrics`` is scraped.
"""

from __future__ import annotations

import json
import sys
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TextIO

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from certstore.snapshot import Snapshot


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


class _Counts(Collector):
    """Exports the plain-integer counters and live gauges at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        for name, doc, labels, counts in (
            ("certgate_handshakes", "TLS handshakes by result", ["listener", "result"],
             m.handshakes),
            ("certgate_requests", "Proxied requests by status", ["listener", "status"],
             m.requests),
            ("certgate_bytes", "Body bytes by direction", ["listener", "direction"], m.bytes),
            ("certgate_ipp_operations", "IPP operations by name and IPP status",
             ["listener", "operation", "status"], m.ipp_operations),
        ):
            family = CounterMetricFamily(name, doc, labels=labels)
            for key, value in list(counts.items()):
                family.add_metric([str(part) for part in key], value)
            yield family
        yield m.upstream_latency.family("certgate_upstream_latency_seconds",
                                        "Upstream time to response head")
        active = GaugeMetricFamily("certgate_active_connections", "Open client connections",
                                   labels=["listener"])
        for listener, count in m.active().items():
            active.add_metric([listener], count)
        yield active
        yield GaugeMetricFamily("certgate_context_cache_size",
                                "Per-chain TLS contexts in memory", value=m.context_cache())
        expiry = GaugeMetricFamily("certgate_chain_expiry_seconds",
                                   "Seconds until a served chain expires",
                                   labels=["chain_id", "account_id"])
        now = time.time()
        for chain in m.snapshot().chains():
            expiry.add_metric([chain.chain_id, chain.account_id], chain.not_after_ts - now)
        yield expiry


class Metrics:
    """The gateway's metrics, in their own registry (served on the admin listener).

    Hot-path counters are ``defaultdict(int)`` keyed by label values; ``active`` and
    ``context_cache`` are read from the running gateway when scraped.
    """

    def __init__(self, snapshot: Callable[[], Snapshot], *,
                 active: Callable[[], dict[str, int]] = dict,
                 context_cache: Callable[[], int] = lambda: 0) -> None:
        self.snapshot = snapshot
        self.active = active
        self.context_cache = context_cache
        self.handshakes: Counts = defaultdict(int)
        self.requests: Counts = defaultdict(int)
        self.bytes: Counts = defaultdict(int)
        self.ipp_operations: Counts = defaultdict(int)
        self.registry = CollectorRegistry()
        self.upstream_latency = LatencyHistogram()
        self.reloads = Counter("certgate_reloads_total", "Snapshot swaps after store changes",
                               registry=self.registry)
        self.registry.register(_Counts(self))


