"""Metrics across ``--workers N``: each worker publishes its counters where its siblings read them.

The kernel spreads connections over the workers (``SO_REUSEPORT``), and admin scrapes with
them, so one worker's counters are about 1/N of the truth. The parent of the workers makes
a private directory and names it in ``CERTGATE_WORKER_DIR``. Each worker writes its
``Metrics.state()`` there as ``<pid>.json`` every ``PUBLISH_S`` and when it stops; the
worker answering ``/metrics`` adds its siblings' latest states to its own live figures.

A scrape may thus lag up to ``PUBLISH_S`` for the other workers. A worker that stopped
keeps its counters in the sum (what it counted did happen); its gauges drop out once its
file is older than ``STALE_S``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("certgate.metrics")

ENV = "CERTGATE_WORKER_DIR"
PUBLISH_S = 1.0
STALE_S = 3 * PUBLISH_S


class WorkerShare:
    """This worker's file in the shared directory, and its siblings' files."""

    def __init__(self, directory: Path, name: str | None = None) -> None:
        self._dir = directory
        self._name = f"{name or os.getpid()}.json"

    @classmethod
    def from_environment(cls) -> WorkerShare | None:
        """The share named by ``CERTGATE_WORKER_DIR``; None for a single process."""
        value = os.environ.get(ENV)
        return cls(Path(value)) if value else None

    def publish(self, state: dict[str, Any]) -> None:
        """Write this worker's state; readers never see a partial file (rename)."""
        tmp = self._dir / f".{self._name}.tmp"
        try:
            tmp.write_text(json.dumps(state, separators=(",", ":")))
            os.replace(tmp, self._dir / self._name)
        except OSError as e:  # metrics must never take the gateway down
            log.warning("cannot publish this worker's metrics to %s: %s", self._dir, e)

    def siblings(self) -> list[tuple[dict[str, Any], bool]]:
        """The other workers' latest states, each with whether it is fresh."""
        now = time.time()
        out: list[tuple[dict[str, Any], bool]] = []
        try:
            paths = [p for p in self._dir.glob("*.json") if p.name != self._name]
        except OSError as e:
            log.warning("cannot read the other workers' metrics in %s: %s", self._dir, e)
            return out
        for path in paths:
            try:
                age = now - path.stat().st_mtime
                state = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                log.debug("worker metrics %s skipped: %s", path, e)  # a worker gone
                continue
            if not _well_formed(state):
                log.debug("worker metrics %s skipped: not a published state", path)
                continue
            out.append((state, age <= STALE_S))
        return out


def _well_formed(state: object) -> bool:
    """Whether ``state`` has the shape ``Metrics.state()`` publishes (a stray or damaged file
    must not break the scrape that reads it)."""
    if not isinstance(state, dict):
        return False
    for key in ("handshakes", "requests", "bytes", "ipp_operations"):
        rows = state.get(key, [])
        if not isinstance(rows, list) or not all(
                isinstance(row, list) and len(row) == 2 and isinstance(row[0], list)
                and isinstance(row[1], int) for row in rows):
            return False
    latency = state.get("latency", {})
    if not isinstance(latency, dict) or not all(
            isinstance(entry, dict) and isinstance(entry.get("counts"), list)
            and all(isinstance(c, int) for c in entry["counts"])
            and isinstance(entry.get("sum"), (int, float)) for entry in latency.values()):
        return False
    active = state.get("active", {})
    return (isinstance(active, dict) and all(isinstance(v, int) for v in active.values())
            and isinstance(state.get("reloads", 0), int)
            and isinstance(state.get("context_cache", 0), int))
