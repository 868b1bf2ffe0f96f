"""Per-connection values: what the listener tells the proxy, and what it caches per Host."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from gateway.proxy import http

logger = logging.getLogger(__name__)

_FIELD_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")  # RFC 9110 section 5.5


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionContext:
    """What the listener knows about a client connection, from its socket and handshake.

    `host_allowed(host)` gets the request's Host, lower case, without port or trailing dot
    (IPv6 literals without brackets), and says whether this connection may reach it. It is
    called once per distinct Host value on a connection (the answer is cached).
    """

    client_host: str
    client_port: int
    account_id: str | None
    host_allowed: Callable[[str], bool]

    def __post_init__(self) -> None:
        if self.account_id is not None and not _FIELD_VALUE.fullmatch(self.account_id):
            raise ValueError(f"account_id {self.account_id!r} cannot be sent in a header field")


@dataclass(frozen=True, slots=True)
class HostInfo:
    """A Host value seen on a connection and what was derived from it (cached)."""

    value: bytes
    host: str
    allowed: bool
    host_line: bytes
    forwarded_block: bytes  # every Forwarded/X-Forwarded-*/X-Certgate-* field, serialized


class HostCache:
    """The Host values one connection used: parsed, checked and turned into fields once.

    A kept-alive connection nearly always repeats one Host, so the check with
    `host_allowed` and the Forwarded fields cost nothing after its first request.
    """

    __slots__ = ("_context", "_scheme", "client_block", "last")

    def __init__(self, context: ConnectionContext, scheme: str) -> None:
        self._context = context
        self._scheme = scheme
        self.client_block = http.client_block(context.client_host, scheme, context.account_id)
        self.last: HostInfo | None = None

    def lookup(self, value: bytes) -> HostInfo | None:
        """The checked Host value; None if malformed. The result also stays in `last`."""
        cached = self.last
        if cached is not None and cached.value == value:
            return cached
        host = http.parse_host(value)
        if host is None:
            return None
        try:
            allowed = bool(self._context.host_allowed(host))
        except Exception:
            logger.exception("proxy: host_allowed(%r) failed; refusing the host", host)
            allowed = False
        forwarded = http.host_block(self._context.client_host, self._scheme, value)
        host_line = b"Host: " + value.strip() + http.CRLF
        self.last = HostInfo(value, host, allowed, host_line, self.client_block + forwarded)
        return self.last
