"""The IPP URI rewriter, without sockets: URI matching, the streaming parser, hostile input."""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.proxy.ipp_uris import (
    AttributeRewriter,
    UriMap,
    public_authority,
    split_uri,
    upstream_names,
)
from gateway.proxy.settings import Route, Upstream
from tests.gateway.proxy import ipp_wire as w

UPSTREAM = Upstream(host="10.1.2.3", port=8631)
ROUTE = Route(prefix="/", upstream=UPSTREAM, upstream_host=True)
MAP = UriMap.for_route(ROUTE, b"print.acme.example:443")
PUBLIC = b"print.acme.example:443"


def rewrite_all(body: bytes, uri_map: UriMap = MAP, *, piece: int = 0, limit: int = 1 << 20
                ) -> tuple[bytes, AttributeRewriter]:
    """Feed `body` (in `piece`-byte pieces, 0 = at once) and collect what comes out."""
    rewriter = AttributeRewriter(uri_map, limit=limit)
    out = []
    step = piece or max(len(body), 1)
    for at in range(0, len(body), step):
        got = rewriter.feed(body[at : at + step])
        if got is not None:
            out.append(got)
    out.append(rewriter.finish())
    return b"".join(out), rewriter


# -- URIs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (b"ipp://LocalHost/ipp/print", (b"ipp", b"", b"localhost:631", b"/ipp/print")),
        (b"IPPS://h:8631", (b"ipps", b"", b"h:8631", b"")),
        (b"http://h./x?y#z", (b"http", b"", b"h:80", b"/x?y#z")),
        (b"https://h:0443/", (b"https", b"", b"h:443", b"/")),
        (b"https://u:p@h/", (b"https", b"u:p@", b"h:443", b"/")),
        (b"ipp://[::1]:8631/p", (b"ipp", b"", b"[::1]:8631", b"/p")),
        (b"ipp://h:/p", (b"ipp", b"", b"h:631", b"/p")),
    ],
)
def test_split_uri(uri: bytes, expected: tuple[bytes, bytes, bytes, bytes]) -> None:
    assert split_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [b"urn:uuid:1234", b"mailto:a@b", b"ipp:/x", b"://h/", b"ftp://h/", b"ipp://h:x/",
     b"ipp://h:123456/", b"ipp://[::1/", b"ipp:///p", b"ipp://h]x/", b""],
)
def test_split_uri_refuses_what_it_cannot_place(uri: bytes) -> None:
    assert split_uri(uri) is None


def test_upstream_names_are_its_address_and_loopback_at_its_port() -> None:
    assert upstream_names(UPSTREAM) == {
        b"10.1.2.3:8631", b"localhost:8631", b"127.0.0.1:8631", b"[::1]:8631"
    }
    assert b"[::1]:631" in upstream_names(Upstream(host="::1", port=631))


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (b"ipp://10.1.2.3:8631/ipp/print", b"ipps://print.acme.example:443/ipp/print"),
        (b"ipps://localhost:8631/ipp/print", b"ipps://print.acme.example:443/ipp/print"),
        (b"http://127.0.0.1:8631/icon.png", b"https://print.acme.example:443/icon.png"),
        (b"https://LOCALHOST.:8631/", b"https://print.acme.example:443/"),
        (b"ipp://[::1]:8631/ipp/print/3", b"ipps://print.acme.example:443/ipp/print/3"),
        (b"ipp://10.1.2.3:8631", b"ipps://print.acme.example:443"),
        # other hosts, other ports, other schemes stay as they are
        (b"ipp://10.1.2.4:8631/ipp/print", None),
        (b"ipp://10.1.2.3:631/ipp/print", None),
        (b"http://localhost/", None),
        (b"https://www.pwg.org/ipp/everywhere.html", None),
        (b"urn:uuid:6b5d4a9f-0000-4000-8000-000000000000", None),
    ],
)
def test_uri_map_rewrites_only_upstream_uris(uri: bytes, expected: bytes | None) -> None:
    assert MAP.rewrite(uri) == expected


def test_uri_map_on_a_plain_listener_keeps_plain_schemes() -> None:
    plain = UriMap.for_route(ROUTE, b"p:80", secure=False)
    assert plain.rewrite(b"ipps://localhost:8631/x") == b"ipp://p:80/x"
    assert plain.rewrite(b"https://localhost:8631/x") == b"http://p:80/x"


