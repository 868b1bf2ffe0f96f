"""Renewal runs once per fleet: two nodes (two store connections, two lifecycle tasks) on
each backend, a real PostgreSQL included, renew each due chain exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from certstore.errors import Conflict, NotFound
from certstore.snapshot import Snapshot
from certstore.store import CertStore
from gateway.config import LifecycleConfig
from gateway.lifecycle import Lifecycle
from gateway.observe import Metrics
from tests.support.clock import MovableClock
from tests.support.postgres import BACKENDS, PgServer, pg_server, store_location  # noqa: F401

DAY = dt.timedelta(days=1)


@pytest.fixture(params=BACKENDS)
async def nodes(request: pytest.FixtureRequest, pg_server: PgServer,  # noqa: F811
                tmp_path: Path, master_key: bytes
                ) -> AsyncIterator[tuple[list[CertStore], MovableClock]]:
    """Two nodes' store connections to one database, on a clock the test moves."""
    clock = MovableClock()
    async with store_location(request.param, tmp_path, pg_server) as location:
        first, _ = await CertStore.initialize(location, master_key, ca_key_type="ecdsa-p256",
                                              clock=clock)
        second = await CertStore.open(location, master_key, clock=clock)
        try:
            yield [first, second], clock
        finally:
            await first.close()
            await second.close()


async def test_two_nodes_renew_each_due_chain_exactly_once(
        nodes: tuple[list[CertStore], MovableClock]) -> None:
    (a, b), clock = nodes
    acc = await a.create_account(name="A", kind="customer", domains=["a.test", "b.test"])
    chains = [await a.generate_chain(acc.id, purpose="tls", domain=d)
              for d in ("a.test", "b.test")]
    clock.now += 70 * DAY
    metrics = [Metrics(Snapshot.empty), Metrics(Snapshot.empty)]
    tasks = [Lifecycle(s, LifecycleConfig(), m, holder=f"node-{i}")
             for i, (s, m) in enumerate(zip((a, b), metrics, strict=True))]
    for _ in range(2):
        await asyncio.gather(*(t.check() for t in tasks))
    assert sum(m.lifecycle[("renewal", "ok")] for m in metrics) == 2
    # one node held the lease: the other renewed nothing
    assert sorted(m.lifecycle[("renewal", "ok")] for m in metrics) == [0, 2]
    renewed = [r for r in await b.audit_log() if r.action == "chain.renewed"]
    assert sorted((r.detail or "").split()[0] for r in renewed) == sorted(
        f"old={c.id}" for c in chains)
    assert not await b.due_renewals()


async def test_two_nodes_renewing_one_chain_at_once_make_one_successor(
        nodes: tuple[list[CertStore], MovableClock]) -> None:
    (a, b), clock = nodes
    acc = await a.create_account(name="A", kind="customer", domains=["a.test"])
    chain = await a.generate_chain(acc.id, purpose="tls", domain="a.test")
    clock.now += 70 * DAY
    results = await asyncio.gather(a.renew_chain(chain.id), b.renew_chain(chain.id),
                                   return_exceptions=True)
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1
    assert all(isinstance(r, Conflict | NotFound) for r in results if r not in won)
    tls = [c for c in await b.list_chains(acc.id) if c.purpose == "tls"]
    assert [c.id for c in tls] == [won[0].id]
