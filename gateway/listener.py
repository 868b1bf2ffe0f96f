"""One TLS listener: socket, TLS policy, SNI selection, and the app protocol behind it.

The listener accepts connections itself and hands each to a :class:`TlsConnection`
(OpenSSL on the socket, see ``gateway.tls.transport``), which reports its handshake result
here; behind it runs the HTTP/IPP proxy or the TCP pipe. The socket is opened with
``SO_REUSEPORT`` so several worker processes share a port.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from typing import Any, cast

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
from gateway.tls.contexts import ChainContext, ContextCache, new_context
from gateway.tls.policy import ServerPolicy
from gateway.tls.selector import SnapshotRef, SniSelector
from gateway.tls.transport import TlsConnection

log = logging.getLogger("certgate.listener")
HTTP_ALPN = ("http/1.1",)


BACKLOG = 1024
ACCEPT_BATCH = 64
"""Connections accepted per readiness callback before other work gets a turn."""
ACCEPT_RETRY_S = 1.0
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


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


def server_policy(cfg: ListenerConfig) -> ServerPolicy:
    """What every context serving this listener enforces (see ``gateway.tls.policy``).

    ipps stops at TLS 1.2: libcups (ipptool, CUPS clients) drops and redials the connection
    forever when it receives TLS 1.3 session tickets, and pyOpenSSL has no call to send none
    (``SSL_CTX_set_num_tickets``). TLS 1.2 sends a ticket only to a client that asks for one.
    """
    tls = cfg.tls
    kw: dict[str, Any] = {"min_version": tls.min_version, "alpn": listener_alpn(cfg),
                          "max_version": "1.2" if cfg.kind == "ipps" else "1.3"}
    for name in ("ciphers", "ciphersuites", "groups"):
        value = getattr(tls, name)
        if value is not None:
            kw[name] = value
    return ServerPolicy(**kw)


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
                         upstream_response_timeout_s=cfg.upstream_response_timeout_s,
                         upgrade_protocols=frozenset(p.encode() for p in cfg.upgrade_protocols),
                         tunnel_idle_timeout_s=cfg.tunnel_idle_timeout_s,
                         ipp_max_attributes_bytes=cfg.ipp_max_attributes_bytes)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Listener:
    """A configured listener: its socket, the accept loop and the open connections."""

    def __init__(self, config: ListenerConfig, *, ref: SnapshotRef, cache: ContextCache,
                 default: ChainContext, metrics: Metrics, access_log: AccessLog,
                 reuse_port: bool = True) -> None:
        self.config = config
        self.name = config.name
        self.metrics = metrics
        self.access_log = access_log
        self._reuse_port = reuse_port
        http = config.kind in ("https", "ipps")
        self.alpn = listener_alpn(config)
        self.policy = server_policy(config)
        # The base context only starts handshakes: the selector always switches to a chain
        # context (or to ``refusal``, which has no certificate), each built from the policy.
        self.selector = SniSelector(ref=ref, cache=cache, default=default, policy=self.policy,
                                    refusal=new_context(self.policy), strict=config.strict_sni)
        self.base_context = new_context(self.policy)
        self.base_context.set_tlsext_servername_callback(self.selector)
        self._default_names = default.served.names
        self._settings = proxy_settings(config) if http else None
        self._pool = UpstreamPool(tunnels=metrics.tunnels_for(self.name)) if http else None
        self._connections: set[TlsConnection] = set()
        self._sock: socket.socket | None = None
        self._family = int(socket.AF_INET)
        self._accepting = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        """Bind (unless given a socket) and start accepting."""
        self._sock = sock or open_socket(self.config.bind, reuse_port=self._reuse_port)
        self._family = int(self._sock.family)  # socket.family builds an enum on every read
        self._loop = asyncio.get_running_loop()
        self._resume_accepting()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    def _resume_accepting(self) -> None:
        if self._sock is not None and self._loop is not None and not self._accepting:
            self._accepting = True
            self._loop.add_reader(self._sock.fileno(), self._on_acceptable)

    def _on_acceptable(self) -> None:
        lsock, loop = self._sock, self._loop
        assert lsock is not None and loop is not None
        family, limit = self._family, self.config.max_connections
        timeout = self.config.handshake_timeout_s
        for _ in range(ACCEPT_BATCH):
            try:
                fd, peer = lsock._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _OUT_OF_RESOURCES:
                    # Accepting again at once would spin on the same error (asyncio does
                    # the same): pause, let connections close, try again.
                    log.error("listener %s cannot accept (%s); retrying in %.0f s",
                              self.name, e.strerror, ACCEPT_RETRY_S)
                    self._accepting = False
                    loop.remove_reader(lsock.fileno())
                    loop.call_later(ACCEPT_RETRY_S, self._resume_accepting)
                    return
                continue  # the client gave up in the queue (ECONNABORTED...)
            sock = socket.socket(family, socket.SOCK_STREAM, 0, fd)
            if len(self._connections) >= limit:
                sock.close()  # over the connection limit: before any TLS work
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connections.add(
                TlsConnection(loop, sock, peer, self.base_context, self._app, self, timeout))

    def _app(self) -> asyncio.Protocol:
        if self._settings is not None and self._pool is not None:
            conn: dict[str, Any] = {}  # filled after the handshake, read per request
            tls: list[TlsConnection] = []  # the connection, once the context is built
            return ProxyProtocol(self._settings, self._pool,
                                 lambda t: self._connection_context(t, conn, tls),
                                 lambda record: self._on_request(record, conn, tls), self._loop)
        host, _, port = (self.config.upstream or "").rpartition(":")
        return _TcpApp(self, host=host, port=int(port),
                       connect_timeout_s=self.config.upstream_connect_timeout_s)

    # -- TlsHooks -------------------------------------------------------------------------

    def handshake_done(self, conn: TlsConnection, result: str) -> None:
        """Count the handshake by result (ok, no_sni, unknown_sni, failed)."""
        self.metrics.handshakes[(self.name, result)] += 1

    def connection_closed(self, conn: TlsConnection) -> None:
        """A connection ended."""
        self._connections.discard(conn)

    @staticmethod
    def connection_info(transport: asyncio.BaseTransport) -> dict[str, Any]:
        """Client address, SNI, account and TLS version of an established connection."""
        conn = cast(TlsConnection, transport)
        peer = conn.get_extra_info("peername") or ("", 0)
        ssl_conn = conn.get_extra_info("ssl_object")
        served = conn.context.served if conn.certgate_result == "ok" else None  # type: ignore[attr-defined]
        return {"client": peer[0], "client_port": peer[1], "sni": conn.certgate_sni,
                "account": served.account_id if served else None,
                "tls": ssl_conn.get_protocol_version_name(), "served": served}

    def _connection_context(self, transport: asyncio.Transport, conn: dict[str, Any],
                            tls: list[TlsConnection]) -> ConnectionContext:
        if isinstance(transport, TlsConnection):
            tls.append(transport)
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

    def _on_request(self, record: RequestRecord, conn: dict[str, Any],
                    tls: list[TlsConnection]) -> None:
        m, name = self.metrics, self.name
        m.requests[(name, record.status)] += 1  # label text is made at scrape time
        m.bytes[(name, "in")] += record.bytes_in
        self._on_request_detail(record)
        if not tls:
            self._log_request(record, conn, record.bytes_out)
            return
        # The response's bytes may still wait for the socket: log what the client was sent
        # once they left, or once the connection ended without them. The unsent bytes are
        # the end of this response (its body), so the body bytes sent are the body minus them.
        transport = tls[0]
        end = transport.bytes_written
        transport.call_when_sent(end, lambda sent: self._log_request(
            record, conn, max(0, record.bytes_out - (end - sent))))

    def _on_request_detail(self, record: RequestRecord) -> None:
        m, name = self.metrics, self.name
        if record.upstream_latency_s is not None:
            m.upstream_latency.observe(name, record.upstream_latency_s)
        if record.ipp_operation is not None:
            status = "none" if record.ipp_status is None else f"0x{record.ipp_status:04x}"
            m.ipp_operations[(name, record.ipp_operation, status)] += 1

    def _log_request(self, record: RequestRecord, conn: dict[str, Any], bytes_out: int) -> None:
        """``bytes_out``: body bytes the client was sent (written to its socket)."""
        name = self.name
        self.metrics.bytes[(name, "out")] += bytes_out
        if not self.access_log.enabled:
            return
        self.access_log.write({"listener": name, **conn, "method": record.method,
                    "path": record.path, "host": record.host, "status": record.status,
                    "ipp_operation": record.ipp_operation,
                    "ipp_request_id": record.ipp_request_id, "ipp_status": record.ipp_status,
                    "bytes_in": record.bytes_in, "bytes_out": bytes_out,
                    "duration_ms": round(record.duration_s * 1000, 3), "error": record.error})

    def stop_accepting(self) -> None:
        """Close the listening socket; open connections carry on."""
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._accepting and self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            self._accepting = False
            sock.close()

    def drain(self) -> None:
        """Ask HTTP connections to finish their request in flight and close."""
        for conn in list(self._connections):
            app = conn.get_protocol()
            if isinstance(app, ProxyProtocol):
                app.drain()

    @property
    def active(self) -> int:
        """Open connections."""
        return len(self._connections)

    def abort_all(self) -> None:
        """Close every connection now (end of the graceful period)."""
        for conn in list(self._connections):
            conn.abort()

    async def close(self) -> None:
        """Stop accepting, close connections and the upstream pool."""
        self.stop_accepting()
        self.abort_all()
        await asyncio.sleep(0)  # the connections' connection_lost callbacks
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
        # Reported once the client's transport has written what it was given (or closed
        # first): ``bytes_out`` is what reached the client's socket, not what was handed over.
        client = self._client
        if isinstance(client, TlsConnection):
            client.call_when_sent(client.bytes_written, lambda sent: self._log(record, sent))
        else:
            self._log(record, record.bytes_out)

    def _log(self, record: PipeRecord, bytes_out: int) -> None:
        m, name = self._listener.metrics, self._listener.name
        m.bytes[(name, "in")] += record.bytes_in
        m.bytes[(name, "out")] += bytes_out
        info = dict(self._info)
        info.pop("served", None)
        self._listener.access_log.write({"listener": name, **info, "bytes_in": record.bytes_in,
                    "bytes_out": bytes_out,
                    "duration_ms": round(record.duration_s * 1000, 3), "error": record.error})
