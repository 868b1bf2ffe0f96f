"""The https listener through a real TLS client: a half-closed client still gets its
response, and the access log's ``bytes_out`` is what reached the client's socket."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import pytest
from aiohttp import web

from gateway.tls.transport import TlsConnection
from tests.gateway.harness import init_store, running_gateway, upstream_server
from tests.support.tlsclient import MemoryTlsClient

BLOCK = hashlib.sha256(b"body").digest() * 32768  # 1 MiB
GET = b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _listener(up: int) -> dict[str, object]:
    return {"name": "web", "kind": "https", "bind": "127.0.0.1:0",
            "upstream": f"http://127.0.0.1:{up}"}


def _streaming(size: int) -> web.RequestHandler:  # type: ignore[type-arg]
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = size
        await resp.prepare(request)
        sent = 0
        try:
            while sent < size:
                chunk = BLOCK[: min(len(BLOCK), size - sent)]
                await resp.write(chunk)
                sent += len(chunk)
        except ConnectionError:
            pass
        return resp
    return handler


async def _log_line(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    for _ in range(500):
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
                 if line.startswith("{") and '"listener":"web"' in line]
        if lines:
            assert len(lines) == 1, lines
            return lines[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no access-log line")


def _half_closed_get(port: int) -> bytes:
    client = MemoryTlsClient(port)
    try:
        client.sendall(GET)
        client.fin()  # TCP FIN without close_notify, right after the request
        return client.recv_until_end()
    finally:
        client.close()


@pytest.mark.parametrize("size", [3 * len(BLOCK) + 17])
async def test_a_half_closed_client_gets_the_whole_response_logged_in_full(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], size: int) -> None:
    await init_store(tmp_path)
    async with upstream_server(_streaming(size)) as up, \
            running_gateway(tmp_path, [_listener(up)]) as gw:
        capsys.readouterr()
        response = await asyncio.to_thread(_half_closed_get, gw.listeners["web"].port)
        line = await _log_line(capsys)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    expected = (BLOCK * 4)[:size]
    assert len(body) == size and hashlib.sha256(body).digest() == hashlib.sha256(
        expected).digest()
    assert line["status"] == 200 and line["bytes_out"] == size


def _read_then_vanish(port: int, stalled: object) -> bytes:
    client = MemoryTlsClient(port)
    try:
        client.sendall(GET)
        got = client.recv_until_end(limit=256 * 1024)
        for _ in range(1500):
            if stalled():  # type: ignore[operator]
                break
            time.sleep(0.02)
        return got
    finally:
        client.reset()


async def test_bytes_out_of_a_response_cut_short_is_what_the_socket_took(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    size = 256 * len(BLOCK)  # 256 MiB announced; back-pressure stops the upstream early
    await init_store(tmp_path)
    async with upstream_server(_streaming(size)) as up, \
            running_gateway(tmp_path, [_listener(up)]) as gw:
        listener = gw.listeners["web"]
        capsys.readouterr()
        conns: list[TlsConnection] = []

        def stalled() -> bool:
            try:
                conns[:] = list(listener._connections)
            except RuntimeError:
                return False
            return (len(conns) == 1 and conns[0].get_write_buffer_size() > 0
                    and conns[0].bytes_written > 1 << 20)

        got = await asyncio.to_thread(_read_then_vanish, listener.port, stalled)
        line = await _log_line(capsys)
        conn = conns[0]
    head_len = got.index(b"\r\n\r\n") + 4
    # The proxy handed over more than the socket took; the log reports the body bytes the
    # socket took (what the client could have received), not what was handed over.
    assert conn.bytes_sent < conn.bytes_written
    assert line["bytes_out"] == conn.bytes_sent - head_len
    assert line["bytes_out"] >= len(got) - head_len
