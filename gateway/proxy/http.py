"""HTTP/1.1 wire helpers for the proxy: header filtering, forwarding headers, canned responses.

Pure functions on bytes. Header blocks that do not change per request are built once:
canned responses at import, client-address headers per connection, Host-derived headers per
distinct Host value (see `protocol.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

CRLF = b"\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CHUNKED_LINE = b"Transfer-Encoding: chunked\r\n"
CLOSE_LINE = b"Connection: close\r\n"
KEEP_ALIVE_LINE = b"Connection: keep-alive\r\n"

# What to do with a field, by lower-case name.
_KEEP, _DROP, _HOST, _CONNECTION, _TE, _CL, _EXPECT, _CTYPE, _UPGRADE = range(9)

# RFC 9110 section 7.6.1: Connection and the fields it names are hop-by-hop, as are
# Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding (re-framed by us) and
# Upgrade (its value is kept aside: the proxy offers it again itself, see tunnel.py). Expect
# is answered by the proxy itself (see exchange.py). Forwarded, X-Forwarded-* and
# X-Certgate-* are the proxy's to set: client copies are dropped so they cannot be spoofed.
# A name that matches any of these once `_` is read as `-` is dropped as well: CGI-style
# upstreams (and nginx with underscores_in_headers) read X_Certgate_Account as the real one.
_REQUEST_ACTIONS: dict[bytes, int] = {
    b"host": _HOST,
    b"connection": _CONNECTION,
    b"transfer-encoding": _TE,
    b"content-length": _CL,
    b"expect": _EXPECT,
    b"content-type": _CTYPE,
    b"keep-alive": _DROP,
    b"te": _DROP,
    b"trailer": _DROP,
    b"upgrade": _UPGRADE,
    b"forwarded": _DROP,
}
_REQUEST_DROP_PREFIXES = (b"proxy-", b"x-forwarded-", b"x-certgate-")
_RESPONSE_ACTIONS: dict[bytes, int] = {
    b"connection": _CONNECTION,
    b"transfer-encoding": _TE,
    b"content-length": _CL,
    b"content-type": _CTYPE,
    b"keep-alive": _DROP,
    b"te": _DROP,
    b"trailer": _DROP,
    b"upgrade": _UPGRADE,
}
_RESPONSE_DROP_PREFIXES = (b"proxy-",)
_NO_EXTRA: frozenset[bytes] = frozenset()
_CONNECTION_OPTIONS = frozenset((b"close", b"keep-alive"))

# RFC 3986 reg-name / IPv4 characters (lower case) and IPv6 literal characters.
_HOST_CHARS = b"abcdefghijklmnopqrstuvwxyz0123456789-._"
_IPV6_CHARS = b"0123456789abcdef:."
_DIGITS = b"0123456789"
# RFC 7230 tchar: what may appear unquoted in a Forwarded parameter value (RFC 7239 s.4).
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class HeaderScan:
    """Result of filtering one message's header fields.

    `block` holds the fields to forward, already serialized (`Name: value\\r\\n` each).
    Never modified once built: `ScanMemo` shares one scan between messages.
    """

    __slots__ = (
        "block",
        "content_length",
        "content_type",
        "expect",
        "host",
        "host_count",
        "transfer_encoding",
        "upgrade",
    )

    def __init__(self) -> None:
        self.block = b""
        self.host: bytes | None = None
        self.host_count = 0
        self.transfer_encoding: bytes | None = None
        self.content_length: bytes | None = None
        self.content_type: bytes | None = None
        self.expect: bytes | None = None
        self.upgrade: bytes | None = None


class ScanMemo:
    """One connection's last header list and its scan.

    A kept-alive connection nearly always repeats its fields verbatim (a client its
    request fields, an upstream its response fields but for ``Date`` once a second), so one
    list comparison, done in C, usually replaces filtering the fields one by one. Scans
    are shared between messages: nothing modifies a `HeaderScan` once it is built, nor
    the header list of a message once its head is complete (trailer fields are dropped).
    """

    __slots__ = ("_headers", "_scan", "_scanner")

    def __init__(self, scanner: Callable[[list[tuple[bytes, bytes]]], HeaderScan]) -> None:
        self._scanner = scanner
        self._headers: list[tuple[bytes, bytes]] | None = None
        self._scan = HeaderScan()

    def __call__(self, headers: list[tuple[bytes, bytes]]) -> HeaderScan:
        """The scan of ``headers``, as ``scanner`` makes it."""
        if headers != self._headers:
            self._scan = self._scanner(headers)
            self._headers = headers
        return self._scan


def scan_request_headers(headers: list[tuple[bytes, bytes]]) -> HeaderScan:
    """Filter a request's fields for forwarding upstream; see `_REQUEST_ACTIONS`."""
    return _scan(headers, _REQUEST_ACTIONS, _REQUEST_DROP_PREFIXES)


