"""One request and its response, from the client's request head to the last response byte.

Theory of operation. The client connection (`protocol.py`) parses requests and feeds one
`Exchange` at a time: `start()` with the head, `request_body()` per piece, `request_end()`.
The exchange checks the head, takes a pooled upstream connection (or opens one while the
client connection holds further input), writes a rebuilt head upstream and streams the body.
The upstream connection reports the response through the `ResponseSink` methods. Writes
are gathered during one read and written once at its end (`flush_*`), so a head and the
body bytes that arrived with it leave in one send (one TLS record, one syscall).

`Expect: 100-continue` (every IPP client sends it) is answered by the proxy itself and not
forwarded: the 100 goes out once an upstream connection is ready, or, for IPP, once the
proxy needs the body's first bytes to answer with an IPP error. Relaying the upstream's 100
would need interim-response plumbing in both parsers and leaves the client waiting when
the upstream is down; answering ourselves keeps the body path simple and still spares the
client sending a body the proxy refuses (421, 404, ...): refusals come before any 100, with
`Connection: close` (RFC 9110 section 10.1.1).

Errors before a response head reached the client become a complete error response; the
unread rest of the request body is read and discarded so the connection stays usable.
After a response head was sent, an upstream failure can only abort the client connection.
A pooled connection that the upstream closed just as it was reused is retried once on a
new connection, if no body byte was sent on it (the request cannot have been processed).

Framing is never changed on the way: a body goes upstream with the Content-Length the
client declared or re-chunked, and a request whose body did not match its declared length
is failed and its upstream connection closed, never completed (`request_end`). An upgrade
request that the upstream answers with 101 becomes a tunnel (`tunnel.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.proxy import http, ipp, request, response, tunnel
from gateway.proxy.ipp_hold import IppRewriting
from gateway.proxy.state import T_RESPONSE, T_STREAM, T_TUNNEL

if TYPE_CHECKING:
    from gateway.proxy.settings import Route, Upstream
    from gateway.proxy.upstream import UpstreamConnection

_IPP_TYPE = b"application/ipp"
_STATUS_CLIENT_GONE = 499  # nginx's convention: the client closed before a response


def _is_ipp(content_type: bytes | None) -> bool:
    return content_type is not None and content_type[:15].lower() == _IPP_TYPE


class Exchange(IppRewriting):
    """A request being proxied; created by the client protocol at the end of its head."""

    __slots__ = ()

    # -- request side (called by the client protocol) ---------------------------------

    def start(self) -> None:
        """Check the head and send it upstream, or answer with an error."""
        proto = self.proto
        self.started = proto.loop.time()
        proto.set_timer(T_STREAM)
        scan = proto.request_scan(self.headers)
        # RFC 9110 section 10.1.1: Expect is ignored in HTTP/1.0 requests.
        expect = None if self.http10 else scan.expect
        chunked = self.req_chunked = scan.transfer_encoding is not None
        length = scan.content_length
        if chunked:
            self.req_length = -1
        elif length is not None:
            self.req_length = int(length)  # the parser checked it is one decimal number
        self.expect_pending = expect is not None and self.req_length != 0
        route = self._resolve(scan, expect)
        if route is None:
            return
        if self.switch_asked and not self.http10:
            # RFC 9110 section 7.8: Upgrade in an HTTP/1.0 request is ignored.
            self.upgrade = tunnel.offered(scan.upgrade, proto.settings.upgrade_protocols)
        self._upstream = route.upstream
        self.is_ipp = proto.settings.ipp and self.method == b"POST" and _is_ipp(scan.content_type)
        info = None if proto.hosts is None else proto.hosts.last
        assert info is not None  # _resolve() looked the Host up
        if self.is_ipp:
            self._ipp_req = ipp.HeaderCollector()
            self._ipp_rewriters(route, info.host, info.value)
        self._head = request.upstream_head(
            self.method,
            self.target,
            route,
            info.host_line,
            scan,
            chunked=self.req_chunked,
            forwarding=info.forwarded_block,
            upgrade=self.upgrade,
        )
        conn = proto.pool.take(route.upstream)
        if conn is None:
            self._connect(route.upstream)
        else:
            self._retry_ok = True
            self._attach(conn)

    def _resolve(self, scan: http.HeaderScan, expect: bytes | None) -> Route | None:
        """The route for a valid request; otherwise answer with an error and return None."""
        status = self._check_host(scan) or request.framing_error(self.method, scan, expect)
        te = scan.transfer_encoding
        if self.method == b"CONNECT" or (te is not None and not http.is_chunked(te)):
            # After a CONNECT head comes a tunnel in the client's mind; after a body whose
            # length is unknown (RFC 9112 section 6.3) nothing can be framed.
            self.close_after = True
        route = None
        if not status:
            assert scan.host is not None  # _check_host() saw exactly one
            target = request.origin_form(self.target, scan.host)
            path = None if target is None else request.path_of(target)
            route = None if path is None else self.proto.settings.match(path)
            self.target = target or self.target
            status = 400 if path is None else 404 if route is None else 0
        if status:
            self.respond_local(status)
        return route

    def _check_host(self, scan: http.HeaderScan) -> int:
        if scan.host_count != 1 or scan.host is None:
            return 400  # RFC 9112 section 3.2: exactly one Host
        hosts = self.proto.hosts
        info = None if hosts is None else hosts.lookup(scan.host)
        if info is None:
            return 400
        self.host = info.host
        # RFC 9110 section 15.5.20: this connection's certificate is not for that host.
        return 0 if info.allowed else 421

    def _connect(self, upstream: Upstream) -> None:
        proto = self.proto
        proto.block()  # further input waits in the client protocol's queue
        timeout = proto.settings.upstream_connect_timeout_s
        self._task = proto.pool.connect(upstream, timeout, self._connected)

    def _connected(self, conn: UpstreamConnection | None, exc: BaseException | None) -> None:
        self._task = None
        if self.finished:
            if conn is not None:
                self.proto.pool.release(conn, reusable=True)
            return
        if conn is None:
            self.fail(502, f"upstream connect failed: {exc}")
            return
        self._attach(conn)
        if self.req_done:
            self.flush_upstream()  # a retry: only the head is left to send
        else:
            self.proto.unblock()

    def _attach(self, conn: UpstreamConnection) -> None:
        proto = self.proto
        self.conn = conn
        conn.bind(
            self,
            head_request=self.method == b"HEAD",
            max_header_bytes=proto.settings.max_header_bytes,
        )
        if proto.write_paused:
            conn.pause_reading()
        if self._ipp_up is None:  # else the head waits for the IPP attributes
            self._up_out.append(self._head)
        self.sent_at = proto.loop.time()
        if self.expect_pending:
            self.expect_pending = False
            proto.write(http.CONTINUE_100)

    def request_body(self, data: bytes) -> None:
        """A piece of the request body (de-chunked by the parser)."""
        self.bytes_in += len(data)
        self.expect_pending = False
        if self._ipp_req is not None:
            header = self._ipp_req.feed(data)
            if header is not None:
                self._ipp_req = None
                self.ipp_request = ipp.parse_request_header(header)
                if self._fail_pending:
                    self._respond_error(self._fail_pending)
        if self.discard:
            return
        if self._ipp_up is not None:
            data = self._release_request(self._ipp_up.feed(data))
        self._send_body(data)

    def _send_body(self, data: bytes) -> None:
        if not data:
            return  # an empty chunk would end a chunked body
        self._body_sent = True
        if self.req_chunked:
            self._up_out += (b"%x\r\n" % len(data), data, http.CRLF)
        else:
            self._up_out.append(data)

    def request_end(self) -> None:
        """The request is complete."""
        if self.req_length > 0 and self.bytes_in != self.req_length:
            # Never complete a message under another framing than the one sent upstream.
            self.reject_body(f"request body of {self.bytes_in} bytes, declared {self.req_length}")
            return
        self.req_done = True
        if self.discard:
            if self._fail_pending:
                self._respond_error(self._fail_pending)  # the body ended before 8 bytes
            elif self.resp_done:
                self._finish()
            return
        if self._ipp_up is not None:
            self._send_body(self._release_request(self._ipp_up.finish()))
        if self.req_chunked:
            self._body_sent = True
            self._up_out.append(http.LAST_CHUNK)
        self.flush_upstream()
        self.sent_at = self.proto.loop.time()
        if not self.resp_started:
            self.proto.set_timer(T_RESPONSE)
        # Hold pipelined requests until this response is complete (RFC 9112 s. 9.3.2).
        self.proto.block()

    def flush_upstream(self) -> None:
        """Write what was gathered for the upstream during this read."""
        out = self._up_out
        if out:
            if self.conn is not None:
                self.conn.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    # -- response side (ResponseSink, called by the upstream connection) ---------------

    def response_head(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> bool:
        """Queue the response head for the client; True if the body ends with a close."""
        self._retry_ok = False
        if status < 200:
            # Interim responses are not relayed: the proxy sent its own 100 already.
            self._skip_interim = True
            return False
        proto = self.proto
        self.latency = proto.loop.time() - self.sent_at
        self.status = status
        self.upstream_keep_alive = keep_alive
        self.resp_started = True
        proto.set_timer(T_STREAM)
        scan = proto.response_scan(headers)
        te_field, self.resp_chunked, until_close, close = response.framing(
            self.method, status, scan, http10=self.http10
        )
        self.close_after = self.close_after or close or proto.draining
        head = response.head(
            status, reason, scan, te_field, close=self.close_after, http10=self.http10
        )
        if proto.settings.ipp and _is_ipp(scan.content_type):
            self._ipp_resp = ipp.HeaderCollector()
            if self._hold_head(head):
                return until_close
        self._out.append(head)
        return until_close

    def switch_protocols(
        self, reason: bytes, headers: list[tuple[bytes, bytes]], upgrade: bool
    ) -> None:
        """A 101: become a tunnel if this request offered that protocol, else fail (502)."""
        self._retry_ok = False
        proto, conn, offer = self.proto, self.conn, self.upgrade
        scan = proto.response_scan(headers)
        if offer is None or not upgrade or not self.req_done or conn is None:
            # RFC 9110 section 15.2.2: a 101 only answers an Upgrade, and switches after the
            # whole request: anything else leaves the framing of what follows unknown.
            self.fail(502, "upstream switched protocols unasked")
            return
        if not tunnel.accepted(scan.upgrade, offer):
            self.fail(502, f"upstream switched to a protocol not offered: {scan.upgrade!r}")
            return
        self.latency = proto.loop.time() - self.sent_at
        self.status = 101
        self.resp_started = self.close_after = True
        assert scan.upgrade is not None  # accepted() checked it
        proto.write(response.switch_head(reason, scan, scan.upgrade))
        self.tunnel = tunnel.Tunnel(self, proto, conn, proto.pool.tunnels)
        conn.start_tunnel(self.tunnel)
        proto.start_tunnel(self.tunnel)

    def tunnel_ended(self, error: str | None) -> None:
        """The upstream closed the tunnel (or it timed out): close the client too."""
        if self.finished:
            return
        self.error = error
        self._release_upstream(reusable=False)
        self._finish()

    def response_body(self, data: bytes) -> None:
        """Relay a piece of the response body, re-chunked when the client gets chunked."""
        if self._skip_interim:
            return
        if self._ipp_resp is not None:
            header = self._ipp_resp.feed(data)
            if header is not None:
                self._ipp_resp = None
                self.ipp_status = ipp.parse_response_status(header)
        if self._ipp_rw is not None:
            data = self._release_head(self._ipp_rw.feed(data))
        self._relay(data)

    def _relay(self, data: bytes) -> None:
        if not data:
            return  # an empty chunk would end a chunked body
        self.bytes_out += len(data)
        if self.resp_chunked:
            self._out += (b"%x\r\n" % len(data), data, http.CRLF)
        else:
            self._out.append(data)

    def response_end(self) -> None:
        """The response is complete: recycle the upstream connection, maybe finish."""
        if self._skip_interim:
            self._skip_interim = False
            return
        if self._ipp_rw is not None:
            # The body ended inside the attributes (or had none): forward it as it came.
            self._relay(self._release_head(self._ipp_rw.finish()))
        if self.resp_chunked:
            self._out.append(http.LAST_CHUNK)
        self.flush_client()
        self.resp_done = True
        self._release_upstream(reusable=self.upstream_keep_alive and self.req_done)
        if self.req_done:
            self._finish()
        else:
            self.discard = True  # an early response (RFC 9112 s. 9.3): drop the rest

    def flush_client(self) -> None:
        """Write what was gathered for the client (end of a read from the upstream)."""
        out = self._out
        if out:
            self.proto.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        self.proto.touch()

    def upstream_paused(self, paused: bool) -> None:
        """Back-pressure: the upstream is not taking request bytes as fast as they come."""
        self.proto.upstream_full(paused)

    def upstream_failed(self, error: str) -> None:
        """The upstream connection broke or spoke something else than HTTP."""
        upstream = self._upstream
        if self._retry_ok and not self._body_sent and upstream is not None:
            # The upstream closed a pooled connection as we reused it (keep-alive race);
            # nothing of the body went out, so the request cannot have been processed.
            self._retry_ok = False
            self._release_upstream(reusable=False)
            self._connect(upstream)
            return
        self.fail(502, error)

    # -- failures ---------------------------------------------------------------------

    def on_timeout(self, kind: int) -> None:
        """The client protocol's timer expired while this exchange was running."""
        if kind == T_TUNNEL:
            self.tunnel_ended("tunnel idle timeout")
            return
        self.fail(504, "upstream response timeout" if kind == T_RESPONSE else "transfer stalled")

    def fail(self, status: int, error: str) -> None:
        """Answer the client as well as is still possible after `error`."""
        if self.finished:
            return
        self.error = error
        self._release_upstream(reusable=False)
        if self._ipp_rw is not None:
            # The head was held for the IPP attributes: nothing reached the client yet.
            self._ipp_rw, self._held_head, self.resp_started = None, b"", False
        if self.resp_started:
            self.abort()
            return
        self.discard = True
        if self._ipp_req is not None and not self.req_done:
            # An IPP error must echo the request-id: read the body's first 8 bytes.
            self._fail_pending = status
            if self.expect_pending:
                self.expect_pending = False
                self.proto.write(http.CONTINUE_100)
            self.proto.unblock()
            return
        self._respond_error(status)

    def reject_body(self, error: str) -> None:
        """The request body is malformed: answer 400 if still possible, and close."""
        self.error = self.error or error
        self._release_upstream(reusable=False)
        if self.resp_done:  # refused already (its body was being discarded): just close
            self.close_after = True
            self._finish()
            return
        if self.resp_started:
            self.abort()
            return
        self.close_after = True
        self.respond_local(400)

    def _respond_error(self, status: int) -> None:
        self._fail_pending = 0
        self._ipp_req = None
        header = self.ipp_request
        if not self.is_ipp or header is None:
            self.respond_local(status)
            return
        message = f"The printer behind this gateway is unavailable ({self.error})."
        body = ipp.build_error_response(
            version=header.version, request_id=header.request_id, message=message
        )
        self.ipp_status = ipp.SERVER_ERROR_SERVICE_UNAVAILABLE
        self._respond(http.ipp_response(body, close=self._must_close()), 200)

    def respond_local(self, status: int) -> None:
        """Answer with a canned error response; an unread body is then discarded."""
        close = self._must_close()
        self._respond(
            http.local_response(status, close=close, head_only=self.method == b"HEAD"), status
        )

    def _must_close(self) -> bool:
        # A client told to wait for 100 may or may not send its body now: only closing
        # keeps the connection's framing certain (RFC 9110 section 10.1.1).
        self.close_after = self.close_after or self.expect_pending or self.proto.draining
        return self.close_after

    def _respond(self, data: bytes, status: int) -> None:
        self.status = status
        self.resp_started = self.resp_done = self.discard = True
        self.proto.write(data)
        if self.req_done or self.close_after:
            self._finish()
        else:
            self.proto.set_timer(T_STREAM)
            self.proto.unblock()

    def _release_upstream(self, *, reusable: bool) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        if self.tunnel is not None:
            self.tunnel.end()
        conn, self.conn = self.conn, None
        self._up_out.clear()
        if conn is not None:
            self.proto.pool.release(conn, reusable=reusable)
            self.proto.upstream_detached()

    def abort(self) -> None:
        """Give up and drop the client connection without a clean end."""
        self.error = self.error or "aborted"
        self._release_upstream(reusable=False)
        self.close_after = self.finished = True
        self.proto.exchange_done(self, abort=True)

    def client_lost(self) -> None:
        """The client connection is gone: stop all upstream work."""
        if self.finished:
            return
        self.finished = True
        if self.tunnel is None:  # closing is how a tunnel normally ends
            self.error = self.error or "client closed the connection"
        if not self.resp_started:
            self.status = _STATUS_CLIENT_GONE
        self._release_upstream(reusable=False)

    def _finish(self) -> None:
        self.finished = True
        self.proto.exchange_done(self, abort=False)
