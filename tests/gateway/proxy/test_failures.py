"""Failures: upstream down or slow, IPP-aware errors, timeouts, malformed requests."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from tests.gateway.proxy.conftest import StartProxy, settings_for
from tests.gateway.proxy.fake_upstream import FakeUpstream
from tests.gateway.proxy.http_client import Client, build_request

IPP_HEADERS = [("Content-Type", "application/ipp"), ("Expect", "100-continue")]


def ipp_request(
    operation_id: int = 0x000B, request_id: int = 42, version: bytes = b"\x02\x00"
) -> bytes:
    """A Get-Printer-Attributes style request with the required operation attributes."""

    def attr(tag: int, name: bytes, value: bytes) -> bytes:
        return struct.pack(">BH", tag, len(name)) + name + struct.pack(">H", len(value)) + value

    return (
        version
        + struct.pack(">Hi", operation_id, request_id)
        + b"\x01"
        + attr(0x47, b"attributes-charset", b"utf-8")
        + attr(0x48, b"attributes-natural-language", b"en")
        + attr(0x45, b"printer-uri", b"ipp://printer.example/ipp/print")
        + b"\x03"
        + b"%PDF-1.4 document data" * 100
    )


def parse_ipp(body: bytes) -> tuple[bytes, int, int, dict[str, bytes]]:
    """(version, status, request-id, operation attributes) of an IPP response."""
    status, request_id = struct.unpack(">Hi", body[2:8])
    assert body[8] == 0x01
    attrs: dict[str, bytes] = {}
    pos = 9
    while body[pos] != 0x03:
        name_len = struct.unpack(">H", body[pos + 1 : pos + 3])[0]
        name = body[pos + 3 : pos + 3 + name_len].decode()
        pos += 3 + name_len
        value_len = struct.unpack(">H", body[pos : pos + 2])[0]
        attrs[name] = body[pos + 2 : pos + 2 + value_len]
        pos += 2 + value_len
    assert pos == len(body) - 1
    return body[:2], status, request_id, attrs


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_upstream_refused_is_502(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(settings_for(closed_port()))
    client = await Client.open(proxy.port)
    response = await client.request("POST", "/x", body=b"payload")
    again = await client.request("GET", "/y")
    await client.close()
    assert (response.status, again.status) == (502, 502)
    record = proxy.records[0]
    assert record.status == 502 and record.error is not None and "connect" in record.error
    assert record.bytes_in == len(b"payload")


async def test_upstream_response_timeout_is_504(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port, upstream_response_timeout_s=0.2))
    client = await Client.open(proxy.port)
    response = await client.request("GET", "/hang")
    after = await client.request("GET", "/fine")
    await client.close()
    assert response.status == 504
    assert after.status == 200
    assert proxy.records[0].error == "upstream response timeout"


async def test_upstream_closing_without_response_is_502(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    response = await client.request("GET", "/drop")
    await client.close()
    assert response.status == 502
    assert "closed" in (proxy.records[0].error or "")


async def test_upstream_cut_mid_body_aborts_client(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await client.request("GET", "/cut")
    await client.close()
    assert proxy.records[0].status == 200 and proxy.records[0].error is not None


@pytest.mark.parametrize("expect", [True, False])
async def test_ipp_request_to_down_upstream_gets_ipp_error(
    start_proxy: StartProxy, expect: bool
) -> None:
    proxy = await start_proxy(settings_for(closed_port(), ipp=True))
    client = await Client.open(proxy.port)
    body = ipp_request(request_id=42)
    headers = (IPP_HEADERS if expect else IPP_HEADERS[:1]) + [("Content-Length", str(len(body)))]
    await client.send(build_request("POST", "/ipp/print", headers=headers))
    if expect:
        # The body is only sent after the proxy's 100 Continue, as libcups does.
        interim = await client.reader.readuntil(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    await client.send(body)
    response = await client.read_response("POST")
    second = await client.request(
        "POST",
        "/ipp/print",
        headers=IPP_HEADERS[:1],
        body=ipp_request(request_id=43, version=b"\x01\x01"),
    )
    await client.close()

    assert response.status == 200 and response.header("content-type") == "application/ipp"
    version, status, request_id, attrs = parse_ipp(response.body)
    assert (version, status, request_id) == (b"\x02\x00", 0x0502, 42)
    assert attrs["attributes-charset"] == b"utf-8"
    assert attrs["attributes-natural-language"] == b"en"
    assert b"unavailable" in attrs["status-message"]
    assert parse_ipp(second.body)[:3] == (b"\x01\x01", 0x0502, 43)
    record = proxy.records[0]
    assert record.ipp_operation == "Get-Printer-Attributes"
    assert (record.ipp_request_id, record.ipp_status) == (42, 0x0502)
    assert record.status == 200 and record.error is not None
    assert record.bytes_in == len(body)


async def test_ipp_response_timeout_gets_ipp_error(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    settings = settings_for(upstream.port, ipp=True, upstream_response_timeout_s=0.2)
    proxy = await start_proxy(settings)
    client = await Client.open(proxy.port)
    body = ipp_request(operation_id=0x0002, request_id=7)
    response = await client.request("POST", "/hang", headers=IPP_HEADERS, body=body)
    await client.close()
    assert response.interim == [100]
    assert parse_ipp(response.body)[1:3] == (0x0502, 7)
    assert proxy.records[0].ipp_operation == "Print-Job"


async def test_ipp_success_is_recorded(upstream: FakeUpstream, start_proxy: StartProxy) -> None:
    proxy = await start_proxy(settings_for(upstream.port, ipp=True))
    client = await Client.open(proxy.port)
    body = ipp_request(operation_id=0x0005, request_id=99)
    response = await client.request("POST", "/ipp/print", headers=IPP_HEADERS, body=body)
    await client.close()
    assert response.interim == [100]
    assert parse_ipp(response.body)[1:3] == (0, 99)
    seen = upstream.requests[0]
    assert seen.header("Expect") is None and seen.body_len == len(body)
    record = proxy.records[0]
    assert (record.ipp_operation, record.ipp_request_id, record.ipp_status) == ("Create-Job", 99, 0)


async def test_non_ipp_request_on_ipp_listener_gets_http_error(start_proxy: StartProxy) -> None:
    proxy = await start_proxy(settings_for(closed_port(), ipp=True))
    client = await Client.open(proxy.port)
    response = await client.request("GET", "/")
    await client.close()
    assert response.status == 502
    assert response.header("content-type") == "text/plain; charset=utf-8"


async def test_early_upstream_response_discards_rest_of_body(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    response = await client.request("POST", "/early", body=b"z" * 3_000_000)
    after = await client.request("GET", "/after")
    await client.close()
    assert response.status == 413
    assert after.json()["target"] == "/after"


async def test_local_error_discards_body_and_keeps_connection(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(
        settings_for(upstream.port), allowed=lambda host: host == "proxy.test"
    )
    client = await Client.open(proxy.port)
    refused = await client.request("POST", "/", host="other.test", body=b"q" * 500_000)
    accepted = await client.request("GET", "/ok")
    await client.close()
    assert (refused.status, accepted.status) == (421, 200)
    assert refused.header("connection") is None
    assert proxy.records[0].bytes_in == 500_000


async def test_refusal_before_100_continue_closes(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port), allowed=lambda host: False)
    client = await Client.open(proxy.port)
    await client.send(
        build_request("POST", "/", headers=[("Expect", "100-continue"), ("Content-Length", "10")])
    )
    response = await client.read_response("POST")
    assert response.status == 421 and response.interim == []
    assert response.header("connection") == "close"
    assert await client.at_eof()
    await client.close()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([("Transfer-Encoding", "gzip, chunked")], 501),
        ([("Expect", "something-else")], 417),
    ],
)
async def test_unsupported_framing_or_expectation(
    upstream: FakeUpstream, start_proxy: StartProxy, headers: list[tuple[str, str]], status: int
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    await client.send(build_request("POST", "/", headers=headers) + b"0\r\n\r\n")
    response = await client.read_response("POST")
    await client.close()
    assert response.status == status
    assert upstream.requests == []


async def test_garbage_is_400_and_closes(upstream: FakeUpstream, start_proxy: StartProxy) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    await client.send(b"HELLO THERE\r\n\r\n")
    response = await client.read_response()
    assert response.status == 400 and response.header("connection") == "close"
    assert await client.at_eof()
    await client.close()
    [record] = proxy.records
    assert (record.method, record.status) == ("", 400)
    assert (record.error or "").startswith("invalid request head")


async def test_bad_chunk_framing_in_body_is_400(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    head = build_request("POST", "/gated", headers=[("Transfer-Encoding", "chunked")])
    await client.send(head + b"5\r\nhello\r\nZZ\r\n")
    response = await client.read_response("POST")
    assert response.status == 400
    assert await client.at_eof()
    await client.close()
    assert "invalid request body" in (proxy.records[0].error or "")


async def test_oversized_head_is_431(upstream: FakeUpstream, start_proxy: StartProxy) -> None:
    proxy = await start_proxy(settings_for(upstream.port, max_header_bytes=2048))
    for headers in ([("X-Big", "v" * 3000)], [(f"X-{i}", "v" * 50) for i in range(60)]):
        client = await Client.open(proxy.port)
        await client.send(build_request("GET", "/", headers=headers))
        response = await client.read_response()
        assert response.status == 431
        assert await client.at_eof()
        await client.close()
    assert upstream.requests == []
    assert [r.status for r in proxy.records] == [431, 431]


async def test_endless_header_line_is_431_before_it_ends(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port, max_header_bytes=4096))
    client = await Client.open(proxy.port)
    await client.send(b"GET / HTTP/1.1\r\nX-Endless: ")
    for _ in range(10):
        await client.send(b"v" * 1000)
    response = await client.read_response()
    assert response.status == 431
    await client.close()


async def test_header_timeout_is_408(upstream: FakeUpstream, start_proxy: StartProxy) -> None:
    proxy = await start_proxy(settings_for(upstream.port, header_timeout_s=0.2))
    client = await Client.open(proxy.port)
    await client.send(b"GET / HTTP/1.1\r\nHost: proxy.test\r\n")
    response = await client.read_response()
    assert response.status == 408
    assert await client.at_eof()
    await client.close()
    assert [(r.status, r.error) for r in proxy.records] == [(408, "request head timeout")]


async def test_idle_keep_alive_connection_is_closed(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port, idle_timeout_s=0.2))
    client = await Client.open(proxy.port)
    assert (await client.request("GET", "/")).status == 200
    assert await client.at_eof()
    await client.close()


async def test_silent_connection_is_closed_after_header_timeout(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port, header_timeout_s=0.2))
    client = await Client.open(proxy.port)
    assert await client.at_eof()
    await client.close()
    assert proxy.records == []
