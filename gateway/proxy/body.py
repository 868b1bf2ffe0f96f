"""The body of a request the parser does not frame: an Upgrade (or CONNECT) request.

httptools tells llhttp to skip the body of any request that asks for a protocol switch
(its ``on_headers_complete`` returns 1 when ``upgrade`` is set) and reports the message
complete right after the head. A proxy that trusted that would forward a head announcing
a body and then parse the body's bytes as the client's next request: request smuggling.
So the client protocol stops feeding the parser after such a head and reads the body
itself with a `BodyReader`, framed exactly as the head declares (RFC 9112 section 6.3):
chunked when Transfer-Encoding is present (the parser has already refused any other final
coding and Content-Length beside it), else Content-Length bytes, else none.

Pure: bytes in, body pieces and the bytes after the body out. Only the rare upgrade path
uses it; every other request body is framed by llhttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.proxy.errors import ProxyError

if TYPE_CHECKING:
    from gateway.proxy.tunnel import Tunnel

_HEX = frozenset(b"0123456789abcdefABCDEF")
_MAX_LINE = 4096  # a chunk-size line with extensions, or one trailer field
_MAX_TRAILERS = 65536
_SIZE, _DATA, _DATA_CRLF, _TRAILER, _DONE = range(5)


class MalformedBody(ProxyError, ValueError):
    """The request body does not follow its declared framing."""


class BodyReader:
    """Reads one body framed by Content-Length (`length`) or chunked (`length` None).

    `feed(data)` returns the body pieces found (de-chunked) and, once the body is
    complete (`done`), the bytes that follow it. Raises `MalformedBody` on bad chunking.
    """

    __slots__ = ("_line", "_remaining", "_state", "_trailer_bytes", "chunked")

    def __init__(self, length: int | None) -> None:
        self.chunked = length is None
        self._remaining = 0 if length is None else length
        self._state = _SIZE if length is None else (_DATA if length else _DONE)
        self._line = b""
        self._trailer_bytes = 0

    @property
    def done(self) -> bool:
        """True once the whole body has been read."""
        return self._state == _DONE

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        """Consume `data`: (body pieces, bytes after the body; empty until `done`)."""
        pieces: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end and self._state != _DONE:
            state = self._state
            if state == _DATA:
                n = min(self._remaining, end - pos)
                pieces.append(data[pos : pos + n])
                pos += n
                self._remaining -= n
                if not self._remaining:
                    self._state = _DATA_CRLF if self.chunked else _DONE
                continue
            line, pos = self._take_line(data, pos)
            if line is None:
                break
            if state == _SIZE:
                self._chunk_size(line)
            elif state == _DATA_CRLF:
                if line:
                    raise MalformedBody("chunk data longer than its size")
                self._state = _SIZE
            else:  # _TRAILER: fields are dropped (the parser drops them on other requests)
                self._trailer_bytes += len(line)
                if self._trailer_bytes > _MAX_TRAILERS:
                    raise MalformedBody("trailer section too large")
                if not line:
                    self._state = _DONE
                elif b":" not in line or line[:1] in (b" ", b"\t"):
                    raise MalformedBody("malformed trailer field")
        return pieces, data[pos:] if self._state == _DONE else b""

    def _take_line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """The next CRLF-terminated line (without CRLF), or None if it is not complete."""
        nl = data.find(b"\n", pos)
        if nl < 0:
            self._line += data[pos:]
            if len(self._line) > _MAX_LINE:
                raise MalformedBody("chunk line too long")
            return None, len(data)
        line = self._line + data[pos:nl]
        self._line = b""
        if not line.endswith(b"\r") or len(line) > _MAX_LINE:
            raise MalformedBody("chunk line not ended by CRLF")  # RFC 9112 section 2.2
        return line[:-1], nl + 1

    def _chunk_size(self, line: bytes) -> None:
        size, _, ext = line.partition(b";")
        # RFC 9112 section 7.1: chunk-size = 1*HEXDIG, no whitespace; cap its length so
        # that int() stays cheap and the size fits in 64 bits, as llhttp does.
        if not size or len(size) > 16 or not _HEX.issuperset(size):
            raise MalformedBody(f"invalid chunk size {size[:20]!r}")
        if ext and (b"\r" in ext or b"\x00" in ext):
            raise MalformedBody("invalid chunk extension")
        self._remaining = int(size, 16)
        self._state = _DATA if self._remaining else _TRAILER


class RawInput:
    """The client's bytes after an upgrade request's head, kept away from the parser.

    First the request's own body (`body`, None when it has none or once it is read), then
    bytes `held` until the upstream answers: a 101 makes them the tunnel's first bytes
    (`tunnel` set), any other answer makes them the next request, parsed once the
    exchange (`exchange`) is complete.
    """

    __slots__ = ("body", "exchange", "held", "tunnel")

    def __init__(self, exchange: object, body: BodyReader | None) -> None:
        self.exchange = exchange
        self.body = body
        self.held = bytearray()
        self.tunnel: Tunnel | None = None
