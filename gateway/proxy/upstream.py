"""Upstream side of the data path: one protocol per upstream connection, and the pool.

An `UpstreamConnection` parses responses with httptools and hands every event to the
exchange bound to it (`ResponseSink`). Between exchanges it sits in the `UpstreamPool`,
which keeps idle keep-alive connections per upstream address, newest first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol, cast

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpResponseParser,
)

from gateway.proxy.tunnel import TunnelStats

if TYPE_CHECKING:
    from gateway.proxy.settings import Upstream
    from gateway.proxy.tunnel import Tunnel

logger = logging.getLogger(__name__)

ConnectCallback = Callable[["UpstreamConnection | None", "BaseException | None"], None]


class ResponseSink(Protocol):
    """What an upstream connection reports to the exchange using it."""

    def response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> bool:
        """A response head; returns True if the body is delimited by connection close."""

    def switch_protocols(
        self, reason: bytes, headers: list[tuple[bytes, bytes]], upgrade: bool
    ) -> None:
        """A 101 head (`upgrade`: it carries Upgrade and Connection: upgrade); the sink
        either calls `start_tunnel` or fails the exchange."""

    def response_body(self, data: bytes) -> None:
        """A piece of the (de-chunked) response body."""

    def response_end(self) -> None:
        """The response is complete."""

    def upstream_failed(self, error: str) -> None:
        """The connection broke or sent something that is not HTTP."""

    def upstream_paused(self, paused: bool) -> None:
        """The upstream's write buffer crossed its high (True) or low (False) water mark."""

    def flush_client(self) -> None:
        """End of one read from the upstream: write what was gathered for the client."""


class _StopAfterHead(Exception):
    """Raised inside the parser to stop after a HEAD response's head."""


