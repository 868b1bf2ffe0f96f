"""Fixtures for the proxy tests: real sockets on 127.0.0.1, both event loops."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.proxy import (
    ConnectionContext,
    ProxyProtocol,
    ProxySettings,
    RequestRecord,
    Route,
    Upstream,
    UpstreamPool,
)
from tests.gateway.proxy.fake_upstream import FakeUpstream

TENANT = "tenant.example"


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every socket test runs on the stdlib loop and on uvloop."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(autouse=True)
def _no_logged_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A logged error (a swallowed exception in the proxy or asyncio) fails the test."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [
        r.getMessage()
        for when in ("setup", "call", "teardown")
        for r in caplog.get_records(when)
        if r.levelno >= logging.ERROR
    ]
    assert not errors, errors


async def eventually(condition: Callable[[], object], timeout_s: float = 60) -> None:
    """Wait until `condition()` is true (a guard against hangs, not a timing assertion)."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.001)


@dataclass
class Proxy:
    """A running proxy listener and what it reported."""

    port: int
    pool: UpstreamPool
    records: list[RequestRecord] = field(default_factory=list)
    protocols: list[ProxyProtocol] = field(default_factory=list)


StartProxy = Callable[..., Awaitable[Proxy]]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream()
    await server.start()
    yield server
    await server.close()


def settings_for(port: int, **kwargs: Any) -> ProxySettings:
    """Settings with one catch-all route to 127.0.0.1:port."""
    upstream_host = kwargs.pop("upstream_host", False)
    route = Route(
        prefix="/", upstream=Upstream(host="127.0.0.1", port=port), upstream_host=upstream_host
    )
    return ProxySettings(routes=kwargs.pop("routes", (route,)), **kwargs)


@pytest.fixture
async def start_proxy() -> AsyncIterator[StartProxy]:
    servers: list[asyncio.Server] = []
    proxies: list[Proxy] = []

    async def start(
        settings: ProxySettings,
        *,
        ssl_context: ssl.SSLContext | None = None,
        allowed: Callable[[str], bool] = lambda host: True,
        account_id: str | None = "acct-1",
        protocol_class: type[ProxyProtocol] = ProxyProtocol,
        pool: UpstreamPool | None = None,
    ) -> Proxy:
        pool = pool or UpstreamPool()
        proxy = Proxy(port=0, pool=pool)

        def context(transport: asyncio.Transport) -> ConnectionContext:
            host, port = transport.get_extra_info("peername")[:2]
            return ConnectionContext(
                client_host=host, client_port=port, account_id=account_id, host_allowed=allowed
            )

        def factory() -> ProxyProtocol:
            protocol = protocol_class(settings, pool, context, proxy.records.append)
            proxy.protocols.append(protocol)
            return protocol

        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=ssl_context)
        proxy.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        proxies.append(proxy)
        return proxy

    yield start
    for server in servers:
        server.close()
    for proxy in proxies:
        for protocol in proxy.protocols:
            if protocol.transport is not None and not protocol.transport.is_closing():
                protocol.transport.abort()
        proxy.pool.close()
    for server in servers:
        await server.wait_closed()
    await asyncio.sleep(0.01)  # let connection_lost callbacks run before the loop closes


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed certificate for TENANT, localhost and 127.0.0.1."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TENANT)])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName(TENANT),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    files = TlsFiles(cert=directory / "cert.pem", key=directory / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
