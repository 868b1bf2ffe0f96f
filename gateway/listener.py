"""One TLS listener: socket, TLS policy, SNI selection, and the app protocol behind it.

TLS is terminated by :class:`ListenerSSLProtocol` (asyncio's SSLProtocol, alert-delivering,
counting connections and handshake results); behind it runs the HTTP/IPP proxy or the TCP
pipe. The socket is opened with ``SO_REUSEPORT`` so several worker processes share a port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any

from gateway.config import ListenerConfig
from gateway.observe import AccessLog, Metrics
from gateway.proxy import (
    ConnectionContext,
    ProxyProtocol,
    ProxySettings,
    RequestRecord,
    Route,
    Upstream,
    UpstreamPool,
)
from gateway.tcp import PipeRecord, TcpPipe
from gateway.tls.alerting import AlertingSSLProtocol
from gateway.tls.contexts import ChainContext, ContextCache, base_context
from gateway.tls.selector import SnapshotRef, SniSelector

log = logging.getLogger("certgate.listener")
HTTP_ALPN = ("http/1.1",)


BACKLOG = 1024


def open_socket(bind: str, *, reuse_port: bool = True, backlog: int = BACKLOG) -> socket.socket:
    """A listening, non-blocking socket; ``SO_REUSEPORT`` lets workers share the port."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, int(port)))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def listener_alpn(cfg: ListenerConfig) -> tuple[str, ...]:
    """ALPN protocols: as configured, else http/1.1 for HTTP listeners and none for tcp."""
    if cfg.tls.alpn is not None:
        return cfg.tls.alpn
    return HTTP_ALPN if cfg.kind in ("https", "ipps") else ()


def proxy_settings(cfg: ListenerConfig) -> ProxySettings:
    """The proxy's settings from a listener's config."""
    routes: tuple[Route, ...]
    if cfg.upstream is not None:
        # IPP printers answer 400 to a Host that is not theirs: send the upstream's own.
        routes = (Route(prefix="/", upstream=Upstream.parse(cfg.upstream),
                        upstream_host=cfg.kind == "ipps"),)
    else:
        routes = tuple(Route(prefix=r.prefix, upstream=Upstream.parse(r.upstream),
                             upstream_host=r.upstream_host) for r in cfg.routes)
    return ProxySettings(routes=routes, ipp=cfg.kind == "ipps",
                         header_timeout_s=cfg.header_timeout_s,
                         idle_timeout_s=cfg.idle_timeout_s,
                         upstream_connect_timeout_s=cfg.upstream_connect_timeout_s,
                         upstream_response_timeout_s=cfg.upstream_response_timeout_s)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ListenerSSLProtocol(AlertingSSLProtocol):
    """TLS for one accepted connection; reports to its listener."""

    def __init__(self, listener: Listener, app: asyncio.BaseProtocol) -> None:
        # typeshed is stricter than asyncio: no waiter (None) and a float timeout are fine.
        super().__init__(asyncio.get_running_loop(), app, listener.base_context,
                         None,  # type: ignore[arg-type]
                         server_side=True,
                         ssl_handshake_timeout=listener.config.handshake_timeout_s)  # type: ignore[arg-type]
        self.listener = listener
        self.app = app
        self._counted = False

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        sslobj: Any = self._sslobj  # type: ignore[attr-defined]
        result = getattr(sslobj, "certgate_result", None) or "failed"
        if handshake_exc is not None and result != "unknown_sni":
            result = "failed"
        self._count(result)
        super()._on_handshake_complete(handshake_exc)

    def _count(self, result: str) -> None:
        if not self._counted:
            self._counted = True
            self.listener.metrics.handshakes[(self.listener.name, result)] += 1

    def connection_lost(self, exc: BaseException | None) -> None:
        # Handshake timeouts and clients leaving mid-handshake never reach
        # _on_handshake_complete: they count as failed handshakes here.
        self._count("failed")
        self.listener.forget(self)
        super().connection_lost(exc)


