"""In-process gateway for tests: a real store, real listeners on loopback, a real upstream."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certstore.persistence.keyfile import create_master_key, read_master_key
from certstore.store import CertStore
from gateway.config import parse_config
from gateway.server import Gateway


async def init_store(data_dir: Path) -> Path:
    """``certgate init`` equivalent (ECDSA CA for speed); returns the master key path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key_path = data_dir / "master.key"
    create_master_key(key_path)
    store, _ = await CertStore.initialize(data_dir / "certgate.sqlite",
                                          read_master_key(key_path), ca_key_type="ecdsa-p256")
    await store.close()
    return key_path


@asynccontextmanager
async def running_gateway(data_dir: Path, listeners: list[dict[str, Any]],
                          **extra: Any) -> AsyncIterator[Gateway]:
    """Start a Gateway in this event loop on an initialised data dir."""
    config = parse_config({"data_dir": str(data_dir), "listeners": listeners, **extra},
                          base_dir=data_dir)
    gateway = await Gateway.start(config, reuse_port=False)
    try:
        yield gateway
    finally:
        await gateway.close()


@asynccontextmanager
async def upstream_server(handler: Any = None) -> AsyncIterator[int]:
    """A real aiohttp upstream on 127.0.0.1; echoes what it received by default."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"method": request.method, "path": request.path_qs,
                                  "host": request.host, "headers": dict(request.headers),
                                  "body_len": len(body)})

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", handler or echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port
    finally:
        await runner.cleanup()


def client_context(ca_pem: str | bytes | None = None) -> ssl.SSLContext:
    """A verifying client context trusting ``ca_pem`` only (or nothing verified if None)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_pem is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=ca_pem if isinstance(ca_pem, str) else ca_pem.decode())
    return ctx


def _handshake_blocking(port: int, server_name: str | None,
                        ctx: ssl.SSLContext) -> x509.Certificate:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        if server_name is None:
            ctx = client_context(None) if ctx.check_hostname else ctx
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return x509.load_der_x509_certificate(der)


async def handshake(port: int, server_name: str | None,
                    ctx: ssl.SSLContext | None = None) -> x509.Certificate:
    """A full handshake from a real Python ``ssl`` client (in a thread); the leaf served."""
    return await asyncio.to_thread(_handshake_blocking, port, server_name,
                                   ctx or client_context(None))


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def root_pem(store_root: x509.Certificate) -> bytes:
    return store_root.public_bytes(serialization.Encoding.PEM)
