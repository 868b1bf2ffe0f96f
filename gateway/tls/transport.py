"""TLS on a non-blocking socket through OpenSSL memory BIOs (pyOpenSSL).

One readiness callback reads up to :data:`READ_BUDGET` bytes of records with a single
``recv`` and hands them to OpenSSL (``bio_write``); the plaintext is then decrypted record by
record and given to the protocol in one call. So a bulk upload costs one system call per
256 KiB, not two per 16 KiB record (the read-ahead a socket BIO needs a setting for), and
OpenSSL never touches the socket: it cannot "want write" while reading or "want read" while
writing, and renegotiation is refused by the policy (``OP_NO_RENEGOTIATION``). What OpenSSL
writes (handshake flights, alerts, KeyUpdate answers, records) is pulled out (``bio_read``)
and sent by us; what the socket does not take waits in :attr:`_out`, whose size is the
back-pressure signal.

Because the ciphertext passes through our hands we know when a write's records have left
for the socket: :attr:`bytes_sent` counts plaintext bytes whose records the kernel accepted,
which the access log reports (a client that disconnects early shows the smaller figure).

Closing: a peer's ``close_notify`` or a TCP FIN without one (``OP_IGNORE_UNEXPECTED_EOF``, as
nginx and haproxy) ends the read direction only; the protocol decides (``eof_received``)
whether replies still go out. :meth:`write_eof` sends our ``close_notify`` and keeps
reading (TLS half-close, RFC 8446 section 6.1).

A failed handshake's alert is sent before the socket closes (CPython gh-98078 lost it on
asyncio's memory-BIO path). The SNI selector may ask for a specific alert
(:meth:`refuse`): OpenSSL's own output is then replaced by that alert record.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from OpenSSL import SSL

log = logging.getLogger("certgate.tls")

READ_BUDGET = 262144
"""Bytes read from the socket, and plaintext delivered, per readiness callback."""
_RECORD = 16384
"""A TLS record's largest plaintext (RFC 8446 section 5.1): one ``SSL_read``."""
_READ_VIEW = memoryview(bytearray(READ_BUDGET))
HIGH_WATER = 65536
"""Default write buffer size above which the protocol is asked to pause (asyncio's)."""
_FLIGHT = 16384
"""``bio_read`` size for handshake flights and alerts."""

ALERT_UNRECOGNIZED_NAME = 112  # RFC 6066 section 3
ALERT_INTERNAL_ERROR = 80  # RFC 8446 section 6.2

_WantRead = SSL.WantReadError
_ZeroReturn = SSL.ZeroReturnError
_SysCall = SSL.SysCallError
_Error = SSL.Error

# States.
_HANDSHAKE, _OPEN, _CLOSING, _CLOSED = range(4)


def alert_record(description: int) -> bytes:
    """A fatal alert as a plaintext record (before any key is in use: RFC 8446 section 5.1,
    legacy record version 0x0303)."""
    return bytes((21, 3, 3, 0, 2, 2, description))


class TlsHooks(Protocol):
    """What a connection reports to whoever accepted it (the listener)."""

    def handshake_done(self, conn: TlsConnection, result: str) -> None:
        """The handshake ended; ``result`` is the selector's (ok, no_sni...) or failed."""

    def connection_closed(self, conn: TlsConnection) -> None:
        """The socket is closed (after the handshake or not)."""


