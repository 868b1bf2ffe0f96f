"""Trusted CA import, bundle, and a client context that trusts exactly the account's CAs."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization

from certstore.errors import InvalidCertificate
from certstore.store import CertStore
from tests.certfactory import Issued, make_ca, make_leaf


def _pem(issued: Issued) -> bytes:
    return issued.pem()


async def test_pem_many_and_der_are_imported_once(store: CertStore, root_ca: Issued,
                                                  intermediate_ca: Issued) -> None:
    acc = await store.create_account(name="A", kind="customer", domains=["a.com"])
    stored = await store.import_trusted_cas(acc.id, _pem(root_ca) + _pem(intermediate_ca))
    assert [c.subject for c in stored] == ["CN=Customer Root", "CN=Customer Issuing"]
    assert all(c.is_ca for c in stored)
    der = root_ca.cert.public_bytes(serialization.Encoding.DER)
    again = await store.import_trusted_cas(acc.id, der)
    assert [c.id for c in again] == [stored[0].id]  # stored once
    listed = await store.list_trusted_cas(acc.id)
    assert len(listed) == 2
    assert listed[0].fingerprint_sha256 == root_ca.cert.fingerprint(hashes.SHA256()).hex()
    bundle = await store.trust_bundle(acc.id)
    assert bundle.count("BEGIN CERTIFICATE") == 2
    changes = [c.kind for c in await store.changes_since(0)]
    assert changes.count("trusted_ca.imported") == 2
    await store.delete_trusted_ca(acc.id, stored[0].id)
    assert (await store.trust_bundle(acc.id)).count("BEGIN CERTIFICATE") == 1


@pytest.mark.parametrize(("data", "rule"), [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"garbage that is not a certificate", "not-a-certificate"),
    (b"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n", "not-a-certificate"),
    (b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
     "not-a-certificate"),
])
async def test_bad_files_store_nothing(store: CertStore, data: bytes, rule: str) -> None:
    acc = await store.create_account(name="A", kind="customer")
    before = await store.last_seq()
    with pytest.raises(InvalidCertificate) as info:
        await store.import_trusted_cas(acc.id, data)
    assert info.value.rule == rule
    assert await store.list_trusted_cas(acc.id) == []
    assert await store.last_seq() == before


async def test_private_key_is_refused(store: CertStore, root_ca: Issued) -> None:
    acc = await store.create_account(name="A", kind="customer")
    with pytest.raises(InvalidCertificate) as info:
        await store.import_trusted_cas(acc.id, _pem(root_ca) + root_ca.key_pem())
    assert info.value.rule == "private-key-given"
    assert await store.list_trusted_cas(acc.id) == []


@pytest.fixture
async def ldaps_like_server(tmp_path: Path, intermediate_ca: Issued
                            ) -> AsyncIterator[tuple[int, Issued]]:
    """A real TLS server on loopback presenting a chain from the customer's own CA."""
    leaf = make_leaf(intermediate_ca, dns=["ldap.a.com"])
    (tmp_path / "chain.pem").write_bytes(b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in leaf.chain[:-1]))
    (tmp_path / "key.pem").write_bytes(leaf.key_pem())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, leaf
    finally:
        server.close()
        await server.wait_closed()


async def _connect(ctx: ssl.SSLContext, port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                   server_hostname="ldap.a.com")
    try:
        return await reader.readline()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass


async def test_client_context_trusts_exactly_the_account_cas(
        store: CertStore, root_ca: Issued, ldaps_like_server: tuple[int, Issued]) -> None:
    port, _ = ldaps_like_server
    trusting = await store.create_account(name="T", kind="customer")
    other = await store.create_account(name="O", kind="customer")
    await store.import_trusted_cas(trusting.id, _pem(root_ca))
    await store.import_trusted_cas(other.id, _pem(make_ca("Unrelated Root")))
    assert await _connect(await store.client_context(trusting.id), port) == b"hello\n"
    for account_id in (other.id, (await store.create_account(name="E", kind="customer")).id):
        with pytest.raises(ssl.SSLCertVerificationError):
            await _connect(await store.client_context(account_id), port)
