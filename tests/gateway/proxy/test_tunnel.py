"""After a 101 the exchange is a byte tunnel: both ways, with back-pressure, an idle
timeout and counts; its upstream connection never goes back to the pool. An upstream
that answers 101 unasked, or to a protocol not offered, gets the client a 502."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.gateway.proxy.conftest import StartProxy, eventually, settings_for
from tests.gateway.proxy.http_client import Client, build_request, read_response
from tests.gateway.proxy.test_streaming import PeakSampler, _until_stalled

MIB = 1 << 20
TOTAL = 48 * MIB
BUFFER_LIMIT = 2 * MIB  # see test_streaming: a few write buffers and reads, no more
SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
UPGRADE = [("Connection", "Upgrade"), ("Upgrade", "websocket")]


@dataclass
class TunnelUpstream:
    """Answers the first request on a connection by path, then speaks raw bytes:

    - `/flood`: 101, then TOTAL bytes down (awaiting drain), then closes
    - `/sink`: 101, then reads TOTAL bytes (slowly) and answers their sha256
    - `/echo`: 101 plus `early` in the same write, then echoes until the client closes
    - `/unasked`, `/other`: a 101 the proxy must refuse (for no upgrade / another protocol)
    - anything else: 200 (a declined upgrade)
    """

    port: int = 0
    sent: int = 0
    heads: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed: int = 0
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                path = head.split(b" ", 2)[1]
                if path == b"/flood":
                    writer.write(SWITCH + b"\r\n")
                    block = b"d" * MIB
                    while self.sent < TOTAL:
                        writer.write(block)
                        self.sent += MIB
                        await writer.drain()
                    break
                if path == b"/sink":
                    writer.write(SWITCH + b"\r\n")
                    digest, left = hashlib.sha256(), TOTAL
                    while left:
                        data = await reader.read(min(left, 1 << 16))
                        digest.update(data)
                        left -= len(data)
                        await asyncio.sleep(0)  # a slow reader
                    writer.write(digest.hexdigest().encode())
                    await writer.drain()
                    break
                if path == b"/echo":
                    writer.write(SWITCH + b"\r\nearly")
                    while data := await reader.read(1 << 16):
                        writer.write(data)
                    break
                if path in (b"/unasked", b"/other"):
                    other = b"Upgrade: h2c\r\n" if path == b"/other" else b""
                    writer.write(SWITCH.split(b"Upgrade:")[0] + other + b"\r\nafter")
                    await writer.drain()
                    continue
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed += 1
            writer.close()


@pytest.fixture
async def tunnel_upstream() -> AsyncIterator[TunnelUpstream]:
    upstream = TunnelUpstream()
    upstream.server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    upstream.port = upstream.server.sockets[0].getsockname()[1]
    yield upstream
    upstream.server.close()
    await upstream.server.wait_closed()


async def _open_tunnel(port: int, path: str) -> Client:
    client = await Client.open(port)
    await client.send(build_request("GET", path, headers=UPGRADE))
    head = await client.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nUpgrade: websocket\r\n" in head and b"\r\nConnection: Upgrade\r\n" in head
    return client


async def test_download_through_tunnel_has_back_pressure(
    tunnel_upstream: TunnelUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(tunnel_upstream.port))
    sampler = PeakSampler(proxy)
    client = await _open_tunnel(proxy.port, "/flood")
    await _until_stalled(lambda: tunnel_upstream.sent, TOTAL)
    assert tunnel_upstream.sent < TOTAL  # the client reads nothing: the upstream waits
    received = 0
    while chunk := await client.reader.read(1 << 20):
        received += len(chunk)
    sampler.stop()
    await client.close()
    assert received == TOTAL
    assert sampler.peak < BUFFER_LIMIT, sampler.peak
    await eventually(lambda: len(proxy.records) == 1)
    record = proxy.records[0]
    assert (record.status, record.bytes_out, record.error) == (101, TOTAL, None)
    stats = proxy.pool.tunnels
    assert (stats.opened, stats.active, stats.bytes_out) == (1, 0, TOTAL)
    assert proxy.pool.idle_count == 0  # never back to the pool


async def test_upload_through_tunnel_has_back_pressure(
    tunnel_upstream: TunnelUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(tunnel_upstream.port))
    sampler = PeakSampler(proxy)
    client = await _open_tunnel(proxy.port, "/sink")
    digest = hashlib.sha256()
    block = bytes(range(256)) * (MIB // 256)
    for _ in range(TOTAL // MIB):
        digest.update(block)
        client.writer.write(block)
        await client.writer.drain()
    answer = await client.reader.read()
    sampler.stop()
    await client.close()
    assert answer == digest.hexdigest().encode()
    assert sampler.peak < BUFFER_LIMIT, sampler.peak
    await eventually(lambda: proxy.pool.tunnels.active == 0)
    assert proxy.pool.tunnels.bytes_in == TOTAL


async def test_bytes_sent_early_both_ways_are_not_lost(
    tunnel_upstream: TunnelUpstream, start_proxy: StartProxy
) -> None:
    """Bytes the upstream sends with its 101 and bytes the client sends right behind its
    request (before the 101) both go through, in order."""
    proxy = await start_proxy(settings_for(tunnel_upstream.port))
    client = await Client.open(proxy.port)
    await client.send(build_request("GET", "/echo", headers=UPGRADE) + b"ping")
    head = await client.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert await client.reader.readexactly(9) == b"earlyping"
    await client.send(b"GET / HTTP/1.1\r\n\r\n")  # no longer HTTP: echoed, not parsed
    assert await client.reader.readexactly(18) == b"GET / HTTP/1.1\r\n\r\n"
    await client.close()
    await eventually(lambda: tunnel_upstream.closed == 1)
    assert len(tunnel_upstream.heads) == 1


async def test_idle_tunnel_is_closed(
    tunnel_upstream: TunnelUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(tunnel_upstream.port, tunnel_idle_timeout_s=0.3))
    client = await _open_tunnel(proxy.port, "/echo")
    assert await client.reader.readexactly(5) == b"early"
    assert await client.at_eof()  # closed by the proxy once idle
    await client.close()
    await eventually(lambda: tunnel_upstream.closed == 1)
    assert proxy.records[0].error == "tunnel idle timeout"
    assert proxy.pool.tunnels.active == 0


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/unasked", []), ("/other", UPGRADE), ("/other", [("Upgrade", "websocket")])],
)
async def test_unwarranted_101_is_a_bad_gateway(
    tunnel_upstream: TunnelUpstream,
    start_proxy: StartProxy,
    path: str,
    headers: list[tuple[str, str]],
) -> None:
    proxy = await start_proxy(settings_for(tunnel_upstream.port))
    client = await Client.open(proxy.port)
    await client.send(build_request("GET", path, headers=headers))
    response = await read_response(client.reader)
    await client.close()
    assert response.status == 502
    assert b"after" not in response.body
    await eventually(lambda: tunnel_upstream.closed == 1)  # that connection is dropped
    assert proxy.pool.idle_count == 0 and proxy.pool.tunnels.opened == 0
