"""The admin port answers a plain-HTTP request with a clear 400, and stays a TLS port."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from gateway.admin.https_only import HttpsOnly
from tests.certfactory import Issued, make_leaf
from tests.gateway.admin.conftest import AdminEnv
from tests.support.process import require_binary


async def _raw(port: int, data: bytes, *, close_write: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if close_write:
        writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


async def _api_still_works(admin: AdminEnv) -> None:
    assert (await admin.api.ok("GET", "/api/v1/accounts"))["accounts"] == []


async def test_plain_http_gets_400_naming_the_https_url(admin: AdminEnv,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    port = admin.gateway.admin_port
    assert port is not None
    with caplog.at_level(logging.WARNING, logger="certgate.admin"):
        answer = await _raw(port, b"GET /api/v1/accounts HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400 Bad Request")
    assert f"this port speaks HTTPS: use https://127.0.0.1:{port}/api/v1/".encode() in body
    assert f"Content-Length: {len(body)}".encode() in head
    assert any("plain-HTTP" in r.getMessage() for r in caplog.records)
    await _api_still_works(admin)


async def test_curl_over_http_shows_the_answer(admin: AdminEnv) -> None:
    """What a user sees typing http:// instead of https:// (real curl)."""
    curl = require_binary("curl")
    proc = await asyncio.create_subprocess_exec(
        curl, "-sS", "-i", "--max-time", "30", f"http://127.0.0.1:{admin.gateway.admin_port}/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert out.startswith(b"HTTP/1.0 400") and b"this port speaks HTTPS: use https://" in out


@pytest.mark.parametrize("first", [b"", b"\x00", b"\xff" * 100, b"\x80\x2e\x01\x03\x01",
                                   b"\x16\x03\x01\x00\x05hello", b"\x16"])
async def test_hostile_first_bytes_leave_the_port_serving(admin: AdminEnv, first: bytes) -> None:
    """Garbage, an SSLv2-style hello, a truncated or bogus TLS record, an abrupt close."""
    port = admin.gateway.admin_port
    assert port is not None
    answer = await _raw(port, first, close_write=True)
    assert answer == b"" or answer.startswith(b"HTTP/1.0 400") or answer[:1] == b"\x15"
    await _api_still_works(admin)


async def test_fuzzed_plain_requests(admin: AdminEnv) -> None:
    port = admin.gateway.admin_port
    assert port is not None
    rng = random.Random(11)
    for _ in range(20):
        noise = bytes(rng.randrange(0x17, 256) for _ in range(rng.randrange(1, 9000)))
        answer = await _raw(port, noise, close_write=True)
        assert answer == b"" or answer.startswith(b"HTTP/1.0 400")
    await _api_still_works(admin)


async def _tls_works(port: int) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    return answer.startswith(b"HTTP/1.1 200")


@asynccontextmanager
async def _front(issuer: Issued, tmp: Path, *, first_byte_timeout_s: float,
                 max_pending: int) -> AsyncIterator[tuple[HttpsOnly, int]]:
    """An HttpsOnly with tight bounds in front of a one-route app."""
    leaf = make_leaf(issuer, dns=["localhost"], ips=["127.0.0.1"])
    (tmp / "leaf.pem").write_bytes(leaf.pem())
    (tmp / "leaf.key").write_bytes(leaf.key_pem())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "leaf.pem", tmp / "leaf.key")
    app = web.Application()

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    assert runner.server is not None
    front = HttpsOnly(sock, runner.server, ctx, url="https://127.0.0.1/",
                      first_byte_timeout_s=first_byte_timeout_s, max_pending=max_pending)
    front.start()
    try:
        yield front, int(sock.getsockname()[1])
    finally:
        await front.close()
        await runner.cleanup()


async def _tls_works(port: int) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")


async def test_a_silent_client_is_dropped_after_the_first_byte_timeout(
        root_ca: Issued, tmp_path: Path) -> None:
    async with _front(root_ca, tmp_path, first_byte_timeout_s=0.5, max_pending=4) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 30) == b""  # closed, not held forever
        writer.close()
        assert await _tls_works(port)


async def test_silent_clients_beyond_the_bound_are_refused_at_once(
        root_ca: Issued, tmp_path: Path) -> None:
    async with _front(root_ca, tmp_path, first_byte_timeout_s=60, max_pending=4) as (
            front, port):
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # closed well before the 60 s first-byte timeout: the bound refused it
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
        for _, w in silent:
            w.close()
        # once they are gone, TLS clients are served again (wait for the slots to free)
        deadline = asyncio.get_running_loop().time() + 60
        while front._pending and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert await _tls_works(port)
        assert front.plain_requests == 0