class TlsConnection(asyncio.Transport):
    """One accepted TLS connection: the server handshake, then a transport for ``app``.

    The pyOpenSSL connection's app data is this object: the listener's SNI selector switches
    its context (the chain) and records :attr:`certgate_sni` and :attr:`certgate_result` on
    it. ``app.connection_made`` runs once the handshake is done.
    """

    __slots__ = (
        "__weakref__",
        "_alert",
        "_app",
        "_app_factory",
        "_app_paused",
        "_base",
        "_eof_in",
        "_eof_out",
        "_fd",
        "_high",
        "_hooks",
        "_loop",
        "_low",
        "_marks",
        "_out",
        "_out_sent",
        "_out_total",
        "_peer",
        "_plain_sent",
        "_plain_written",
        "_read_paused",
        "_reading",
        "_sock",
        "_ssl",
        "_state",
        "_tcp_eof",
        "_timer",
        "_waiters",
        "_writing",
        "certgate_result",
        "certgate_sni",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, peer: Any,
                 base: SSL.Context, app_factory: Callable[[], asyncio.Protocol],
                 hooks: TlsHooks, handshake_timeout_s: float) -> None:
        """Start the server handshake of an accepted, non-blocking ``sock``; the protocol
        is made by ``app_factory`` once the handshake succeeds."""
        # BaseTransport.__init__ only sets up ``_extra``, which get_extra_info replaces.
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._base = base
        self._app_factory = app_factory
        self._app: asyncio.Protocol | None = None
        self._hooks = hooks
        self._peer = peer
        self._state = _HANDSHAKE
        self._reading = True
        self._read_paused = self._writing = self._app_paused = False
        self._tcp_eof = self._eof_in = self._eof_out = False
        self._alert: int | None = None
        self._out = bytearray()  # ciphertext the socket has not taken yet
        self._out_total = self._out_sent = 0  # ciphertext produced / taken by the socket
        self._plain_written = self._plain_sent = 0
        # (ciphertext end, plaintext total) per write: what bytes_sent advances through.
        self._marks: deque[tuple[int, int]] = deque()
        self._waiters: list[tuple[int, Callable[[int], None]]] = []
        self._high, self._low = HIGH_WATER, HIGH_WATER // 4
        self.certgate_sni: str | None = None
        self.certgate_result: str | None = None
        ssl_conn = self._ssl = SSL.Connection(base, None)
        ssl_conn.set_accept_state()
        ssl_conn.set_app_data(self)  # released in _teardown: no cycle outlives the socket
        self._timer: asyncio.TimerHandle | None = loop.call_later(
            handshake_timeout_s, self._handshake_timeout)
        # One reader callback for the connection's life, dispatching on the state: replacing
        # it after the handshake would cost the poller more than the branch does.
        loop.add_reader(self._fd, self._on_readable)

    # -- for the selector and the listener ------------------------------------------------

    @property
    def context(self) -> SSL.Context:
        """The context serving this connection (the chain's, once the SNI callback ran)."""
        return self._ssl.get_context()

    def refuse(self, alert: int) -> None:
        """Fail this handshake with ``alert`` instead of whatever OpenSSL would send."""
        self._alert = alert

    @property
    def bytes_written(self) -> int:
        """Plaintext bytes the protocol handed to :meth:`write`."""
        return self._plain_written

    @property
    def bytes_sent(self) -> int:
        """Plaintext bytes whose records were written to the socket."""
        return self._plain_sent

    def call_when_sent(self, position: int, callback: Callable[[int], None]) -> None:
        """Call ``callback(bytes_sent)`` once :attr:`bytes_sent` reaches ``position``, or
        when the connection closes first (with the smaller figure)."""
        if self._plain_sent >= position or self._state == _CLOSED:
            callback(self._plain_sent)
        else:
            self._waiters.append((position, callback))

    # -- handshake ------------------------------------------------------------------------

    def _on_readable(self) -> None:
        if self._state == _HANDSHAKE:
            if self._fill():
                self._do_handshake()
        elif self._fill():
            self._drain()

    def _fill(self) -> bool:
        """Give OpenSSL what the socket holds; False if there was nothing (or it failed)."""
        try:
            n = self._sock.recv_into(_READ_VIEW)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            self._fatal(e)
            return False
        if n:
            self._ssl.bio_write(_READ_VIEW[:n])
            return True
        # TCP FIN: OpenSSL sees the end of its input; the poller would report it forever.
        self._tcp_eof = True
        self._ssl.bio_shutdown()
        self._set_reading(False)
        return True

    def _do_handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except _WantRead:
            self._pull(_FLIGHT)
            if self._tcp_eof:  # the client left mid-handshake
                self._handshake_failed("failed", EOFError("peer closed during handshake"))
            return
        except _Error as exc:
            self._handshake_failed(None, exc)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pull(_FLIGHT)  # TLS 1.3 session tickets, or TLS 1.2's last flight
        if self._state != _HANDSHAKE:
            return
        self._state = _OPEN
        self._hooks.handshake_done(self, self.certgate_result or "ok")
        # Made only now: a failed handshake costs no protocol.
        app = self._app = self._app_factory()
        app.connection_made(self)
        # The client's first request may have come with its Finished message.
        self._drain()

    def _handshake_failed(self, result: str | None, exc: BaseException | None) -> None:
        if self._state != _HANDSHAKE:
            return
        if result is None:
            result = self.certgate_result
            result = result if result in ("unknown_sni", "invalid_sni") else "failed"
        if self._alert is not None:
            self._discard_output()
            self._send(alert_record(self._alert))
        else:
            self._pull(_FLIGHT)  # OpenSSL's alert, if it wrote one
        self._hooks.handshake_done(self, result)
        self._state = _CLOSED
        log.debug("TLS handshake with %s failed: %s", self._peer, exc)
        self._teardown()
        self._hooks.connection_closed(self)

    def _discard_output(self) -> None:
        try:
            while self._ssl.bio_read(_FLIGHT):
                pass
        except _Error:
            pass

    def _handshake_timeout(self) -> None:
        self._timer = None
        self._handshake_failed("failed", TimeoutError("TLS handshake timed out"))

    # -- reading --------------------------------------------------------------------------

    def _drain(self) -> None:
        """Hand the protocol what OpenSSL can decrypt from the records it was given."""
        if self._read_paused or self._state != _OPEN or self._eof_in:
            return
        ssl_conn, chunks, size = self._ssl, [], 0
        eof, exc = False, None
        while True:
            try:
                data = ssl_conn.recv(_RECORD)
            except _WantRead:
                break
            except (_ZeroReturn, _SysCall):
                # close_notify, or a FIN without it (a half-close, OP_IGNORE_UNEXPECTED_EOF).
                eof = True
                break
            except _Error as e:
                exc = e
                break
            chunks.append(data)
            size += len(data)
            if size >= READ_BUDGET:
                # Other connections get their turn; OpenSSL may hold more records.
                self._loop.call_soon(self._drain)
                break
        if chunks:
            app = self._app
            assert app is not None
            app.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            if self._state != _OPEN:
                return
        else:
            # Only control records came (a KeyUpdate to answer, an alert): send what OpenSSL
            # wrote. After application data, an answer waits for our next write, which
            # RFC 8446 section 4.6.3 allows.
            self._pull(_FLIGHT)
        if exc is not None:
            self._pull(_FLIGHT)  # OpenSSL's alert
            self._fatal(exc)
        elif eof:
            self._on_eof()

    def _on_eof(self) -> None:
        self._eof_in = True
        self._set_reading(False)
        app = self._app
        assert app is not None
        keep_open = app.eof_received()
        if not keep_open or self._eof_out:
            self.close()

    def _set_reading(self, on: bool) -> None:
        if on and (self._tcp_eof or self._eof_in):
            return
        if on != self._reading and self._state < _CLOSED:
            self._reading = on
            if on:
                self._loop.add_reader(self._fd, self._on_readable)
            else:
                self._loop.remove_reader(self._fd)

    def pause_reading(self) -> None:
        """Stop delivering data to the protocol (back-pressure)."""
        if self._state != _OPEN or self._read_paused:
            return
        self._read_paused = True
        self._set_reading(False)

    def resume_reading(self) -> None:
        """Deliver data again (first what OpenSSL already holds)."""
        if self._state != _OPEN or not self._read_paused:
            return
        self._read_paused = False
        self._set_reading(True)
        self._loop.call_soon(self._drain)

    def is_reading(self) -> bool:
        """Whether data is being delivered."""
        return self._state == _OPEN and not self._read_paused

    # -- writing --------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send ``data``; what the socket cannot take now is buffered."""
        if self._state != _OPEN or self._eof_out or not data:
            return
        size = len(data)
        try:
            # Memory BIOs never block: OpenSSL takes everything at once.
            done = self._ssl.send(data)
            while done < size:
                done += self._ssl.send(memoryview(data)[done:])
        except _Error as exc:
            self._fatal(exc)
            return
        self._plain_written += size
        # Records add at most 22 (TLS 1.3) or 29 (TLS 1.2) bytes per 16 KiB.
        self._pull(size + (size >> 9) + 512)
        self._marks.append((self._out_total, self._plain_written))
        self._progress()
        if not self._app_paused and len(self._out) > self._high and self._app is not None:
            self._app_paused = True
            self._app.pause_writing()

    def _pull(self, size: int) -> None:
        """Send what OpenSSL wrote (``size``: a guess of how much, to read it in one go)."""
        ssl_conn = self._ssl
        try:
            while True:
                chunk = ssl_conn.bio_read(size)
                self._send(chunk)
                if len(chunk) < size:
                    return
        except _WantRead:  # nothing (more) to send
            return

    def _send(self, chunk: bytes) -> None:
        self._out_total += len(chunk)
        if self._out or self._state == _CLOSED:
            self._out += chunk
            return
        try:
            n = self._sock.send(chunk)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            self._out += chunk
            self._loop.call_soon(self._fatal, e)
            return
        self._out_sent += n
        if n < len(chunk):
            self._out += memoryview(chunk)[n:]
            self._set_writing(True)

    def _progress(self) -> None:
        """Advance :attr:`bytes_sent` to the writes whose records all left."""
        marks, sent = self._marks, self._out_sent
        while marks and marks[0][0] <= sent:
            self._plain_sent = marks.popleft()[1]
        if self._waiters:
            self._wake(self._plain_sent)

    def _wake(self, sent: int, *, all_: bool = False) -> None:
        due = [cb for pos, cb in self._waiters if all_ or pos <= sent]
        if due:
            self._waiters = [] if all_ else [(p, cb) for p, cb in self._waiters if p > sent]
            for cb in due:
                cb(sent)

    def _set_writing(self, on: bool) -> None:
        if on != self._writing and self._state < _CLOSED:
            self._writing = on
            if on:
                self._loop.add_writer(self._fd, self._write_ready)
            else:
                self._loop.remove_writer(self._fd)

    def _write_ready(self) -> None:
        out = self._out
        if out:
            try:
                n = self._sock.send(out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fatal(exc)
                return
            del out[:n]
            self._out_sent += n
            self._progress()
        if self._app_paused and len(out) <= self._low and self._app is not None:
            self._app_paused = False
            self._app.resume_writing()
        if not out:
            self._set_writing(False)
            if self._state == _CLOSING:
                self._finish_close(None)

    def can_write_eof(self) -> bool:
        """TLS half-close: :meth:`write_eof` sends ``close_notify`` and keeps reading."""
        return True

    def write_eof(self) -> None:
        """Send ``close_notify`` after what is buffered; the peer may still send."""
        if self._state != _OPEN or self._eof_out:
            return
        self._shutdown_tls()
        if self._eof_in:
            self.close()

    def _shutdown_tls(self) -> None:
        self._eof_out = True
        try:
            # With memory BIOs SSL_shutdown only writes close_notify (not waiting for the
            # peer's, which RFC 8446 section 6.1 allows).
            self._ssl.shutdown()
        except _Error:
            return
        self._pull(_FLIGHT)

    def get_write_buffer_size(self) -> int:
        """Bytes (of records) accepted by :meth:`write` and not yet sent."""
        return len(self._out)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """(low, high) water marks."""
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """asyncio's semantics: ``high`` defaults to 64 KiB, ``low`` to a quarter of it."""
        high = HIGH_WATER if high is None else high
        low = high // 4 if low is None else low
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    # -- closing --------------------------------------------------------------------------

    def is_closing(self) -> bool:
        """Whether :meth:`close` or :meth:`abort` was called (or the peer went away)."""
        return self._state != _OPEN

    def close(self) -> None:
        """Send what is buffered, then ``close_notify``, then close the socket."""
        if self._state == _HANDSHAKE:
            self._handshake_failed("failed", None)
            return
        if self._state != _OPEN:
            return
        self._state = _CLOSING
        self._set_reading(False)
        if not self._eof_out:
            self._shutdown_tls()
        if not self._out:
            self._finish_close(None)

    def abort(self) -> None:
        """Close the socket now; buffered data is lost."""
        if self._state == _HANDSHAKE:
            self._handshake_failed("failed", None)
            return
        if self._state >= _CLOSED:
            return
        self._out.clear()
        self._state = _CLOSING
        self._finish_close(None)

    def _fatal(self, exc: Exception) -> None:
        if self._state >= _CLOSED:
            return
        if self._state == _HANDSHAKE:
            self._handshake_failed("failed", exc)
            return
        log.debug("TLS connection with %s: %s", self._peer, exc)
        self._out.clear()
        self._state = _CLOSING
        self._finish_close(exc)

    def _finish_close(self, exc: Exception | None) -> None:
        self._teardown()
        self._state = _CLOSED
        self._loop.call_soon(self._connection_lost, exc)

    def _teardown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop, fd = self._loop, self._fd
        if self._reading:
            self._reading = False
            loop.remove_reader(fd)
        if self._writing:
            self._writing = False
            loop.remove_writer(fd)
        self._sock.close()
        self._ssl.set_app_data(None)
        if self._waiters:
            self._wake(self._plain_sent, all_=True)

    def _connection_lost(self, exc: Exception | None) -> None:
        # Dropping the protocol breaks the transport <-> protocol cycle: the pair is freed
        # by reference counting now, not by a garbage collection later.
        app, self._app = self._app, None
        try:
            if app is not None:
                app.connection_lost(exc)
        finally:
            self._hooks.connection_closed(self)

    # -- the rest of asyncio.Transport ----------------------------------------------------

    def get_protocol(self) -> asyncio.BaseProtocol | None:  # type: ignore[override]
        """The application protocol (None before the handshake and after the close)."""
        return self._app

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Replace the application protocol."""
        self._app = protocol  # type: ignore[assignment]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """asyncio's keys: ``peername``, ``sockname``, ``socket``, ``sslcontext`` (the
        listener's pyOpenSSL context), ``ssl_object`` (the pyOpenSSL connection), ``cipher``
        (name, version, secret bits)."""
        if name == "peername":
            return self._peer
        if name == "sslcontext":
            return self._base
        if name == "ssl_object":
            return self._ssl
        if name == "socket":
            return self._sock
        if name == "sockname":
            try:
                return self._sock.getsockname()
            except OSError:
                return default
        if name == "cipher" and self._state != _HANDSHAKE:
            s = self._ssl
            return (s.get_cipher_name(), s.get_protocol_version_name(), s.get_cipher_bits())
        return default
