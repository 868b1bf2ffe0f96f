"""The tcp listener: TLS terminated, bytes piped both ways to the terminal upstream."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from certstore.persistence.keyfile import read_master_key
from certstore.store import CertStore
from tests.gateway.harness import init_store, running_gateway


@pytest.fixture
async def account(tmp_path: Path) -> str:
    key = await init_store(tmp_path)
    store = await CertStore.open(tmp_path / "certgate.sqlite", read_master_key(key))
    try:
        acc = await store.create_account(name="T", kind="customer", domains=["term.test"])
        await store.generate_chain(acc.id, purpose="tls", domain="term.test",
                                   key_type="rsa-2048")
        return acc.id
    finally:
        await store.close()


@pytest.fixture
async def hashing_upstream() -> AsyncIterator[int]:
    """A terminal service: reads an 8-byte length and that many bytes (slowly), answers with
    their SHA-256, then sends back as many bytes of its own (both directions loaded)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = int.from_bytes(await reader.readexactly(8), "big")
        digest = hashlib.sha256()
        while size:
            chunk = await reader.read(min(size, 1 << 16))
            digest.update(chunk)
            size -= len(chunk)
            await asyncio.sleep(0)  # a slow consumer, so back-pressure has to work
        writer.write(digest.hexdigest().encode())
        for _ in range(160):
            writer.write(b"r" * 65536)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _ctx() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # old terminals speak TLS 1.2 only
    return ctx


async def test_bytes_piped_both_ways(tmp_path: Path, account: str,
                                     hashing_upstream: int) -> None:
    listener = {"name": "term", "kind": "tcp", "bind": "127.0.0.1:0",
                "upstream": f"127.0.0.1:{hashing_upstream}"}
    async with running_gateway(tmp_path, [listener]) as gw:
        port = gw.listeners["term"].port
        payload = bytes(range(256)) * 40_000  # ~10 MB
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_ctx(),
                                                       server_hostname="term.test")
        sslobj = writer.get_extra_info("ssl_object")
        assert sslobj.version() == "TLSv1.2"
        assert "RSA" in sslobj.cipher()[0]  # the RSA chain old terminals want
        writer.write(len(payload).to_bytes(8, "big") + payload)
        await writer.drain()
        reply = await asyncio.wait_for(reader.readexactly(64), 30)
        assert reply == hashlib.sha256(payload).hexdigest().encode()
        rest = await asyncio.wait_for(reader.read(), 30)  # until the upstream closes
        assert rest == b"r" * 65536 * 160
        writer.close()


async def test_upstream_down_closes_the_client_cleanly(tmp_path: Path, account: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, never listening: connection refused
        listener = {"name": "term", "kind": "tcp", "bind": "127.0.0.1:0",
                    "upstream": f"127.0.0.1:{dead}"}
        async with running_gateway(tmp_path, [listener]) as gw:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", gw.listeners["term"].port, ssl=_ctx(), server_hostname="term.test")
            writer.write(b"hello")
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
