"""Requests and responses through the proxy: headers, routes, Host rules, framing."""

from __future__ import annotations

import hashlib

import pytest

from gateway.proxy import ProxySettings, Route, Upstream
from tests.gateway.proxy.conftest import StartProxy, eventually, settings_for
from tests.gateway.proxy.fake_upstream import FakeUpstream
from tests.gateway.proxy.http_client import Client, build_request


async def test_forwarding_headers_replace_client_copies(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    spoofed = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("Forwarded", "for=6.6.6.6"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil"),
        ("X-Certgate-Account", "someone-else"),
        ("X-Certgate-Other", "x"),
        ("Proxy-Authorization", "Basic eA=="),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Connection", "keep-alive, X-Private"),
        ("X-Private", "hop"),
        ("User-Agent", "test/1"),
    ]
    response = await client.request("GET", "/a/b?q=1", host="Proxy.Test:8443", headers=spoofed)
    await client.close()

    assert response.status == 200
    seen = upstream.requests[0]
    assert seen.target == "/a/b?q=1"
    assert seen.header("Host") == "Proxy.Test:8443"
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
    assert seen.header("X-Forwarded-Proto") == "http"
    assert seen.header("X-Forwarded-Host") == "Proxy.Test:8443"
    assert seen.header("Forwarded") == 'for=127.0.0.1;proto=http;host="Proxy.Test:8443"'
    assert seen.header("X-Certgate-Account") == "acct-1"
    assert seen.header("User-Agent") == "test/1"
    for dropped in ("X-Certgate-Other", "Proxy-Authorization", "Keep-Alive", "TE", "X-Private"):
        assert seen.header(dropped) is None, dropped
    assert seen.header("Connection") is None
    [record] = proxy.records
    assert (record.method, record.path, record.host, record.status) == (
        "GET",
        "/a/b",
        "proxy.test",
        200,
    )
    assert record.bytes_out == len(response.body) and record.error is None
    assert record.upstream_latency_s is not None and record.ipp_operation is None


async def test_without_account_no_account_header(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port), account_id=None)
    client = await Client.open(proxy.port)
    response = await client.request("GET", "/", headers=[("X-Certgate-Account", "forged")])
    await client.close()
    assert response.status == 200
    assert upstream.requests[0].header("X-Certgate-Account") is None


async def test_upstream_host_route_sends_upstream_authority(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port, upstream_host=True))
    client = await Client.open(proxy.port)
    response = await client.request("GET", "/", host="printer.example")
    await client.close()
    assert response.status == 200
    seen = upstream.requests[0]
    assert seen.header("Host") == f"127.0.0.1:{upstream.port}"
    assert seen.header("Forwarded") == "for=127.0.0.1;proto=http;host=printer.example"


