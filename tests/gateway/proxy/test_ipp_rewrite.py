"""IPP responses through the proxy name the gateway; framing stays right whatever comes back.

A raw upstream (real sockets) answers each request with bytes chosen by the test, so that
Content-Length, chunked and close-delimited bodies, truncated and malformed IPP, and
oversized attribute sections can all be tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.proxy import ProxySettings
from tests.gateway.proxy import ipp_wire as w
from tests.gateway.proxy.conftest import TENANT, StartProxy, TlsFiles, settings_for
from tests.gateway.proxy.fake_upstream import FakeUpstream
from tests.gateway.proxy.http_client import Client, build_request
from tests.gateway.proxy.test_failures import IPP_HEADERS, ipp_request, parse_ipp
from tests.gateway.proxy.test_streaming import BUFFER_LIMIT, MIB, PeakSampler, _until_stalled

PUBLIC_HOST = f"{TENANT}:8631"


class RawUpstream:
    """Reads each request (Content-Length or chunked body) and writes `answer(n)` bytes.

    `answer` returns (bytes to write, close after writing).
    """

    def __init__(self, answer: Callable[[int], tuple[bytes, bool]]) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=1 << 24)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lower = head.lower()
                if b"transfer-encoding: chunked" in lower:
                    body = await reader.readuntil(b"\r\n0\r\n\r\n")
                else:
                    length = lower.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0]
                    body = await reader.readexactly(int(length))
                self.requests.append(head + body)
                data, close = self.answer(len(self.requests))
                writer.write(data)
                await writer.drain()
                if close:
                    break
        writer.close()


@pytest.fixture
async def raw() -> AsyncIterator[Callable[..., RawUpstream]]:
    servers: list[RawUpstream] = []

    def make(answer: Callable[[int], tuple[bytes, bool]]) -> RawUpstream:
        server = RawUpstream(answer)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


def http_response(body: bytes, framing: str = "length") -> tuple[bytes, bool]:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\nX-Printer: 1\r\n"
    if framing == "length":
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body, False
    if framing == "chunked":
        half = len(body) // 2
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]) if p)
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n", False
    return head + b"Connection: close\r\n\r\n" + body, True


def printer_attributes(port: int) -> bytes:
    return w.response({
        b"printer-uri-supported": [b"ipp://127.0.0.1:%d/ipp/print" % port,
                                   b"ipps://localhost:%d/ipp/print" % port],
        b"printer-more-info": [b"https://localhost:%d/" % port],
        b"printer-icons": [b"https://localhost:%d/icon.png" % port,
                           b"https://cdn.example/icon.png"],
        b"printer-supply-info-uri": [b"http://localhost:%d/supplies" % port],
    })


def ipp_settings(port: int, **kw: object) -> ProxySettings:
    return settings_for(port, ipp=True, upstream_host=True, **kw)


async def post(client: Client, host: str = PUBLIC_HOST, body: bytes | None = None,
               http10: bool = False) -> tuple[int, dict[str, str], bytes]:
    data = build_request("POST", "/ipp/print", host=host, headers=IPP_HEADERS,
                         body=body or ipp_request())
    if http10:
        data = data.replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1)
    await client.send(data)
    response = await client.read_response("POST")
    return response.status, dict(response.headers), response.body


def assert_public(body: bytes, port: int, public: bytes = PUBLIC_HOST.encode(), *,
                  tls: bool = False) -> None:
    """The URIs name `public`; with TLS as ipps/https, on a plain test listener ipp/http."""
    ipp, http = (b"ipps://", b"https://") if tls else (b"ipp://", b"http://")
    uris = w.uri_values(body)
    assert uris[b"printer-uri-supported"] == [ipp + public + b"/ipp/print"] * 2
    assert uris[b"printer-more-info"] == [http + public + b"/"]
    assert uris[b"printer-icons"] == [http + public + b"/icon.png", b"https://cdn.example/icon.png"]
    assert uris[b"printer-supply-info-uri"] == [http + public + b"/supplies"]
    assert b":%d" % port not in body


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
async def test_uris_are_rewritten_and_the_connection_stays_in_sync(
    raw: Callable[..., RawUpstream], start_proxy: StartProxy, framing: str
) -> None:
    upstream = raw(lambda n: http_response(printer_attributes(upstream.port), framing))
    await upstream.start()
    proxy = await start_proxy(ipp_settings(upstream.port))
    client = await Client.open(proxy.port)
    for _ in range(2 if framing != "close" else 1):  # a second exchange on the connection
        status, headers, body = await post(client)
        assert status == 200 and headers["x-printer"] == "1"
        assert_public(body, upstream.port)
        if framing == "length":
            assert int(headers["content-length"]) == len(body)
        record = proxy.records[-1]
        assert record.bytes_out == len(body) and record.error is None
        assert record.ipp_status == 0
    # The upstream was sent its own name in Host (ippeveprinter refuses others) and the
    # client's in Forwarded.
    assert f"Host: 127.0.0.1:{upstream.port}\r\n".encode() in upstream.requests[0]
    assert f'host="{PUBLIC_HOST}"'.encode() in upstream.requests[0]
    await client.close()


async def test_http10_client_gets_a_correct_length(
    raw: Callable[..., RawUpstream], start_proxy: StartProxy
) -> None:
    upstream = raw(lambda n: http_response(printer_attributes(upstream.port), "chunked"))
    await upstream.start()
    proxy = await start_proxy(ipp_settings(upstream.port))
    client = await Client.open(proxy.port)
    status, headers, body = await post(client, http10=True)
    assert status == 200 and "content-length" not in headers  # delimited by the close
    assert_public(body, upstream.port)
    assert await client.at_eof()
    await client.close()


async def test_public_port_is_the_listeners_when_host_has_none(
    raw: Callable[..., RawUpstream], start_proxy: StartProxy, tls_files: TlsFiles
) -> None:
    upstream = raw(lambda n: http_response(printer_attributes(upstream.port)))
    await upstream.start()
    proxy = await start_proxy(ipp_settings(upstream.port), ssl_context=tls_files.server_context())
    client = await Client.open(proxy.port, ssl_context=tls_files.client_context(),
                               server_hostname=TENANT)
    status, _, body = await post(client, host=TENANT.upper())
    assert status == 200
    assert_public(body, upstream.port, f"{TENANT}:{proxy.port}".encode(), tls=True)
    await client.close()


async def test_document_data_after_the_attributes_streams_untouched(
    raw: Callable[..., RawUpstream], start_proxy: StartProxy
) -> None:
    # CUPS-Get-Document answers with attributes then the document: megabytes, passed on.
    document = bytes(range(256)) * 4096 * 8  # 8 MiB, holds every byte value
    upstream = raw(lambda n: http_response(
        w.message([(w.JOB, [(w.URI, b"job-uri", b"ipp://localhost:%d/ipp/print/1"
                             % upstream.port)])], data=document), "length"))
    await upstream.start()
    proxy = await start_proxy(ipp_settings(upstream.port))
    client = await Client.open(proxy.port)
    status, headers, body = await post(client)
    assert status == 200 and int(headers["content-length"]) == len(body)
    assert w.uri_values(body)[b"job-uri"] == [f"ipp://{PUBLIC_HOST}/ipp/print/1".encode()]
    assert w.decode(body)[1] == document
    await client.close()


@pytest.mark.parametrize(
    "broken",
    [
        b"not IPP at all, but labelled application/ipp",
        b"\x02\x00\x00\x00\x00\x00\x00\x07\x01\x45\xff\xff" + b"name past the end",
        b"\x02\x00\x00\x00\x00\x00\x00\x07\x01\x45\x00\x01a\xff\xff" + b"value past the end",
        b"\x02\x00\x00\x00\x00\x00\x00\x07\x00\x03",
        b"\x02\x00",
    ],
)
@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_malformed_ipp_is_passed_through_byte_for_byte(
    raw: Callable[..., RawUpstream], start_proxy: StartProxy, broken: bytes, framing: str
) -> None:
    upstream = raw(lambda n: http_response(broken, framing))
    await upstream.start()
    proxy = await start_proxy(ipp_settings(upstream.port))
    client = await Client.open(proxy.port)
    for _ in range(2):
        status, _, body = await post(client)
        assert status == 200 and body == broken
    assert "IPP URIs not rewritten" in (proxy.records[-1].error or "")
    await client.close()


async def test_attributes_over_the_limit_pass_unmodified_with_bounded_memory(
    raw: Callable[..., RawUpstream], start_proxy: StartProxy
) -> None:
    many = [(w.URI, b"printer-icons", b"http://localhost:1/icon.png")] * 80_000  # ~3 MB
    big = w.message([(w.PRINTER, many)])
    upstream = raw(lambda n: http_response(big))
    await upstream.start()
    proxy = await start_proxy(ipp_settings(upstream.port, ipp_max_attributes_bytes=1 << 20))
    client = await Client.open(proxy.port)
    status, _, body = await post(client)
    assert status == 200 and body == big
    assert "longer than 1048576 bytes" in (proxy.records[-1].error or "")
    # The connection is still usable.
    status, _, body = await post(client)
    assert body == big
    await client.close()


@pytest.mark.parametrize("stall", [False, True], ids=["closes", "stalls"])
async def test_upstream_failing_inside_the_attributes_gets_an_ipp_error(
    raw: Callable[..., RawUpstream], start_proxy: StartProxy, stall: bool
) -> None:
    full = printer_attributes(1)
    upstream = raw(lambda n: (b"HTTP/1.1 200 OK\r\nContent-Type: application/ipp\r\n"
                              b"Content-Length: %d\r\n\r\n" % len(full) + full[:40], not stall))
    await upstream.start()
    proxy = await start_proxy(ipp_settings(upstream.port, idle_timeout_s=0.3))
    client = await Client.open(proxy.port)
    # Nothing of the held response reached the client: it gets a whole IPP error instead
    # of a head announcing a length that never comes.
    status, headers, body = await post(client, body=ipp_request(request_id=991))
    assert status == 200 and headers["content-type"] == "application/ipp"
    assert parse_ipp(body)[1:3] == (0x0502, 991)
    assert proxy.records[0].error and proxy.records[0].ipp_status == 0x0502
    await client.close()


async def test_non_ipp_listeners_and_non_ipp_responses_are_not_touched(
    raw: Callable[..., RawUpstream], start_proxy: StartProxy
) -> None:
    body = printer_attributes(1)
    upstream = raw(lambda n: http_response(body))
    await upstream.start()
    https = await start_proxy(settings_for(upstream.port))  # an https listener
    client = await Client.open(https.port)
    status, _, got = await post(client)
    assert got == body
    await client.close()
    plain = raw(lambda n: (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body, False))
    await plain.start()
    ipps = await start_proxy(ipp_settings(plain.port))
    client = await Client.open(ipps.port)
    status, _, got = await post(client)
    assert status == 200 and got == body  # an HTML page holding IPP-like bytes: not IPP
    await client.close()


def split_request(raw_request: bytes) -> tuple[bytes, bytes]:
    """(head, de-chunked body) of a request as the upstream received it."""
    head, _, body = raw_request.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return head, body
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if not size:
            return head, out
        out, body = out + body[:size], body[size + 2 :]


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
async def test_a_routes_base_path_maps_uris_both_ways(
    raw: Callable[..., RawUpstream], start_proxy: StartProxy, chunked: bool
) -> None:
    from gateway.proxy import Route, Upstream

    upstream = raw(lambda n: http_response(w.response({
        b"printer-uri-supported": [b"ipp://127.0.0.1:%d/ipp/print" % upstream.port],
        b"printer-more-info": [b"http://127.0.0.1:%d/ipp/print/more" % upstream.port]})))
    await upstream.start()
    route = Route(prefix="/printers/a", upstream_host=True,
                  upstream=Upstream(host="127.0.0.1", port=upstream.port, base_path="/ipp/print"))
    proxy = await start_proxy(ProxySettings(routes=(route,), ipp=True))
    client = await Client.open(proxy.port)
    document = bytes(range(256)) * 4096  # 1 MiB of document data after the attributes
    request = w.message([(w.OPERATION, [
        (w.CHARSET, b"attributes-charset", b"utf-8"),
        (w.LANGUAGE, b"attributes-natural-language", b"en"),
        (w.URI, b"printer-uri", f"ipps://{PUBLIC_HOST}/printers/a".encode()),
        (w.URI, b"document-uri", b"https://elsewhere.example/printers/a/x.pdf")])],
        data=document, status=0x0002)
    headers = list(IPP_HEADERS)
    if chunked:
        headers.append(("Transfer-Encoding", "chunked"))
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p)
                           for p in (request[:50], request[50:70000], request[70000:]))
        payload += b"0\r\n\r\n"
    else:
        payload = request
    await client.send(build_request("POST", "/printers/a", host=PUBLIC_HOST,
                                    headers=headers, body=payload))
    body = (await client.read_response("POST")).body
    uris = w.uri_values(body)
    assert uris[b"printer-uri-supported"] == [f"ipp://{PUBLIC_HOST}/printers/a".encode()]
    assert uris[b"printer-more-info"] == [f"http://{PUBLIC_HOST}/printers/a/more".encode()]
    # The printer matches printer-uri by path: it gets its own, the document intact.
    head, sent = split_request(upstream.requests[0])
    assert head.startswith(b"POST /ipp/print HTTP/1.1")
    assert w.uri_values(sent) == {
        b"printer-uri": [b"ipp://127.0.0.1:%d/ipp/print" % upstream.port],
        b"document-uri": [b"https://elsewhere.example/printers/a/x.pdf"],
    }
    assert w.decode(sent)[1] == document
    if not chunked:
        assert b"Content-Length: %d" % len(sent) in head
    assert proxy.records[0].bytes_in == len(request)
    await client.close()


async def test_a_rewritten_ipp_upload_still_streams_with_bounded_buffers(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    from gateway.proxy import Route, Upstream

    # The request side engages on a route with a base path: its attributes are held and
    # rewritten, then hundreds of MB of document stream through with back-pressure.
    route = Route(prefix="/printers/a", upstream_host=True,
                  upstream=Upstream(host="127.0.0.1", port=upstream.port, base_path="/gated"))
    proxy = await start_proxy(ProxySettings(routes=(route,), ipp=True))
    sampler = PeakSampler(proxy)
    client = await Client.open(proxy.port)

    def attributes(uri: bytes) -> bytes:
        return w.message([(w.OPERATION, [(w.CHARSET, b"attributes-charset", b"utf-8"),
                                         (w.URI, b"printer-uri", uri)])], status=0x0002)

    public = attributes(f"ipps://{PUBLIC_HOST}/printers/a".encode())
    block = bytes(range(256)) * (MIB // 256)
    total = len(public) + 100 * MIB
    sent = 0

    async def upload() -> None:
        nonlocal sent
        await client.send(build_request("POST", "/printers/a", host=PUBLIC_HOST,
                                        headers=[*IPP_HEADERS, ("Content-Length", str(total))]))
        client.writer.write(public)
        for _ in range(100):
            client.writer.write(block)
            sent += len(block)
            await client.writer.drain()

    sender = asyncio.create_task(upload())
    await _until_stalled(lambda: sent, 100 * MIB)
    stalled_at = sent
    upstream.gate.set()
    await sender
    response = await client.read_response("POST")
    await client.close()
    sampler.stop()

    assert stalled_at < 25 * MIB
    assert sampler.peak < BUFFER_LIMIT, sampler.peak
    upstream_attributes = attributes(b"ipp://127.0.0.1:%d/gated" % upstream.port)
    echo = response.json()
    assert echo["body_len"] == len(upstream_attributes) + 100 * MIB
    expected = hashlib.sha256(upstream_attributes + block * 100).hexdigest()
    assert echo["body_sha256"] == expected
    assert proxy.records[0].bytes_in == total
