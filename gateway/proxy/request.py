"""Checks on a request head and the head the upstream receives (pure functions)."""

from __future__ import annotations

from httptools import HttpParserInvalidURLError, parse_url

from gateway.proxy import http
from gateway.proxy.settings import Route


def framing_error(method: bytes, scan: http.HeaderScan, expect: bytes | None) -> int:
    """The error status for a request the proxy cannot forward as framed, else 0.

    ``expect`` is the request's Expect value, None when absent or ignored (HTTP/1.0).
    """
    if method == b"CONNECT":
        return 405  # a reverse proxy offers no tunnels
    te = scan.transfer_encoding
    if te is not None and te.strip().lower() != b"chunked":
        # RFC 9112 section 6.3: without chunked last the body's length is unknown (400, and
        # the caller closes); other codings before it are not implemented (section 6.1).
        return 501 if http.is_chunked(te) else 400
    if expect is not None and expect.strip().lower() != b"100-continue":
        return 417  # RFC 9110 section 10.1.1
    return 0


_DEFAULT_PORTS = {b"http": 80, b"https": 443}


def origin_form(target: bytes, host: bytes) -> bytes | None:
    """The target in origin-form; absolute-form is converted (RFC 9112 section 3.2.2).

    An absolute-form target names the host itself, and a server must use it rather than
    Host: the proxy forwards under Host, so the two must name the same authority
    (`host` is the Host field's value). None for a mismatch and for anything else
    (authority-form, asterisk-form, another scheme, userinfo, garbage).
    """
    if target.startswith(b"/"):
        return target
    try:
        url = parse_url(target)
    except HttpParserInvalidURLError:
        return None
    scheme = (url.schema or b"").lower()
    if (
        scheme not in _DEFAULT_PORTS
        or url.host is None
        or url.userinfo is not None
        or url.path is None
        or not url.path.startswith(b"/")
    ):
        return None
    default = _DEFAULT_PORTS[scheme]
    if _authority(url.host, url.port, default) != _authority_of(host, default):
        return None
    return url.path + (b"?" + url.query if url.query else b"")


def _authority(host: bytes, port: int | None, default: int) -> tuple[str | None, int]:
    name = http.parse_host(b"[" + host + b"]" if b":" in host else host)
    return name, default if port is None else port


def _authority_of(value: bytes, default: int) -> tuple[str | None, int]:
    """(host, port) of a Host value; a missing port is the scheme's default."""
    name = http.parse_host(value)
    _, sep, port = value.strip().rpartition(b":")
    explicit = sep and not port.endswith(b"]") and port.isdigit()
    return name, int(port) if explicit else default


def path_of(target: bytes) -> bytes | None:
    """The path of an origin-form target; None if it has dot segments (refused)."""
    path = target.split(b"?", 1)[0]
    return None if http.has_dot_segment(path) else path


def upstream_head(
    method: bytes,
    target: bytes,
    route: Route,
    host_line: bytes,
    scan: http.HeaderScan,
    *,
    chunked: bool,
    forwarding: bytes,
    upgrade: bytes | None = None,
) -> bytes:
    """The request head for the upstream, HTTP/1.1 with keep-alive (the default).

    `host_line` is the client's Host unless the route sends the upstream's own;
    `forwarding` holds the Forwarded/X-Forwarded-*/X-Certgate-* fields; `upgrade` the
    protocols offered (RFC 9110 section 7.8: with the Upgrade connection option).
    """
    return b"".join(
        (
            method,
            b" ",
            route.upstream_target(target),
            b" HTTP/1.1\r\n",
            route.upstream.host_line if route.upstream_host else host_line,
            scan.block,
            http.CHUNKED_LINE if chunked else b"",
            forwarding,
            b"" if upgrade is None else b"Connection: Upgrade\r\nUpgrade: " + upgrade + http.CRLF,
            http.CRLF,
        )
    )
