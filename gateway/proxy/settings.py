"""Proxy settings: upstream addresses, path routes and per-listener limits.

Immutable values that validate when built (architecture convention 2). Everything the data
path needs per request (the pool key, the upstream's `Host` line, route prefixes as bytes)
is computed once here, not per request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.proxy.errors import InvalidUpstream, ProxyConfigError

_DEFAULT_PORTS = {"http": 80, "ipp": 631}
# Characters allowed in a host name or IPv4/IPv6 literal (RFC 3986 reg-name, simplified).
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._:")
_PATH_FORBIDDEN = frozenset("?# \t\r\n")


@dataclass(frozen=True, slots=True, kw_only=True)
class Upstream:
    """A plain-HTTP upstream server; `base_path` replaces the matched route prefix.

    `authority` (`host:port`, IPv6 bracketed) is the keep-alive pool's key and the value
    sent in `Host` for routes with `upstream_host=True`.
    """

    host: str
    port: int
    base_path: str = ""
    authority: str = field(init=False, repr=False, compare=False)
    host_line: bytes = field(init=False, repr=False, compare=False)
    base_bytes: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        host = self.host
        if not host or not set(host.lower()) <= _HOST_CHARS:
            raise ProxyConfigError("upstream.host", f"invalid host {host!r}")
        if not 0 < self.port < 65536:
            raise ProxyConfigError("upstream.port", f"port {self.port} is not in 1-65535")
        base = self.base_path
        if base and (not base.startswith("/") or base.endswith("/") or _has_forbidden(base)):
            raise ProxyConfigError(
                "upstream.base_path",
                f"{base!r} must be empty or start with '/', not end with '/', "
                "and carry no query, fragment or spaces",
            )
        authority = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        object.__setattr__(self, "authority", authority)
        object.__setattr__(self, "host_line", b"Host: " + authority.encode("ascii") + b"\r\n")
        object.__setattr__(self, "base_bytes", base.encode("utf-8"))

    @classmethod
    def parse(cls, url: str) -> Upstream:
        """Parse `http://host:port[/base]` (`ipp://` is accepted, default port 631).

        Raises `InvalidUpstream` (a `ValueError`) naming what is wrong.
        """
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as e:
            raise InvalidUpstream(url, f"not a valid URL: {e}") from e
        if parts.scheme not in _DEFAULT_PORTS:
            raise InvalidUpstream(
                url, "the scheme must be http (or ipp); TLS upstreams are unsupported"
            )
        if not parts.hostname:
            raise InvalidUpstream(url, "the URL names no host")
        if parts.username is not None or parts.password is not None:
            raise InvalidUpstream(url, "credentials in the URL are not supported")
        if parts.query or parts.fragment:
            raise InvalidUpstream(url, "a query or fragment is not allowed")
        try:
            return cls(
                host=parts.hostname,
                port=port if port is not None else _DEFAULT_PORTS[parts.scheme],
                base_path=parts.path.rstrip("/"),
            )
        except ProxyConfigError as e:
            raise InvalidUpstream(url, str(e)) from e


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Requests whose path starts with `prefix` (on a `/` boundary) go to `upstream`.

    With `upstream_host=True` the upstream receives its own `host:port` in `Host` (IPP
    printers such as ippeveprinter answer a foreign Host with 400); otherwise the client's
    Host is kept. The client's Host always travels in `Forwarded`/`X-Forwarded-Host`.
    """

    prefix: str
    upstream: Upstream
    upstream_host: bool = False
    prefix_bytes: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or _has_forbidden(self.prefix):
            raise ProxyConfigError(
                "routes.prefix", f"{self.prefix!r} must start with '/' and hold no query"
            )
        object.__setattr__(self, "prefix_bytes", self.prefix.encode("utf-8"))

    def matches(self, path: bytes) -> bool:
        """True if `path` is the prefix itself or continues it at a segment boundary."""
        prefix = self.prefix_bytes
        if not path.startswith(prefix):
            return False
        n = len(prefix)
        return len(path) == n or prefix.endswith(b"/") or path[n] == 0x2F

    def upstream_target(self, target: bytes) -> bytes:
        """The request target to send upstream for a client's origin-form `target`.

        Without a base path the target is forwarded unchanged. With one, the matched prefix
        is replaced by the base path (`/p/x?q` with prefix `/p`, base `/b` -> `/b/x?q`).
        """
        base = self.upstream.base_bytes
        if not base:
            return target
        # matches() guarantees the rest starts with "/" or "?" or is empty.
        return base + target[len(self.prefix_bytes.rstrip(b"/")) :]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxySettings:
    """One listener's proxy behaviour: routes (longest prefix wins), IPP mode, limits.

    `ipp=True` makes upstream failures answer `application/ipp` POSTs with an IPP response
    (status server-error-service-unavailable) instead of an HTML-free HTTP 502/504, and
    rewrites the URIs of IPP responses that name the upstream (see `ipp_uris.py`), holding
    at most `ipp_max_attributes_bytes` of a response's attributes to do so.
    `upgrade_protocols` are the HTTP/1.1 Upgrade protocols offered to the upstream (lower
    case; `h2c` is refused, see `tunnel.py`); a tunnel with no byte either way for
    `tunnel_idle_timeout_s` is closed.
    """

    routes: tuple[Route, ...]
    ipp: bool = False
    header_timeout_s: float = 10
    idle_timeout_s: float = 60
    upstream_connect_timeout_s: float = 5
    upstream_response_timeout_s: float = 60
    max_header_bytes: int = 65536
    upgrade_protocols: frozenset[bytes] = frozenset((b"websocket",))
    tunnel_idle_timeout_s: float = 600
    ipp_max_attributes_bytes: int = 1 << 20
    ordered_routes: tuple[Route, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.routes:
            raise ProxyConfigError("routes", "at least one route is required")
        prefixes = [r.prefix for r in self.routes]
        duplicates = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if duplicates:
            raise ProxyConfigError("routes", f"duplicate prefixes {duplicates}")
        for name in (
            "header_timeout_s",
            "idle_timeout_s",
            "upstream_connect_timeout_s",
            "upstream_response_timeout_s",
            "tunnel_idle_timeout_s",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ProxyConfigError(name, f"must be a positive number of seconds, got {value!r}")
        for protocol in self.upgrade_protocols:
            if protocol != protocol.lower() or not protocol or b"," in protocol:
                raise ProxyConfigError("upgrade_protocols", f"{protocol!r} is not a lower-case "
                                       "protocol name")
            if protocol == b"h2c":
                raise ProxyConfigError("upgrade_protocols", "h2c cannot be tunnelled: its "
                                       "requests would bypass the proxy's per-request checks")
        if self.max_header_bytes < 1024:
            raise ProxyConfigError("max_header_bytes", "must be at least 1024")
        if self.ipp_max_attributes_bytes < 1024:
            raise ProxyConfigError("ipp_max_attributes_bytes", "must be at least 1024")
        ordered = tuple(sorted(self.routes, key=lambda r: len(r.prefix), reverse=True))
        object.__setattr__(self, "ordered_routes", ordered)

    def match(self, path: bytes) -> Route | None:
        """The route with the longest prefix matching `path`, or None."""
        for route in self.ordered_routes:
            if route.matches(path):
                return route
        return None


def _has_forbidden(text: str) -> bool:
    return not _PATH_FORBIDDEN.isdisjoint(text)
