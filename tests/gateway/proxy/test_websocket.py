"""WebSocket through the https listener: a real `websockets` client over real TLS on
127.0.0.1, the gateway (store, SNI, listener, proxy) and a real aiohttp WebSocket server."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from prometheus_client import generate_latest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from certstore.persistence.keyfile import read_master_key
from certstore.store import CertStore
from gateway.server import Gateway
from tests.gateway.harness import init_store, running_gateway
from tests.gateway.proxy.conftest import eventually

NAME = "ws.test"
MIB = 1 << 20


@pytest.fixture
async def store_dir(tmp_path: Path) -> Path:
    key = await init_store(tmp_path)
    store = await CertStore.open(tmp_path / "certgate.sqlite", read_master_key(key))
    try:
        account = await store.create_account(name="W", kind="customer", domains=[NAME])
        await store.generate_chain(account.id, purpose="tls", domain=NAME)
    finally:
        await store.close()
    return tmp_path


class WsUpstream:
    """An aiohttp WebSocket server: greets with the account header it received, echoes,
    closes with code 4000 on "close-me", and records how each socket ended."""

    def __init__(self) -> None:
        self.port = 0
        self.closes: list[int | None] = []
        self.runner: web.AppRunner | None = None

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=64 * MIB, heartbeat=None)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"account": request.headers.get("X-Certgate-Account"),
                                      "forwarded_for": request.headers.get("X-Forwarded-For")}))
        async for message in ws:
            if message.type == WSMsgType.TEXT and message.data == "close-me":
                await ws.close(code=4000, message=b"bye")
            elif message.type == WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        self.closes.append(ws.close_code)
        return ws

    async def plain(self, request: web.Request) -> web.Response:
        return web.Response(text="plain " + request.path)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws", self.handler)
        app.router.add_route("*", "/{tail:.*}", self.plain)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.fixture
async def ws_upstream() -> AsyncIterator[WsUpstream]:
    upstream = WsUpstream()
    await upstream.start()
    yield upstream
    assert upstream.runner is not None
    await upstream.runner.cleanup()


def _listener(upstream: WsUpstream, **extra: Any) -> dict[str, Any]:
    return {"name": "web", "kind": "https", "bind": "127.0.0.1:0",
            "upstream": f"http://127.0.0.1:{upstream.port}", **extra}


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def _connect(gw: Gateway, path: str = "/ws") -> connect:
    port = gw.listeners["web"].port
    return connect(f"wss://{NAME}:{port}{path}", ssl=_client_tls(), host="127.0.0.1",
                   port=port, server_hostname=NAME, proxy=None, ping_interval=None,
                   max_size=None, open_timeout=10)


def _metric(gw: Gateway, prefix: str) -> float:
    for line in generate_latest(gw.metrics.registry).decode().splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {prefix}")


async def _greeting(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await ws.recv())  # type: ignore[no-any-return]


async def test_echo_both_ways_and_close_by_client(
    store_dir: Path, ws_upstream: WsUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_gateway(store_dir, [_listener(ws_upstream)]) as gw:
        async with _connect(gw) as ws:
            greeting = await _greeting(ws)
            assert greeting["account"] is not None and greeting["forwarded_for"] == "127.0.0.1"
            assert _metric(gw, 'certgate_tunnels_active{listener="web"}') == 1
            for text in ("hello", "é" * 1000, ""):
                await ws.send(text)
                assert await ws.recv() == text
            await ws.send(b"\x00\xff" * 10)
            assert await ws.recv() == b"\x00\xff" * 10
        await eventually(lambda: ws_upstream.closes == [1000])  # the client's close frame
        await eventually(lambda: _metric(gw, 'certgate_tunnels_active{listener="web"}') == 0)
        assert _metric(gw, 'certgate_tunnels_opened_total{listener="web"}') == 1
        assert _metric(gw, 'certgate_tunnel_bytes_total{direction="out",listener="web"}') > 100
        assert _metric(gw, 'certgate_tunnel_bytes_total{direction="in",listener="web"}') > 50
        out: list[str] = []  # the access log (stdout) gets the tunnel's line when it ends
        await eventually(lambda: '"status":101' in "".join(out) or out.append(
            capsys.readouterr().out))


async def test_large_messages_both_ways(store_dir: Path, ws_upstream: WsUpstream) -> None:
    """16 MiB messages: far above every buffer, so back-pressure has to hold both ways."""
    payload = bytes(range(256)) * (16 * MIB // 256)
    async with running_gateway(store_dir, [_listener(ws_upstream)]) as gw:
        async with _connect(gw) as ws:
            await _greeting(ws)
            for i in range(2):
                await ws.send(payload[i:] + payload[:i])
                assert await ws.recv() == payload[i:] + payload[:i]


async def test_close_by_server_reaches_the_client(
    store_dir: Path, ws_upstream: WsUpstream
) -> None:
    async with running_gateway(store_dir, [_listener(ws_upstream)]) as gw:
        async with _connect(gw) as ws:
            await _greeting(ws)
            await ws.send("close-me")
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
            assert closed.value.rcvd.reason == "bye"
        await eventually(lambda: _metric(gw, 'certgate_tunnels_active{listener="web"}') == 0)


async def test_idle_tunnel_is_closed_by_the_gateway(
    store_dir: Path, ws_upstream: WsUpstream
) -> None:
    listener = _listener(ws_upstream, tunnel_idle_timeout_s=0.5)
    async with running_gateway(store_dir, [listener]) as gw:
        async with _connect(gw) as ws:
            await _greeting(ws)
            async with asyncio.timeout(10):
                await ws.wait_closed()
            assert ws.close_code == 1006  # the TCP connection ended without a close frame
        await eventually(lambda: _metric(gw, 'certgate_tunnels_active{listener="web"}') == 0)


async def test_declined_upgrade_is_an_ordinary_response(
    store_dir: Path, ws_upstream: WsUpstream
) -> None:
    """A path that is no WebSocket endpoint: the handshake fails with the upstream's
    answer, and no tunnel is counted."""
    async with running_gateway(store_dir, [_listener(ws_upstream)]) as gw:
        with pytest.raises(Exception, match="200"):
            async with _connect(gw, "/plain"):
                pass
        assert _metric(gw, 'certgate_tunnels_opened_total{listener="web"}') == 0
