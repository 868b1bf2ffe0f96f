"""Request checks of the proxy: absolute-form targets (RFC 9112 section 3.2.2), malformed
requests pipelined behind good ones, and protected fields spelled with underscores."""

from __future__ import annotations

import pytest

from tests.gateway.proxy.conftest import StartProxy, eventually, settings_for
from tests.gateway.proxy.fake_upstream import FakeUpstream
from tests.gateway.proxy.http_client import Client, build_request


@pytest.mark.parametrize(
    ("target", "host", "status", "forwarded"),
    [
        ("http://proxy.test/x?q=1", "proxy.test", 200, "/x?q=1"),
        ("https://proxy.test:443/x", "proxy.test", 200, "/x"),
        ("https://PROXY.test./x", "proxy.test:443", 200, "/x"),
        ("http://proxy.test:8080/x", "proxy.test:8080", 200, "/x"),
        ("http://other.example/x", "proxy.test", 400, None),
        ("http://proxy.test:8080/x", "proxy.test", 400, None),
        ("https://proxy.test/x", "proxy.test:8443", 400, None),
        ("http://user@proxy.test/x", "proxy.test", 400, None),
        ("ftp://proxy.test/x", "proxy.test", 400, None),
        ("http://other.example/x", "other.example", 421, None),  # not this certificate's
    ],
)
async def test_absolute_form_must_name_the_host(
    upstream: FakeUpstream,
    start_proxy: StartProxy,
    target: str,
    host: str,
    status: int,
    forwarded: str | None,
) -> None:
    """The target's authority is what the client asks for; the proxy forwards under Host,
    so they must agree, and the target's host passes the certificate check like Host."""
    proxy = await start_proxy(
        settings_for(upstream.port), allowed=lambda name: name == "proxy.test"
    )
    client = await Client.open(proxy.port)
    await client.send(build_request("GET", target, host=host) + build_request("GET", "/after"))
    first = await client.read_response()
    second = await client.read_response()
    await client.close()
    assert (first.status, second.status) == (status, 200)
    targets = [r.target for r in upstream.requests]
    assert targets == ([forwarded] if forwarded else []) + ["/after"]


@pytest.mark.parametrize(
    "broken",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: proxy.test\r\nBad Header: x\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: proxy.test\r\n\r\n",
        b"POST /b HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["request-line", "field-name", "target", "chunk-size"],
)
async def test_malformed_request_after_good_ones_gets_its_400_and_log_line(
    upstream: FakeUpstream, start_proxy: StartProxy, broken: bytes
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    good = build_request("GET", "/one") + build_request("GET", "/two")
    await client.send(good + broken + build_request("GET", "/never"))
    responses = [await client.read_response() for _ in range(3)]
    assert await client.at_eof()
    await client.close()
    assert [r.status for r in responses] == [200, 200, 400]
    assert responses[2].header("connection") == "close"
    assert upstream.heads == ["/one", "/two"]
    assert "/never" not in upstream.heads
    await eventually(lambda: len(proxy.records) == 3)
    assert [r.status for r in proxy.records] == [200, 200, 400]
    assert proxy.records[2].error is not None and "invalid request" in proxy.records[2].error


async def test_malformed_request_while_one_is_in_flight_waits_its_turn(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    """The first answer is held by the upstream while the broken request arrives."""
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    await client.send(build_request("GET", "/gated") + b"NOT HTTP AT ALL\r\n\r\n")
    await eventually(lambda: upstream.heads == ["/gated"])
    upstream.gate.set()
    first, second = await client.read_response(), await client.read_response()
    assert await client.at_eof()
    await client.close()
    assert (first.status, second.status) == (200, 400)
    await eventually(lambda: [r.status for r in proxy.records] == [200, 400])


PROTECTED = [
    ("X_Certgate_Account", "spoofed"),
    ("x_certgate_anything", "spoofed"),
    ("X_Forwarded_For", "6.6.6.6"),
    ("X_FORWARDED_HOST", "evil.example"),
    ("x-forwarded_proto", "gopher"),
    ("Transfer_Encoding", "chunked"),
    ("Content_Length", "5"),
    ("Proxy_Authorization", "Basic eA=="),
    ("Keep_Alive", "1"),
]


async def test_protected_fields_spelled_with_underscores_are_removed(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    headers = [*PROTECTED, ("X_Custom_Field", "kept"), ("Connection", "X_Hop"), ("X_Hop", "1")]
    response = await client.request("POST", "/", headers=headers, body=b"hello")
    await client.close()
    assert response.status == 200
    seen = response.json()
    names = {name.lower().replace("_", "-") for name, _ in seen["headers"]}
    for name, _ in PROTECTED:
        assert not any(n == name.lower() for n, _ in seen["headers"])
    assert "x-custom-field" in names and "x-hop" not in names
    values = dict((k.lower(), v) for k, v in seen["headers"])
    assert values["x-certgate-account"] == "acct-1"
    assert values["x-forwarded-for"] == "127.0.0.1"
    assert seen["body_len"] == 5
