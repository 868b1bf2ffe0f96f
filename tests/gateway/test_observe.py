"""Metrics: the light latency histogram exports what prometheus-client's own would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.registry import Collector

from certstore.snapshot import Snapshot
from gateway.observe import LATENCY_BUCKETS, LatencyHistogram, Metrics

SAMPLES = [0.0, 0.005, 0.0051, 0.03, 0.1, 0.2, 0.75, 4.9, 10.0, 10.5, 99.0]


def _lines(text: bytes, prefix: str) -> list[str]:
    return sorted(line for line in text.decode().splitlines()
                  if line.startswith(prefix) and not line.startswith(prefix + "_created"))


def test_latency_histogram_matches_prometheus_client() -> None:
    ours = LatencyHistogram()
    reference_registry = CollectorRegistry()
    reference = Histogram("lat_seconds", "doc", ["listener"], buckets=LATENCY_BUCKETS,
                          registry=reference_registry)
    for i, value in enumerate(SAMPLES):
        listener = "web" if i % 3 else "print"
        ours.observe(listener, value)
        reference.labels(listener).observe(value)

    class _Ours(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            yield ours.family("lat_seconds", "doc")

    registry = CollectorRegistry()
    registry.register(_Ours())
    got = _lines(generate_latest(registry), "lat_seconds")
    assert got == _lines(generate_latest(reference_registry), "lat_seconds")
    assert 'lat_seconds_bucket{le="+Inf",listener="web"} 7.0' in got


def test_metrics_expose_the_upstream_latency() -> None:
    empty = Snapshot.build([], seq=0)
    metrics = Metrics(lambda: empty)
    metrics.upstream_latency.observe("web", 0.02)
    text = generate_latest(metrics.registry).decode()
    assert 'certgate_upstream_latency_seconds_bucket{le="0.025",listener="web"} 1.0' in text
    assert 'certgate_upstream_latency_seconds_count{listener="web"} 1.0' in text
