"""Access log (one JSON line per request or piped connection) and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from certstore.snapshot import Snapshot

access_log = logging.getLogger("certgate.access")


def setup_access_log(stream: object = None) -> None:
    """Send access lines, bare JSON, to stdout (or ``stream``)."""
    if access_log.handlers:
        return
    handler = logging.StreamHandler(stream or sys.stdout)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def log_access(fields: dict[str, object]) -> None:
    """Write one access line (only when someone listens: JSON encoding is not free)."""
    if access_log.isEnabledFor(logging.INFO):
        fields["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        access_log.info(json.dumps(fields, separators=(",", ":")))


class _ExpiryCollector(Collector):
    """Each served chain's seconds to expiry, computed from the current snapshot at scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("certgate_chain_expiry_seconds",
                                   "Seconds until a served chain expires",
                                   labels=["chain_id", "account_id"])
        now = time.time()
        for chain in self._snapshot().chains():
            family.add_metric([chain.chain_id, chain.account_id], chain.not_after_ts - now)
        yield family


class Metrics:
    """The gateway's metrics, in their own registry (served on the admin listener)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.handshakes = Counter("certgate_handshakes_total", "TLS handshakes by result",
                                  ["listener", "result"], registry=r)
        self.active = Gauge("certgate_active_connections", "Open client connections",
                            ["listener"], registry=r)
        self.requests = Counter("certgate_requests_total", "Proxied requests by status",
                                ["listener", "status"], registry=r)
        self.upstream_latency = Histogram("certgate_upstream_latency_seconds",
                                          "Upstream time to response head", ["listener"],
                                          registry=r)
        self.bytes = Counter("certgate_bytes_total", "Body bytes by direction",
                             ["listener", "direction"], registry=r)
        self.ipp_operations = Counter("certgate_ipp_operations_total",
                                      "IPP operations by name and IPP status",
                                      ["listener", "operation", "status"], registry=r)
        self.context_cache = Gauge("certgate_context_cache_size",
                                   "Per-chain TLS contexts in memory", registry=r)
        self.reloads = Counter("certgate_reloads_total", "Snapshot swaps after store changes",
                               registry=r)
        r.register(_ExpiryCollector(snapshot))
