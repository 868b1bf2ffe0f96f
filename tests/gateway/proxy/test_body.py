"""The body reader for upgrade requests, against h11's chunked encoder and hostile input."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.proxy.body import BodyReader, MalformedBody


def _h11_chunked(pieces: list[bytes], trailers: list[tuple[bytes, bytes]]) -> bytes:
    """The chunked body h11 (an independent implementation) sends for these pieces."""
    conn = h11.Connection(h11.CLIENT)
    head = conn.send(
        h11.Request(
            method="POST", target="/", headers=[("Host", "a"), ("Transfer-Encoding", "chunked")]
        )
    )
    assert head is not None
    out = b""
    for piece in pieces:
        out += conn.send(h11.Data(data=piece)) or b""
    out += conn.send(h11.EndOfMessage(headers=trailers)) or b""
    return out


def _feed_all(reader: BodyReader, data: bytes, cuts: list[int]) -> tuple[bytes, bytes]:
    """Feed `data` split at `cuts`: (the body read, the bytes after it)."""
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {len(data)})
    body, last = b"", 0
    for cut in bounds:
        pieces, after = reader.feed(data[last:cut])
        body += b"".join(pieces)
        if reader.done:
            return body, after + data[cut:]
        last = cut
    return body, b""


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    trailers=st.lists(
        st.tuples(st.sampled_from([b"X-T", b"Etag"]), st.binary(max_size=10).map(bytes.hex)),
        max_size=2,
    ).map(lambda ts: [(n, v.encode()) for n, v in ts]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6),
    after=st.binary(max_size=40),
)
def test_chunked_bodies_as_h11_encodes_them(
    pieces: list[bytes], trailers: list[tuple[bytes, bytes]], cuts: list[int], after: bytes
) -> None:
    data = _h11_chunked(pieces, trailers) + after
    reader = BodyReader(None)
    body, rest = _feed_all(reader, data, cuts)
    assert reader.done
    assert body == b"".join(pieces)
    assert rest == after


@given(
    body=st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=5),
    after=st.binary(max_size=40),
)
def test_content_length_bodies(body: bytes, cuts: list[int], after: bytes) -> None:
    reader = BodyReader(len(body))
    got, rest = _feed_all(reader, body + after, cuts)
    assert reader.done and got == body and rest == after


def test_chunk_extensions_and_upper_case_hex() -> None:
    reader = BodyReader(None)
    pieces, rest = reader.feed(b"A;name=value;q=\"x\"\r\n0123456789\r\n0\r\n\r\nNEXT")
    assert (b"".join(pieces), rest, reader.done) == (b"0123456789", b"NEXT", True)


@pytest.mark.parametrize(
    "data",
    [
        b"zz\r\nhello\r\n0\r\n\r\n",  # not hex
        b"\r\nhello\r\n0\r\n\r\n",  # no size
        b" 5\r\nhello\r\n0\r\n\r\n",  # whitespace before the size
        b"5 \r\nhello\r\n0\r\n\r\n",  # whitespace after the size
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",  # bare LF
        b"5\r\nhelloX\r\n0\r\n\r\n",  # data longer than its size
        b"5\r\nhello\n0\r\n\r\n",
        b"10000000000000000\r\n",  # 17 hex digits: beyond 64 bits
        b"5;" + b"e" * 5000 + b"\r\n",  # endless extension
        b"0\r\nno colon\r\n\r\n",  # malformed trailer
        b"0\r\n folded: x\r\n\r\n",
        b"0\r\n" + b"X: y\r\n" * 20000 + b"\r\n",  # endless trailers
    ],
)
def test_malformed_chunked_bodies_are_refused(data: bytes) -> None:
    reader = BodyReader(None)
    with pytest.raises(MalformedBody):
        for i in range(0, len(data), 7):  # also split across reads
            reader.feed(data[i : i + 7])


def test_empty_body_is_done_at_once() -> None:
    reader = BodyReader(0)
    assert reader.done and reader.feed(b"GET") == ([], b"GET")
