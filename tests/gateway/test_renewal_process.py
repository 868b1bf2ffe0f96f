"""Proof of automatic renewal: a chain with a 3-minute lifetime is renewed by a running
``certgate serve --workers 2`` (no command), once; new handshakes get the new certificate
and a connection opened before the renewal keeps working."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from certstore.persistence.keyfile import read_master_key
from certstore.store import CertStore
from tests.gateway.harness import fingerprint, handshake, upstream_server
from tests.gateway.test_serve_process import _free_port, _run, _scrape, _start


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET /ping HTTP/1.1\r\nHost: a.test\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    return head


@pytest.mark.slow(seconds=130)
@pytest.mark.timeout(300)  # the renewal point is 2 minutes in
async def test_a_three_minute_chain_is_renewed_by_the_running_gateway(tmp_path: Path) -> None:
    port, admin = _free_port(), _free_port()
    async with upstream_server() as up:
        (tmp_path / "certgate.yaml").write_text(yaml.safe_dump({
            "data_dir": "./var", "ca": {"key_type": "ecdsa-p256"}, "graceful_timeout_s": 5,
            "lifecycle": {"tls_validity": "3m", "check_interval": "5s"},
            "listeners": [{"name": "web", "kind": "https", "bind": f"127.0.0.1:{port}",
                           "upstream": f"http://127.0.0.1:{up}", "idle_timeout_s": 600}],
            "admin": {"bind": f"127.0.0.1:{admin}"}}))
        _run(tmp_path, "init")
        acc = json.loads(_run(tmp_path, "account", "create", "--name", "A", "--kind",
                              "customer", "--domain", "a.test", "--json"))
        started = time.monotonic()
        old = json.loads(_run(tmp_path, "chain", "generate", acc["id"], "--purpose", "tls",
                              "--domain", "a.test", "--json"))
        served_proc = await _start(tmp_path, "--workers", "2")
        try:
            await served_proc.wait_log("certgate started", times=2)  # both workers
            assert fingerprint(await handshake(port, "a.test")) == old["fingerprint_sha256"]
            ctx = ssl.create_default_context(cadata=_run(tmp_path, "ca", "show"))
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                           server_hostname="a.test")
            assert (await _request(reader, writer)).startswith(b"HTTP/1.1 200")
            # renewal point: a third of 3 minutes left, about 2 minutes after issuance
            deadline = started + 190
            while True:
                served = await handshake(port, "a.test", ctx)  # verified against the CA
                if fingerprint(served) != old["fingerprint_sha256"]:
                    break
                assert time.monotonic() < deadline, "the chain was not renewed in time"
                await asyncio.sleep(1)
            # not before the renewal point (about 2 minutes after issuance)
            assert time.monotonic() - started > 100
            assert served.not_valid_after_utc.isoformat() > old["not_after"].replace("Z", "")
            assert served.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [
                "a.test"]
            # the connection opened before the renewal carries on with its own chain
            assert (await _request(reader, writer)).startswith(b"HTTP/1.1 200")
            assert ssl_peer_fingerprint(writer) == old["fingerprint_sha256"]
            writer.close()
            # Any worker answers a scrape; the one that renewed publishes its counts to its
            # sibling every second: the sum reaches 1 on either within a few scrapes.
            wanted = 'certgate_lifecycle_events_total{event="renewal",result="ok"} 1.0'
            scrapes = 0
            while wanted not in await _scrape(tmp_path, admin):
                scrapes += 1
                assert scrapes < 50, "the renewal was never counted"
                await asyncio.sleep(0.2)
        finally:
            assert await served_proc.stop() == 0
    data = tmp_path / "var"
    store = await CertStore.open(data / "certgate.sqlite", read_master_key(data / "master.key"))
    try:
        renewed = [r for r in await store.audit_log() if r.action == "chain.renewed"]
        assert len(renewed) == 1, renewed  # two workers, one renewal
        assert f"old={old['id']}" in (renewed[0].detail or "")
        [tls] = [c for c in await store.list_chains(acc["id"]) if c.purpose == "tls"]
        assert tls.fingerprint_sha256 == fingerprint(served)
    finally:
        await store.close()


def ssl_peer_fingerprint(writer: asyncio.StreamWriter) -> str:
    """The fingerprint of the certificate a client connection got at its handshake."""
    sslobj = writer.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True)
    return fingerprint(x509.load_der_x509_certificate(der))
