"""Header filtering and forwarding-field helpers (no sockets)."""

from __future__ import annotations

import pytest

from gateway.proxy import http


def test_request_scan_drops_hop_by_hop_and_spoofable_fields() -> None:
    scan = http.scan_request_headers(
        [
            (b"Host", b"a.example"),
            (b"Connection", b"close, X-Hop, Content-Length"),
            (b"X-Hop", b"1"),
            (b"Content-Length", b"3"),
            (b"Content-Type", b"application/ipp"),
            (b"Expect", b"100-continue"),
            (b"Proxy-Connection", b"keep-alive"),
            (b"X-Forwarded-Port", b"1"),
            (b"Accept", b"*/*"),
        ]
    )
    # Content-Length survives being named in Connection: framing is not hop-by-hop.
    assert scan.block == b"Content-Length: 3\r\nContent-Type: application/ipp\r\nAccept: */*\r\n"
    assert (scan.host, scan.host_count) == (b"a.example", 1)
    assert (scan.content_length, scan.expect) == (b"3", b"100-continue")


def test_response_scan_collects_transfer_encoding() -> None:
    scan = http.scan_response_headers(
        [(b"Transfer-Encoding", b"gzip"), (b"transfer-encoding", b"chunked"), (b"ETag", b'"x"')]
    )
    assert scan.transfer_encoding == b"gzip, chunked"
    assert http.is_chunked(scan.transfer_encoding)
    assert scan.block == b'ETag: "x"\r\n'


def test_scan_memo_reuses_the_scan_of_an_identical_list_only() -> None:
    memo = http.ScanMemo(http.scan_request_headers)
    fields = [(b"Host", b"a.example"), (b"Accept", b"*/*")]
    first = memo(fields)
    again = memo(list(fields))  # a new list with equal fields: the next request's
    other = memo([(b"Host", b"b.example"), (b"Accept", b"*/*")])
    assert again is first
    assert other is not first and other.host == b"b.example"
    assert memo(fields).host == b"a.example"  # not the previous-but-one list's scan
    fresh = http.scan_request_headers(fields)
    assert (first.block, first.host, first.host_count) == (fresh.block, fresh.host, 1)


@pytest.mark.parametrize(
    ("value", "host"),
    [
        (b"Example.COM", "example.com"),
        (b"example.com.:8443", "example.com"),
        (b"[2001:DB8::1]:443", "2001:db8::1"),
        (b"192.0.2.1", "192.0.2.1"),
        (b"host:", "host"),
        (b"bad host", None),
        (b"a@b", None),
        (b"example.com:80:80", None),
        (b"example.com:123456", None),
        (b"[::1", None),
        (b"[::1]x", None),
        (b"", None),
        (b".", None),
    ],
)
def test_parse_host(value: bytes, host: str | None) -> None:
    assert http.parse_host(value) == host


def test_forwarding_blocks() -> None:
    assert http.client_block("2001:db8::1", "https", "acct") == (
        b"X-Forwarded-For: 2001:db8::1\r\nX-Forwarded-Proto: https\r\nX-Certgate-Account: acct\r\n"
    )
    assert http.host_block("2001:db8::1", "https", b"a.example") == (
        b'Forwarded: for="[2001:db8::1]";proto=https;host=a.example\r\n'
        b"X-Forwarded-Host: a.example\r\n"
    )
    assert b'host="[::1]:8443"' in http.host_block("127.0.0.1", "https", b"[::1]:8443")


@pytest.mark.parametrize(
    ("path", "dotted"),
    [
        (b"/a/b", False),
        (b"/a.b/c..d", False),
        (b"/a/../b", True),
        (b"/a/./b", True),
        (b"/a/%2E%2e/b", True),
        (b"/a/%2e", True),
        (b"/%41", False),
    ],
)
def test_dot_segments(path: bytes, dotted: bool) -> None:
    assert http.has_dot_segment(path) is dotted


def test_local_responses_for_head_carry_no_body() -> None:
    full = http.local_response(404, close=False)
    head = http.local_response(404, close=True, head_only=True)
    assert full.endswith(b"\r\n\r\n404 Not Found\n")
    assert head.endswith(b"Connection: close\r\n\r\n")
    assert b"Content-Length: 14\r\n" in head
