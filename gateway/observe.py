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
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TextIO

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
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
        self.upstream_latency = Histogram("certgate_upstream_latency_seconds",
                                          "Upstream time to response head", ["listener"],
                                          registry=self.registry)
        self.reloads = Counter("certgate_reloads_total", "Snapshot swaps after store changes",
                               registry=self.registry)
        self.registry.register(_Counts(self))


