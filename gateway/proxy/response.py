"""How a response is framed for the client (pure functions, RFC 9112 section 6)."""

from __future__ import annotations

from gateway.proxy import http

_NO_BODY_STATUSES = frozenset((204, 304))


def framing(
    method: bytes, status: int, scan: http.HeaderScan, *, http10: bool
) -> tuple[bytes, bool, bool, bool]:
    """Decide how the body travels to the client.

    Returns (Transfer-Encoding field to send, re-chunk the body, the upstream's body ends
    with its close, the client connection must close after the response). The upstream's
    body arrives de-chunked from the parser, so any body without a length is re-chunked for
    an HTTP/1.1 client (which keeps its connection); HTTP/1.0 knows no chunked coding, so
    there the end of the body is marked by closing.
    """
    if method == b"HEAD" or status in _NO_BODY_STATUSES:
        return b"", False, False, False  # RFC 9110 sections 9.3.2, 15.3.5, 15.4.5
    te = scan.transfer_encoding
    if te is None and scan.content_length is not None:
        return b"", False, False, False
    until_close = te is None or not http.is_chunked(te)  # RFC 9112 section 6.3 rules 4, 8
    if http10:
        return b"", False, until_close, True
    if te is not None and not until_close:
        return b"Transfer-Encoding: " + te + http.CRLF, True, False, False
    return http.CHUNKED_LINE, True, until_close, False


def head(
    status: int, reason: bytes, scan: http.HeaderScan, te_field: bytes, *, close: bool, http10: bool
) -> bytes:
    """The response head for the client: status line, forwarded fields, framing, Connection."""
    connection = http.CLOSE_LINE if close else http.KEEP_ALIVE_LINE if http10 else b""
    return b"".join((http.status_line(status, reason), scan.block, te_field, connection, http.CRLF))


def switch_head(reason: bytes, scan: http.HeaderScan, upgrade: bytes) -> bytes:
    """A 101 head for the client: the upstream's fields, with Upgrade and its connection
    option (hop-by-hop, so rebuilt here; RFC 9110 sections 7.8 and 15.2.2)."""
    return b"".join(
        (
            http.status_line(101, reason),
            scan.block,
            b"Connection: Upgrade\r\nUpgrade: ",
            upgrade,
            http.CRLF,
            http.CRLF,
        )
    )


def adjust_content_length(head: bytes, delta: int) -> bytes:
    """`head` (a complete message head) with its Content-Length value(s) grown by `delta`.

    Used when the proxy changes the size of a body whose length was announced (IPP URI
    rewriting, both directions). A head without Content-Length is returned unchanged. The
    value is all digits: llhttp refuses any other, in requests and responses alike.
    """
    lines = head.split(http.CRLF)
    for i, line in enumerate(lines):
        if line[:15].lower() == b"content-length:":
            lines[i] = b"Content-Length: %d" % (int(line[15:].strip()) + delta)
    return http.CRLF.join(lines)
