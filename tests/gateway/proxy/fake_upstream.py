"""A small real HTTP/1.1 upstream server for the proxy tests (asyncio streams, no parser
shared with the proxy). Its behaviour is chosen by the request path:

- anything else: 200 with a JSON echo of what it received (headers, body size and sha256)
- `/gated...`: waits for `gate` before reading the body (back-pressure tests)
- `/chunked`: a chunked response; `/close`: a response delimited by closing
- `/nobody/<status>`: that status with a Content-Length but no content (HEAD/204/304)
- `/big?n=<bytes>`: n bytes of content with Content-Length
- `/hop`: a response carrying hop-by-hop fields
- `/hang`: reads the request, never answers
- `/early`: answers 413 before reading the body, then closes
- `/interim`: sends `103 Early Hints` before the final response
- `/ipp...`: an IPP successful-ok response echoing the request-id
- `/drop`: closes the connection without answering
- `/drop-reused`: the same, but only on a connection that already served a request
- `/trickle`: a chunked body in 12 pieces, 50 ms apart; `/stall`: one piece, then silence
- `/cut`: sends a head and half of the promised content, then closes
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import struct
from dataclasses import dataclass

CHUNK = 1 << 20


@dataclass
class Seen:
    """A request as the upstream received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body_len: int
    body_sha256: str
    ipp_head: bytes
    connection: int

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None


class FakeUpstream:
    """Start with `await start()`, stop with `await close()`."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.heads: list[str] = []  # targets whose head arrived (bodies may still be pending)
        self.connections = 0
        self.gate = asyncio.Event()
        self.stopping = asyncio.Event()
        self.big_written = 0  # bytes of /big content handed to the transport so far
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        self.stopping.set()  # handlers return on their own (cancelling them logs errors)
        self.gate.set()
        await asyncio.sleep(0)
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn_id = self.connections
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await self._one(reader, writer, conn_id):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.transport.abort()

    async def _one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn_id: int
    ) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:] if line]
        path = target.split("?", 1)[0]
        self.heads.append(target)
        if path == "/early":
            # Answer before reading the body, then close the way real servers do: stop
            # writing, keep reading until the peer closes (so no RST eats the answer).
            await _send(writer, 413, b"too large", close=True)
            writer.write_eof()
            while await reader.read(CHUNK):
                pass
            return False
        if path.startswith("/gated"):
            await self.gate.wait()
        body_len, sha, ipp_head = await _read_body(reader, dict((k.lower(), v) for k, v in headers))
        seen = Seen(method, target, headers, body_len, sha, ipp_head, conn_id)  # type: ignore[arg-type]
        if path == "/drop-reused" and any(r.connection == conn_id for r in self.requests):
            return False  # as if its keep-alive timer closed the connection just now
        self.requests.append(seen)
        if path == "/hang":
            await self.stopping.wait()
            return False
        if path == "/big":
            return await self._big(writer, int(target.split("n=", 1)[1]))
        if path in ("/trickle", "/stall"):
            return await self._trickle(writer, stall=path == "/stall")
        return await _respond(writer, method, path, target, seen)

    async def _trickle(self, writer: asyncio.StreamWriter, *, stall: bool) -> bool:
        """Twelve chunks 50 ms apart; or (stall) one chunk, then silence."""
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(12):
            writer.write(b"5\r\ndrop.\r\n")
            await writer.drain()
            if stall:
                await self.stopping.wait()
                return False
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _big(self, writer: asyncio.StreamWriter, size: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"x" * CHUNK
        while size:
            n = min(size, CHUNK)
            writer.write(block[:n])
            self.big_written += n
            size -= n
            await writer.drain()
        return True


async def _read_body(
    reader: asyncio.StreamReader, headers: dict[str, str]
) -> tuple[int, str, bytes]:
    digest = hashlib.sha256()
    first = bytearray()
    total = 0

    def take(data: bytes) -> None:
        nonlocal total
        total += len(data)
        digest.update(data)
        if len(first) < 8:
            first.extend(data[: 8 - len(first)])

    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            take(await reader.readexactly(size))
            await reader.readexactly(2)
    else:
        remaining = int(headers.get("content-length", "0"))
        while remaining:
            data = await reader.read(min(remaining, CHUNK))
            if not data:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(data)
            take(data)
    return total, digest.hexdigest(), bytes(first)


async def _respond(
    writer: asyncio.StreamWriter, method: str, path: str, target: str, seen: Seen
) -> bool:
    if path == "/drop":
        return False
    if path == "/chunked":
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"hello ", b"chunked ", b"world"):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        writer.write(b"0\r\nX-Trailer: t\r\n\r\n")
        await writer.drain()
        return True
    if path == "/close":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
        await writer.drain()
        return False
    if path.startswith("/nobody/"):
        status = int(path.rsplit("/", 1)[1])
        writer.write(b'HTTP/1.1 %d X\r\nContent-Length: 1234\r\nETag: "e"\r\n\r\n' % status)
        await writer.drain()
        return True
    if path == "/hop":
        writer.write(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
            b"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nTrailer: X-T\r\n"
            b"Upgrade: h2c\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
        )
        await writer.drain()
        return True
    if path == "/interim":
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n")
    if path == "/cut":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"y" * 50)
        await writer.drain()
        return False
    if path.startswith("/ipp"):
        request_id = struct.unpack(">i", seen.ipp_head[4:8])[0] if len(seen.ipp_head) == 8 else 0
        body = bytes((2, 0)) + struct.pack(">Hi", 0, request_id) + b"\x01\x03"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nContent-Length: %d\r\n\r\n"
            % len(body)
            + body
        )
        await writer.drain()
        return True
    echo = {
        "method": method,
        "target": target,
        "headers": seen.headers,
        "body_len": seen.body_len,
        "body_sha256": seen.body_sha256,
        "connection": seen.connection,
    }
    await _send(writer, 200, json.dumps(echo).encode(), content_type=b"application/json")
    return True


async def _send(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    *,
    close: bool = False,
    content_type: bytes = b"text/plain",
) -> None:
    writer.write(
        b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
        % (status, content_type, len(body), b"Connection: close\r\n" if close else b"")
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
