"""A blocking TLS client over memory BIOs: the test decides when ``close_notify`` and the TCP
FIN are sent, separately (``ssl.SSLSocket`` ties them together)."""

from __future__ import annotations

import socket
import ssl
import struct


def insecure_context(*, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context that verifies nothing (these tests are about bytes, not trust)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


class MemoryTlsClient:
    """One TLS connection to 127.0.0.1:``port``; the handshake is done on construction."""

    def __init__(self, port: int, server_hostname: str | None = None,
                 ctx: ssl.SSLContext | None = None, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = (ctx or insecure_context()).wrap_bio(self._in, self._out,
                                                        server_hostname=server_hostname)
        self.ended_by: str | None = None  # "close_notify" or "fin" once reading ended
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise ConnectionError("server closed during the handshake") from None
        self._flush()

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(262144)
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    def sendall(self, data: bytes) -> None:
        """Encrypt and send everything."""
        view = memoryview(data)
        while view:
            n = self.tls.write(view[:65536])
            view = view[n:]
            self._flush()

    def recv_until_end(self, limit: int | None = None) -> bytes:
        """Plaintext until the server's ``close_notify`` or FIN (or ``limit`` bytes)."""
        chunks: list[bytes] = []
        size = 0
        while limit is None or size < limit:
            try:
                chunk = self.tls.read(65536 if limit is None else min(65536, limit - size))
            except ssl.SSLWantReadError:
                self._fill()
                continue
            except ssl.SSLZeroReturnError:
                self.ended_by = "close_notify"
                break
            except ssl.SSLEOFError:
                self.ended_by = "fin"
                break
            if not chunk:
                self.ended_by = "close_notify"
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    def fin(self) -> None:
        """End our output with a TCP FIN and no ``close_notify`` (as embedded terminals do)."""
        self.sock.shutdown(socket.SHUT_WR)

    def close_notify(self) -> None:
        """Send ``close_notify`` (TLS half-close); reading goes on."""
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def wait_closed(self) -> bytes:
        """Raw bytes until the server closes the TCP connection (what follows the TLS end)."""
        chunks = []
        while chunk := self.sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)

    def reset(self) -> None:
        """Close with a TCP RST (``SO_LINGER`` 0): a client that vanishes."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()
