"""The served TLS policy is the configured one, on every route to a chain: by SNI (ECDSA and
RSA tenants), without SNI, and for an unknown name (the default chain). Real handshakes with
Python's ssl and openssl s_client."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from certstore.persistence.keyfile import read_master_key
from certstore.store import CertStore
from tests.gateway.harness import init_store, running_gateway, upstream_server

# (server name or None, what it reaches)
ROUTES = [("acme.test", "ECDSA tenant"), ("globex.test", "RSA tenant"), (None, "no SNI"),
          ("unknown.example", "default chain")]


@pytest.fixture
async def tenants(tmp_path: Path) -> None:
    key = await init_store(tmp_path)
    store = await CertStore.open(tmp_path / "certgate.sqlite", read_master_key(key))
    try:
        acme = await store.create_account(name="Acme", kind="customer", domains=["acme.test"])
        await store.generate_chain(acme.id, purpose="tls", domain="acme.test")
        globex = await store.create_account(name="Globex", kind="customer",
                                            domains=["globex.test"])
        await store.generate_chain(globex.id, purpose="tls", domain="globex.test",
                                   key_type="rsa-2048")
    finally:
        await store.close()


def _listener(up: int, **tls: object) -> dict[str, object]:
    return {"name": "web", "kind": "https", "bind": "127.0.0.1:0",
            "upstream": f"http://127.0.0.1:{up}", "tls": tls}


def _s_client(port: int, name: str | None, *args: str) -> tuple[bool, str]:
    """openssl s_client (Debian's OpenSSL 3.0); whether a session was established."""
    sni = ["-servername", name] if name else ["-noservername"]
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *sni, *args],
                         input="", capture_output=True, text=True, timeout=30)
    text = out.stdout + out.stderr
    established = out.returncode == 0 and "Cipher is (NONE)" not in text
    return established, text


def _python(port: int, name: str | None, *, ciphers: str | None = None,
            tls13: bool = True) -> tuple[str, str]:
    """A Python ssl handshake; (version, cipher) or raises ssl.SSLError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if not tls13:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        version, cipher = tls.version(), tls.cipher()
        assert version is not None and cipher is not None
        return version, cipher[0]


async def _refused(port: int, name: str | None, **kw: object) -> bool:
    try:
        await asyncio.to_thread(_python, port, name, **kw)  # type: ignore[arg-type]
    except (ssl.SSLError, ConnectionError):
        return True
    return False


async def test_suites_and_groups_outside_the_default_policy_are_refused_everywhere(
        tmp_path: Path, tenants: None) -> None:
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        port = gw.listeners["web"].port
        for name, route in ROUTES:
            # In policy: works (the control that makes the refusals mean something).
            version, cipher = await asyncio.to_thread(_python, port, name, tls13=False)
            assert version == "TLSv1.2" and "GCM" in cipher, route
            ok, text = await asyncio.to_thread(_s_client, port, name, "-groups", "X25519")
            assert ok and "Server Temp Key: X25519" in text, (route, text)
            # TLS 1.2 CBC and static-RSA suites (what sslyze flagged): refused.
            assert await _refused(port, name, tls13=False, ciphers=(
                "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:"
                "ECDHE-RSA-AES256-SHA384:AES128-GCM-SHA256:AES256-SHA")), route
            # A TLS 1.3 suite outside the policy: refused.
            ok, text = await asyncio.to_thread(
                _s_client, port, name, "-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256")
            assert not ok, (route, text)
            # Groups outside the policy, for TLS 1.3 and for TLS 1.2's ECDHE: refused.
            for group in ("X448", "secp521r1"):
                for version_flag in ("-tls1_3", "-tls1_2"):
                    ok, text = await asyncio.to_thread(
                        _s_client, port, name, version_flag, "-groups", group)
                    assert not ok, (route, group, version_flag, text)


async def test_a_narrowed_policy_serves_only_what_it_lists(tmp_path: Path,
                                                           tenants: None) -> None:
    narrowed = _listener(0, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384",
                         ciphersuites="TLS_AES_256_GCM_SHA384", groups=["secp384r1"])
    async with upstream_server() as up:
        narrowed["upstream"] = f"http://127.0.0.1:{up}"
        async with running_gateway(tmp_path, [narrowed]) as gw:
            port = gw.listeners["web"].port
            for name, route in ROUTES:
                # Python offers every suite and X25519 first: the listener picks its own.
                assert await asyncio.to_thread(_python, port, name) == (
                    "TLSv1.3", "TLS_AES_256_GCM_SHA384"), route
                _, cipher = await asyncio.to_thread(_python, port, name, tls13=False)
                assert cipher in ("ECDHE-ECDSA-AES256-GCM-SHA384",
                                  "ECDHE-RSA-AES256-GCM-SHA384"), route
                # Intermediate's other suites are not served by this listener.
                assert await _refused(port, name, tls13=False, ciphers=(
                    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")), route
                ok, text = await asyncio.to_thread(
                    _s_client, port, name, "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
                assert not ok, (route, text)
                ok, text = await asyncio.to_thread(_s_client, port, name, "-groups", "X25519")
                assert not ok, (route, text)
                ok, text = await asyncio.to_thread(_s_client, port, name, "-groups",
                                                   "X25519:secp384r1")
                assert ok and "Server Temp Key: ECDH, secp384r1" in text, (route, text)


async def test_min_version_1_3_refuses_tls_1_2_on_every_route(tmp_path: Path,
                                                              tenants: None) -> None:
    async with upstream_server() as up, running_gateway(
            tmp_path, [_listener(up, min_version="1.3")]) as gw:
        port = gw.listeners["web"].port
        for name, route in ROUTES:
            assert await _refused(port, name, tls13=False), route
            assert (await asyncio.to_thread(_python, port, name))[0] == "TLSv1.3", route
