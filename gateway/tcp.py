"""The ``tcp`` listener's protocol: TLS terminated, bytes piped to an upstream host:port.

Embedded terminals speak their own protocols over TLS; the gateway does not parse them. Each
direction applies back-pressure: when one side's write buffer is full, the other side stops
reading until it drains, so a slow peer never makes the gateway buffer without bound.

Each direction also ends on its own (half-close), as nginx and haproxy pipe it: a client's
end of input (``close_notify``, or a TCP FIN without it, which embedded terminals often send)
becomes a FIN to the upstream, and the upstream's reply still reaches the client; an
upstream's FIN becomes the client's ``close_notify``, and the client's remaining bytes still
reach the upstream. The connection closes once both directions have ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class PipeRecord:
    """What happened on one piped connection, for the access log and metrics."""

    bytes_in: int
    bytes_out: int
    duration_s: float
    error: str | None


class _UpstreamSide(asyncio.Protocol):
    def __init__(self, pipe: TcpPipe) -> None:
        self._pipe = pipe

    def data_received(self, data: bytes) -> None:
        self._pipe.from_upstream(data)

    def eof_received(self) -> bool:
        return self._pipe.upstream_eof()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._pipe.close()

    def pause_writing(self) -> None:
        self._pipe.pause_client()

    def resume_writing(self) -> None:
        self._pipe.resume_client()


class TcpPipe(asyncio.Protocol):
    """Client side of one piped connection (its transport is the TLS app transport)."""

    def __init__(self, *, host: str, port: int, connect_timeout_s: float,
                 on_close: Callable[[PipeRecord], None]) -> None:
        self._host, self._port = host, port
        self._connect_timeout_s = connect_timeout_s
        self._on_close = on_close
        self._client: asyncio.Transport | None = None
        self._upstream: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self._client_eof = self._upstream_eof = False
        self._closed = False
        self._bytes_in = self._bytes_out = 0
        self._started = time.monotonic()
        self._error: str | None = None
        self._connecting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._client = transport
        self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: _UpstreamSide(self), self._host, self._port),
                self._connect_timeout_s)
        except (OSError, TimeoutError) as e:
            self._error = f"upstream {self._host}:{self._port} unreachable: {e or 'timeout'}"
            self.close()
            return
        if self._closed:
            transport.close()
            return
        self._upstream = transport
        for chunk in self._pending:
            transport.write(chunk)
        self._pending.clear()
        if self._client_eof and transport.can_write_eof():
            transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self._bytes_in += len(data)
        if self._upstream is None:
            self._pending.append(data)
            # Not connected yet: stop reading so pending data stays bounded.
            if self._client is not None:
                self._client.pause_reading()
                self._resume_after_connect()
        else:
            self._upstream.write(data)

    def _resume_after_connect(self) -> None:
        task = self._connecting
        if task is not None and not task.done():
            task.add_done_callback(lambda _t: self.resume_client())

    def from_upstream(self, data: bytes) -> None:
        """Bytes from the upstream, to the client."""
        self._bytes_out += len(data)
        if self._client is not None:
            self._client.write(data)

    def eof_received(self) -> bool:
        """The client's input ended: pass the half-close on, keep sending it the reply."""
        self._client_eof = True
        upstream = self._upstream
        if upstream is None:
            return True  # keep open until connected, then half-close
        if self._upstream_eof:
            self.close()  # both directions have ended
            return False
        if not upstream.is_closing() and upstream.can_write_eof():
            upstream.write_eof()  # half-close: the terminal may still get a reply
            return True
        return False

    def upstream_eof(self) -> bool:
        """The upstream's output ended: tell the client (``close_notify``), keep reading it.
        Returns whether the upstream transport stays open (for the client's bytes)."""
        self._upstream_eof = True
        client = self._client
        if self._client_eof or client is None or client.is_closing() \
                or not client.can_write_eof():
            self.close()
            return False
        client.write_eof()
        return True

    def pause_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.pause_reading()

    def resume_writing(self) -> None:
        if self._upstream is not None and not self._closed:
            self._upstream.resume_reading()

    def pause_client(self) -> None:
        """The upstream's buffer is full: stop reading the client."""
        if self._client is not None and not self._closed:
            self._client.pause_reading()

    def resume_client(self) -> None:
        """The upstream drained: read the client again."""
        if self._client is not None and not self._closed:
            with contextlib.suppress(RuntimeError):
                self._client.resume_reading()

    def connection_lost(self, exc: BaseException | None) -> None:
        if exc is not None and self._error is None:
            self._error = str(exc) or type(exc).__name__
        self.close()

    def close(self) -> None:
        """Close both sides once and report the connection."""
        if self._closed:
            return
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._upstream is not None:
            self._upstream.close()
        if self._client is not None:
            self._client.close()
        self._on_close(PipeRecord(bytes_in=self._bytes_in, bytes_out=self._bytes_out,
                                  duration_s=time.monotonic() - self._started,
                                  error=self._error))