async def test_foreign_host_gets_421_and_connection_stays_usable(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    checked: list[str] = []

    def allowed(host: str) -> bool:
        checked.append(host)
        return host == "mine.example"

    proxy = await start_proxy(settings_for(upstream.port), allowed=allowed)
    client = await Client.open(proxy.port)
    refused = await client.request("POST", "/", host="Other.Example.:443", body=b"secret")
    accepted = await client.request("GET", "/", host="mine.example")
    await client.close()
    assert refused.status == 421
    assert accepted.status == 200
    assert checked == ["other.example", "mine.example"]
    assert [r.target for r in upstream.requests] == ["/"]
    assert [r.status for r in proxy.records] == [421, 200]


async def test_missing_duplicate_or_malformed_host_is_400(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    for request in (
        build_request("GET", "/", host=None),
        build_request("GET", "/", headers=[("Host", "second.example")]),
        build_request("GET", "/", host="bad host"),
        build_request("GET", "/", host="a.example:port"),
    ):
        client = await Client.open(proxy.port)
        await client.send(request)
        response = await client.read_response()
        await client.close()
        assert response.status == 400, request
    assert upstream.requests == []


async def test_routes_longest_prefix_and_base_path(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    up = Upstream(host="127.0.0.1", port=upstream.port)
    routes = (
        Route(prefix="/", upstream=up),
        Route(prefix="/api", upstream=Upstream.parse(f"http://127.0.0.1:{upstream.port}/v2")),
        Route(
            prefix="/api/admin/", upstream=Upstream.parse(f"http://127.0.0.1:{upstream.port}/adm/")
        ),
    )
    proxy = await start_proxy(ProxySettings(routes=routes))
    client = await Client.open(proxy.port)
    for target in ("/apix", "/api", "/api?x=1", "/api/items/1", "/api/admin/users", "/other"):
        assert (await client.request("GET", target)).status == 200
    await client.close()
    assert [r.target for r in upstream.requests] == [
        "/apix",
        "/v2",
        "/v2?x=1",
        "/v2/items/1",
        "/adm/users",
        "/other",
    ]


async def test_no_matching_route_is_404(upstream: FakeUpstream, start_proxy: StartProxy) -> None:
    route = Route(prefix="/only", upstream=Upstream(host="127.0.0.1", port=upstream.port))
    proxy = await start_proxy(ProxySettings(routes=(route,)))
    client = await Client.open(proxy.port)
    assert (await client.request("GET", "/elsewhere")).status == 404
    assert (await client.request("GET", "/only/x")).status == 200
    await client.close()
    assert [r.target for r in upstream.requests] == ["/only/x"]


async def test_dot_segments_and_bad_targets_are_400(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    for target in ("/a/../b", "/a/%2e%2E/b", "/./x", "/a/.."):
        assert (await client.request("GET", target)).status == 400, target
    assert (await client.request("GET", "/a/..b/c.d")).status == 200
    await client.close()
    assert [r.target for r in upstream.requests] == ["/a/..b/c.d"]


async def test_absolute_form_target_becomes_origin_form(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    response = await client.request("GET", "http://proxy.test/x/y?z=1")
    await client.close()
    assert response.status == 200
    assert upstream.requests[0].target == "/x/y?z=1"


async def test_keep_alive_on_both_sides(upstream: FakeUpstream, start_proxy: StartProxy) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    for _ in range(2):
        client = await Client.open(proxy.port)
        for i in range(5):
            response = await client.request("GET", f"/n/{i}")
            assert response.status == 200
            assert response.header("connection") is None
        await client.close()
    assert len(upstream.requests) == 10
    assert upstream.connections == 1
    assert len(proxy.protocols) == 2


async def test_pipelined_requests_answered_in_order(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    bodies = [b"first", b"", b"third" * 1000]
    await client.send(
        b"".join(
            build_request("POST" if body else "GET", f"/p/{i}", body=body or None)
            for i, body in enumerate(bodies)
        )
    )
    responses = [await client.read_response() for _ in bodies]
    await client.close()
    for i, (response, body) in enumerate(zip(responses, bodies, strict=True)):
        echo = response.json()
        assert echo["target"] == f"/p/{i}"
        assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()


async def test_chunked_request_body_is_streamed_chunked(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    pieces = [b"a" * 10, b"b" * 70000, b"c"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    await client.send(
        build_request("PUT", "/up", headers=[("Transfer-Encoding", "chunked")]) + chunked
    )
    response = await client.read_response()
    await client.close()
    echo = response.json()
    assert echo["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert upstream.requests[0].header("Transfer-Encoding") == "chunked"
    assert upstream.requests[0].header("Content-Length") is None
    assert proxy.records[0].bytes_in == sum(map(len, pieces))


async def test_content_length_request_body(upstream: FakeUpstream, start_proxy: StartProxy) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    body = bytes(range(256)) * 1000
    response = await client.request("POST", "/cl", body=body)
    await client.close()
    assert response.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert upstream.requests[0].header("Content-Length") == str(len(body))
    assert upstream.requests[0].header("Transfer-Encoding") is None


async def test_chunked_and_close_delimited_responses_rechunked(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    chunked = await client.request("GET", "/chunked")
    until_close = await client.request("GET", "/close")
    after = await client.request("GET", "/still-open")
    await client.close()
    assert chunked.body == b"hello chunked world"
    assert chunked.header("transfer-encoding") == "chunked"
    assert until_close.body == b"until close"
    assert until_close.header("transfer-encoding") == "chunked"
    assert after.status == 200
    assert [r.bytes_out for r in proxy.records[:2]] == [19, 11]


async def test_http10_client_gets_close_delimited_body(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    await client.send(
        b"GET /chunked HTTP/1.0\r\nHost: proxy.test\r\nConnection: keep-alive\r\n\r\n"
    )
    response = await client.read_response()
    assert response.header("transfer-encoding") is None
    assert response.header("connection") == "close"
    assert response.body == b"hello chunked world"
    assert await client.at_eof()
    await client.close()


async def test_http10_keep_alive_is_kept(upstream: FakeUpstream, start_proxy: StartProxy) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    request = b"GET /x HTTP/1.0\r\nHost: proxy.test\r\nConnection: keep-alive\r\n\r\n"
    await client.send(request)
    first = await client.read_response()
    await client.send(request)
    second = await client.read_response()
    await client.close()
    assert first.header("connection") == "keep-alive"
    assert (first.status, second.status) == (200, 200)


async def test_http10_expect_is_ignored_without_changing_the_next_requests(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    # The same fields, once in HTTP/1.0 (Expect ignored, RFC 9110 section 10.1.1) and once
    # in HTTP/1.1 (an expectation the proxy cannot meet: 417). Both requests share one
    # header scan on this connection, so ignoring it must not change the scan.
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    fields = b"Host: proxy.test\r\nConnection: keep-alive\r\nExpect: something-else\r\n\r\n"
    await client.send(b"GET /x HTTP/1.0\r\n" + fields)
    old = await client.read_response()
    await client.send(b"GET /x HTTP/1.1\r\n" + fields)
    new = await client.read_response()
    await client.close()
    assert (old.status, new.status) == (200, 417)
    assert len(upstream.requests) == 1


async def test_trailer_fields_do_not_leak_into_the_next_requests_checks(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    # The parser reports a chunked body's trailer fields like header fields. The next
    # request carries the same fields as real headers, a second Host among them: it is
    # still refused (exactly one Host, RFC 9112 section 3.2), not served from the scan of
    # the first request's head.
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    head = b"POST /x HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n"
    await client.send(head + b"\r\n3\r\nabc\r\n0\r\nHost: other.test\r\n\r\n")
    first = await client.read_response("POST")
    await client.send(head + b"Host: other.test\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    second = await client.read_response("POST")
    await client.close()
    assert (first.status, second.status) == (200, 400)
    assert len(upstream.requests) == 1


async def test_head_204_304_carry_no_body(upstream: FakeUpstream, start_proxy: StartProxy) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    head = await client.request("HEAD", "/nobody/200")
    no_content = await client.request("GET", "/nobody/204")
    not_modified = await client.request("GET", "/nobody/304")
    after = await client.request("GET", "/after")
    await client.close()
    assert (head.status, head.header("content-length")) == (200, "1234")
    assert (no_content.status, not_modified.status, after.status) == (204, 304, 200)
    assert after.json()["target"] == "/after"
    assert upstream.connections == 1  # the upstream connection survived all three


async def test_hop_by_hop_response_fields_dropped(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    response = await client.request("GET", "/hop")
    await client.close()
    names = {name for name, _ in response.headers}
    assert response.body == b"ok" and response.header("x-kept") == "yes"
    assert names.isdisjoint(
        {"connection", "x-hop", "keep-alive", "proxy-authenticate", "trailer", "upgrade"}
    )


async def test_interim_response_not_relayed(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    response = await client.request("GET", "/interim")
    await client.close()
    assert response.status == 200 and response.interim == []
    assert response.json()["target"] == "/interim"


@pytest.mark.parametrize(
    ("offered", "forwarded"),
    [("websocket", "websocket"), ("h2c", None), ("foo/1, WebSocket", "WebSocket")],
)
async def test_declined_upgrade_and_connection_continues(
    upstream: FakeUpstream, start_proxy: StartProxy, offered: str, forwarded: str | None
) -> None:
    """Only allowed protocols are offered upstream; an upstream that answers 200 instead
    of 101 declines, and the request pipelined behind is parsed as HTTP again."""
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    upgrade = build_request(
        "GET", "/ws", headers=[("Connection", "Upgrade"), ("Upgrade", offered)]
    )
    await client.send(upgrade + build_request("GET", "/next"))
    first = await client.read_response()
    second = await client.read_response()
    await client.close()
    assert (first.json()["target"], second.json()["target"]) == ("/ws", "/next")
    assert upstream.requests[0].header("Upgrade") == forwarded
    assert upstream.requests[0].header("Connection") == ("Upgrade" if forwarded else None)
    assert first.header("upgrade") is None and first.header("connection") is None


async def test_client_connection_close_is_honoured(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    response = await client.request("GET", "/", headers=[("Connection", "close")])
    assert response.status == 200 and response.header("connection") == "close"
    assert await client.at_eof()
    await client.close()


async def test_content_length_with_transfer_encoding_is_refused(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    # RFC 9112 section 6.1: both framings at once is how requests get smuggled.
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    headers = [("Transfer-Encoding", "chunked"), ("Content-Length", "5")]
    await client.send(build_request("POST", "/", headers=headers) + b"0\r\n\r\n")
    response = await client.read_response("POST")
    await client.close()
    assert response.status == 400
    assert upstream.requests == []


async def test_half_closed_client_still_gets_its_response(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    await client.send(build_request("GET", "/half"))
    client.writer.write_eof()
    response = await client.read_response()
    assert response.json()["target"] == "/half"
    assert await client.at_eof()
    await client.close()


async def test_pipelined_requests_wait_behind_a_slow_response(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    await client.send(
        build_request("POST", "/gated/1", body=b"one")
        + build_request("POST", "/2", body=b"two")
        + build_request("GET", "/3")
    )
    await eventually(lambda: upstream.heads == ["/gated/1"])
    # The later requests are held (not forwarded) while the first response is pending.
    assert proxy.protocols[0].reading_paused
    upstream.gate.set()
    targets = [(await client.read_response()).json()["target"] for _ in range(3)]
    await client.close()
    assert targets == ["/gated/1", "/2", "/3"]
    assert upstream.heads == ["/gated/1", "/2", "/3"]
    assert upstream.connections == 1
