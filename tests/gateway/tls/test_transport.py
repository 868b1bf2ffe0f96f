"""The socket-BIO TLS transport under real clients: bulk data both ways with back-pressure,
``close_notify``, and no reference cycles left behind by finished connections."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import select
import socket
import ssl
import subprocess
import time
from pathlib import Path

from aiohttp import web

from gateway.proxy.protocol import ProxyProtocol
from gateway.proxy.timer import Deadline
from gateway.tls.transport import TlsConnection
from tests.gateway.harness import client_context, init_store, running_gateway, upstream_server

BIG = 24 * 1024 * 1024


def _payload(size: int) -> bytes:
    block = hashlib.sha256(b"certgate").digest() * 2048  # 64 KiB, not all one byte
    return (block * (size // len(block) + 1))[:size]


def _listener(up: int, **extra: object) -> dict[str, object]:
    return {"name": "web", "kind": "https", "bind": "127.0.0.1:0",
            "upstream": f"http://127.0.0.1:{up}", **extra}


def _request(port: int, head: bytes, body: bytes = b"", *, slow_s: float = 0.0) -> bytes:
    """One HTTP/1.1 exchange over TLS (blocking); the raw response. ``slow_s``: stall
    before reading, so the gateway's socket and write buffer fill up."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
            client_context(None).wrap_socket(raw, server_hostname=None) as tls:
        tls.sendall(head + body)
        if slow_s:
            time.sleep(slow_s)
        chunks = []
        while chunk := tls.recv(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)


def _body(response: bytes) -> bytes:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return body


async def test_a_large_response_reaches_a_slow_reader_whole(tmp_path: Path) -> None:
    payload = _payload(BIG)

    async def download(_request: web.Request) -> web.Response:
        return web.Response(body=payload, content_type="application/octet-stream")

    await init_store(tmp_path)
    async with upstream_server(download) as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        head = b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        response = await asyncio.to_thread(_request, gw.listeners["web"].port, head,
                                           slow_s=1.0)
    body = _body(response)
    assert len(body) == BIG
    assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()


async def test_a_large_upload_reaches_the_upstream_whole(tmp_path: Path) -> None:
    payload = _payload(BIG)

    async def digest(request: web.Request) -> web.Response:
        h, n = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            h.update(chunk)
            n += len(chunk)
            await asyncio.sleep(0)  # a reader slower than the network: back-pressure
        return web.Response(text=f"{n} {h.hexdigest()}")

    await init_store(tmp_path)
    async with upstream_server(digest) as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        head = (b"POST /up HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n" % len(payload))
        response = await asyncio.to_thread(_request, gw.listeners["web"].port, head, payload)
    assert _body(response).decode() == f"{BIG} {hashlib.sha256(payload).hexdigest()}"