def test_uri_map_moves_the_base_path_back_under_the_route_prefix() -> None:
    route = Route(prefix="/printers/a", upstream=Upstream(host="10.1.2.3", port=8631,
                                                            base_path="/ipp/print"))
    m = UriMap.for_route(route, b"p:443")
    assert m.rewrite(b"ipp://10.1.2.3:8631/ipp/print") == b"ipps://p:443/printers/a"
    assert m.rewrite(b"ipp://10.1.2.3:8631/ipp/print/5") == b"ipps://p:443/printers/a/5"
    assert m.rewrite(b"ipp://10.1.2.3:8631/ipp/print?x") == b"ipps://p:443/printers/a?x"
    assert m.rewrite(b"ipp://10.1.2.3:8631/ipp/printer2") == b"ipps://p:443/ipp/printer2"
    top = UriMap.for_route(Route(prefix="/", upstream=route.upstream), b"p:443")
    assert top.rewrite(b"ipp://10.1.2.3:8631/ipp/print") == b"ipps://p:443/"


def test_uri_map_keeps_a_uri_that_would_not_fit_in_a_value() -> None:
    long_path = b"/" + b"a" * (0xFFFF - 26)  # fits now, not once rewritten
    assert MAP.rewrite(b"ipp://localhost:8631" + long_path) is None


@pytest.mark.parametrize(
    ("host", "value", "port", "expected"),
    [
        ("print.acme.example", b"print.acme.example:8631", 9999, b"print.acme.example:8631"),
        ("print.acme.example", b"Print.Acme.Example", 8631, b"print.acme.example:8631"),
        ("print.acme.example", b"print.acme.example", None, b"print.acme.example"),
        ("::1", b"[::1]:8631", 1, b"[::1]:8631"),
        ("::1", b"[::1]", 631, b"[::1]:631"),
    ],
)
def test_public_authority(host: str, value: bytes, port: int | None, expected: bytes) -> None:
    assert public_authority(host, value, port) == expected


# -- the attributes section -----------------------------------------------------------


def test_every_uri_value_of_every_group_is_rewritten_and_the_rest_kept() -> None:
    body = w.message(
        [
            (w.OPERATION, [(w.CHARSET, b"attributes-charset", b"utf-8"),
                           (w.URI, b"printer-uri", b"ipp://10.1.2.3:8631/ipp/print")]),
            (w.JOB, [(w.URI, b"job-uri", b"ipp://localhost:8631/ipp/print/4"),
                     (w.URI, b"job-printer-uri", b"ipp://localhost:8631/ipp/print"),
                     (w.INTEGER, b"job-id", b"\x00\x00\x00\x04")]),
            (w.PRINTER, [(w.URI, b"printer-uri-supported", b"ipp://localhost:8631/ipp/print"),
                         (w.URI, b"", b"ipps://localhost:8631/ipp/print"),
                         (w.URI, b"printer-icons", b"https://localhost:8631/icon.png"),
                         (w.URI, b"", b"https://elsewhere.example/icon.png"),
                         (w.URI, b"printer-uuid", b"urn:uuid:0000"),
                         (w.TEXT, b"printer-info", b"ipp://localhost:8631/ stays text"),
                         # a collection whose member is a uri (printer-xri-supported)
                         (w.BEG_COLLECTION, b"printer-xri-supported", b""),
                         (w.MEMBER_NAME, b"", b"xri-uri"),
                         (w.URI, b"", b"ipp://localhost:8631/ipp/print"),
                         (w.END_COLLECTION, b"", b"")]),
        ],
        data=b"%PDF document data \x03\x45 ipp://localhost:8631/",
    )
    out, rewriter = rewrite_all(body)
    assert rewriter.rewritten and rewriter.delta == len(out) - len(body)
    values, data = w.decode(out)
    assert data == b"%PDF document data \x03\x45 ipp://localhost:8631/"  # document untouched
    uris = w.uri_values(out)
    assert uris[b"printer-uri"] == [b"ipps://print.acme.example:443/ipp/print"]
    assert uris[b"job-uri"] == [b"ipps://print.acme.example:443/ipp/print/4"]
    assert uris[b"printer-uri-supported"] == [b"ipps://print.acme.example:443/ipp/print"] * 2
    assert uris[b"printer-icons"] == [b"https://print.acme.example:443/icon.png",
                                      b"https://elsewhere.example/icon.png"]
    assert uris[b"printer-uuid"] == [b"urn:uuid:0000"]
    assert uris[b"printer-xri-supported"] == [b"ipps://print.acme.example:443/ipp/print"]
    # Everything that is not a uri value is byte-identical and in the same order.
    before = [v for v in w.decode(body)[0] if v[1] != w.URI]
    assert [v for v in values if v[1] != w.URI] == before
    assert [v[:3] for v in values] == [v[:3] for v in w.decode(body)[0]]