class _Refuse(asyncio.Protocol):
    """Over the connection limit: close at once, before any TLS work."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class Listener:
    """A configured listener and its running server."""

    def __init__(self, config: ListenerConfig, *, ref: SnapshotRef, cache: ContextCache,
                 default: ChainContext, metrics: Metrics, access_log: AccessLog,
                 reuse_port: bool = True) -> None:
        self.config = config
        self.name = config.name
        self.metrics = metrics
        self.access_log = access_log
        self._latency = metrics.upstream_latency.labels(config.name)
        self._reuse_port = reuse_port
        http = config.kind in ("https", "ipps")
        self.alpn = listener_alpn(config)
        self.selector = SniSelector(ref=ref, cache=cache, default=default, alpn=self.alpn,
                                    strict=config.strict_sni)
        self.base_context = base_context(config.tls, self.alpn,
                                         session_tickets=config.kind != "ipps")
        self.base_context.sni_callback = self.selector
        self._default_names = default.served.names
        self._settings = proxy_settings(config) if http else None
        self._pool = UpstreamPool() if http else None
        self._connections: set[ListenerSSLProtocol] = set()
        self._server: asyncio.Server | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        """Bind (unless given a socket) and start accepting."""
        sock = sock or open_socket(self.config.bind, reuse_port=self._reuse_port)
        loop = asyncio.get_running_loop()
        # create_server listen()s the socket again, with its own default backlog (100).
        self._server = await loop.create_server(self._accept, sock=sock, backlog=BACKLOG)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def _accept(self) -> asyncio.BaseProtocol:
        if len(self._connections) >= self.config.max_connections:
            return _Refuse()
        app: asyncio.BaseProtocol
        if self._settings is not None and self._pool is not None:
            conn: dict[str, Any] = {}  # filled after the handshake, read per request
            app = ProxyProtocol(self._settings, self._pool,
                                lambda t: self._connection_context(t, conn),
                                lambda record: self._on_request(record, conn))
        else:
            host, _, port = (self.config.upstream or "").rpartition(":")
            app = _TcpApp(self, host=host, port=int(port),
                          connect_timeout_s=self.config.upstream_connect_timeout_s)
        proto = ListenerSSLProtocol(self, app)
        self._connections.add(proto)
        return proto

    def forget(self, proto: ListenerSSLProtocol) -> None:
        """A connection ended."""
        self._connections.discard(proto)

    def connection_info(self, transport: asyncio.BaseTransport) -> dict[str, Any]:
        """Client address, SNI, account and TLS version of an established connection."""
        peer = transport.get_extra_info("peername") or ("", 0)
        sslobj: Any = transport.get_extra_info("ssl_object")
        result = getattr(sslobj, "certgate_result", None)
        served = sslobj.context.served if result == "ok" else None
        return {"client": peer[0], "client_port": peer[1],
                "sni": getattr(sslobj, "certgate_sni", None),
                "account": served.account_id if served else None,
                "tls": sslobj.version() if sslobj is not None else None,
                "served": served}

    def _connection_context(self, transport: asyncio.Transport,
                            conn: dict[str, Any]) -> ConnectionContext:
        info = self.connection_info(transport)
        served = info.pop("served")
        conn.update(info)
        if served is not None:
            host_allowed = served.covers
        else:
            # No SNI, or an unknown name served the default chain: no tenant may be reached
            # through it by Host (RFC 9110 section 7.4: 421 for a misdirected request).
            names = self._default_names

            def host_allowed(host: str) -> bool:
                return host in names or _is_ip(host)
        return ConnectionContext(client_host=info["client"], client_port=info["client_port"],
                                 account_id=info["account"], host_allowed=host_allowed)

    def _on_request(self, record: RequestRecord, conn: dict[str, Any]) -> None:
        m, name = self.metrics, self.name
        m.requests[(name, record.status)] += 1  # label text is made at scrape time
        m.bytes[(name, "in")] += record.bytes_in
        m.bytes[(name, "out")] += record.bytes_out
        if record.upstream_latency_s is not None:
            self._latency.observe(record.upstream_latency_s)
        if record.ipp_operation is not None:
            status = "none" if record.ipp_status is None else f"0x{record.ipp_status:04x}"
            m.ipp_operations[(name, record.ipp_operation, status)] += 1
        if not self.access_log.enabled:
            return
        self.access_log.write({"listener": name, **conn, "method": record.method,
                    "path": record.path, "host": record.host, "status": record.status,
                    "ipp_operation": record.ipp_operation,
                    "ipp_request_id": record.ipp_request_id, "ipp_status": record.ipp_status,
                    "bytes_in": record.bytes_in, "bytes_out": record.bytes_out,
                    "duration_ms": round(record.duration_s * 1000, 3), "error": record.error})

    def stop_accepting(self) -> None:
        """Close the listening socket; open connections carry on."""
        if self._server is not None:
            self._server.close()

    def drain(self) -> None:
        """Ask HTTP connections to finish their request in flight and close."""
        for proto in list(self._connections):
            if isinstance(proto.app, ProxyProtocol):
                proto.app.drain()

    @property
    def active(self) -> int:
        """Open connections."""
        return len(self._connections)

    def abort_all(self) -> None:
        """Close every connection now (end of the graceful period)."""
        for proto in list(self._connections):
            transport = getattr(proto, "_transport", None)
            if transport is not None:
                transport.abort()

    async def close(self) -> None:
        """Stop accepting, close connections and the upstream pool."""
        self.stop_accepting()
        self.abort_all()
        if self._server is not None:
            await self._server.wait_closed()
        if self._pool is not None:
            self._pool.close()


class _TcpApp(TcpPipe):
    """A TCP pipe that logs its connection with the handshake's details."""

    def __init__(self, listener: Listener, *, host: str, port: int,
                 connect_timeout_s: float) -> None:
        super().__init__(host=host, port=port, connect_timeout_s=connect_timeout_s,
                         on_close=self._report_close)
        self._listener = listener
        self._info: dict[str, Any] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._info = self._listener.connection_info(transport)
        super().connection_made(transport)

    def _report_close(self, record: PipeRecord) -> None:
        m, name = self._listener.metrics, self._listener.name
        m.bytes[(name, "in")] += record.bytes_in
        m.bytes[(name, "out")] += record.bytes_out
        info = dict(self._info)
        info.pop("served", None)
        self._listener.access_log.write({"listener": name, **info, "bytes_in": record.bytes_in,
                    "bytes_out": record.bytes_out,
                    "duration_ms": round(record.duration_s * 1000, 3), "error": record.error})