def _close_notify_answered(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            client_context(None).wrap_socket(raw, server_hostname=None) as tls:
        # unwrap() sends our close_notify and waits for the server's: it raises if the
        # server drops the connection without one (a truncation a client cannot tell
        # from an attack).
        tls.unwrap()
        return True


async def test_the_gateway_answers_close_notify(tmp_path: Path) -> None:
    await init_store(tmp_path)
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        assert await asyncio.to_thread(_close_notify_answered, gw.listeners["web"].port)


async def test_finished_connections_leave_no_reference_cycles(tmp_path: Path) -> None:
    await init_store(tmp_path)
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        port = gw.listeners["web"].port
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            head = b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            for _ in range(10):
                await asyncio.to_thread(_close_notify_answered, port)  # handshake only
                _body(await asyncio.to_thread(_request, port, head))  # and a request
            deadline = asyncio.get_running_loop().time() + 60  # generous under load
            while gw.listeners["web"].active and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            assert gw.listeners["web"].active == 0
            gc.collect()
            ours = [type(o).__name__ for o in gc.garbage
                    if isinstance(o, TlsConnection | ProxyProtocol | Deadline | ssl.SSLContext)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    # Connections must be freed by reference counting as they end, not pile up as cyclic
    # garbage for the collector (which costs CPU on every handshake under load).
    assert ours == []


def _pipelined(port: int, count: int) -> bytes:
    """``count`` requests, each in its own TLS record, written before reading anything."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
            client_context(None).wrap_socket(raw, server_hostname=None) as tls:
        for i in range(count):
            last = i == count - 1
            tls.sendall(b"GET /r%d HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n"
                        % (i, b"Connection: close\r\n" if last else b""))
        chunks = []
        while chunk := tls.recv(1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)


async def test_records_queued_behind_a_short_one_are_read(tmp_path: Path) -> None:
    # The transport stops reading after a short record and relies on the poller to report
    # the bytes still in the socket: every request must still be answered.
    await init_store(tmp_path)
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        response = await asyncio.to_thread(_pipelined, gw.listeners["web"].port, 5)
    assert response.count(b"HTTP/1.1 200") == 5
    for i in range(5):
        assert b'"path": "/r%d"' % i in response


def _read_until(fd: int, wanted: bytes, seen: bytes, timeout_s: float = 60) -> bytes:
    """Read ``fd`` until ``wanted`` has appeared (or EOF); everything read so far."""
    deadline = time.monotonic() + timeout_s
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {wanted!r} within {timeout_s} s: {seen!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    return seen


def _s_client_with_key_update(port: int) -> str:
    """openssl s_client: a request, a TLS 1.3 KeyUpdate asking for the server's, a second
    request on the same connection (s_client's interactive "K" command). Each step waits
    for the previous one's output, not for a guessed delay."""
    proc = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-crlf"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)
    assert proc.stdin is not None and proc.stdout is not None
    fd = proc.stdout.fileno()
    try:
        proc.stdin.write(b"GET /one HTTP/1.1\nHost: 127.0.0.1\n\n")
        out = _read_until(fd, b'"path": "/one"', b"")
        proc.stdin.write(b"K\n")
        out = _read_until(fd, b"KEYUPDATE", out)
        proc.stdin.write(b"GET /two HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n\n")
        out = _read_until(fd, b'"path": "/two"', out)
        proc.stdin.close()  # end of input: s_client closes the connection
        out = _read_until(fd, b"\x00never\x00", out)  # to EOF
        proc.wait(60)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return out.decode(errors="replace")


async def test_a_key_update_mid_connection_is_answered(tmp_path: Path) -> None:
    # Reading the client's KeyUpdate makes OpenSSL write the server's own inside SSL_read:
    # the transport's read path must let it, and the connection must carry on.
    await init_store(tmp_path)
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        out = await asyncio.to_thread(_s_client_with_key_update, gw.listeners["web"].port)
    assert "KEYUPDATE" in out, out
    assert '"path": "/one"' in out and '"path": "/two"' in out, out


def _hostile(port: int, payload: bytes, *, reset: bool) -> bytes:
    """Send ``payload`` raw, then reset or half-close; what the server answered."""
    import struct

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b""
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


async def test_hostile_bytes_and_abrupt_closes_leave_the_listener_serving(
        tmp_path: Path, capfd: object) -> None:
    from tests.support.clienthello import client_hello

    hello = client_hello(b"acme.test")
    cases = [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False),  # plain HTTP on a TLS port
        (bytes(range(256)) * 8, False),  # garbage
        (b"\x16\x03\x01\xff\xff" + b"\x01" * 100, False),  # a record longer than sent
        (b"\x16\x03\x01\x00\x00", False),  # an empty handshake record
        (hello[:40], False),  # truncated ClientHello, then FIN
        (hello[:40], True),  # truncated ClientHello, then RST
        (hello, True),  # whole ClientHello, then RST before our flight is read
        (hello + hello, False),  # two ClientHellos
    ]
    await init_store(tmp_path)
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        port = gw.listeners["web"].port
        for payload, reset in cases:
            answer = await asyncio.to_thread(_hostile, port, payload, reset=reset)
            # Never a plaintext reply; a TLS alert (content type 21) or a handshake at most.
            assert answer == b"" or answer[0] in (21, 22), (payload[:20], answer[:20])
        for _ in range(100):
            if gw.listeners["web"].active == 0:
                break
            await asyncio.sleep(0.02)
        assert gw.listeners["web"].active == 0  # nothing left half-open
        head = b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        assert b'"path": "/ok"' in _body(await asyncio.to_thread(_request, port, head))
    assert "Traceback" not in capfd.readouterr().err  # type: ignore[attr-defined]


def _s_client_renegotiates(port: int) -> str:
    proc = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-crlf"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write("R\n")  # s_client's interactive renegotiation
        proc.stdin.flush()
        out = proc.stdout.read()  # s_client exits when the server refuses
        proc.wait(20)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    return out


async def test_renegotiation_is_refused(tmp_path: Path) -> None:
    await init_store(tmp_path)
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        out = await asyncio.to_thread(_s_client_renegotiates, gw.listeners["web"].port)
        assert "RENEGOTIATING" in out, out
        # OpenSSL refuses it with a no_renegotiation alert (OP_NO_RENEGOTIATION, RFC 5746
        # section 4.2), and no second handshake completes.
        assert "no renegotiation" in out, out
        head = b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        assert b'"path": "/ok"' in _body(await asyncio.to_thread(
            _request, gw.listeners["web"].port, head))