class _RefusedSwitch(Exception):
    """Raised inside the parser after a 101 the exchange refused (it failed already)."""


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to an upstream server."""

    __slots__ = (
        "_head_request",
        "_headers",
        "_in_head",
        "_max_header_bytes",
        "_parser",
        "_pool",
        "_raw_head",
        "_reading_paused",
        "_reason",
        "_sink",
        "_stopped",
        "_tunnel",
        "_until_close",
        "closed",
        "idle_since",
        "key",
        "transport",
        "tunneled",
    )

    def __init__(self, pool: UpstreamPool, key: str) -> None:
        self._pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self._parser = HttpResponseParser(self)
        self._sink: ResponseSink | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._in_head = False
        self._raw_head = 0
        self._max_header_bytes = 65536
        self._head_request = False
        self._stopped = False
        self._until_close = False
        self._reading_paused = False
        self._tunnel: Tunnel | None = None
        self.closed = self.tunneled = False
        self.idle_since = 0.0

    # -- used by the exchange and the pool ---------------------------------------------

    def bind(self, sink: ResponseSink, *, head_request: bool, max_header_bytes: int) -> None:
        """Attach the exchange whose request is about to be written on this connection."""
        self._sink = sink
        self._head_request = head_request
        self._max_header_bytes = max_header_bytes

    def unbind(self) -> None:
        """Detach the exchange; reading resumes so that a close by the upstream is noticed."""
        self._sink = None
        self._tunnel = None
        self.resume_reading()

    def start_tunnel(self, tunnel: Tunnel) -> None:
        """From now on every byte read goes to `tunnel`; the connection is never pooled."""
        self._tunnel = tunnel
        self.tunneled = True

    def write(self, data: bytes) -> None:
        """Send bytes to the upstream."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def write_eof(self) -> None:
        """Half-close: send no more (a tunnel whose client half-closed)."""
        transport = self.transport
        if transport is not None and not self.closed and transport.can_write_eof():
            transport.write_eof()

    def pause_reading(self) -> None:
        """Stop reading responses (the client cannot take more yet)."""
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read responses again."""
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def write_buffer_size(self) -> int:
        """Bytes accepted by `write` that the kernel has not taken yet."""
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    def close(self) -> None:
        """Close the connection (it is never reused afterwards)."""
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        tunnel, self._tunnel = self._tunnel, None
        sink, self._sink = self._sink, None
        if tunnel is not None:
            tunnel.upstream_closed(f"upstream connection lost: {exc}" if exc else None)
            return
        if sink is None:
            return
        if self._until_close and not self._in_head:
            sink.response_end()  # RFC 9112 section 6.3 rule 8: close ends this body
        else:
            sink.upstream_failed(f"upstream closed the connection{f': {exc}' if exc else ''}")

    def data_received(self, data: bytes) -> None:
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel.from_upstream(data)
            return
        sink = self._sink
        if sink is None:
            self.close()  # an idle upstream has nothing to say; its connection is unusable
            return
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as e:
            # After a 101 the exchange accepted: the rest is the new protocol's.
            tunnel = self._tunnel
            if tunnel is not None and e.args[0] < len(data):
                tunnel.from_upstream(data[e.args[0] :])
            return
        except HttpParserError as e:
            if self._stopped:
                self._stopped = False
                self._parser = HttpResponseParser(self)
                sink.response_end()
            else:
                self._parse_failed(sink, e)
                return
        if self._in_head:
            self._raw_head += len(data)
            if self._raw_head > self._max_header_bytes:
                self.close()
                sink.upstream_failed("upstream response head too large")
                return
        sink.flush_client()

    def _parse_failed(self, sink: ResponseSink, error: HttpParserError) -> None:
        self.close()
        if self._sink is not sink:
            return  # bytes after a complete response: the exchange is already done
        if isinstance(error, HttpParserCallbackError) and error.__context__ is not None:
            logger.error("proxy: response handling failed", exc_info=error.__context__)
        sink.upstream_failed(f"invalid response from upstream: {error}")

    def pause_writing(self) -> None:
        if self._sink is not None:
            self._sink.upstream_paused(True)

    def resume_writing(self) -> None:
        if self._sink is not None:
            self._sink.upstream_paused(False)

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._sink is None:
            raise HttpParserError("response without a request")
        self._in_head = True
        self._raw_head = 0
        self._headers = []
        self._reason = b""
        self._until_close = False

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # trailer fields of a chunked body are dropped
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        sink = self._sink
        if sink is None:
            return
        parser = self._parser
        status = parser.get_status_code()
        if status == 101:
            # RFC 9110 section 15.2.2: the connection switches after this head's empty line.
            sink.switch_protocols(self._reason, self._headers, parser.should_upgrade())
            if self._tunnel is None:
                raise _RefusedSwitch
            return
        until_close = sink.response_head(
            status, self._reason, self._headers, parser.should_keep_alive()
        )
        if status >= 200 and self._head_request:
            # llhttp cannot be told that this answers HEAD (httptools hides the skip-body
            # return value): stop here and start a fresh parser for the next response.
            self._stopped = True
            raise _StopAfterHead
        self._until_close = until_close

    def on_body(self, body: bytes) -> None:
        if self._sink is not None:
            self._sink.response_body(body)

    def on_message_complete(self) -> None:
        self._until_close = False
        if self._sink is not None and self._tunnel is None:
            self._sink.response_end()


class UpstreamPool:
    """Idle keep-alive upstream connections, shared by all connections of one listener.

    Idle connections are kept per `host:port`, at most `max_idle_per_upstream` each, and
    are not reused after `idle_timeout_s` (an upstream closes idle connections on its own
    schedule; reusing one it is about to close would fail the request).
    """

    def __init__(
        self,
        *,
        max_idle_per_upstream: int = 64,
        idle_timeout_s: float = 15.0,
        tunnels: TunnelStats | None = None,
    ) -> None:
        self.tunnels = tunnels or TunnelStats()
        self._idle: dict[str, list[UpstreamConnection]] = {}
        self._max_idle = max_idle_per_upstream
        self._idle_timeout_s = idle_timeout_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def idle_count(self) -> int:
        """Number of idle pooled connections (for metrics and tests)."""
        return sum(len(conns) for conns in self._idle.values())

    def take(self, upstream: Upstream) -> UpstreamConnection | None:
        """An idle connection to `upstream`, most recently used first, or None."""
        conns = self._idle.get(upstream.authority)
        if not conns:
            return None
        oldest_ok = time.monotonic() - self._idle_timeout_s
        while conns:
            conn = conns.pop()
            if conn.idle_since >= oldest_ok and not conn.closed:
                return conn
            conn.close()
        return None

    def connect(
        self, upstream: Upstream, timeout_s: float, done: ConnectCallback
    ) -> asyncio.Task[None]:
        """Open a new connection; `done(conn, None)` or `done(None, error)` is called once.

        Cancelling the returned task abandons the attempt without calling `done`.
        """
        task = asyncio.get_running_loop().create_task(self._open(upstream, timeout_s, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _open(self, upstream: Upstream, timeout_s: float, done: ConnectCallback) -> None:
        loop = asyncio.get_running_loop()
        factory = partial(UpstreamConnection, self, upstream.authority)
        try:
            async with asyncio.timeout(timeout_s):
                _, conn = await loop.create_connection(factory, upstream.host, upstream.port)
        except asyncio.CancelledError:
            if self._closed:  # shutting down: the waiting exchange still needs an answer
                _call(done, None, ConnectionAbortedError("upstream pool closed"))
            raise
        except TimeoutError:
            _call(done, None, TimeoutError(f"connect timed out after {timeout_s:g} s"))
            return
        except OSError as e:
            _call(done, None, e)
            return
        if self._closed:
            conn.close()
            _call(done, None, ConnectionAbortedError("upstream pool closed"))
            return
        _call(done, conn, None)

    def release(self, conn: UpstreamConnection, *, reusable: bool) -> None:
        """Return a connection after an exchange; it is closed unless `reusable`."""
        conn.unbind()
        if (
            not reusable
            or self._closed
            or conn.closed
            or conn.tunneled  # spoke another protocol: never HTTP again
            or conn.write_buffer_size()
        ):
            conn.close()
            return
        conns = self._idle.setdefault(conn.key, [])
        if len(conns) >= self._max_idle:
            conns.pop(0).close()
        conn.idle_since = time.monotonic()
        conns.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """Drop a closed connection from the idle lists."""
        conns = self._idle.get(conn.key)
        if conns and conn in conns:
            conns.remove(conn)

    def close(self) -> None:
        """Close idle connections, abandon pending connects; later releases close too."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


def _call(
    done: ConnectCallback, conn: UpstreamConnection | None, exc: BaseException | None
) -> None:
    try:
        done(conn, exc)
    except Exception:
        logger.exception("proxy: upstream connect callback failed")
        if conn is not None:
            conn.close()
