"""HTTP/1.1 Upgrade (RFC 9110 section 7.8): which upgrades are forwarded, and the byte tunnel
an exchange becomes after the upstream's `101 Switching Protocols`.

Only the protocols of `ProxySettings.upgrade_protocols` (WebSocket by default) are offered
to the upstream. Never `h2c`: a tunnel of HTTP/2 requests would reach the upstream without
the proxy's per-request checks (Host against the certificate, forwarding fields), the
"h2c smuggling" attack. Any other Upgrade is dropped as the hop-by-hop field it is and the
request is forwarded as an ordinary one.

After a 101 the client connection and the upstream connection are spliced: bytes pass
unchanged both ways, with back-pressure (each side's writes pause the other side's reads,
through the same callbacks as a streamed body), an idle timeout, and counts in
`TunnelStats`. The upstream connection is never returned to the pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.proxy.upstream import UpstreamConnection


class TunnelStats:
    """Counters of one listener's tunnels, read by the metrics collector when scraped.

    Plain integers (no lock): the event loop is the only writer. `bytes_in` counts bytes
    from the client to the upstream, `bytes_out` bytes from the upstream to the client.
    """

    __slots__ = ("bytes_in", "bytes_out", "closed", "opened")

    def __init__(self) -> None:
        self.opened = self.closed = self.bytes_in = self.bytes_out = 0

    @property
    def active(self) -> int:
        """Tunnels open now."""
        return self.opened - self.closed


class TunnelOwner(Protocol):
    """The exchange that became a tunnel."""

    bytes_in: int
    bytes_out: int

    def tunnel_ended(self, error: str | None) -> None:
        """The upstream closed: end the exchange and close the client connection."""


class ClientSide(Protocol):
    """The client connection's part (the proxy protocol)."""

    def write(self, data: bytes) -> None:
        """Send bytes to the client."""

    def touch(self) -> None:
        """Data moved: push the inactivity deadline back."""


def offered(value: bytes | None, allowed: frozenset[bytes]) -> bytes | None:
    """The client's Upgrade list narrowed to the allowed protocols; None if none is left.

    RFC 9110 section 7.8: Upgrade = 1#protocol, protocol = name ["/" version]; names are
    compared case-insensitively.
    """
    if value is None:
        return None
    kept = [p.strip() for p in value.split(b",") if _name(p) in allowed]
    return b", ".join(kept) if kept else None


def accepted(response_value: bytes | None, offered_value: bytes) -> bool:
    """True if a 101's Upgrade names exactly one protocol, one that was offered."""
    if response_value is None or b"," in response_value:
        return False
    return _name(response_value) in {_name(p) for p in offered_value.split(b",")}


def _name(protocol: bytes) -> bytes:
    return protocol.split(b"/", 1)[0].strip().lower()


class Tunnel:
    """Bytes both ways between a client and an upstream connection, after a 101."""

    __slots__ = ("_client", "_conn", "_owner", "_stats", "open")

    def __init__(
        self,
        owner: TunnelOwner,
        client: ClientSide,
        conn: UpstreamConnection,
        stats: TunnelStats,
    ) -> None:
        self._owner = owner
        self._client = client
        self._conn = conn
        self._stats = stats
        self.open = True
        stats.opened += 1

    def from_client(self, data: bytes) -> None:
        """Bytes the client sent: to the upstream, unchanged."""
        n = len(data)
        self._owner.bytes_in += n
        self._stats.bytes_in += n
        self._conn.write(data)
        self._client.touch()

    def from_upstream(self, data: bytes) -> None:
        """Bytes the upstream sent: to the client, unchanged."""
        n = len(data)
        self._owner.bytes_out += n
        self._stats.bytes_out += n
        self._client.write(data)
        self._client.touch()

    def client_eof(self) -> None:
        """The client will send no more: half-close the upstream side too."""
        self._conn.write_eof()

    def upstream_closed(self, error: str | None) -> None:
        """The upstream connection ended: so does the tunnel."""
        self._owner.tunnel_ended(error)

    def end(self) -> None:
        """Count the tunnel closed (once)."""
        if self.open:
            self.open = False
            self._stats.closed += 1
