"""A raw HTTP/1.1 client for the proxy tests: exact bytes out, strict framing in."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Response:
    """A response as read off the wire."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    interim: list[int] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(values) if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One client connection to the proxy."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=ssl_context,
            server_hostname=server_hostname if ssl_context else None,
            limit=1 << 20,
        )
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(
        self,
        method: str,
        target: str,
        *,
        host: str = "proxy.test",
        headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
        body: bytes | None = None,
    ) -> Response:
        await self.send(build_request(method, target, host=host, headers=headers, body=body))
        return await self.read_response(method)

    async def read_response(self, method: str = "GET") -> Response:
        return await read_response(self.reader, method)

    async def at_eof(self) -> bool:
        """True if the server closed the connection (after reading what is left)."""
        try:
            rest = await self.reader.read()
        except ConnectionError:
            return True
        return rest == b""


def build_request(
    method: str,
    target: str,
    *,
    host: str | None = "proxy.test",
    headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    body: bytes | None = None,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers]
    if body is not None and not any(k.lower() == "transfer-encoding" for k, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


async def read_response(reader: asyncio.StreamReader, method: str = "GET") -> Response:
    interim: list[int] = []
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = [
            (k.strip().lower(), v.strip())
            for k, v in (line.split(":", 1) for line in lines[1:] if line)
        ]
        if status >= 200:
            break
        interim.append(status)
    response = Response(status, headers, b"", interim)
    if method == "HEAD" or status in (204, 304):
        return response
    te = response.header("transfer-encoding")
    length = response.header("content-length")
    if te is not None:
        assert te.lower().endswith("chunked"), te
        response.body = await _read_chunked(reader)
    elif length is not None:
        response.body = await reader.readexactly(int(length))
    else:
        response.body = await reader.read()
    return response


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        assert await reader.readexactly(2) == b"\r\n"
