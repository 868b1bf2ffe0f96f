"""Names: normalisation, the product's import rule, and one-label wildcard serving."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certstore.errors import InvalidName
from certstore.names import (
    allowed_for_domains,
    normalize_domain,
    normalize_name,
    offending_names,
    wildcard_parent,
)

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
TLD = st.from_regex(r"[a-z][a-z0-9]{1,6}", fullmatch=True)
DOMAIN = st.builds(lambda labels, tld: ".".join([*labels, tld]),
                   st.lists(LABEL, min_size=1, max_size=3), TLD)


@pytest.mark.parametrize(("raw", "expected"), [
    ("Example.COM", "example.com"),
    ("example.com.", "example.com"),
    ("  print.example.com ", "print.example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    ("a-b.example.com", "a-b.example.com"),
])
def test_domains_are_normalised_once(raw: str, expected: str) -> None:
    assert normalize_domain(raw) == expected


@pytest.mark.parametrize("raw", [
    "", ".", "com", "*.example.com", "192.0.2.1", "2001:db8::1", "[::1]", "-a.example.com",
    "a-.example.com", "a..example.com", "a_b.example.com", "exa mple.com",
    "f*.example.com", "*", "xn--zz.example", "a" * 64 + ".example.com",
    ".".join(["a" * 60] * 5), "0.0.0.0.", "1.2.3", "host.123",
])
def test_invalid_domains_are_refused_naming_them(raw: str) -> None:
    with pytest.raises(InvalidName) as info:
        normalize_domain(raw)
    assert info.value.names == (raw,)
    assert str(info.value)


@pytest.mark.parametrize("raw", ["f*.example.com", "*.*.example.com", "a.*.example.com", "*",
                                 "*.", "**.example.com", "*.com"])
def test_partial_or_multiple_wildcards_are_never_valid(raw: str) -> None:
    with pytest.raises(InvalidName):
        normalize_name(raw, allow_wildcard=True)


def test_whole_leftmost_wildcard_is_valid_when_allowed() -> None:
    assert normalize_name("*.Example.com", allow_wildcard=True) == "*.example.com"


@pytest.mark.parametrize(("name", "domains", "ok"), [
    ("example.com", {"example.com"}, True),
    ("*.example.com", {"example.com"}, True),          # the page: wildcard for the domain
    ("my.example.com", {"example.com"}, False),        # subdomain needs its own domain
    ("my.example.com", {"example.com", "my.example.com"}, True),
    ("*.my.example.com", {"example.com"}, False),
    ("*.my.example.com", {"my.example.com"}, True),
    ("example.com", {"my.example.com"}, False),
    ("other.org", {"example.com"}, False),
])
def test_product_import_rule(name: str, domains: set[str], ok: bool) -> None:
    assert allowed_for_domains(name, frozenset(domains)) is ok


def test_offending_names_lists_every_one_in_order() -> None:
    bad = offending_names(["a.example.com", "example.com", "z.other.org", "*.x.org"],
                          frozenset({"example.com"}))
    assert bad == ["a.example.com", "z.other.org", "*.x.org"]


@given(DOMAIN)
def test_normalisation_is_idempotent_and_case_insensitive(domain: str) -> None:
    once = normalize_domain(domain.upper() + ".")
    assert once == domain
    assert normalize_domain(once) == once


@given(DOMAIN, LABEL)
def test_wildcard_is_allowed_exactly_for_its_parent_domain(domain: str, label: str) -> None:
    wildcard = "*." + domain
    assert allowed_for_domains(wildcard, {domain})
    assert not allowed_for_domains(wildcard, {label + "." + domain})
    # and a concrete subdomain never rides on the parent's ownership
    assert not allowed_for_domains(label + "." + domain, {domain})
    assert allowed_for_domains(label + "." + domain, {domain, label + "." + domain})


@given(DOMAIN, LABEL)
def test_serving_wildcard_is_one_label_only(domain: str, label: str) -> None:
    # RFC 6125 6.4.3: *.d serves x.d, not d itself nor y.x.d.
    assert wildcard_parent(label + "." + domain) == domain
    deeper = wildcard_parent("y." + label + "." + domain)
    assert deeper == label + "." + domain != domain


def test_wildcard_parent_of_two_label_name_is_none() -> None:
    assert wildcard_parent("example.com") is None
    assert wildcard_parent("com") is None
