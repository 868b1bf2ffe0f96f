"""The tcp listener loses no byte whichever side ends first, and however the client ends
(``close_notify`` or a bare TCP FIN, as embedded terminals do); the access log's ``bytes_out``
is what reached the client's socket."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from certstore.persistence.keyfile import read_master_key
from certstore.store import CertStore
from gateway.tls.transport import TlsConnection
from tests.gateway.harness import init_store, running_gateway
from tests.support.tlsclient import MemoryTlsClient

UP = hashlib.sha256(b"up").digest() * (40 * 1024 + 7)  # ~1.25 MiB, not a round size
DOWN = hashlib.sha256(b"down").digest() * (48 * 1024 + 3)  # ~1.5 MiB


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def tenant(tmp_path: Path) -> None:
    key = await init_store(tmp_path)
    store = await CertStore.open(tmp_path / "certgate.sqlite", read_master_key(key))
    try:
        acc = await store.create_account(name="T", kind="customer", domains=["term.test"])
        await store.generate_chain(acc.id, purpose="tls", domain="term.test")
    finally:
        await store.close()


@dataclass
class Upstream:
    """A terminal service on loopback; ``received`` resolves to the SHA-256 of its input."""

    port: int = 0
    received: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop()
                                          .create_future())


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while chunk := await reader.read(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
async def upstream_factory() -> AsyncIterator[Callable[[bool], Awaitable[Upstream]]]:
    servers: list[asyncio.Server] = []

    async def start(upstream_first: bool) -> Upstream:
        up = Upstream()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if upstream_first:
                # Reply, half-close, and only then read what the client still sends.
                writer.write(DOWN)
                await writer.drain()
                writer.write_eof()
                data = await _read_all(reader)
            else:
                data = await _read_all(reader)  # the client's whole input, up to its FIN
                writer.write(DOWN)
                await writer.drain()
            up.received.set_result(_sha(data))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        up.port = server.sockets[0].getsockname()[1]
        return up

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def _listener(up: int) -> dict[str, object]:
    return {"name": "term", "kind": "tcp", "bind": "127.0.0.1:0", "upstream": f"127.0.0.1:{up}"}


def _access_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()
            if line.startswith("{") and '"listener":"term"' in line]


async def _log_line(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    for _ in range(500):
        lines = _access_lines(capsys.readouterr().out)
        if lines:
            assert len(lines) == 1, lines
            return lines[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no access-log line for the piped connection")


def _client_first(port: int, how: str) -> tuple[bytes, str | None]:
    client = MemoryTlsClient(port, "term.test")
    try:
        client.sendall(UP)
        if how == "fin":
            client.fin()  # no close_notify: what terminals do
        else:
            client.close_notify()
        reply = client.recv_until_end()
        return reply, client.ended_by
    finally:
        client.close()


@pytest.mark.parametrize("how", ["fin", "close_notify"])
async def test_client_ends_first_and_still_gets_the_whole_reply(
        tmp_path: Path, tenant: None, upstream_factory: Callable[[bool], Awaitable[Upstream]],
        capsys: pytest.CaptureFixture[str], how: str) -> None:
    up = await upstream_factory(False)
    async with running_gateway(tmp_path, [_listener(up.port)]) as gw:
        capsys.readouterr()
        reply, ended_by = await asyncio.to_thread(_client_first, gw.listeners["term"].port, how)
        assert await asyncio.wait_for(up.received, 30) == _sha(UP)
        assert len(reply) == len(DOWN) and _sha(reply) == _sha(DOWN)
        assert ended_by == "close_notify"  # the gateway ends its side properly
        line = await _log_line(capsys)
    assert line["bytes_in"] == len(UP) and line["bytes_out"] == len(DOWN)


def _upstream_first(port: int, how: str) -> tuple[bytes, str | None, bytes]:
    client = MemoryTlsClient(port, "term.test")
    try:
        reply = client.recv_until_end()  # the upstream's reply, then its half-close
        ended_by = client.ended_by
        client.sendall(UP)  # the client is not cut off: it still has its say
        if how == "fin":
            client.fin()
        else:
            client.close_notify()
        return reply, ended_by, client.wait_closed()
    finally:
        client.close()


@pytest.mark.parametrize("how", ["fin", "close_notify"])
async def test_upstream_ends_first_and_the_client_still_reaches_it(
        tmp_path: Path, tenant: None, upstream_factory: Callable[[bool], Awaitable[Upstream]],
        capsys: pytest.CaptureFixture[str], how: str) -> None:
    up = await upstream_factory(True)
    async with running_gateway(tmp_path, [_listener(up.port)]) as gw:
        capsys.readouterr()
        reply, ended_by, trailing = await asyncio.to_thread(
            _upstream_first, gw.listeners["term"].port, how)
        assert len(reply) == len(DOWN) and _sha(reply) == _sha(DOWN)
        assert ended_by == "close_notify"  # the upstream's FIN, as TLS says it
        assert await asyncio.wait_for(up.received, 30) == _sha(UP)
        assert trailing == b""  # nothing after close_notify, then the connection closes
        line = await _log_line(capsys)
    assert line["bytes_in"] == len(UP) and line["bytes_out"] == len(DOWN)


def _stall_then_reset(port: int, stalled: Callable[[], bool]) -> int:
    client = MemoryTlsClient(port, "term.test")
    try:
        client.sendall(b"go")
        client.fin()
        got = len(client.recv_until_end(limit=256 * 1024))
        for _ in range(1500):  # until the gateway holds bytes the socket does not take
            if stalled():
                break
            time.sleep(0.02)
        assert stalled()
        return got
    finally:
        client.reset()


async def test_bytes_out_counts_what_a_vanished_client_was_sent(
        tmp_path: Path, tenant: None, capsys: pytest.CaptureFixture[str]) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_all(reader)
        try:
            for _ in range(4096):  # up to 256 MiB; back-pressure stops it far earlier
                writer.write(DOWN[: 1 << 16])
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running_gateway(tmp_path, [_listener(port)]) as gw:
            listener = gw.listeners["term"]
            capsys.readouterr()
            seen: dict[str, int] = {}

            def stalled() -> bool:
                try:
                    conns = list(listener._connections)
                except RuntimeError:  # changed size under us (the loop's thread)
                    return False
                if len(conns) != 1 or not isinstance(conns[0], TlsConnection):
                    return False
                conn = conns[0]
                seen["written"] = conn.bytes_written
                return conn.get_write_buffer_size() > 0 and conn.bytes_written > 1 << 20

            got = await asyncio.to_thread(_stall_then_reset, listener.port, stalled)
            line = await _log_line(capsys)
    finally:
        server.close()
        await server.wait_closed()
    # The gateway was handed more than its socket took when the client vanished; the log
    # says what was written to the socket: at least what the client read, less than handed.
    assert isinstance(line["bytes_out"], int)
    assert got <= line["bytes_out"] < seen["written"]