def test_names_the_printer_gives_itself_are_learned_from_the_same_response() -> None:
    body = w.response({
        b"printer-more-info": [b"http://printer.lan:631/"],
        b"printer-uri-supported": [b"ipp://printer.lan/ipp/print"],
        b"printer-supply-info-uri": [b"http://printer.lan:80/supplies"],  # another port
    })
    uris = w.uri_values(rewrite_all(body)[0])
    assert uris[b"printer-more-info"] == [b"https://print.acme.example:443/"]
    assert uris[b"printer-uri-supported"] == [b"ipps://print.acme.example:443/ipp/print"]
    assert uris[b"printer-supply-info-uri"] == [b"http://printer.lan:80/supplies"]


def test_without_upstream_uris_the_message_is_unchanged() -> None:
    body = w.response({b"printer-more-info": [b"https://elsewhere.example/"]}, data=b"doc")
    out, rewriter = rewrite_all(body)
    assert out == body and rewriter.rewritten and rewriter.delta == 0


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64])
def test_any_split_of_the_body_gives_the_same_output(piece: int) -> None:
    body = w.response({b"printer-uri-supported": [b"ipp://localhost:8631/ipp/print",
                                                  b"ipps://localhost:8631/ipp/print"],
                       b"printer-more-info": [b"http://10.1.2.3:8631/"]}, data=b"x" * 100)
    whole = rewrite_all(body)[0]
    assert rewrite_all(body, piece=piece)[0] == whole
    assert whole != body


def test_nothing_is_released_before_the_end_of_attributes_tag() -> None:
    body = w.response({b"printer-more-info": [b"http://localhost:8631/"]}, data=b"DATA")
    end = body.index(b"DATA")
    rewriter = AttributeRewriter(MAP)
    assert rewriter.feed(body[: end - 1]) is None  # up to just before the 0x03
    out = rewriter.feed(body[end - 1 : end + 2])
    assert out is not None and out.endswith(b"\x03DA")
    assert rewriter.feed(b"TA") == b"TA"  # document data passes as it comes
    assert rewriter.finish() == b""


# -- hostile and broken messages: passed through byte for byte --------------------------


def test_a_truncated_message_is_passed_through_at_every_cut() -> None:
    body = w.response({b"printer-uri-supported": [b"ipp://localhost:8631/ipp/print"]})
    for cut in range(len(body) - 1):  # every cut before the end-of-attributes-tag
        out, rewriter = rewrite_all(body[:cut])
        assert out == body[:cut]
        assert not rewriter.rewritten and "ends before" in rewriter.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", "malformed"),  # not IPP at all
        (b"\x00\x00\x00\x00\x00\x00\x00\x01\x01\x03", "malformed"),  # version 0
        (b"\x02\x00\x00\x00\x00\x00\x00\x01\x45\x00\x01a\x00\x00\x03", "malformed"),  # no group
        (b"\x02\x00\x00\x00\x00\x00\x00\x01\x01\x00\x03", "malformed"),  # reserved tag 0
        (b"\x02\x00\x00\x00\x00\x00\x00\x01\x01\x45\x00\x00\x00\x01x\x03", "malformed"),
        # name-length and value-length past the end: it waits for bytes that never come
        (b"\x02\x00\x00\x00\x00\x00\x00\x01\x01\x45\xff\xffabc", "ends before"),
        (b"\x02\x00\x00\x00\x00\x00\x00\x01\x01\x45\x00\x01a\xff\xff" + b"x" * 100, "ends before"),
    ],
)
def test_malformed_messages_are_passed_through(body: bytes, reason: str) -> None:
    out, rewriter = rewrite_all(body + b"trailing document bytes")
    assert out == body + b"trailing document bytes"
    assert not rewriter.rewritten and reason in rewriter.reason


