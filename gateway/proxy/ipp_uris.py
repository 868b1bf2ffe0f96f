"""Rewriting the URIs of IPP responses so that clients see the gateway, not the printer.

Theory of operation. A printer names itself in its answers (`printer-uri-supported`,
`printer-more-info`, `printer-icons`, `job-uri`, ...) with the address it knows: the
upstream's internal `host:port`, or its own idea of its name (ippeveprinter says
`localhost:PORT`). A client that follows such a URI leaves the gateway. So every value with
the `uri` value tag (RFC 8010 section 3.5.2, 0x45), in any attribute group, inside
collections and in 1setOf values alike, is rewritten when its authority names the upstream:

* the upstream's configured `host:port`, and `localhost`/`127.0.0.1`/`[::1]` at its port
  (a loopback name can only mean the speaker itself);
* any authority the same response gives in `printer-uri-supported` or `job-printer-uri`:
  those attributes are, by definition, the printer's names for itself.

`ipp`/`ipps` URIs become `ipps://PUBLIC/...`, `http`/`https` ones `https://PUBLIC/...`
(PUBLIC is the name and port the client used). With a route whose upstream has a base path,
the base path is mapped back to the route prefix. URIs naming other hosts, other ports, or
with other schemes (`urn:uuid:`, `mailto:`) are left alone.

Requests go the other way only where needed: printers match `printer-uri`/`job-uri` by
path alone, so on a route with a base path the request's URIs naming the client's Host are
given the upstream's authority and path (`UriMap.for_request`); elsewhere requests pass
as sent.

`AttributeRewriter` is sans-io: it is fed the response body as it arrives, holds it until
the end-of-attributes-tag (RFC 8010 section 3.1.1), then hands back the rewritten
attributes section and every later byte (document data) untouched. It holds at most
`limit` bytes plus the piece that crossed it: a longer attributes section, a malformed or a
truncated message is passed through unmodified, byte for byte, so the HTTP framing always
matches what was announced.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

from gateway.proxy.settings import Route, Upstream

DEFAULT_LIMIT = 1 << 20
URI_TAG = 0x45  # RFC 8010 section 3.5.2
END_OF_ATTRIBUTES_TAG = 0x03
_MAX_VALUE = 0xFFFF  # value-length is two octets
_U16 = struct.Struct(">H")
_DEFAULT_PORTS = {b"ipp": 631, b"ipps": 631, b"http": 80, b"https": 443}  # RFC 7472, 9110
_SECURE = {b"ipp": b"ipps", b"ipps": b"ipps", b"http": b"https", b"https": b"https"}
_PLAIN = {b"ipp": b"ipp", b"ipps": b"ipp", b"http": b"http", b"https": b"http"}
_SELF_NAMING = frozenset((b"printer-uri-supported", b"job-printer-uri"))
_LOOPBACK_NAMES = (b"localhost", b"127.0.0.1", b"[::1]")


@dataclass(frozen=True, slots=True, kw_only=True)
class UriMap:
    """Which URI authorities to replace, and with what.

    `internal` holds lower-case `host:port` keys (explicit port, IPv6 bracketed) to
    replace with `public` (a `host:port`). `secure` picks `ipps`/`https` (a TLS listener)
    or `ipp`/`http`. A path under `from_path` is moved under `to_path`; None: paths stay.
    """

    internal: frozenset[bytes]
    public: bytes
    secure: bool = True
    from_path: bytes | None = None
    to_path: bytes = b""

    @classmethod
    def for_route(cls, route: Route, public: bytes, *, secure: bool = True) -> UriMap:
        """Responses from `route`'s upstream to a client that used `public`.

        The upstream's base path goes back to the route prefix (the reverse of
        `Route.upstream_target`).
        """
        base = route.upstream.base_bytes
        return cls(
            internal=upstream_names(route.upstream),
            public=public,
            secure=secure,
            from_path=base or None,
            to_path=route.prefix_bytes.rstrip(b"/"),
        )

    @classmethod
    def for_request(cls, route: Route, public: bytes) -> UriMap | None:
        """Requests to `route`'s upstream; None when they need no rewriting.

        Printers match `printer-uri`/`job-uri` by path only (ippeveprinter and CUPS answer
        client-error-not-found to another path, whatever the host), so only a route that
        changes the path (a base path) needs it; the URI then names the upstream itself.
        """
        base = route.upstream.base_bytes
        if not base:
            return None
        name = public if public.endswith(b"]") else public.rpartition(b":")[0] or public
        names = {public.lower(), *(name.lower() + b":%d" % p for p in (631, 443))}
        return cls(
            internal=frozenset(names),
            public=route.upstream.authority.lower().encode("ascii"),
            secure=False,
            from_path=route.prefix_bytes.rstrip(b"/"),
            to_path=base,
        )

    def rewrite(self, uri: bytes, learned: frozenset[bytes] = frozenset()) -> bytes | None:
        """The new form of `uri` if it names an `internal` (or `learned`) authority, else None."""
        parts = split_uri(uri)
        if parts is None:
            return None
        scheme, userinfo, key, rest = parts
        if key not in self.internal and key not in learned:
            return None
        schemes = _SECURE if self.secure else _PLAIN
        new = b"".join((schemes[scheme], b"://", userinfo, self.public, self._path(rest)))
        return new if len(new) <= _MAX_VALUE else None

    def _path(self, rest: bytes) -> bytes:
        start = self.from_path
        if start is None or not rest.startswith(start):
            return rest
        tail = rest[len(start) :]
        if tail and tail[:1] not in b"/?#":
            return rest  # /ipp/printer2 is not under /ipp/print
        path = self.to_path + tail
        return path if path.startswith(b"/") else b"/" + path


@lru_cache(maxsize=256)
def upstream_names(upstream: Upstream) -> frozenset[bytes]:
    """The authorities that always name `upstream`: its own, and loopback at its port."""
    port = b"%d" % upstream.port
    names = {upstream.authority.lower().encode("ascii")}
    names.update(name + b":" + port for name in _LOOPBACK_NAMES)
    return frozenset(names)


def public_authority(host: str, host_value: bytes, listener_port: int | None) -> bytes:
    """`host:port` as the client used it: the Host's port, else the listener's port.

    `host` is the parsed Host (lower case, no brackets); `host_value` the raw field value.
    """
    value = host_value.strip()
    port = value.rpartition(b":")[2] if not value.endswith(b"]") else b""
    name = b"[" + host.encode("ascii") + b"]" if ":" in host else host.encode("ascii")
    if b":" in value and port.isdigit():
        return name + b":" + port
    return name if listener_port is None else name + b":%d" % listener_port


def split_uri(uri: bytes) -> tuple[bytes, bytes, bytes, bytes] | None:
    """(scheme, `userinfo@`, authority key `host:port`, rest) of an ipp/http(s) URI, or None.

    The key is lower case with the scheme's default port made explicit (RFC 3986 section
    6.2.3), so `IPP://LocalHost/x` and `ipp://localhost:631/x` name the same printer.
    """
    sep = uri.find(b"://")
    if sep <= 0:
        return None
    scheme = uri[:sep].lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default is None:
        return None
    start = sep + 3
    end = len(uri)
    for stop in (b"/", b"?", b"#"):
        at = uri.find(stop, start, end)
        if at >= 0:
            end = at
    userinfo, at_sign, hostport = uri[start:end].rpartition(b"@")
    key = _authority_key(hostport.lower(), default)
    if key is None:
        return None
    return scheme, userinfo + at_sign, key, uri[end:]


def _authority_key(hostport: bytes, default: int) -> bytes | None:
    if hostport.startswith(b"["):
        close = hostport.find(b"]")
        if close < 0:
            return None
        host, after = hostport[: close + 1], hostport[close + 1 :]
    else:
        host, colon, port = hostport.partition(b":")
        after = colon + port
        host = host[:-1] if host.endswith(b".") else host  # absolute DNS name
        if b"[" in host or b"]" in host:
            return None
    if not host or (after and not after.startswith(b":")):
        return None
    digits = after[1:]
    if digits and (not digits.isdigit() or len(digits) > 5):
        return None
    port = (digits.lstrip(b"0") or b"0") if digits else b"%d" % default
    return host + b":" + port


_MORE, _END, _BAD = range(3)


class AttributeRewriter:
    """Holds an IPP message until its attributes end, then rewrites its `uri` values.

    `feed(piece)` returns None while it still needs bytes, else the bytes to forward (the
    first time: the whole held prefix; afterwards each piece unchanged). `finish()` hands
    back what is still held at the end of the body. `delta` is the size change, known once
    `feed` returned bytes; `rewritten` says whether the message was rewritten or passed
    through as it came (`reason` then says why: over the limit, malformed, truncated).
    """

    __slots__ = ("_buf", "_end", "_group", "_limit", "_map", "_name", "_pos", "_uris", "delta",
                 "done", "reason", "rewritten")

    def __init__(self, uri_map: UriMap, *, limit: int = DEFAULT_LIMIT) -> None:
        self._map = uri_map
        self._limit = limit
        self._buf = bytearray()
        self._pos = 0  # where the next unparsed item starts (0: the 8-byte header)
        self._end = 0
        self._group = 0
        self._name: bytes | None = None
        self._uris: list[tuple[int, int, bytes]] = []  # (value start, value end, name)
        self.delta = 0
        self.done = self.rewritten = False
        self.reason = ""

    def feed(self, data: bytes) -> bytes | None:
        """Add a piece of the body; see the class docstring."""
        if self.done:
            return data
        self._buf += data
        state = self._scan()
        if state == _END:
            return self._rewrite()
        if state == _BAD:
            return self._give_up("malformed IPP attributes")
        if len(self._buf) > self._limit:
            return self._give_up(f"IPP attributes longer than {self._limit} bytes")
        return None

    def finish(self) -> bytes:
        """The body ended: what is still held, unmodified (a truncated message)."""
        if self.done:
            return b""
        return self._give_up("IPP message ends before its end-of-attributes-tag")

    def _give_up(self, reason: str) -> bytes:
        self.done, self.reason = True, reason
        out, self._buf = bytes(self._buf), bytearray()
        return out

    def _scan(self) -> int:
        """Walk complete attributes from `_pos`; a partial one is re-read on the next feed."""
        buf, pos, n = self._buf, self._pos, len(self._buf)
        if pos == 0:
            if n < 8:
                return _MORE
            if buf[0] not in (1, 2):  # RFC 8010 section 3.1.1: version 1.x or 2.x
                return _BAD
            pos = self._pos = 8
        while pos < n:
            tag = buf[pos]
            if tag < 0x10:  # a delimiter: begin-attribute-group or end-of-attributes
                if tag == END_OF_ATTRIBUTES_TAG:
                    self._end = pos + 1
                    return _END
                if tag == 0:
                    return _BAD  # reserved (RFC 8010 section 3.5.1)
                self._group, self._name = tag, None
                pos = self._pos = pos + 1
                continue
            if not self._group or pos + 3 > n:
                return _BAD if not self._group else _MORE
            name_len = _U16.unpack_from(buf, pos + 1)[0]
            value_at = pos + 3 + name_len
            if value_at + 2 > n:
                return _MORE
            end = value_at + 2 + _U16.unpack_from(buf, value_at)[0]
            if end > n:
                return _MORE
            if name_len:
                self._name = bytes(buf[pos + 3 : value_at])
            elif self._name is None:
                return _BAD  # an additional value with no attribute before it
            if tag == URI_TAG:
                self._uris.append((value_at + 2, end, self._name))
            pos = self._pos = end
        return _MORE

    def _rewrite(self) -> bytes:
        buf, uri_map = self._buf, self._map
        learned = set()
        for start, end, name in self._uris:
            if name in _SELF_NAMING:
                parts = split_uri(bytes(buf[start:end]))
                if parts is not None:
                    learned.add(parts[2])
        names = frozenset(learned)
        pieces: list[bytes | bytearray] = []
        done_to = 0
        for start, end, _ in self._uris:
            new = uri_map.rewrite(bytes(buf[start:end]), names)
            if new is None:
                continue
            # The value-length field sits right before the value.
            pieces += (buf[done_to : start - 2], _U16.pack(len(new)), new)
            self.delta += len(new) - (end - start)
            done_to = end
        pieces.append(buf[done_to:])
        self.done = self.rewritten = True
        self._buf, self._uris = bytearray(), []
        return b"".join(pieces)
