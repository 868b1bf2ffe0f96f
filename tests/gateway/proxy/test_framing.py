"""Request framing through the proxy, one test per class of trick, each with a request
pipelined behind it. The upstream parses what it receives with h11 (a parser unrelated to
the proxy's llhttp) and must see exactly the requests the client sent, or none of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.gateway.proxy.conftest import StartProxy, eventually, settings_for
from tests.gateway.proxy.http_client import Client, Response, build_request
from tests.gateway.proxy.recording_upstream import RecordingUpstream

AFTER = build_request("GET", "/after", headers=[("X-Seq", "2")])
SMUGGLED = (
    b"GET /smuggled HTTP/1.1\r\nHost: other.example\r\nX-Certgate-Account: spoofed\r\n"
    b"Content-Length: 5\r\n\r\n"
)


@pytest.fixture
async def recorder() -> AsyncIterator[RecordingUpstream]:
    server = RecordingUpstream()
    await server.start()
    yield server
    await server.close()


def head(method: str, *fields: str) -> bytes:
    return "\r\n".join((f"{method} /attack HTTP/1.1", "Host: proxy.test", *fields, "", "")).encode(
        "latin-1"
    )


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"


UPGRADE = ("Connection: Upgrade", "Upgrade: websocket")

# Refused: no byte of the request or of what follows reaches the upstream.
REFUSED = {
    "cl-and-te": head("POST", "Content-Length: 5", "Transfer-Encoding: chunked") + chunked(b""),
    "te-and-cl": head("POST", "Transfer-Encoding: chunked", "Content-Length: 11")
    + chunked(b"hello"),
    "te-chunked-identity": head("POST", "Transfer-Encoding: chunked, identity") + b"5\r\nhello",
    "te-xchunked": head("POST", "Transfer-Encoding: xchunked") + chunked(b"hello"),
    "te-identity": head("POST", "Transfer-Encoding: identity") + b"hello",
    "te-duplicate": head("POST", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked")
    + chunked(b"hello"),
    "te-obs-fold": head("POST", "Transfer-Encoding:", " chunked") + chunked(b"hello"),
    "te-space-before-colon": head("POST", "Transfer-Encoding : chunked") + chunked(b"hello"),
    "te-vertical-tab": head("POST", "Transfer-Encoding: \x0bchunked") + chunked(b"hello"),
    "te-chunked-with-cl-space": head("POST", "Transfer-Encoding:  chunked", "Content-Length: 3")
    + b"abc",
    "cl-duplicate-same": head("POST", "Content-Length: 5", "Content-Length: 5") + b"hello",
    "cl-duplicate-different": head("POST", "Content-Length: 5", "Content-Length: 6")
    + b"hello!",
    "cl-list": head("POST", "Content-Length: 5, 5") + b"hello",
    "cl-plus-sign": head("POST", "Content-Length: +5") + b"hello",
    "cl-obs-fold": head("POST", "X-A: b", " Content-Length: 5") + b"hello",
    "upgrade-cl-and-te": head(
        "POST", "Connection: Upgrade", "Upgrade: websocket", "Content-Length: 5",
        "Transfer-Encoding: chunked",
    )
    + chunked(b"hello"),
    "upgrade-bad-chunk": head(
        "POST", "Connection: Upgrade", "Upgrade: websocket", "Transfer-Encoding: chunked"
    )
    + b"zz\r\nhello\r\n0\r\n\r\n",
    "upgrade-te-identity": head("POST", *UPGRADE, "Transfer-Encoding: identity") + b"hello",
    "h2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}


@pytest.mark.parametrize("attack", sorted(REFUSED))
async def test_ambiguous_framing_is_refused_with_nothing_forwarded(
    recorder: RecordingUpstream, start_proxy: StartProxy, attack: str
) -> None:
    proxy = await start_proxy(settings_for(recorder.port))
    client = await Client.open(proxy.port)
    await client.send(REFUSED[attack] + AFTER)
    response = await client.read_response("POST")
    assert response.status == 400
    assert response.header("connection") == "close"
    assert await client.at_eof()  # what follows cannot be framed: nothing more is read
    await client.close()
    assert recorder.requests == [] and recorder.errors == []
    assert all(not raw for raw in recorder.raw.values())
    await eventually(lambda: len(proxy.records) == 1)
    assert [r.status for r in proxy.records] == [400]


# Forwarded: the upstream sees the request with exactly the body the client framed.
ACCEPTED: dict[str, tuple[bytes, str, bytes, str | None]] = {
    # name: (bytes sent, method seen, body seen, Upgrade seen)
    "upgrade-with-cl": (
        head("POST", *UPGRADE, f"Content-Length: {len(SMUGGLED)}") + SMUGGLED,
        "POST", SMUGGLED, "websocket",
    ),
    "upgrade-with-chunked": (
        head("POST", *UPGRADE, "Transfer-Encoding: chunked")
        + b"7;ext=1\r\nGET /sm\r\n" + chunked(SMUGGLED[7:]),
        "POST", SMUGGLED, "websocket",
    ),
    "upgrade-chunked-with-trailer": (
        head("POST", *UPGRADE, "Transfer-Encoding: chunked")
        + b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
        "POST", b"hello", "websocket",
    ),
    "upgrade-get-no-body": (head("GET", *UPGRADE), "GET", b"", "websocket"),
    "upgrade-get-cl-zero": (head("GET", *UPGRADE, "Content-Length: 0"), "GET", b"", "websocket"),
    "upgrade-without-connection-option": (
        head("POST", "Upgrade: websocket", "Content-Length: 5") + b"hello", "POST", b"hello",
        None,
    ),
    "connection-upgrade-without-upgrade": (
        head("POST", "Connection: Upgrade", "Content-Length: 5") + b"hello", "POST", b"hello",
        None,
    ),
    "h2c-upgrade": (
        head("GET", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
             "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"),
        "GET", b"", None,
    ),
    "h2c-upgrade-with-body": (
        head("POST", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
             "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA", f"Content-Length: {len(SMUGGLED)}")
        + SMUGGLED,
        "POST", SMUGGLED, None,
    ),
    "upgrade-http10": (
        b"POST /attack HTTP/1.0\r\nHost: proxy.test\r\nConnection: Upgrade, keep-alive\r\n"
        b"Upgrade: websocket\r\nContent-Length: 5\r\n\r\nhello",
        "POST", b"hello", None,
    ),
    "te-leading-space": (
        head("POST", "Transfer-Encoding:  chunked") + chunked(b"hello"), "POST", b"hello", None,
    ),
    "te-leading-tab": (
        head("POST", "Transfer-Encoding:\tchunked") + chunked(b"hello"), "POST", b"hello", None,
    ),
    "te-upper-case": (
        head("POST", "Transfer-Encoding: CHUNKED") + chunked(b"hello"), "POST", b"hello", None,
    ),
    "te-underscore-is-not-te": (
        head("POST", "Transfer_Encoding: chunked", "Content-Length: 5") + b"hello",
        "POST", b"hello", None,
    ),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
async def test_forwarded_framing_is_what_the_client_sent(
    recorder: RecordingUpstream, start_proxy: StartProxy, case: str
) -> None:
    sent, method, body, upgrade = ACCEPTED[case]
    proxy = await start_proxy(settings_for(recorder.port))
    client = await Client.open(proxy.port)
    await client.send(sent + AFTER)
    first = await client.read_response(method)
    second = await client.read_response()
    await client.close()
    assert (first.status, second.status) == (200, 200)
    assert (first.json()["index"], second.json()["index"]) == (0, 1)
    assert recorder.errors == []
    seen = [(r.method, r.target, r.body) for r in recorder.requests]
    assert seen == [(method, "/attack", body), ("GET", "/after", b"")]
    attack, after = recorder.requests
    assert attack.header("upgrade") == upgrade
    assert attack.header("connection") == ("Upgrade" if upgrade else None)
    assert attack.header("http2-settings") is None
    assert attack.header("transfer_encoding") is None
    assert after.header("x-seq") == "2"
    # One upstream connection, reused only once the first exchange was complete.
    assert attack.connection == after.connection
    assert [r.status for r in proxy.records] == [200, 200]


async def test_upgrade_body_in_pieces_is_forwarded_once(
    recorder: RecordingUpstream, start_proxy: StartProxy
) -> None:
    """The body of an upgrade request arriving a byte at a time, head first."""
    proxy = await start_proxy(settings_for(recorder.port))
    client = await Client.open(proxy.port)
    message = head("POST", *UPGRADE, "Transfer-Encoding: chunked") + chunked(SMUGGLED)
    for i in range(len(message)):
        await client.send(message[i : i + 1])
    await client.send(AFTER)
    first, second = await client.read_response(), await client.read_response()
    await client.close()
    assert (first.json()["index"], second.json()["index"]) == (0, 1)
    assert [(r.target, r.body) for r in recorder.requests] == [
        ("/attack", SMUGGLED),
        ("/after", b""),
    ]


async def test_smuggling_through_upgrade_reaches_no_other_client(
    recorder: RecordingUpstream, start_proxy: StartProxy
) -> None:
    """The issue's attack: an upgrade request whose body is a request. Two clients share
    the upstream pool; the second's request, sent on the same upstream connection once the
    first exchange is complete, is never swallowed as the attacker's body, and the body
    never becomes a request of its own."""
    proxy = await start_proxy(settings_for(recorder.port))
    attacker, victim = await Client.open(proxy.port), await Client.open(proxy.port)
    attack = head("POST", *UPGRADE, f"Content-Length: {len(SMUGGLED)}") + SMUGGLED
    await attacker.send(attack + b"hello")  # "hello" is the smuggled request's body
    answered = await attacker.read_response()
    # The attacker's "next request" is `hello`: not HTTP, refused after its answer.
    refused = await attacker.read_response()
    assert await attacker.at_eof()
    await attacker.close()
    victim_answer = await victim.request("GET", "/victim", headers=[("X-Victim", "1")])
    await victim.close()
    assert (answered.status, refused.status, victim_answer.status) == (200, 400, 200)
    assert victim_answer.json()["index"] == 1
    assert recorder.errors == []
    seen = [(r.method, r.target, r.body) for r in recorder.requests]
    assert seen == [("POST", "/attack", SMUGGLED), ("GET", "/victim", b"")]
    assert recorder.requests[1].header("x-victim") == "1"
    assert recorder.requests[0].connection == recorder.requests[1].connection
    assert all(r.header("x-certgate-account") == "acct-1" for r in recorder.requests)
    await eventually(lambda: len(proxy.records) == 3)
    assert sorted(r.status for r in proxy.records) == [200, 200, 400]


async def test_incomplete_upgrade_body_never_returns_its_connection(
    recorder: RecordingUpstream, start_proxy: StartProxy
) -> None:
    """A client that stops half-way through an upgrade request's body and leaves: its
    upstream connection is closed, never reused for the next client."""
    proxy = await start_proxy(settings_for(recorder.port))
    client = await Client.open(proxy.port)
    await client.send(head("POST", *UPGRADE, "Content-Length: 100") + b"x" * 40)
    await eventually(lambda: sum(len(raw) for raw in recorder.raw.values()) >= 40)
    await client.close()
    await eventually(lambda: 1 in recorder.closed)
    other = await Client.open(proxy.port)
    response = await other.request("GET", "/next")
    await other.close()
    assert response.status == 200
    assert [(r.target, r.connection) for r in recorder.requests] == [("/next", 2)]
    assert proxy.pool.idle_count == 1


async def test_declared_length_is_what_reaches_the_upstream(
    recorder: RecordingUpstream, start_proxy: StartProxy
) -> None:
    """Requests with bodies of every framing, pipelined back to back on one connection."""
    proxy = await start_proxy(settings_for(recorder.port))
    client = await Client.open(proxy.port)
    bodies = [b"", b"a", b"x" * 70000, b"\r\n0\r\n\r\n"]
    data = b""
    for body in bodies:
        data += build_request("POST", "/cl", body=body)
        data += head("POST", "Transfer-Encoding: chunked") + chunked(body)
    await client.send(data)
    responses: list[Response] = [await client.read_response() for _ in range(2 * len(bodies))]
    await client.close()
    assert [r.json()["index"] for r in responses] == list(range(2 * len(bodies)))
    assert [r.body for r in recorder.requests] == [b for body in bodies for b in (body, body)]
    assert recorder.errors == [] and recorder.connections == 1


async def test_connect_is_refused_and_its_tunnel_bytes_never_parsed(
    recorder: RecordingUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(recorder.port))
    client = await Client.open(proxy.port)
    await client.send(
        b"CONNECT proxy.test:443 HTTP/1.1\r\nHost: proxy.test:443\r\n\r\n" + AFTER
    )
    response = await client.read_response()
    assert response.status == 405 and response.header("connection") == "close"
    assert await client.at_eof()
    await client.close()
    assert recorder.requests == [] and recorder.connections == 0


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_refused_upgrade_request_body_is_discarded_not_parsed(
    recorder: RecordingUpstream, start_proxy: StartProxy, method: str
) -> None:
    """An upgrade request the proxy refuses itself (421: not this certificate's host): its
    body, a request for an allowed host, is read and dropped, and the request after it
    (in the same read) is parsed and forwarded in its own right."""
    proxy = await start_proxy(settings_for(recorder.port), allowed=lambda h: h == "proxy.test")
    client = await Client.open(proxy.port)
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: proxy.test\r\n\r\n" if method == "POST" else b""
    attack = (
        b"%s /attack HTTP/1.1\r\nHost: other.example\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nContent-Length: %d\r\n\r\n%s"
        % (method.encode(), len(smuggled), smuggled)
    )
    await client.send(attack + AFTER)
    refused, after = await client.read_response(method), await client.read_response()
    await client.close()
    assert (refused.status, after.status) == (421, 200)
    assert [(r.target, r.body) for r in recorder.requests] == [("/after", b"")]
