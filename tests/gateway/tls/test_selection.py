"""Certificate selection by SNI, with real Python ssl and openssl s_client clients."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certstore.persistence.keyfile import read_master_key
from certstore.store import CertStore
from gateway.server import DEFAULT_NAME
from tests.certfactory import Issued, make_leaf, p12
from tests.gateway.harness import (
    client_context,
    fingerprint,
    handshake,
    init_store,
    root_pem,
    running_gateway,
    upstream_server,
)


@pytest.fixture
async def tenants(tmp_path: Path, intermediate_ca: Issued) -> dict[str, str]:
    """Acme: a generated chain for acme.test and an imported wildcard; Globex: generated."""
    key = await init_store(tmp_path)
    store = await CertStore.open(tmp_path / "certgate.sqlite", read_master_key(key))
    try:
        acme = await store.create_account(name="Acme", kind="customer",
                                          domains=["acme.test", "print.acme.test"])
        globex = await store.create_account(name="Globex", kind="customer",
                                            domains=["globex.test"])
        generated = await store.generate_chain(acme.id, purpose="tls", domain="print.acme.test")
        wildcard = make_leaf(intermediate_ca, dns=["acme.test", "*.acme.test"])
        imported = await store.import_chain(acme.id, p12(wildcard, b"pw"), b"pw")
        rsa = await store.generate_chain(globex.id, purpose="tls", domain="globex.test",
                                         key_type="rsa-2048")
        return {"root": root_pem(store.ca_root).decode(), "generated": generated.fingerprint_sha256,
                "imported": imported.fingerprint_sha256, "rsa": rsa.fingerprint_sha256,
                "acme": acme.id, "globex": globex.id}
    finally:
        await store.close()


def _listener(port: int, **kw: object) -> dict[str, object]:
    return {"name": "web", "kind": "https", "bind": "127.0.0.1:0",
            "upstream": f"http://127.0.0.1:{port}", **kw}


async def test_exact_wildcard_no_sni_and_unknown(tmp_path: Path, tenants: dict[str, str],
                                                 intermediate_ca: Issued) -> None:
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        port = gw.listeners["web"].port
        builtin = client_context(tenants["root"])
        # exact name, verified against certgate's root
        leaf = await handshake(port, "print.acme.test", builtin)
        assert fingerprint(leaf) == tenants["generated"]
        # one-label wildcard from the imported chain, verified against the customer's CA
        theirs = client_context(intermediate_ca.chain[-1].public_bytes(Encoding.PEM))
        assert fingerprint(await handshake(port, "www.acme.test", theirs)) == tenants["imported"]
        assert fingerprint(await handshake(port, "ACME.test", theirs)) == tenants["imported"]
        assert fingerprint(await handshake(port, "globex.test", builtin)) == tenants["rsa"]
        # no SNI and unknown SNI: the default chain from the built-in CA
        for name in (None, "unknown.example", "a.b.acme.test"):
            leaf = await handshake(port, name)
            assert DEFAULT_NAME in leaf.subject.rfc4514_string()
        # a name the chain does not cover fails verification for a verifying client
        with pytest.raises(ssl.SSLCertVerificationError):
            await handshake(port, "unknown.example", builtin)


async def test_openssl_s_client_gets_and_verifies_the_chain(tmp_path: Path,
                                                             tenants: dict[str, str]) -> None:
    (tmp_path / "root.pem").write_text(tenants["root"])
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        port = gw.listeners["web"].port

        def s_client(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                                   "-CAfile", str(tmp_path / "root.pem"), "-showcerts", *args],
                                  input="", capture_output=True, text=True, timeout=20)

        ok = await asyncio.to_thread(s_client, "-servername", "print.acme.test",
                                     "-verify_return_error", "-verify_hostname",
                                     "print.acme.test")
        assert "Verify return code: 0 (ok)" in ok.stdout, ok.stdout + ok.stderr
        assert "CN = print.acme.test" in ok.stdout and "certgate Issuing CA" in ok.stdout
        tls12 = await asyncio.to_thread(s_client, "-servername", "globex.test", "-tls1_2",
                                        "-verify_return_error")
        assert "Verify return code: 0 (ok)" in tls12.stdout
        assert "Protocol  : TLSv1.2" in tls12.stdout or "TLSv1.2" in tls12.stdout
        old = await asyncio.to_thread(s_client, "-servername", "globex.test", "-tls1_1")
        assert old.returncode != 0  # TLS 1.1 refused by the default policy


async def test_strict_sni_sends_unrecognized_name_alert(tmp_path: Path,
                                                        tenants: dict[str, str]) -> None:
    async with upstream_server() as up, running_gateway(
            tmp_path, [_listener(up, strict_sni=True)]) as gw:
        port = gw.listeners["web"].port
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            await handshake(port, "unknown.example")
        # the alert reaches openssl too (gh-98078 would make this an unexpected EOF)
        out = await asyncio.to_thread(subprocess.run, [
            "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
            "unknown.example"], input="", capture_output=True, text=True, timeout=20)
        assert "unrecognized name" in out.stderr, out.stderr
        # known names and clients without SNI are still served
        assert fingerprint(await handshake(port, "print.acme.test")) == tenants["generated"]
        assert DEFAULT_NAME in (await handshake(port, None)).subject.rfc4514_string()


async def test_only_chains_valid_now_are_served(tmp_path: Path, tenants: dict[str, str],
                                                intermediate_ca: Issued) -> None:
    store = await CertStore.open(tmp_path / "certgate.sqlite",
                                 read_master_key(tmp_path / "master.key"))
    now = dt.datetime.now(dt.UTC)
    short = make_leaf(intermediate_ca, dns=["globex.test"],
                      not_after=now + dt.timedelta(seconds=3))
    try:
        chain = await store.import_chain(tenants["globex"], p12(short, b"pw"), b"pw")
        await store.update_pki(tenants["globex"], tls_bindings={"globex.test": chain.id})
    finally:
        await store.close()
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        port = gw.listeners["web"].port
        assert fingerprint(await handshake(port, "globex.test")) == chain.fingerprint_sha256
        await asyncio.sleep(max(0.0, (short.cert.not_valid_after_utc - dt.datetime.now(dt.UTC))
                                .total_seconds()) + 1.2)
        # the bound chain expired: the next valid chain serves, without any reload
        assert fingerprint(await handshake(port, "globex.test")) == tenants["rsa"]


async def test_request_host_must_belong_to_the_handshake_chain(
        tmp_path: Path, tenants: dict[str, str]) -> None:
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        port = gw.listeners["web"].port
        ctx = client_context(tenants["root"])
        connector = aiohttp.TCPConnector(ssl=ctx, resolver=_LoopbackResolver())
        async with aiohttp.ClientSession(connector=connector) as session:
            url = f"https://print.acme.test:{port}/x"
            async with session.get(url) as ok:
                body = await ok.json()
                assert ok.status == 200
                assert body["headers"]["X-Certgate-Account"] == tenants["acme"]
            # same TLS connection (keep-alive), Host of another tenant: 421
            async with session.get(url, headers={"Host": "globex.test"}) as misdirected:
                assert misdirected.status == 421
            spoof = {"X-Certgate-Account": tenants["globex"], "X-Forwarded-For": "6.6.6.6",
                     "Forwarded": "for=6.6.6.6"}
            async with session.get(url, headers=spoof) as spoofed:
                headers = (await spoofed.json())["headers"]
                assert headers["X-Certgate-Account"] == tenants["acme"]
                assert "6.6.6.6" not in headers["X-Forwarded-For"]
                assert "6.6.6.6" not in headers["Forwarded"]


class _LoopbackResolver:
    """Resolve every name to 127.0.0.1 (tenant names are not in DNS here)."""

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, object]]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port,
                 "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None
