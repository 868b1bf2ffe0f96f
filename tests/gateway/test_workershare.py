"""Metrics across workers: any worker's scrape adds its siblings' published counters."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from certstore.snapshot import Snapshot
from gateway.observe import Metrics
from gateway.workershare import STALE_S, WorkerShare

EMPTY = Snapshot.build([], seq=0)
OK = 'certgate_handshakes_total{listener="web",result="ok"}'
ACTIVE = 'certgate_active_connections{listener="web"}'


def _worker(share_dir: Path, name: str, *, active: int, contexts: int) -> tuple[Metrics,
                                                                                   WorkerShare]:
    share = WorkerShare(share_dir, name)
    metrics = Metrics(lambda: EMPTY, active=lambda: {"web": active},
                      context_cache=lambda: contexts, siblings=share.siblings)
    return metrics, share


def _value(metrics: Metrics, sample: str) -> float:
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not exported")


def test_a_scrape_adds_the_siblings_counters_and_gauges(tmp_path: Path) -> None:
    a, share_a = _worker(tmp_path, "a", active=2, contexts=5)
    b, share_b = _worker(tmp_path, "b", active=3, contexts=7)
    a.handshakes[("web", "ok")] += 4
    b.handshakes[("web", "ok")] += 6
    b.handshakes[("web", "unknown_sni")] += 1
    a.requests[("web", 200)] += 10
    b.requests[("web", 200)] += 1
    b.requests[("web", 502)] += 2
    a.upstream_latency.observe("web", 0.02)
    b.upstream_latency.observe("web", 0.3)
    b.reloads += 2
    share_a.publish(a.state())
    share_b.publish(b.state())
    for scraped in (a, b):  # whichever worker the kernel gives the scrape to
        assert _value(scraped, OK) == 10
        assert _value(scraped,
                      'certgate_handshakes_total{listener="web",result="unknown_sni"}') == 1
        assert _value(scraped, 'certgate_requests_total{listener="web",status="200"}') == 11
        assert _value(scraped, 'certgate_requests_total{listener="web",status="502"}') == 2
        assert _value(scraped, 'certgate_upstream_latency_seconds_count{listener="web"}') == 2
        assert _value(scraped,
                      'certgate_upstream_latency_seconds_bucket{le="0.025",listener="web"}') == 1
        assert _value(scraped, "certgate_reloads_total") == 2
        assert _value(scraped, ACTIVE) == 5
        assert _value(scraped, "certgate_context_cache_size") == 12


def test_own_counts_are_live_and_siblings_are_as_last_published(tmp_path: Path) -> None:
    a, share_a = _worker(tmp_path, "a", active=0, contexts=0)
    b, share_b = _worker(tmp_path, "b", active=0, contexts=0)
    b.handshakes[("web", "ok")] += 1
    share_b.publish(b.state())
    b.handshakes[("web", "ok")] += 100  # not yet published
    a.handshakes[("web", "ok")] += 2  # a's own: counted at once, unpublished
    assert _value(a, OK) == 3
    assert _value(b, OK) == 101
    share_a.publish(a.state())
    assert _value(b, OK) == 103


def test_a_silent_sibling_keeps_its_counters_but_not_its_gauges(tmp_path: Path) -> None:
    a, _share_a = _worker(tmp_path, "a", active=1, contexts=1)
    b, share_b = _worker(tmp_path, "b", active=4, contexts=9)
    b.handshakes[("web", "ok")] += 5
    share_b.publish(b.state())
    assert _value(a, ACTIVE) == 5
    old = time.time() - STALE_S - 1
    os.utime(tmp_path / "b.json", (old, old))  # b stopped publishing (it exited)
    assert _value(a, OK) == 5
    assert _value(a, ACTIVE) == 1
    assert _value(a, "certgate_context_cache_size") == 1


def test_unreadable_sibling_files_are_skipped(tmp_path: Path) -> None:
    a, _share = _worker(tmp_path, "a", active=0, contexts=0)
    a.handshakes[("web", "ok")] += 1
    (tmp_path / "broken.json").write_text('{"handshakes": [[["web", "ok"], ')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "shape.json").write_text('{"handshakes": [["web", 3]], "active": {"web": "x"}}')
    (tmp_path / "latency.json").write_text('{"latency": {"web": {"counts": "x", "sum": 1}}}')
    assert _value(a, OK) == 1
    assert "certgate_upstream_latency_seconds_count" not in generate_latest(
        a.registry).decode()  # the damaged latency file added nothing


def test_publishing_into_a_missing_directory_warns_and_carries_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a, share = _worker(tmp_path / "gone", "a", active=0, contexts=0)
    with caplog.at_level(logging.WARNING, logger="certgate.metrics"):
        share.publish(a.state())
    assert "cannot publish this worker's metrics" in caplog.text
    assert share.siblings() == []


def test_a_single_process_has_no_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTGATE_WORKER_DIR", raising=False)
    assert WorkerShare.from_environment() is None
    monkeypatch.setenv("CERTGATE_WORKER_DIR", "/some/dir")
    share = WorkerShare.from_environment()
    assert share is not None and share.siblings() == []