def scan_response_headers(headers: list[tuple[bytes, bytes]]) -> HeaderScan:
    """Filter a response's fields for forwarding to the client; see `_RESPONSE_ACTIONS`."""
    return _scan(headers, _RESPONSE_ACTIONS, _RESPONSE_DROP_PREFIXES)


def _scan(
    headers: list[tuple[bytes, bytes]],
    actions: dict[bytes, int],
    drop_prefixes: tuple[bytes, ...],
) -> HeaderScan:
    scan = HeaderScan()
    options = _filter(headers, actions, drop_prefixes, scan, _NO_EXTRA)
    if options:
        # Fields named by Connection are hop-by-hop too. Only plain fields can be dropped
        # this way: framing fields (Content-Length, ...) have their own rules, so naming
        # them in Connection cannot make the proxy mis-frame a message.
        scan = HeaderScan()
        _filter(headers, actions, drop_prefixes, scan, options)
    return scan


def _filter(
    headers: list[tuple[bytes, bytes]],
    actions: dict[bytes, int],
    drop_prefixes: tuple[bytes, ...],
    scan: HeaderScan,
    extra_drop: frozenset[bytes],
) -> frozenset[bytes]:
    """Fill `scan`; return the field names listed in Connection (minus close/keep-alive)."""
    pieces: list[bytes] = []
    options: set[bytes] = set()
    for name, value in headers:
        lname = name.lower()
        action = actions.get(lname, _KEEP)
        if action == _KEEP:
            if lname.startswith(drop_prefixes) or lname in extra_drop:
                continue
            if b"_" in lname:
                alias = lname.replace(b"_", b"-")
                if alias in actions or alias.startswith(drop_prefixes) or alias in extra_drop:
                    continue  # a protected or hop-by-hop field spelled with underscores
            pieces += (name, b": ", value, CRLF)
        elif action == _CL or action == _CTYPE:
            pieces += (name, b": ", value, CRLF)
            if action == _CL:
                scan.content_length = value
            else:
                scan.content_type = value
        elif action == _HOST:
            scan.host = value
            scan.host_count += 1
        elif action == _TE:
            te = scan.transfer_encoding
            scan.transfer_encoding = value if te is None else te + b", " + value
        elif action == _EXPECT:
            scan.expect = value
        elif action == _UPGRADE:
            up = scan.upgrade
            scan.upgrade = value if up is None else up + b", " + value
        elif action == _CONNECTION:
            options.update(t.strip() for t in value.lower().split(b","))
    scan.block = b"".join(pieces)
    options -= _CONNECTION_OPTIONS
    options.discard(b"")
    return frozenset(options)


def is_chunked(transfer_encoding: bytes) -> bool:
    """True if chunked is the final transfer coding (RFC 9112 section 6.3)."""
    return transfer_encoding.rsplit(b",", 1)[-1].strip().lower() == b"chunked"


