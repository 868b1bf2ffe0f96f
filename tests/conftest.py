"""Shared fixtures: a real store on SQLite in a temp dir, and a guard against blocking calls
on the event loop (ARCHITECTURE.md convention 6)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from certstore.sealing import Sealer
from certstore.store import CertStore
from tests.certfactory import Issued, make_ca

# Hypothesis fails an example slower than 200 ms, and input generation it finds slow, by
# default: timing assertions, which a loaded machine breaks (issue 11: both failed under
# `stress-ng --cpu 2`). The per-test timeout (pyproject.toml) still stops hangs.
settings.register_profile("certgate", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("certgate")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of ``slow`` tests first, longest first (``@pytest.mark.slow(seconds=N)``,
    N measured on an idle machine). `make test`'s two workers take whole files in this order
    (``--dist loadfile --no-loadscope-reorder``), so one of them starts the longest file at
    once while the other works through the rest, instead of finishing the run alone on it.
    (A stable sort: the other tests keep their order.)"""
    seconds: dict[Path, float] = {}
    for item in items:
        marker = item.get_closest_marker("slow")
        if marker is not None:
            seconds[item.path] = max(seconds.get(item.path, 0.0),
                                     float(marker.kwargs.get("seconds", 1)))
    items.sort(key=lambda item: -seconds.get(item.path, 0.0))


# A callback running this long on the loop is a blocking call (RSA key generation takes
# 50-500 ms, PKCS#12 parsing with many iterations similar): fail the test that did it.
SLOW_CALLBACK_S = 0.25


class _BlockWatch:
    """Times every event-loop callback by what *it* cost: wall time minus the time its
    thread waited for a CPU (``run_delay`` in ``/proc/thread-self/schedstat``).

    asyncio's own slow-callback warning uses wall time, so on a loaded machine any callback
    that was preempted looked like a blocking call and failed the test. A real blocking call
    (CPU work, a blocking read, a sleep) still counts in full.
    """

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.messages: list[str] = []
        self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        self._original = asyncio.events.Handle._run

    def _run_delay_s(self) -> float:
        return int(os.pread(self._fd, 128, 0).split()[1]) / 1e9

    def __enter__(self) -> _BlockWatch:
        watch, original = self, self._original

        def timed(handle: asyncio.Handle) -> None:
            wall, waited = time.monotonic(), watch._run_delay_s()
            try:
                original(handle)
            finally:
                if watch._fd >= 0:  # else the watch ended inside this very callback
                    own = time.monotonic() - wall - (watch._run_delay_s() - waited)
                    if own > watch.limit_s:
                        watch.messages.append(f"{handle!r} blocked the loop for {own:.3f} s")

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
        os.close(self._fd)
        self._fd = -1


@pytest.fixture
async def no_blocking() -> AsyncIterator[None]:
    """Fail the test if any callback blocks the event loop longer than SLOW_CALLBACK_S
    (of its own time: waiting for a CPU on a busy machine does not count)."""
    with _BlockWatch(SLOW_CALLBACK_S) as watch:
        yield
    assert not watch.messages, f"the event loop was blocked: {watch.messages}"


@pytest.fixture
def master_key() -> bytes:
    return Sealer.new_master_key()


@pytest.fixture
async def store(tmp_path: Path, master_key: bytes, no_blocking: None) -> AsyncIterator[CertStore]:
    """An initialised store (ECDSA CA to keep tests fast; the default CA is RSA-3072)."""
    opened, created = await CertStore.initialize(tmp_path / "certgate.sqlite", master_key,
                                                 ca_key_type="ecdsa-p256")
    assert created
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(scope="session")
def root_ca() -> Issued:
    """An external root CA (not certgate's), as a customer's own PKI would be."""
    return make_ca("Customer Root")


@pytest.fixture(scope="session")
def intermediate_ca(root_ca: Issued) -> Issued:
    return make_ca("Customer Issuing", issuer=root_ca)
