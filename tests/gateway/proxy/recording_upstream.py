"""An upstream that records every byte it receives and parses it with h11, a parser that
shares nothing with the proxy's (llhttp): what it reports is what a real origin would see.

Each complete request is answered `200` with a JSON body naming the request's index;
anything h11 refuses is recorded in `errors` and the connection is closed, as a strict
origin would do.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import h11


@dataclass(frozen=True)
class Received:
    """A request as the upstream parsed it."""

    connection: int
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(values) if values else None


class _Conn(asyncio.Protocol):
    def __init__(self, server: RecordingUpstream, number: int) -> None:
        self.server = server
        self.number = number
        self.h11 = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None
        self.body = bytearray()
        self.request: h11.Request | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.raw[self.number] = bytearray()
        self.server.transports.add(self.transport)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.transports.discard(self.transport)  # type: ignore[arg-type]
        self.server.closed.add(self.number)

    def data_received(self, data: bytes) -> None:
        self.server.raw[self.number] += data
        self.h11.receive_data(data)
        self._pump()

    def eof_received(self) -> bool | None:
        self.h11.receive_data(b"")
        self._pump()
        return None

    def _pump(self) -> None:
        while self.transport is not None and not self.transport.is_closing():
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                self.server.errors.append(f"connection {self.number}: {e}")
                self.transport.close()
                return
            if event in (h11.NEED_DATA, h11.PAUSED) or isinstance(event, h11.ConnectionClosed):
                return
            if isinstance(event, h11.Request):
                self.request, self.body = event, bytearray()
            elif isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._answer()

    def _answer(self) -> None:
        request = self.request
        assert request is not None and self.transport is not None
        received = Received(
            connection=self.number,
            method=request.method.decode(),
            target=request.target.decode(),
            headers=tuple((k.decode().lower(), v.decode()) for k, v in request.headers),
            body=bytes(self.body),
        )
        self.server.requests.append(received)
        body = json.dumps({"index": len(self.server.requests) - 1}).encode()
        response = h11.Response(
            status_code=200,
            headers=[("Content-Length", str(len(body))), ("Content-Type", "application/json")],
        )
        out = self.h11.send(response) + self.h11.send(h11.Data(data=body))
        out += self.h11.send(h11.EndOfMessage())
        self.transport.write(out)
        if self.h11.our_state is h11.MUST_CLOSE:
            self.transport.close()
            return
        self.h11.start_next_cycle()


class RecordingUpstream:
    """Start with `await start()`, stop with `await close()`."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.errors: list[str] = []
        self.raw: dict[int, bytearray] = {}
        self.connections = 0
        self.transports: set[asyncio.Transport] = set()
        self.closed: set[int] = set()  # connections the proxy (or h11) closed
        self.port = 0
        self._server: asyncio.Server | None = None

    def _factory(self) -> _Conn:
        self.connections += 1
        return _Conn(self, self.connections)

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for transport in list(self.transports):
            transport.abort()
        await self._server.wait_closed()
