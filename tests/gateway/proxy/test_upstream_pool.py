"""Upstream connections: pooling, the keep-alive race, connect timeout, slow transfers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from gateway.proxy import UpstreamPool
from tests.gateway.proxy.conftest import StartProxy, eventually, settings_for
from tests.gateway.proxy.fake_upstream import FakeUpstream
from tests.gateway.proxy.http_client import Client


async def test_reused_connection_closed_by_upstream_is_retried(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    first = await client.request("GET", "/first")
    retried = await client.request("GET", "/drop-reused")
    await client.close()
    assert (first.status, retried.status) == (200, 200)
    assert upstream.connections == 2
    assert [r.target for r in upstream.requests] == ["/first", "/drop-reused"]
    assert proxy.records[1].error is None


async def test_no_retry_once_body_bytes_were_sent(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    assert (await client.request("GET", "/first")).status == 200
    failed = await client.request("POST", "/drop-reused", body=b"not idempotent")
    await client.close()
    assert failed.status == 502
    assert upstream.connections == 1


async def test_pool_expires_idle_connections(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    # Every pooled connection is too old to reuse.
    proxy = await start_proxy(settings_for(upstream.port), pool=UpstreamPool(idle_timeout_s=0))
    client = await Client.open(proxy.port)
    for _ in range(3):
        assert (await client.request("GET", "/")).status == 200
    await client.close()
    assert upstream.connections == 3


async def test_trickling_response_is_not_cut_by_inactivity_timeout(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    # 12 pieces 50 ms apart take 0.6 s, longer than the 0.5 s inactivity timeout: the
    # timeout must count from the last byte that moved, not from the response head.
    proxy = await start_proxy(settings_for(upstream.port, idle_timeout_s=0.5))
    client = await Client.open(proxy.port)
    response = await client.request("GET", "/trickle")
    await client.close()
    assert response.body == b"drop." * 12
    assert proxy.records[0].error is None


async def test_stalled_response_is_aborted(upstream: FakeUpstream, start_proxy: StartProxy) -> None:
    proxy = await start_proxy(settings_for(upstream.port, idle_timeout_s=0.2))
    client = await Client.open(proxy.port)
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await client.request("GET", "/stall")
    await client.close()
    assert proxy.records[0].error == "transfer stalled"


@pytest.fixture
def unresponsive_port() -> Iterator[int]:
    """A port whose accept queue is full: new connections hang in SYN retransmission."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in [*fillers, listener]:
        sock.close()


async def test_upstream_connect_timeout_is_502(
    start_proxy: StartProxy, unresponsive_port: int
) -> None:
    settings = settings_for(unresponsive_port, upstream_connect_timeout_s=0.3)
    proxy = await start_proxy(settings)
    client = await Client.open(proxy.port)
    response = await client.request("GET", "/")
    await client.close()
    assert response.status == 502
    assert "timed out" in (proxy.records[0].error or "")


async def test_closing_the_pool_answers_waiting_requests(
    start_proxy: StartProxy, unresponsive_port: int
) -> None:
    proxy = await start_proxy(settings_for(unresponsive_port))
    client = await Client.open(proxy.port)
    await client.send(b"GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
    await eventually(lambda: bool(proxy.protocols) and proxy.protocols[0].blocked)  # connecting
    proxy.pool.close()
    response = await client.read_response()
    await client.close()
    assert response.status == 502
    assert "pool closed" in (proxy.records[0].error or "")


async def test_released_connections_are_capped_per_upstream(upstream: FakeUpstream) -> None:
    pool = UpstreamPool(max_idle_per_upstream=1)
    settings = settings_for(upstream.port)
    upstream_ = settings.routes[0].upstream
    results: list[object] = []
    for _ in range(2):
        done = asyncio.Event()

        def callback(conn: object, exc: BaseException | None, done: asyncio.Event = done) -> None:
            results.append(conn)
            done.set()

        pool.connect(upstream_, 1.0, callback)  # type: ignore[arg-type]
        await done.wait()
    for conn in results:
        pool.release(conn, reusable=True)  # type: ignore[arg-type]
    assert pool.idle_count == 1
    assert pool.take(upstream_) is results[1]
    assert pool.take(upstream_) is None
    pool.close()
    await asyncio.sleep(0)
