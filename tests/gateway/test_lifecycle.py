"""The running gateway's lifecycle: automatic renewal (once per fleet, retried with backoff
when it fails) and expiry notices to a real webhook receiver."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from certstore.persistence.keyfile import read_master_key
from certstore.snapshot import Snapshot
from certstore.store import CertStore
from gateway.config import LifecycleConfig
from gateway.lifecycle import Lifecycle, backoff_s
from gateway.observe import Metrics
from tests.certfactory import Issued, make_leaf, p12
from tests.gateway.harness import init_store, running_gateway, upstream_server
from tests.support.clock import MovableClock

DAY = dt.timedelta(days=1)



@pytest.fixture
async def shared_db(tmp_path: Path) -> AsyncIterator[tuple[Path, bytes]]:
    key_path = await init_store(tmp_path)
    yield tmp_path / "certgate.sqlite", read_master_key(key_path)


def _metrics() -> Metrics:
    return Metrics(Snapshot.empty)


async def test_a_failing_renewal_is_retried_with_backoff_and_keeps_the_chain(
        shared_db: tuple[Path, bytes], caplog: pytest.LogCaptureFixture) -> None:
    path, key = shared_db
    clock = MovableClock()
    store = await CertStore.open(path, key, clock=clock)
    try:
        acc = await store.create_account(name="A", kind="customer", domains=["a.test", "b.test"])
        chain = await store.generate_chain(acc.id, purpose="tls", domain="a.test")
        await store.remove_domain(acc.id, "a.test")  # renewal cannot issue for it any more
        clock.now += 62 * DAY
        metrics = _metrics()
        task = Lifecycle(store, LifecycleConfig(), metrics, holder="n1", clock=clock.monotonic)
        failed = ("renewal", "failed")
        with caplog.at_level(logging.ERROR, logger="certgate.lifecycle"):
            await task.check()
        assert metrics.lifecycle[failed] == 1
        assert f"renewal of chain {chain.id}" in caplog.text and "1 time(s)" in caplog.text
        await task.check()  # within the backoff: not tried again
        assert metrics.lifecycle[failed] == 1
        clock.mono += backoff_s(1) + 0.1
        await task.check()
        assert metrics.lifecycle[failed] == 2
        clock.mono += backoff_s(1) + 0.1  # less than the second backoff (2 s)
        await task.check()
        assert metrics.lifecycle[failed] == 2
        clock.mono += backoff_s(2)
        await task.check()
        assert metrics.lifecycle[failed] == 3
        assert (await store.get_chain(chain.id)).id == chain.id  # the working chain stays
        assert metrics.chain_status["valid"] >= 1
    finally:
        await store.close()


async def test_two_workers_renew_each_due_chain_exactly_once(
        shared_db: tuple[Path, bytes]) -> None:
    path, key = shared_db
    clock = MovableClock()
    stores = [await CertStore.open(path, key, clock=clock) for _ in range(2)]
    try:
        acc = await stores[0].create_account(name="A", kind="customer",
                                             domains=["a.test", "b.test"])
        chains = [await stores[0].generate_chain(acc.id, purpose="tls", domain=d)
                  for d in ("a.test", "b.test")]
        clock.now += 70 * DAY
        metrics = [_metrics(), _metrics()]
        tasks = [Lifecycle(s, LifecycleConfig(), m, holder=f"worker-{i}", clock=clock.monotonic)
                 for i, (s, m) in enumerate(zip(stores, metrics, strict=True))]
        await asyncio.gather(*(t.check() for t in tasks))
        await asyncio.gather(*(t.check() for t in tasks))
        assert sum(m.lifecycle[("renewal", "ok")] for m in metrics) == 2
        renewed = [r for r in await stores[1].audit_log() if r.action == "chain.renewed"]
        assert sorted(r.detail.split()[0] for r in renewed if r.detail) == sorted(
            f"old={c.id}" for c in chains)
    finally:
        for store in stores:
            await store.close()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[int, list[dict[str, Any]], asyncio.Event]]:
    """A real webhook receiver that fails the first call and accepts the next ones."""
    received: list[dict[str, Any]] = []
    delivered = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        if len(received) == 1:
            return web.Response(status=500)
        delivered.set()
        return web.Response(status=204)

    async with upstream_server(hook) as port:
        yield port, received, delivered


async def test_an_expiring_import_is_notified_to_the_webhook_once(
        tmp_path: Path, intermediate_ca: Issued,
        receiver: tuple[int, list[dict[str, Any]], asyncio.Event]) -> None:
    port, received, delivered = receiver
    key = await init_store(tmp_path)
    store = await CertStore.open(tmp_path / "certgate.sqlite", read_master_key(key))
    now = dt.datetime.now(dt.UTC)
    try:
        acc = await store.create_account(name="A", kind="customer", domains=["a.test"])
        chain = await store.import_chain(acc.id, p12(make_leaf(
            intermediate_ca, dns=["a.test"], not_before=now - DAY, not_after=now + 10 * DAY),
            b"pw"), b"pw")
        lifecycle = {"check_interval": "1s", "webhook_url": f"http://127.0.0.1:{port}/hook"}
        async with running_gateway(tmp_path, [], lifecycle=lifecycle) as gateway:
            await asyncio.wait_for(delivered.wait(), 30)  # after one failure and a backoff
            deadline = asyncio.get_running_loop().time() + 10
            while not [r for r in await store.audit_log() if r.action == "chain.expiring"]:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            assert gateway.metrics.lifecycle[("notice", "failed")] == 1
            assert gateway.metrics.lifecycle[("notice", "ok")] == 1
            assert gateway.metrics.chain_status["expiring"] == 1
            assert await store.due_notices() == []  # recorded: never sent again
        assert len(received) == 2 and received[0] == received[1]
        body = received[1]
        assert body["account_id"] == acc.id and body["chain_id"] == chain.id
        assert body["names"] == ["a.test"] and body["stage"] == "expiring"
        assert dt.datetime.fromisoformat(body["not_after"]) == chain.not_after
        [record] = [r for r in await store.audit_log() if r.action == "chain.expiring"]
        assert record.target == chain.id and record.role == "system"
        assert "webhook=delivered" in (record.detail or "")
    finally:
        await store.close()
