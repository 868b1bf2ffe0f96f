"""Settings values: parsing, validation and route matching (no sockets)."""

from __future__ import annotations

import pytest

from gateway.proxy import InvalidUpstream, ProxyConfigError, ProxySettings, Route, Upstream


@pytest.mark.parametrize(
    ("url", "host", "port", "base"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1", 8080, ""),
        ("http://Printer.Local:631/", "printer.local", 631, ""),
        ("http://h:1/base/", "h", 1, "/base"),
        ("http://h/x/y", "h", 80, "/x/y"),
        ("ipp://h/ipp/print", "h", 631, "/ipp/print"),
        ("http://[::1]:8000", "::1", 8000, ""),
    ],
)
def test_upstream_parse(url: str, host: str, port: int, base: str) -> None:
    upstream = Upstream.parse(url)
    assert (upstream.host, upstream.port, upstream.base_path) == (host, port, base)


def test_upstream_authority_and_host_line() -> None:
    assert Upstream.parse("http://[::1]:8000").authority == "[::1]:8000"
    assert Upstream(host="127.0.0.1", port=631).host_line == b"Host: 127.0.0.1:631\r\n"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("https://h:1", "scheme"),
        ("ftp://h", "scheme"),
        ("http://:80", "no host"),
        ("http://h:99999", "valid URL"),
        ("http://h:port", "valid URL"),
        ("http://user:pw@h", "credentials"),
        ("http://h/x?q=1", "query"),
        ("h:80", "scheme"),
        ("http://bad_host!/", "invalid host"),
    ],
)
def test_upstream_parse_errors_say_what_is_wrong(url: str, fragment: str) -> None:
    with pytest.raises(InvalidUpstream) as caught:
        Upstream.parse(url)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert caught.value.url == url


@pytest.mark.parametrize("base", ["x", "/x/", "/x?y"])
def test_upstream_rejects_bad_base_path(base: str) -> None:
    with pytest.raises(ProxyConfigError, match="base_path"):
        Upstream(host="h", port=1, base_path=base)


def _route(prefix: str, base: str = "") -> Route:
    return Route(prefix=prefix, upstream=Upstream(host="h", port=1, base_path=base))


def test_longest_prefix_wins_on_segment_boundaries() -> None:
    settings = ProxySettings(routes=(_route("/"), _route("/a"), _route("/a/b/")))
    assert settings.match(b"/a").prefix == "/a"  # type: ignore[union-attr]
    assert settings.match(b"/a/x").prefix == "/a"  # type: ignore[union-attr]
    assert settings.match(b"/ab").prefix == "/"  # type: ignore[union-attr]
    assert settings.match(b"/a/b/c").prefix == "/a/b/"  # type: ignore[union-attr]
    assert settings.match(b"/a/b").prefix == "/a"  # type: ignore[union-attr]
    assert ProxySettings(routes=(_route("/a"),)).match(b"/b") is None


@pytest.mark.parametrize(
    ("prefix", "base", "target", "expected"),
    [
        ("/p", "", b"/p/x?q", b"/p/x?q"),
        ("/p", "/b", b"/p/x?q", b"/b/x?q"),
        ("/p", "/b", b"/p", b"/b"),
        ("/p", "/b", b"/p?q", b"/b?q"),
        ("/p/", "/b", b"/p/x", b"/b/x"),
        ("/", "/b", b"/x", b"/b/x"),
    ],
)
def test_upstream_target_replaces_prefix_with_base(
    prefix: str, base: str, target: bytes, expected: bytes
) -> None:
    assert _route(prefix, base).upstream_target(target) == expected


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"routes": ()}, "routes"),
        ({"routes": (_route("/"), _route("/"))}, "routes"),
        ({"header_timeout_s": 0}, "header_timeout_s"),
        ({"idle_timeout_s": -1}, "idle_timeout_s"),
        ({"upstream_response_timeout_s": float("inf")}, "upstream_response_timeout_s"),
        ({"max_header_bytes": 10}, "max_header_bytes"),
        ({"tunnel_idle_timeout_s": 0}, "tunnel_idle_timeout_s"),
        ({"upgrade_protocols": frozenset((b"h2c",))}, "upgrade_protocols"),
        ({"upgrade_protocols": frozenset((b"WebSocket",))}, "upgrade_protocols"),
        ({"upgrade_protocols": frozenset((b"a, b",))}, "upgrade_protocols"),
        ({"ipp_max_attributes_bytes": 1023}, "ipp_max_attributes_bytes"),
    ],
)
def test_settings_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    kwargs.setdefault("routes", (_route("/"),))
    with pytest.raises(ProxyConfigError) as caught:
        ProxySettings(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_route_prefix_must_be_a_path() -> None:
    with pytest.raises(ProxyConfigError, match="prefix"):
        _route("api")
