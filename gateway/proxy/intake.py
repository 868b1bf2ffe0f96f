"""The input side of a client connection: parser events in order, and the raw bytes after
an upgrade request's head.

Parser events for a request that cannot be handled yet (the upstream connection is being
opened, or a pipelined request arrives while the previous response is still streaming)
are queued and reading from the client is paused, so at most one read's worth is ever held.

Framing. The parser frames every request, except one that asks for a protocol switch:
httptools skips such a body and reports the request complete after its head. From that
head on, the parser is fed nothing: the body is read as the head declares it
(`body.BodyReader`) and later bytes are held until the upstream answers, so that no byte
is ever parsed or forwarded under a framing other than the one the head announced. A 101
turns the connection into a tunnel (`start_tunnel`); any other answer hands the held bytes
to the parser as the next request (`_leave_raw`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, cast

from httptools import HttpParserError

from gateway.proxy.body import MalformedBody, RawInput
from gateway.proxy.state import T_TUNNEL

if TYPE_CHECKING:
    from gateway.proxy.exchange import Exchange
    from gateway.proxy.tunnel import Tunnel

# Parser events (and errors) in the queue.
HEAD, BODY, END, BODY_ERROR, REJECT = range(5)
# Why reading from the client is paused (bits).
PAUSE_QUEUE, PAUSE_UPSTREAM, PAUSE_BROKEN, PAUSE_RAW = 1, 2, 4, 8


class Intake(asyncio.Protocol):
    """The queue of parser events and the raw-input state; `ProxyProtocol` adds the rest."""

    __slots__ = (
        "_closing",
        "_exchange",
        "_in_body",
        "_queue",
        "_queue_running",
        "_raw",
        "_read_pause",
        "blocked",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._exchange: Exchange | None = None
        self._queue: deque[tuple[int, object]] = deque()
        self._queue_running = self.blocked = self._closing = self._in_body = False
        self._raw: RawInput | None = None
        self._read_pause = 0

    # -- what the protocol provides --------------------------------------------------------

    def _dispatch(self, kind: int, item: object) -> None:
        raise NotImplementedError

    def _parse_error(self, error: HttpParserError) -> None:
        raise NotImplementedError

    def set_timer(self, kind: int) -> None:
        """Arm the connection's timer for a phase."""
        raise NotImplementedError

    def touch(self) -> None:
        """Data moved: push the inactivity deadline back."""
        raise NotImplementedError

    # -- queue and raw input -----------------------------------------------------------------

    def _raw_received(self, raw: RawInput, data: bytes) -> None:
        """Bytes after an upgrade request's head: its body, then the tunnel or held bytes."""
        tunnel = raw.tunnel
        if tunnel is not None:
            tunnel.from_client(data)
            return
        self.touch()
        body = raw.body
        if body is not None:
            try:
                pieces, data = body.feed(data)
            except MalformedBody as e:
                self._parse_error(HttpParserError(str(e)))
                return
            for piece in pieces:
                self._push(BODY, piece)
            if body.done:
                raw.body = None
                self._end_raw_message(raw, data)
        elif data:
            self._hold(raw, data)
        exchange = self._exchange
        if exchange is not None:
            exchange.flush_upstream()

    def _end_raw_message(self, raw: RawInput, rest: bytes) -> None:
        """The upgrade request is complete: hold what follows it, then deliver its end.

        In this order: the end can complete the exchange at once (a refusal), and the
        held bytes must all be there when it does (`_leave_raw` hands them on).
        """
        self._in_body = False
        if rest:
            self._hold(raw, rest)
        self._push(END, None)

    def _hold(self, raw: RawInput, data: bytes) -> None:
        # Nothing may follow an upgrade request before its answer decides what the bytes
        # are: hold them (one read's worth; reading stays paused meanwhile).
        raw.held += data
        self._pause(PAUSE_RAW)

    def _push(self, kind: int, item: object) -> None:
        if self._closing:
            return
        if self.blocked or self._queue:
            self._queue.append((kind, item))
            self._pause(PAUSE_QUEUE)
            return
        self._dispatch(kind, item)

    def block(self) -> None:
        """Hold further parser events (queued) until `unblock`."""
        self.blocked = True

    def unblock(self) -> None:
        """Deliver queued events again, until something blocks anew."""
        self.blocked = False
        if self._queue_running:
            return  # the running loop below picks up where it is
        self._queue_running = True
        try:
            queue = self._queue
            while queue and not self.blocked and not self._closing:
                kind, item = queue.popleft()
                self._dispatch(kind, item)
        finally:
            self._queue_running = False
        if not self._queue:
            self._resume(PAUSE_QUEUE)
        exchange = self._exchange
        if exchange is not None:
            exchange.flush_upstream()

    def start_tunnel(self, tunnel: Tunnel) -> None:
        """The upstream switched protocols: client bytes now go to `tunnel`, unparsed."""
        raw = self._raw
        assert raw is not None  # only a request the parser saw as an upgrade gets here
        raw.tunnel = tunnel
        self.set_timer(T_TUNNEL)
        held, raw.held = raw.held, bytearray()
        self._resume(PAUSE_RAW)
        if held:
            tunnel.from_client(bytes(held))

    def _leave_raw(self, exchange: Exchange) -> bytes:
        """After a declined upgrade: the held bytes, to be parsed as the next request."""
        raw = self._raw
        if raw is None or raw.exchange is not exchange:
            return b""
        self._raw = None
        self._resume(PAUSE_RAW)
        return bytes(raw.held)

    @property
    def reading_paused(self) -> bool:
        """True while reading from the client is paused (back-pressure or queued input)."""
        return self._read_pause != 0

    def buffered_bytes(self) -> int:
        """Bytes this connection holds in memory: write buffers and queued body bytes.

        For tests and metrics; it stays bounded thanks to back-pressure.
        """
        total = sum(len(cast(bytes, item)) for kind, item in self._queue if kind == BODY)
        if self._raw is not None:
            total += len(self._raw.held)
        if self.transport is not None:
            total += self.transport.get_write_buffer_size()
        exchange = self._exchange
        if exchange is not None and exchange.conn is not None:
            total += exchange.conn.write_buffer_size()
        return total

    def _pause(self, reason: int) -> None:
        if not self._read_pause and self.transport is not None and not self._closing:
            self.transport.pause_reading()
        self._read_pause |= reason

    def _resume(self, reason: int) -> None:
        if self._read_pause & reason:
            self._read_pause &= ~reason
            if not self._read_pause and self.transport is not None and not self._closing:
                self.transport.resume_reading()
