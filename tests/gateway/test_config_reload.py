"""SIGHUP's config reload is all or nothing, and a replaced listener drains before closing."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.server import Gateway
from tests.gateway.harness import handshake, init_store, upstream_server


def _config(data_dir: Path, listeners: list[dict[str, Any]]) -> Any:
    return parse_config({"data_dir": str(data_dir), "listeners": listeners}, base_dir=data_dir)


def _web(name: str, bind: str, upstream: int) -> dict[str, Any]:
    return {"name": name, "kind": "https", "bind": bind,
            "upstream": f"http://127.0.0.1:{upstream}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def taken_port() -> Any:
    """A loopback port held by a socket without SO_REUSEPORT: nobody else can bind it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
async def gated_upstream() -> AsyncIterator[tuple[int, asyncio.Event, asyncio.Event]]:
    """An upstream whose response waits until the test releases it."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="done")

    async with upstream_server(slow) as port:
        yield port, arrived, release


async def test_reload_that_cannot_bind_keeps_the_running_listeners(
        tmp_path: Path, taken_port: int) -> None:
    await init_store(tmp_path)
    async with upstream_server() as up:
        running = _config(tmp_path, [_web("web", "127.0.0.1:0", up)])
        gateway = await Gateway.start(running, reuse_port=False)
        try:
            old = gateway.listeners["web"]
            old_port = old.port
            extra_port = _free_port()
            # 'web' moves to a taken port, 'extra' is new: neither may take effect
            broken = _config(tmp_path, [_web("web", f"127.0.0.1:{taken_port}", up),
                                        _web("extra", f"127.0.0.1:{extra_port}", up)])
            with pytest.raises(ConfigError, match=f"cannot bind 127.0.0.1:{taken_port}"):
                await gateway.reload_config(broken)
            assert gateway.listeners == {"web": old}
            assert gateway.config is running
            assert not _accepts(extra_port)  # the listener started for the reload is closed
            await handshake(old_port, None)  # the old one still serves
            # a later valid reload replaces it exactly once (no orphaned second socket)
            moved = _config(tmp_path, [_web("web", f"127.0.0.1:{extra_port}", up)])
            await gateway.reload_config(moved)
            assert gateway.listeners["web"] is not old
            assert gateway.listeners["web"].port == extra_port
            await handshake(extra_port, None)
            assert not _accepts(old_port)
        finally:
            await gateway.close()


async def test_sigterm_drains_a_listener_that_a_reload_replaced(
        tmp_path: Path, gated_upstream: tuple[int, asyncio.Event, asyncio.Event]) -> None:
    up, arrived, release = gated_upstream
    await init_store(tmp_path)
    gateway = await Gateway.start(_config(tmp_path, [_web("web", "127.0.0.1:0", up)]),
                                  reuse_port=False)
    try:
        old_port = gateway.listeners["web"].port
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", old_port, ssl=ctx)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(arrived.wait(), 10)
        new_port = _free_port()
        await gateway.reload_config(_config(tmp_path, [_web("web", f"127.0.0.1:{new_port}", up)]))
        assert gateway.listeners["web"].port == new_port
        assert not _accepts(old_port)  # retired: no new connections...
        shutdown = asyncio.create_task(gateway.shutdown())
        done, _ = await asyncio.wait([shutdown], timeout=0.3)
        assert not done  # ...but SIGTERM's drain waits for its request in flight
        release.set()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        await asyncio.wait_for(shutdown, 10)
        writer.close()
    finally:
        await gateway.close()
