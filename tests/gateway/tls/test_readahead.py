"""OpenSSL read-ahead on a server context: several records per recv, and the one check that
still sees records OpenSSL has read but not yet decrypted."""

from __future__ import annotations

import select
import socket
import ssl
import threading
from pathlib import Path

from gateway.tls import readahead
from tests.certfactory import Issued, make_leaf


def _server_context(tmp_path: Path, issuer: Issued) -> ssl.SSLContext:
    issued = make_leaf(issuer, dns=["ra.test"])
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(issued.pem())
    key.write_bytes(issued.key_pem())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, key)
    return ctx


def test_records_read_ahead_are_seen_by_has_pending(tmp_path: Path,
                                                    intermediate_ca: Issued) -> None:
    ctx = _server_context(tmp_path, intermediate_ca)
    read_ahead = readahead.enable(ctx)
    assert read_ahead is not None  # CPython 3.11 here: the layout is known
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE
    a, b = socket.socketpair()
    client = client_ctx.wrap_socket(a, do_handshake_on_connect=False)
    handshake = threading.Thread(target=client.do_handshake)
    handshake.start()
    server = ctx.wrap_socket(b, server_side=True)
    handshake.join(10)
    try:
        # Three records, sent before any read. A socketpair is AF_UNIX: sendall returns once
        # the bytes are queued at the peer, so all three are there for the first recv (no
        # wait needed, and none that a loaded machine could outlast).
        for record in (b"one", b"two", b"three"):
            client.sendall(record)
        assert server.recv(3) == b"one"
        # The other two records came in with the first recv: not decrypted yet, so
        # pending() cannot see them and the socket has nothing left for the poller;
        # has_pending can.
        assert server.pending() == 0
        assert select.select([server], [], [], 0)[0] == []
        pointer = read_ahead.ssl_pointer(server._sslobj)  # type: ignore[attr-defined]
        assert read_ahead.has_pending(pointer)
        assert server.recv(3) == b"two"
        assert server.recv(5) == b"three"
        assert not read_ahead.has_pending(pointer)
    finally:
        client.close()
        server.close()
