"""Per-listener limits: connection cap and handshake timeout, with real sockets."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from tests.gateway.harness import init_store, running_gateway, upstream_server


def _client() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, ssl.SSLError):
        pass


async def test_connections_over_the_limit_are_closed_before_tls(tmp_path: Path) -> None:
    await init_store(tmp_path)
    async with upstream_server() as up, running_gateway(tmp_path, [{
            "name": "web", "kind": "https", "bind": "127.0.0.1:0",
            "upstream": f"http://127.0.0.1:{up}", "max_connections": 2}]) as gw:
        port = gw.listeners["web"].port
        held = [await asyncio.open_connection("127.0.0.1", port, ssl=_client())
                for _ in range(2)]
        assert gw.listeners["web"].active == 2
        # the third is accepted by the kernel and closed at once, before any TLS work
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await _close(writer)
        for _, w in held:
            await _close(w)
        deadline = asyncio.get_running_loop().time() + 60  # generous under load
        while gw.listeners["web"].active and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert gw.listeners["web"].active == 0
        # below the limit again: served
        _, w = await asyncio.open_connection("127.0.0.1", port, ssl=_client())
        await _close(w)


async def test_silent_clients_are_dropped_after_the_handshake_timeout(tmp_path: Path) -> None:
    await init_store(tmp_path)
    async with upstream_server() as up, running_gateway(tmp_path, [{
            "name": "web", "kind": "https", "bind": "127.0.0.1:0",
            "upstream": f"http://127.0.0.1:{up}", "handshake_timeout_s": 0.5}]) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.listeners["web"].port)
        # no ClientHello: the gateway closes the connection (well before this 10 s bound)
        assert await asyncio.wait_for(reader.read(), 10) == b""
        await _close(writer)
        assert gw.metrics.handshakes[("web", "failed")] == 1
