"""Client side of the data path: the asyncio protocol a TLS listener runs per connection.

`ProxyProtocol` parses requests with httptools and drives one `Exchange` at a time; its
input side (the event queue, the raw bytes after an upgrade head) is `intake.Intake`.

Back-pressure: when the upstream's write buffer passes its high-water mark, reading from
the client pauses until it drains; when the client's write buffer does, reading from the
upstream pauses (asyncio's pause_writing/resume_writing callbacks drive both).

One timer per connection covers every phase: idle keep-alive, header read, waiting for
the upstream's response, inactivity while streaming, and an idle tunnel (`set_timer`).

A malformed request is answered in its turn: its 400 (and its access-log line) is queued
behind the responses to the requests before it, then the connection closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from gateway.proxy import http
from gateway.proxy.body import BodyReader, RawInput
from gateway.proxy.context import ConnectionContext, HostCache
from gateway.proxy.exchange import Exchange
from gateway.proxy.intake import (
    BODY,
    BODY_ERROR,
    END,
    HEAD,
    PAUSE_BROKEN,
    PAUSE_UPSTREAM,
    REJECT,
    Intake,
)
from gateway.proxy.record import RequestRecord
from gateway.proxy.settings import ProxySettings
from gateway.proxy.state import T_HEAD, T_IDLE, T_RESPONSE, T_STREAM, T_TUNNEL
from gateway.proxy.timer import Deadline
from gateway.proxy.upstream import UpstreamPool

__all__ = ["ConnectionContext", "ProxyProtocol"]

# Stands in until a connection's first bytes (see _start): no exchange exists before.
_NO_MEMO = http.ScanMemo(http.scan_request_headers)

logger = logging.getLogger(__name__)


class ProxyProtocol(Intake):
    """HTTP/1.1 reverse proxy for one client connection (plain or TLS transport).

    `context_factory(transport)` is called once the connection is made; `on_request(record)`
    after every request. `drain()` stops taking requests and closes the connection once the
    in-flight one is answered.
    """

    __slots__ = (
        "_broken",
        "_context_factory",
        "_delays",
        "_hdr_bytes",
        "_headers",
        "_in_head",
        "_on_request",
        "_parser",
        "_raw_head",
        "_reject",
        "_timer",
        "_timer_kind",
        "_url",
        "context",
        "draining",
        "hosts",
        "loop",
        "pool",
        "request_scan",
        "response_scan",
        "settings",
        "write_paused",
    )

    def __init__(
        self,
        settings: ProxySettings,
        pool: UpstreamPool,
        context_factory: Callable[[asyncio.Transport], ConnectionContext],
        on_request: Callable[[RequestRecord], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.pool = pool
        self._context_factory = context_factory
        self._on_request = on_request
        # Passed by the listener: get_running_loop() costs a getpid() system call.
        self.loop = loop or asyncio.get_running_loop()
        self.context: ConnectionContext | None = None
        # Built on the first bytes (see _start): a connection that never sends a request
        # (probes, health checks, TLS pings) costs no HTTP setup.
        self._parser: HttpRequestParser | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_head = self._broken = False
        self._hdr_bytes = self._raw_head = self._reject = 0
        self.write_paused = self.draining = False
        self.hosts: HostCache | None = None
        # Built with the parser (see _start); used by the exchange.
        self.request_scan = self.response_scan = _NO_MEMO
        self._timer = Deadline(self.loop, self._on_timer)
        self._timer_kind = T_IDLE
        s = settings
        # Indexed by timer kind: T_IDLE, T_HEAD, T_RESPONSE, T_STREAM, T_TUNNEL.
        self._delays: tuple[float, ...] = (
            s.idle_timeout_s,
            s.header_timeout_s,
            s.upstream_response_timeout_s,
            s.idle_timeout_s,
            s.tunnel_idle_timeout_s,
        )

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        # The first request must arrive within the header timeout (slow-loris defence).
        self.set_timer(T_HEAD)

    def _start(self, transport: asyncio.Transport) -> HttpRequestParser | None:
        """The connection's context and parser, built when its first bytes arrive."""
        try:
            context = self._context_factory(transport)
        except Exception:
            logger.exception("proxy: connection context could not be built")
            self._closing = True
            transport.abort()
            return None
        self.context = context
        scheme = "https" if transport.get_extra_info("sslcontext") is not None else "http"
        self.hosts = HostCache(context, scheme)
        self.request_scan = http.ScanMemo(http.scan_request_headers)
        self.response_scan = http.ScanMemo(http.scan_response_headers)
        self._parser = HttpRequestParser(self)
        return self._parser

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._timer.close()
        self._queue.clear()
        self._parser = None  # the parser references this protocol: no cycle left behind
        exchange, self._exchange = self._exchange, None
        if exchange is not None and not exchange.finished:
            exchange.client_lost()
            self._emit(exchange)

    def eof_received(self) -> bool | None:
        raw = self._raw
        if raw is not None and raw.tunnel is not None:
            # A half-closed tunnel: pass the half-close on and keep relaying the other way
            # (the transport keeps writing after a FIN or a close_notify).
            raw.tunnel.client_eof()
            return True
        # A half-closed client (FIN, or close_notify: the TLS transport keeps writing after
        # either) still gets its in-flight response, then the connection closes. A request
        # whose body was still coming can never complete: close.
        if self._exchange is not None and self.transport is not None and not self._in_body:
            self.draining = True
            return True
        return None

    def data_received(self, data: bytes) -> None:
        if self._closing or self._broken:
            return
        raw = self._raw
        if raw is not None:
            self._raw_received(raw, data)
            return
        parser = self._parser
        if parser is None:
            assert self.transport is not None
            parser = self._start(self.transport)
            if parser is None:
                return
        if self._timer_kind == T_IDLE:
            self.set_timer(T_HEAD)  # the header clock starts with a request's first byte
        else:
            self.touch()
        try:
            parser.feed_data(data)
        except HttpParserUpgrade as e:
            # The head just parsed asked for a switch (on_headers_complete set _raw up):
            # what follows it is its body, then the new protocol or the next request.
            raw = self._raw
            if raw is not None:
                rest = data[e.args[0] :]
                if raw.body is None:
                    self._end_raw_message(raw, rest)
                elif rest:
                    self._raw_received(raw, rest)
        except HttpParserError as e:
            self._parse_error(e)
            return
        if self._in_head:
            self._raw_head += len(data)
            if self._raw_head > self.settings.max_header_bytes:
                self._reject = 431  # RFC 6585 section 5
                self._parse_error(HttpParserError("request head too large"))
                return
        exchange = self._exchange
        if exchange is not None:
            exchange.flush_upstream()

    def pause_writing(self) -> None:
        self.write_paused = True
        exchange = self._exchange
        if exchange is not None and exchange.conn is not None:
            exchange.conn.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        exchange = self._exchange
        if exchange is not None and exchange.conn is not None:
            exchange.conn.resume_reading()

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._hdr_bytes = self._raw_head = 0
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._hdr_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a chunked body's trailer field: dropped, the head's list stays as it was
        self._headers.append((name, value))
        self._hdr_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._hdr_bytes > self.settings.max_header_bytes:
            self._reject = 431  # RFC 6585 section 5
            raise HttpParserError("request head too large")
        parser = self._parser
        assert parser is not None  # this callback comes from the parser itself
        exchange = Exchange(
            self,
            parser.get_method(),
            self._url,
            self._headers,
            keep_alive=parser.should_keep_alive(),
            http10=parser.get_http_version() == "1.0",
        )
        self._in_body = True
        if parser.should_upgrade():
            self._raw = RawInput(exchange, self._upgrade_body())
            exchange.switch_asked = True
        self._push(HEAD, exchange)

    def _upgrade_body(self) -> BodyReader | None:
        """The reader for the body the parser will skip (RFC 9112 section 6.3), if any.

        The parser has refused Content-Length beside Transfer-Encoding, duplicates and a
        final coding other than chunked before this head could complete.
        """
        scan = self.request_scan(self._headers)
        if scan.transfer_encoding is not None:
            return BodyReader(None)
        length = int(scan.content_length or b"0")
        return BodyReader(length) if length else None

    def on_body(self, body: bytes) -> None:
        self._push(BODY, body)

    def on_message_complete(self) -> None:
        if self._raw is not None:
            # An upgrade request: the parser skipped its body (if any). Its end comes from
            # the body reader, or from the upgrade pause once what follows is held.
            return
        self._in_body = False
        self._push(END, None)

    # -- event queue ----------------------------------------------------------------------

    def _dispatch(self, kind: int, item: object) -> None:
        if kind == HEAD:
            if self.draining:
                self._close()
                return
            new = self._exchange = cast(Exchange, item)
            new.start()
            return
        exchange = self._exchange
        if kind == REJECT or exchange is None:
            status, error = cast(tuple[int, str], item) if kind == REJECT else (400, str(item))
            self._answer_and_close(status, error)
        elif kind == BODY:
            exchange.request_body(cast(bytes, item))
        elif kind == END:
            exchange.request_end()
        else:  # BODY_ERROR
            exchange.reject_body(cast(str, item))

    # -- used by the exchange -----------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send bytes to the client."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def set_timer(self, kind: int) -> None:
        """Arm the connection's timer for a phase (T_IDLE, T_HEAD, T_RESPONSE, T_STREAM)."""
        self._timer_kind = kind
        self._timer.set(self._delays[kind])

    def touch(self) -> None:
        """Data moved: push the streaming (or tunnel) inactivity deadline back."""
        kind = self._timer_kind
        if kind >= T_STREAM:
            self._timer.set(self._delays[kind])

    def upstream_full(self, paused: bool) -> None:
        """The upstream's write buffer is above (True) or back below (False) its limit."""
        if paused:
            self._pause(PAUSE_UPSTREAM)
        else:
            self._resume(PAUSE_UPSTREAM)

    def upstream_detached(self) -> None:
        """The exchange let go of its upstream connection: its back-pressure ends."""
        self._resume(PAUSE_UPSTREAM)

    def exchange_done(self, exchange: Exchange, *, abort: bool) -> None:
        """An exchange finished: log it, then close or go on with the next request."""
        if self._exchange is exchange:
            self._exchange = None
        self._emit(exchange)
        self._resume(PAUSE_UPSTREAM)
        if abort:
            self._close(abort=True)
        elif exchange.close_after or self.draining:
            self._close()
        else:
            held = self._leave_raw(exchange)
            self.blocked = False
            self.unblock()
            if self._exchange is None and not self._closing:
                self.set_timer(T_HEAD if self._in_head else T_IDLE)
            if held:
                self.data_received(held)

    # -- lifecycle --------------------------------------------------------------------

    def drain(self) -> None:
        """Take no new request; close after the in-flight one (graceful shutdown)."""
        self.draining = True
        if self._exchange is None and not self._closing and self.transport is not None:
            self._close()

    def _on_timer(self) -> None:
        if self._closing:
            return
        kind = self._timer_kind
        exchange = self._exchange
        if exchange is not None and kind in (T_RESPONSE, T_STREAM, T_TUNNEL):
            exchange.on_timeout(kind)
        elif kind == T_HEAD and self._in_head:
            self._answer_and_close(408, "request head timeout")  # RFC 9110 s. 15.5.9
        else:
            self._close()  # idle keep-alive connection: close without a word

    def _parse_error(self, error: HttpParserError) -> None:
        """The input is broken where the parser is: nothing after it can be framed.

        Read no more; the error is answered in its turn, after the requests before it:
        a broken body fails its own request (400 if no response started), a broken head
        gets its own 400. Either way the connection then closes.
        """
        status, self._reject = self._reject or 400, 0
        self._broken = True
        self._pause(PAUSE_BROKEN)
        if self._in_body:
            self._push(BODY_ERROR, f"invalid request body: {error}")
        else:
            self._push(REJECT, (status, f"invalid request head: {error}"))

    def _answer_and_close(self, status: int, error: str) -> None:
        """Refuse a request whose head never completed; it is logged without method/path."""
        self.write(http.local_response(status, close=True))
        self._close()
        self._call_hook(RequestRecord.rejected(status, error))

    def _close(self, *, abort: bool = False) -> None:
        self._closing = True
        self._timer.cancel()
        for kind, item in self._queue:
            if kind == REJECT:  # never answered (the connection closes), still logged
                status, error = cast(tuple[int, str], item)
                self._call_hook(RequestRecord.rejected(status, error))
        self._queue.clear()
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def _emit(self, exchange: Exchange) -> None:
        self._call_hook(exchange.record())

    def _call_hook(self, record: RequestRecord) -> None:
        try:
            self._on_request(record)
        except Exception:
            logger.exception("proxy: on_request hook failed")