def parse_host(value: bytes) -> str | None:
    """The lower-case host of a Host value without port and trailing dot; None if invalid.

    RFC 9110 section 7.2: Host = uri-host [ ":" port ]. IPv6 literals lose their brackets.
    """
    value = value.strip().lower()
    if value.startswith(b"["):
        end = value.find(b"]")
        host, rest = value[1:end], value[end + 1 :]
        if end < 0 or not host or host.translate(None, _IPV6_CHARS):
            return None
    else:
        host, sep, port = value.partition(b":")
        rest = sep + port
        if not host or host.translate(None, _HOST_CHARS):
            return None
        host = host[:-1] if host.endswith(b".") else host
    if rest and (not rest.startswith(b":") or len(rest) > 6 or rest[1:].translate(None, _DIGITS)):
        return None
    return host.decode("ascii") if host else None


def client_block(client_ip: str, scheme: str, account_id: str | None) -> bytes:
    """Per-connection forwarding fields: X-Forwarded-For/-Proto and X-Certgate-Account."""
    lines = [f"X-Forwarded-For: {client_ip}\r\n", f"X-Forwarded-Proto: {scheme}\r\n"]
    if account_id is not None:
        lines.append(f"X-Certgate-Account: {account_id}\r\n")
    return "".join(lines).encode("latin-1")


def host_block(client_ip: str, scheme: str, host_value: bytes) -> bytes:
    """Forwarded (RFC 7239 section 4) and X-Forwarded-Host fields for one client Host value.

    `host_value` must have passed `parse_host`, so it holds no quote or backslash.
    """
    node = f'"[{client_ip}]"' if ":" in client_ip else client_ip  # RFC 7239 section 6
    host = host_value.strip()
    if host.translate(None, _TOKEN_CHARS):
        host = b'"' + host + b'"'  # host:port and IPv6 literals need a quoted-string
    return b"".join(
        (
            f"Forwarded: for={node};proto={scheme};host=".encode("latin-1"),
            host,
            b"\r\nX-Forwarded-Host: ",
            host_value.strip(),
            CRLF,
        )
    )


def has_dot_segment(path: bytes) -> bool:
    """True if the path has a `.` or `..` segment, literally or percent-encoded.

    Such paths are refused (400) so that `/prefix/../other` cannot be routed by one prefix
    and then resolved by the upstream to a path outside it (RFC 3986 section 5.2.4).
    """
    if b"/." not in path and b"%" not in path:
        return False
    decoded = unquote_to_bytes(path) if b"%" in path else path
    return any(segment in (b".", b"..") for segment in decoded.split(b"/"))


def _status_line(status: int, reason: bytes) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


_STATUS_LINES = {s.value: _status_line(s.value, s.phrase.encode("ascii")) for s in HTTPStatus}


def status_line(status: int, reason: bytes) -> bytes:
    """The status line to send; a known status uses its standard reason phrase.

    RFC 9112 section 4: the reason phrase carries no meaning, so a cached line is used.
    """
    line = _STATUS_LINES.get(status)
    return line if line is not None else _status_line(status, reason or b"Unknown")


def _local(status: int, close: bool, head_only: bool) -> bytes:
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}\n".encode("ascii")
    head = b"".join(
        (
            _STATUS_LINES[status],
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            CLOSE_LINE if close else b"",
            CRLF,
        )
    )
    # A response to HEAD carries no content (RFC 9110 section 9.3.2).
    return head if head_only else head + body


LOCAL_STATUSES = (400, 404, 405, 408, 417, 421, 431, 500, 501, 502, 504)
_LOCAL = {
    (status, close, head_only): _local(status, close, head_only)
    for status in LOCAL_STATUSES
    for close in (False, True)
    for head_only in (False, True)
}


def local_response(status: int, *, close: bool, head_only: bool = False) -> bytes:
    """A complete canned response the proxy originates (errors), built at import time."""
    return _LOCAL[status, close, head_only]


def ipp_response(body: bytes, *, close: bool) -> bytes:
    """An HTTP 200 carrying an IPP message (RFC 8010 section 3.4: IPP errors ride on 200)."""
    return b"".join(
        (
            _STATUS_LINES[200],
            b"Content-Type: application/ipp\r\n",
            b"Content-Length: %d\r\n" % len(body),
            CLOSE_LINE if close else b"",
            CRLF,
            body,
        )
    )
