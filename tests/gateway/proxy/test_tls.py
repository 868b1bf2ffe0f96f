"""The proxy behind a real TLS listener: Python ssl clients and curl."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

from tests.gateway.proxy.conftest import TENANT, StartProxy, TlsFiles, settings_for
from tests.gateway.proxy.fake_upstream import FakeUpstream
from tests.gateway.proxy.http_client import Client


async def test_tls_client_keep_alive_and_https_forwarding(
    upstream: FakeUpstream, start_proxy: StartProxy, tls_files: TlsFiles
) -> None:
    proxy = await start_proxy(
        settings_for(upstream.port),
        ssl_context=tls_files.server_context(),
        allowed=lambda host: host == TENANT,
    )
    client = await Client.open(
        proxy.port, ssl_context=tls_files.client_context(), server_hostname=TENANT
    )
    first = await client.request("GET", "/one", host=f"{TENANT}:{proxy.port}")
    second = await client.request("POST", "/two", host=TENANT, body=b"x" * 100_000)
    foreign = await client.request("GET", "/three", host="other.example")
    await client.close()

    assert (first.status, second.status, foreign.status) == (200, 200, 421)
    seen = upstream.requests[0]
    assert seen.header("X-Forwarded-Proto") == "https"
    assert seen.header("Forwarded") == f'for=127.0.0.1;proto=https;host="{TENANT}:{proxy.port}"'
    assert second.json()["body_len"] == 100_000
    assert len(upstream.requests) == 2
    assert len(proxy.protocols) == 1


async def test_curl_chunked_upload_with_expect_100_through_tls(
    upstream: FakeUpstream, start_proxy: StartProxy, tls_files: TlsFiles, tmp_path: Path
) -> None:
    proxy = await start_proxy(
        settings_for(upstream.port),
        ssl_context=tls_files.server_context(),
        allowed=lambda host: host == TENANT,
    )
    payload = os.urandom(3_000_000)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(payload)
    url = f"https://{TENANT}:{proxy.port}/upload"
    process = await asyncio.create_subprocess_exec(
        "curl", "--silent", "--show-error", "--verbose",
        "--cacert", str(tls_files.cert),
        "--resolve", f"{TENANT}:{proxy.port}:127.0.0.1",
        "-H", "Transfer-Encoding: chunked",
        "-H", "Expect: 100-continue",
        # Long enough that a missing 100 fails the test instead of curl sending anyway.
        "--expect100-timeout", "60",
        "--data-binary", f"@{upload}",
        url, url.replace("/upload", "/after"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()

    assert process.returncode == 0, err.decode()
    assert b"< HTTP/1.1 100 Continue" in err
    assert b"Re-using existing connection" in err
    echo = json.loads(out.split(b"}{")[0] + b"}")
    assert echo["body_len"] == len(payload)
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()
    seen = upstream.requests[0]
    assert seen.header("Expect") is None
    assert seen.header("Transfer-Encoding") == "chunked"
    assert seen.header("X-Forwarded-Proto") == "https"
    assert [r.status for r in proxy.records] == [200, 200]
    assert proxy.records[0].bytes_in == len(payload)
