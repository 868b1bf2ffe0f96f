"""The admin listener's accept loop: TLS connections to the API, a plain answer to the rest.

A plain-HTTP request on a TLS port otherwise ends in a failed handshake that the client
reports as an opaque "connection reset" or "wrong version number". Every TLS connection
starts with a handshake record (content type 22, RFC 8446 section 5.1), so one peeked byte
tells the two apart before any TLS work: a TLS client goes on to the TLS stack with the
byte still unread; anything else gets ``HTTP/1.0 400`` naming the ``https://`` URL, and a
(rate-limited) log line.

Hostile input is bounded: a client that sends nothing is dropped after
``first_byte_timeout_s``, at most ``max_pending`` connections wait for their first byte, and
a plain request is read at most ``MAX_PLAIN_REQUEST`` bytes before the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable

log = logging.getLogger("certgate.admin")

TLS_HANDSHAKE = 0x16
"""The first byte of every TLS connection: a handshake record (RFC 8446 section 5.1)."""
MAX_PLAIN_REQUEST = 8192
LOG_EVERY_S = 10.0


class HttpsOnly:
    """Accept on ``sock``; hand TLS connections to ``protocol_factory`` over ``ssl_context``."""

    def __init__(self, sock: socket.socket, protocol_factory: Callable[[], asyncio.Protocol],
                 ssl_context: ssl.SSLContext, *, url: str, first_byte_timeout_s: float = 10.0,
                 handshake_timeout_s: float = 10.0, max_pending: int = 256) -> None:
        self.url = url
        self._sock = sock
        self._factory = protocol_factory
        self._ctx = ssl_context
        self._first_byte_timeout_s = first_byte_timeout_s
        self._handshake_timeout_s = handshake_timeout_s
        self._max_pending = max_pending
        self._pending: set[asyncio.Task[None]] = set()
        self._accepting: asyncio.Task[None] | None = None
        self._last_log = -LOG_EVERY_S
        self._unlogged = 0
        self.plain_requests = 0

    def start(self) -> None:
        """Start accepting (the socket is already bound and listening)."""
        self._sock.setblocking(False)
        self._accepting = asyncio.create_task(self._accept_loop(), name="certgate-admin-accept")

    async def close(self) -> None:
        """Stop accepting and drop the connections still waiting for their first byte."""
        tasks = [t for t in (self._accepting, *self._pending) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._sock.close()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _peer = await loop.sock_accept(self._sock)
            except OSError as e:  # EMFILE and the like: let connections close, try again
                log.error("admin listener cannot accept (%s); retrying in 1 s", e.strerror)
                await asyncio.sleep(1.0)
                continue
            if len(self._pending) >= self._max_pending:
                conn.close()  # too many silent clients already: refuse before any work
                continue
            conn.setblocking(False)
            task = asyncio.create_task(self._route(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _route(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            first = await asyncio.wait_for(_peek(loop, conn), self._first_byte_timeout_s)
        except (TimeoutError, OSError):
            conn.close()
            return
        except asyncio.CancelledError:
            conn.close()
            raise
        if not first:
            conn.close()  # closed before saying anything
        elif first[0] == TLS_HANDSHAKE:
            try:
                await loop.connect_accepted_socket(
                    self._factory, conn, ssl=self._ctx,
                    ssl_handshake_timeout=self._handshake_timeout_s)
            except (OSError, ssl.SSLError, TimeoutError):
                conn.close()  # a failed handshake: the client has its alert
        else:
            await self._answer_plain(loop, conn)

    async def _answer_plain(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        self.plain_requests += 1
        peer = _peer(conn)
        try:
            # Read the request head first: closing with it unread would reset the
            # connection, and the client could lose the answer.
            await asyncio.wait_for(_read_head(loop, conn), self._first_byte_timeout_s)
            body = (f"this port speaks HTTPS: use {self.url} (the admin API takes TLS only; "
                    "trust the CA that `certgate ca show` prints)\n").encode()
            await asyncio.wait_for(loop.sock_sendall(conn, (
                "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body),
                self._first_byte_timeout_s)
            conn.shutdown(socket.SHUT_WR)
        except (TimeoutError, OSError):
            pass
        finally:
            conn.close()
        self._log_plain(peer)

    def _log_plain(self, peer: str) -> None:
        now = time.monotonic()
        if now - self._last_log < LOG_EVERY_S:
            self._unlogged += 1  # a client looping on the wrong scheme must not flood the log
            return
        more = f" ({self._unlogged} more since the last line)" if self._unlogged else ""
        log.warning("admin API: a plain-HTTP (not TLS) connection from %s was answered 400; "
                    "clients must use %s%s", peer, self.url, more)
        self._last_log, self._unlogged = now, 0


def _peer(conn: socket.socket) -> str:
    try:
        host, port = conn.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


async def _readable(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(conn.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """The first byte, left in the socket for the TLS stack to read."""
    while True:
        await _readable(loop, conn)
        try:
            return conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:  # a spurious wake-up: wait again
            continue


async def _read_head(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
    """Read until the end of an HTTP request head, EOF, or ``MAX_PLAIN_REQUEST`` bytes."""
    seen = b""
    while b"\r\n\r\n" not in seen and b"\n\n" not in seen and len(seen) < MAX_PLAIN_REQUEST:
        chunk = await loop.sock_recv(conn, MAX_PLAIN_REQUEST - len(seen))
        if not chunk:
            return
        seen += chunk
