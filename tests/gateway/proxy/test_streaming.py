"""Bodies stream both ways with back-pressure: the proxy's own buffers stay bounded."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Callable

import pytest

from gateway.proxy import ProxyProtocol
from tests.gateway.proxy.conftest import (
    TENANT,
    Proxy,
    StartProxy,
    TlsFiles,
    eventually,
    settings_for,
)
from tests.gateway.proxy.fake_upstream import FakeUpstream
from tests.gateway.proxy.http_client import Client, build_request, read_response

MIB = 1 << 20
UPLOAD_BYTES = 300 * MIB
DOWNLOAD_BYTES = 200 * MIB
# Write buffers pause at 64 KiB and one read brings at most 256 KiB: a few of those.
# Without back-pressure the proxy would hold a large part of the transfer instead.
BUFFER_LIMIT = 2 * MIB


def _contexts(
    tls_files: TlsFiles, tls: bool
) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    if not tls:
        return None, None
    return tls_files.server_context(), tls_files.client_context()


class PeakSampler:
    """Samples every proxy connection's buffered bytes once per event-loop iteration."""

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy
        self._loop = asyncio.get_running_loop()
        self._running = True
        self.peak = 0
        self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        for protocol in self._proxy.protocols:
            self.peak = max(self.peak, protocol.buffered_bytes())
        if self._running:
            self._loop.call_soon(self._tick)

    def stop(self) -> None:
        self._running = False


async def _until_stalled(progress: Callable[[], int], total: int) -> None:
    """Yield to the loop until `progress()` stops moving (or reached `total`)."""
    while True:
        before = progress()
        for _ in range(200):
            await asyncio.sleep(0)
        if progress() in (before, total):
            return


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_huge_upload_streams_with_bounded_buffers(
    upstream: FakeUpstream, start_proxy: StartProxy, tls_files: TlsFiles, tls: bool
) -> None:
    server_tls, client_tls = _contexts(tls_files, tls)
    proxy = await start_proxy(settings_for(upstream.port), ssl_context=server_tls)
    sampler = PeakSampler(proxy)
    client = await Client.open(proxy.port, ssl_context=client_tls, server_hostname=TENANT)
    total = UPLOAD_BYTES if not tls else UPLOAD_BYTES // 3  # TLS costs more CPU
    block = bytes(range(256)) * (MIB // 256)
    sent = 0

    async def upload() -> None:
        nonlocal sent
        head = build_request("PUT", "/gated/upload", headers=[("Content-Length", str(total))])
        await client.send(head)
        for _ in range(total // MIB):
            client.writer.write(block)
            sent += len(block)
            await client.writer.drain()

    sender = asyncio.create_task(upload())
    # The upstream reads nothing until the gate opens: the proxy must stop reading the
    # client instead of buffering the upload, so the client's sending stalls for good.
    await _until_stalled(lambda: sent, total)
    stalled_at = sent
    upstream.gate.set()
    await sender
    response = await client.read_response("PUT")
    await client.close()
    sampler.stop()

    assert stalled_at < total // 4
    assert response.status == 200
    echo = response.json()
    assert echo["body_len"] == total
    expected = hashlib.sha256(block * (total // MIB)).hexdigest()
    assert echo["body_sha256"] == expected
    assert sampler.peak < BUFFER_LIMIT, sampler.peak
    assert proxy.records[0].bytes_in == total


class WritePauseCounter(ProxyProtocol):
    """Counts pause_writing callbacks (the client is not reading fast enough)."""

    pauses = 0

    def pause_writing(self) -> None:
        type(self).pauses += 1
        super().pause_writing()


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_huge_download_streams_with_bounded_buffers(
    upstream: FakeUpstream, start_proxy: StartProxy, tls_files: TlsFiles, tls: bool
) -> None:
    WritePauseCounter.pauses = 0
    server_tls, client_tls = _contexts(tls_files, tls)
    proxy = await start_proxy(
        settings_for(upstream.port), protocol_class=WritePauseCounter, ssl_context=server_tls
    )
    sampler = PeakSampler(proxy)
    client = await Client.open(proxy.port, ssl_context=client_tls, server_hostname=TENANT)
    total = DOWNLOAD_BYTES if not tls else DOWNLOAD_BYTES // 2  # TLS costs more CPU
    await client.send(build_request("GET", f"/big?n={total}"))
    # The client reads nothing yet: once the proxy's write buffer to it is full, the proxy
    # must stop reading the upstream, so the upstream's sending stalls for good.
    await eventually(lambda: WritePauseCounter.pauses > 0)
    await _until_stalled(lambda: upstream.big_written, total)
    stalled_at = upstream.big_written
    response = await read_response(client.reader)
    await client.close()
    sampler.stop()

    assert stalled_at < DOWNLOAD_BYTES // 4
    assert len(response.body) == total
    assert sampler.peak < BUFFER_LIMIT, sampler.peak
    assert proxy.records[0].bytes_out == total