def test_attributes_over_the_limit_are_passed_through_and_never_held_longer() -> None:
    many = [(w.URI, b"printer-icons", b"ipp://localhost:8631/i")] * 100_000  # ~3.4 MB
    body = w.message([(w.PRINTER, many)])
    rewriter = AttributeRewriter(MAP, limit=1 << 20)
    out = []
    held_max = 0
    for at in range(0, len(body), 65536):
        got = rewriter.feed(body[at : at + 65536])
        held_max = max(held_max, len(rewriter._buf))
        if got is not None:
            out.append(got)
    out.append(rewriter.finish())
    assert b"".join(out) == body
    assert not rewriter.rewritten and "longer than 1048576" in rewriter.reason
    assert held_max <= (1 << 20) + 65536


def test_a_huge_attribute_count_under_the_limit_is_parsed_in_bounded_time() -> None:
    many = [(w.INTEGER, b"", b"\x00\x00\x00\x01")] * 100_000  # 9 bytes each, 900 KB
    body = w.message([(w.PRINTER, [(w.INTEGER, b"x", b"\x00\x00\x00\x00"), *many])])
    started = time.process_time()
    out, rewriter = rewrite_all(body, piece=16384)  # re-parses nothing already parsed
    assert rewriter.rewritten and out == body
    assert time.process_time() - started < 5  # a guard against quadratic re-scans


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=50))
def test_fuzzed_bodies_never_crash_and_framing_holds(data: bytes, piece: int) -> None:
    body = b"\x02\x00\x00\x00\x00\x00\x00\x01\x01" + data
    out, rewriter = rewrite_all(body, piece=piece, limit=1024)
    assert rewriter.done
    assert len(out) == len(body) + rewriter.delta
    if not rewriter.rewritten:
        assert out == body


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"ipp://localhost:8631/p", b"https://10.1.2.3:8631/",
                                 b"ipp://other:8631/", b"urn:x", b""]), max_size=20),
       st.binary(max_size=50))
def test_fuzzed_uri_lists_keep_structure(uris: list[bytes], data: bytes) -> None:
    body = w.message([(w.PRINTER, [(w.URI, b"u%d" % i, u) for i, u in enumerate(uris)])],
                     data=data)
    out, rewriter = rewrite_all(body, piece=5)
    assert rewriter.rewritten
    values, rest = w.decode(out)
    assert rest == data and len(values) == len(uris)
    for (_, _, _, value), original in zip(values, uris, strict=True):
        assert value == (MAP.rewrite(original) or original)
        assert b"localhost:8631" not in value and b"10.1.2.3:8631" not in value


def test_value_length_field_is_rewritten_with_the_value() -> None:
    body = w.message([(w.PRINTER, [(w.URI, b"printer-more-info", b"http://localhost:8631/")])])
    out = rewrite_all(body)[0]
    at = out.index(b"printer-more-info") + len(b"printer-more-info")
    (length,) = struct.unpack_from(">H", out, at)
    assert out[at + 2 : at + 2 + length] == b"https://" + PUBLIC + b"/"


def test_requests_are_rewritten_only_on_routes_that_change_the_path() -> None:
    assert UriMap.for_request(ROUTE, b"print.acme.example:8631") is None
    based = Upstream(host="10.1.2.3", port=631, base_path="/ipp/print")
    m = UriMap.for_request(Route(prefix="/printers/a", upstream=based), b"gw.example:8631")
    assert m is not None
    assert m.rewrite(b"ipps://gw.example:8631/printers/a") == b"ipp://10.1.2.3:631/ipp/print"
    assert m.rewrite(b"ipps://GW.example/printers/a/7") == b"ipp://10.1.2.3:631/ipp/print/7"
    assert m.rewrite(b"https://gw.example/printers/a") == b"http://10.1.2.3:631/ipp/print"
    assert m.rewrite(b"ipps://gw.example:8631/printers/b") == b"ipp://10.1.2.3:631/printers/b"
    assert m.rewrite(b"ipps://other.example:8631/printers/a") is None
    top = UriMap.for_request(Route(prefix="/", upstream=based), b"[::1]:8631")
    assert top is not None
    assert top.rewrite(b"ipps://[::1]:8631/") == b"ipp://10.1.2.3:631/ipp/print/"
    assert top.rewrite(b"ipps://[::1]:8631") == b"ipp://10.1.2.3:631/ipp/print"
