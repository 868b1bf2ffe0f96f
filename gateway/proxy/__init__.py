"""HTTP/1.1 streaming reverse proxy: the data path behind the gateway's TLS listeners.

Usage (the listener wires it; TLS is terminated by asyncio)::

    pool = UpstreamPool()
    server = await loop.create_server(
        lambda: ProxyProtocol(settings, pool, context_factory, on_request),
        host, port, ssl=ssl_context,
    )

See `protocol.py` (client side) and `exchange.py` (one request) for the theory of operation.
"""

from gateway.proxy.errors import InvalidUpstream, ProxyConfigError, ProxyError
from gateway.proxy.protocol import ConnectionContext, ProxyProtocol
from gateway.proxy.record import RequestRecord
from gateway.proxy.settings import ProxySettings, Route, Upstream
from gateway.proxy.upstream import UpstreamPool

__all__ = [
    "ConnectionContext",
    "InvalidUpstream",
    "ProxyConfigError",
    "ProxyError",
    "ProxyProtocol",
    "ProxySettings",
    "RequestRecord",
    "Route",
    "Upstream",
    "UpstreamPool",
]
