"""Every import rule of the product page, through ``certstore.chains.prepare_import`` (pure)
and end to end through ``CertStore.import_chain`` on a real SQLite store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12
from cryptography.x509.oid import NameOID

from certstore.chains import NewChain, prepare_import
from certstore.errors import Conflict, InvalidCertificate
from certstore.names import normalize_domain
from certstore.store import CertStore
from tests.certfactory import NOW, Issued, make_ca, make_leaf, new_key, p12
from tests.certstore.p12tools import resign

PW = b"import-pw"
DOMAINS = frozenset({"example.com"})


def do_import(data: bytes, domains: Sequence[str] | frozenset[str] = DOMAINS, *,
              password: bytes | None = PW, now: dt.datetime | None = None) -> NewChain:
    return prepare_import(data=data, password=password,
                          domains=frozenset(normalize_domain(d) for d in domains),
                          now=now or dt.datetime.now(dt.UTC))


def refused(data: bytes, rule: str, domains: Sequence[str] | frozenset[str] = DOMAINS, *,
            now: dt.datetime | None = None) -> InvalidCertificate:
    with pytest.raises(InvalidCertificate) as info:
        do_import(data, domains, now=now)
    assert info.value.rule == rule, f"expected {rule!r}, got {info.value.rule!r}: {info.value}"
    return info.value


def chain_of(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


def leaf_for(issuer: Issued, *dns: str, cn: str | None = None,
             ips: Sequence[str] = ()) -> bytes:
    return p12(make_leaf(issuer, dns=dns, cn=cn, ips=ips), PW)


# -- key and chain ------------------------------------------------------------------------------


def test_certificates_without_private_key(intermediate_ca: Issued) -> None:
    leaf = make_leaf(intermediate_ca, dns=["example.com"])
    err = refused(p12(leaf, PW, include_key=False), "no-private-key")
    assert "no private key" in err.message


def test_key_without_any_certificate() -> None:
    key = new_key("ec")
    data = crypto_pkcs12.serialize_key_and_certificates(
        b"k", key, None, None, serialization.BestAvailableEncryption(PW))
    err = refused(data, "key-mismatch")
    assert "no certificate" in err.message


def test_key_matching_none_of_the_certificates(intermediate_ca: Issued) -> None:
    leaf = make_leaf(intermediate_ca, dns=["example.com"])
    stranger = make_leaf(intermediate_ca, dns=["example.com"])
    data = crypto_pkcs12.serialize_key_and_certificates(
        b"k", stranger.key, None, [leaf.cert, *leaf.parents],
        serialization.BestAvailableEncryption(PW))
    err = refused(data, "key-mismatch")
    assert "matches" in err.message


def test_chain_is_ordered_and_unrelated_certificates_dropped(root_ca: Issued,
                                                             intermediate_ca: Issued) -> None:
    leaf = make_leaf(intermediate_ca, dns=["example.com"])
    unrelated_root = make_ca("Unrelated Root")
    unrelated_leaf = make_leaf(unrelated_root, dns=["example.com"])
    # The leaf is not the file's "main" certificate, and everything is shuffled.
    data = crypto_pkcs12.serialize_key_and_certificates(
        b"k", leaf.key, None,
        [root_ca.cert, unrelated_leaf.cert, intermediate_ca.cert, unrelated_root.cert, leaf.cert],
        serialization.BestAvailableEncryption(PW))
    new = do_import(data)
    assert chain_of(new.chain_pem) == [leaf.cert, intermediate_ca.cert, root_ca.cert]
    assert new.leaf.fingerprint_sha256 == leaf.cert.fingerprint(hashes.SHA256()).hex()


def test_chain_without_root_in_file(intermediate_ca: Issued) -> None:
    leaf = make_leaf(intermediate_ca, dns=["example.com"])
    data = crypto_pkcs12.serialize_key_and_certificates(
        b"k", leaf.key, leaf.cert, [intermediate_ca.cert],
        serialization.BestAvailableEncryption(PW))
    assert chain_of(do_import(data).chain_pem) == [leaf.cert, intermediate_ca.cert]


# -- names --------------------------------------------------------------------------------------


def test_san_names_all_owned(intermediate_ca: Issued) -> None:
    new = do_import(leaf_for(intermediate_ca, "example.com", "print.example.com",
                             "*.example.com", cn="ignored.invalid"),
                    ["example.com", "print.example.com"])
    assert new.dns_names == ("example.com", "print.example.com", "*.example.com")
    assert new.origin == "imported" and new.purpose == "tls"


def test_refusal_lists_every_offending_name(intermediate_ca: Issued) -> None:
    data = leaf_for(intermediate_ca, "example.com", "a.other.org", "my.example.com",
                    "*.b.example.com", "*.example.com", "other.org")
    err = refused(data, "names-not-owned")
    assert err.names == ("a.other.org", "my.example.com", "*.b.example.com", "other.org")
    for name in err.names:
        assert name in err.message
    assert err.details()["names"] == list(err.names)


def test_invalid_and_unowned_names_are_all_listed(intermediate_ca: Issued) -> None:
    """"A refusal lists every offending name": a name that is not valid and a valid name the
    account does not own are both offending, one refusal must name both."""
    with pytest.raises(InvalidCertificate) as info:
        do_import(leaf_for(intermediate_ca, "example.com", "f*.example.com", "other.org"))
    assert set(info.value.names) == {"f*.example.com", "other.org"}, info.value.message


@pytest.mark.parametrize(("cn", "domains"), [("example.com", ["example.com"]),
                                             ("Shop.Example.COM", ["shop.example.com"]),
                                             ("*.example.com", ["example.com"])])
def test_no_san_checks_the_cn(intermediate_ca: Issued, cn: str, domains: list[str]) -> None:
    new = do_import(leaf_for(intermediate_ca, cn=cn), domains)
    assert new.dns_names == (cn.lower(),)


def test_no_san_cn_not_owned(intermediate_ca: Issued) -> None:
    err = refused(leaf_for(intermediate_ca, cn="other.org"), "names-not-owned")
    assert err.names == ("other.org",)


def test_ip_only_san_falls_back_to_cn(intermediate_ca: Issued) -> None:
    ok = do_import(leaf_for(intermediate_ca, cn="example.com", ips=["192.0.2.7", "2001:db8::7"]))
    assert ok.dns_names == ("example.com",)
    assert ok.leaf.san_ip == ("192.0.2.7", "2001:db8::7")
    err = refused(leaf_for(intermediate_ca, cn="other.org", ips=["192.0.2.7"]),
                  "names-not-owned")
    assert err.names == ("other.org",)


def test_ip_entries_ignored_next_to_dns_names(intermediate_ca: Issued) -> None:
    new = do_import(leaf_for(intermediate_ca, "example.com", cn="not-owned.org",
                             ips=["192.0.2.7", "2001:db8::7"]))
    assert new.dns_names == ("example.com",)


@pytest.mark.parametrize("ips", [(), ("192.0.2.7",)], ids=["no-san", "ip-only-san"])
def test_no_dns_name_and_no_cn(intermediate_ca: Issued, ips: tuple[str, ...]) -> None:
    err = refused(leaf_for(intermediate_ca, ips=ips), "no-names")
    assert "common name" in err.message


def test_wildcard_valid_for_the_parent_domain(intermediate_ca: Issued) -> None:
    assert do_import(leaf_for(intermediate_ca, "*.example.com")).dns_names == ("*.example.com",)


def test_wildcard_needs_exactly_its_parent(intermediate_ca: Issued) -> None:
    err = refused(leaf_for(intermediate_ca, "*.example.com"), "names-not-owned",
                  ["www.example.com", "com.example"])
    assert err.names == ("*.example.com",)
    err = refused(leaf_for(intermediate_ca, "*.shop.example.com"), "names-not-owned")
    assert err.names == ("*.shop.example.com",)


def test_subdomain_needs_to_be_a_domain_itself(intermediate_ca: Issued) -> None:
    data = leaf_for(intermediate_ca, "my.example.com")
    assert refused(data, "names-not-owned").names == ("my.example.com",)
    assert do_import(data, ["example.com", "my.example.com"]).dns_names == ("my.example.com",)
    assert do_import(data, ["my.example.com"]).dns_names == ("my.example.com",)


def test_parent_domain_is_not_owned_through_a_subdomain(intermediate_ca: Issued) -> None:
    err = refused(leaf_for(intermediate_ca, "example.com"), "names-not-owned", ["my.example.com"])
    assert err.names == ("example.com",)


def test_names_are_case_insensitive(intermediate_ca: Issued) -> None:
    new = do_import(leaf_for(intermediate_ca, "WWW.Example.COM", "*.EXAMPLE.com"),
                    ["Example.Com", "www.EXAMPLE.com"])
    assert new.dns_names == ("www.example.com", "*.example.com")


def test_trailing_dot_and_duplicates_are_normalised(intermediate_ca: Issued) -> None:
    new = do_import(leaf_for(intermediate_ca, "example.com.", "EXAMPLE.com"))
    assert new.dns_names == ("example.com",)


@pytest.mark.parametrize("san", ["xn--bcher-kva.example", "*.xn--bcher-kva.example"])
@pytest.mark.parametrize("domain", ["bücher.example", "BÜCHER.example", "xn--bcher-kva.example"])
def test_idn_names_compare_as_a_labels(intermediate_ca: Issued, san: str, domain: str) -> None:
    assert do_import(leaf_for(intermediate_ca, san), [domain]).dns_names == (san,)


def test_idn_not_owned_is_listed_as_a_label(intermediate_ca: Issued) -> None:
    err = refused(leaf_for(intermediate_ca, "xn--bcher-kva.example"), "names-not-owned",
                  ["buecher.example"])
    assert err.names == ("xn--bcher-kva.example",)


@pytest.mark.parametrize("bad", ["f*.example.com", "*.*.example.com", "a.*.example.com", "*",
                                 "*example.com", "example.*", "**.example.com", "*.com"])
def test_partial_or_multiple_wildcards_are_invalid(intermediate_ca: Issued, bad: str) -> None:
    """``*.com`` is refused too: a wildcard needs a parent with at least two labels."""
    err = refused(leaf_for(intermediate_ca, bad, "example.com"), "invalid-names")
    assert err.names == (bad,)
    assert repr(bad) in err.message


def test_invalid_wildcard_in_cn_is_invalid(intermediate_ca: Issued) -> None:
    err = refused(leaf_for(intermediate_ca, cn="f*.example.com"), "invalid-names")
    assert err.names == ("f*.example.com",)


def test_every_invalid_name_is_listed(intermediate_ca: Issued) -> None:
    err = refused(leaf_for(intermediate_ca, "f*.example.com", "example.com", "a.*.example.com",
                           "under_score.example.com"), "invalid-names")
    assert err.names == ("f*.example.com", "a.*.example.com", "under_score.example.com")


@pytest.mark.parametrize("name", ["192.0.2.1", "2001:db8::1"])
def test_ip_address_written_as_dns_name_is_invalid(intermediate_ca: Issued, name: str) -> None:
    refused(leaf_for(intermediate_ca, name), "invalid-names")


# -- validity, keys, signatures -------------------------------------------------------------------


def test_expired_leaf(intermediate_ca: Issued) -> None:
    leaf = make_leaf(intermediate_ca, dns=["example.com"],
                     not_before=NOW - dt.timedelta(days=30), not_after=NOW - dt.timedelta(days=1))
    err = refused(p12(leaf, PW), "expired")
    assert leaf.cert.not_valid_after_utc.date().isoformat() in err.message


def test_not_yet_valid_leaf(intermediate_ca: Issued) -> None:
    leaf = make_leaf(intermediate_ca, dns=["example.com"],
                     not_before=NOW + dt.timedelta(days=2), not_after=NOW + dt.timedelta(days=90))
    err = refused(p12(leaf, PW), "not-yet-valid")
    assert leaf.cert.not_valid_before_utc.date().isoformat() in err.message


def test_validity_is_judged_at_the_given_time(intermediate_ca: Issued) -> None:
    data = leaf_for(intermediate_ca, "example.com")
    refused(data, "expired", now=NOW + dt.timedelta(days=91))
    refused(data, "not-yet-valid", now=NOW - dt.timedelta(days=2))
    assert do_import(data, now=NOW).dns_names == ("example.com",)


def test_rsa_1024_key_is_weak(intermediate_ca: Issued) -> None:
    leaf = make_leaf(intermediate_ca, dns=["example.com"], key=new_key("rsa1024"))
    err = refused(p12(leaf, PW), "weak-key")
    assert "1024" in err.message and "2048" in err.message


@pytest.mark.parametrize(("kind", "label"), [("ec", "ecdsa-p256"), ("rsa", "rsa-2048")])
def test_accepted_key_types(intermediate_ca: Issued, kind: str, label: str) -> None:
    leaf = make_leaf(intermediate_ca, dns=["example.com"], key=new_key(kind))
    new = do_import(p12(leaf, PW))
    assert new.key_type == label
    loaded = serialization.load_der_private_key(new.key_der, None)
    assert loaded.public_key() == leaf.key.public_key()


@pytest.fixture(scope="module")
def rsa_root() -> Issued:
    return make_ca("RSA Root", key=new_key("rsa"))


@pytest.mark.parametrize("hash_name", ["sha1", "md5"])
def test_weak_signature_on_leaf(rsa_root: Issued, hash_name: str) -> None:
    leaf = make_leaf(rsa_root, dns=["example.com"])
    weak = Issued(cert=resign(leaf.cert, rsa_root.key, hash_name), key=leaf.key,
                  parents=leaf.parents)
    assert weak.cert.signature_hash_algorithm is not None
    assert weak.cert.signature_hash_algorithm.name == hash_name
    err = refused(p12(weak, PW), "weak-signature")
    assert "SHA-256" in err.message


def test_sha1_ecdsa_signature_on_leaf(intermediate_ca: Issued) -> None:
    leaf = make_leaf(intermediate_ca, dns=["example.com"])
    weak = Issued(cert=resign(leaf.cert, intermediate_ca.key, "sha1"), key=leaf.key,
                  parents=leaf.parents)
    refused(p12(weak, PW), "weak-signature")


def test_sha1_signature_on_intermediate(root_ca: Issued) -> None:
    intermediate = make_ca("SHA1 Issuing", issuer=root_ca)
    weak_intermediate = resign(intermediate.cert, root_ca.key, "sha1")
    leaf = make_leaf(intermediate, dns=["example.com"])
    data = p12(Issued(cert=leaf.cert, key=leaf.key, parents=[weak_intermediate, root_ca.cert]),
               PW)
    err = refused(data, "weak-signature")
    assert "SHA1 Issuing" in err.message


def test_sha1_self_signed_root_in_file_is_accepted() -> None:
    root = make_ca("SHA1 Root")
    sha1_root = resign(root.cert, root.key, "sha1")
    intermediate = make_ca("Issuing under SHA1 root", issuer=root)
    leaf = make_leaf(intermediate, dns=["example.com"])
    data = p12(Issued(cert=leaf.cert, key=leaf.key, parents=[intermediate.cert, sha1_root]), PW)
    new = do_import(data)
    assert chain_of(new.chain_pem) == [leaf.cert, intermediate.cert, sha1_root]


def test_sha1_self_signed_leaf_is_refused() -> None:
    """A self-signed leaf is still the leaf: its SHA-1 signature is refused (the page:
    "MD5/SHA-1 signatures on the leaf or intermediates")."""
    key = new_key("ec")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("example.com")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    sha1_cert = resign(cert, key, "sha1")
    assert do_import(p12(Issued(cert=cert, key=key), PW)).dns_names == ("example.com",)
    refused(p12(Issued(cert=sha1_cert, key=key), PW), "weak-signature")


def test_password_rules_apply_to_import(intermediate_ca: Issued) -> None:
    data = leaf_for(intermediate_ca, "example.com")
    with pytest.raises(InvalidCertificate) as info:
        prepare_import(data=data, password=b"nope", domains=DOMAINS, now=NOW)
    assert info.value.rule == "wrong-password"
    with pytest.raises(InvalidCertificate) as info:
        prepare_import(data=data, password=None, domains=DOMAINS, now=NOW)
    assert info.value.rule == "password-missing"


def test_new_chain_never_shows_its_key(intermediate_ca: Issued) -> None:
    new = do_import(leaf_for(intermediate_ca, "example.com"))
    assert "key=<hidden>" in repr(new)
    assert new.key_der.hex() not in repr(new)


# -- end to end through the store -----------------------------------------------------------------


async def _state(store: CertStore, account_id: str) -> tuple[list[object], list[object]]:
    return list(await store.list_chains(account_id)), list(await store.changes_since(0))


async def test_store_imports_ordered_chain(store: CertStore, root_ca: Issued,
                                          intermediate_ca: Issued) -> None:
    acc = await store.create_account(name="Acme", kind="customer",
                                     domains=["Acme.COM", "print.acme.com"])
    leaf = make_leaf(intermediate_ca, dns=["print.acme.com", "*.ACME.com"], ips=["192.0.2.9"])
    extra = make_ca("Someone Else")
    data = p12(leaf, PW, extra=[extra.cert])
    last = await store.last_seq()
    chain = await store.import_chain(acc.id, data, PW)
    assert chain.origin == "imported" and chain.purpose == "tls"
    assert chain.dns_names == ("print.acme.com", "*.acme.com")
    assert chain_of(chain.chain_pem) == [leaf.cert, intermediate_ca.cert, root_ca.cert]
    assert chain.key_type == "ecdsa-p256"
    assert chain in await store.list_chains(acc.id)
    changes = await store.changes_since(last)
    assert [(c.kind, c.entity_id) for c in changes] == [("chain.imported", chain.id)]
    served = (await store.snapshot()).select("shop.acme.com")
    assert served is not None and served.chain_id == chain.id
    key = serialization.load_der_private_key(store.open_key(served), None)
    assert key.public_key() == leaf.key.public_key()


async def test_store_idn_domain_given_as_u_label(store: CertStore,
                                                 intermediate_ca: Issued) -> None:
    acc = await store.create_account(name="Bücher", kind="customer", domains=["bücher.example"])
    assert acc.domains == ("xn--bcher-kva.example",)
    chain = await store.import_chain(acc.id, leaf_for(intermediate_ca, "xn--bcher-kva.example"),
                                     PW)
    assert chain.dns_names == ("xn--bcher-kva.example",)


def _bad_imports(intermediate_ca: Issued) -> dict[str, tuple[bytes, bytes | None, str]]:
    good = leaf_for(intermediate_ca, "acme.com")
    expired = make_leaf(intermediate_ca, dns=["acme.com"], not_before=NOW - dt.timedelta(days=9),
                        not_after=NOW - dt.timedelta(days=1))
    return {
        "names-not-owned": (leaf_for(intermediate_ca, "acme.com", "evil.org", "x.acme.com"), PW,
                            "names-not-owned"),
        "wrong-password": (good, b"wrong", "wrong-password"),
        "password-missing": (good, None, "password-missing"),
        "no-private-key": (p12(make_leaf(intermediate_ca, dns=["acme.com"]), PW,
                               include_key=False), PW, "no-private-key"),
        "expired": (p12(expired, PW), PW, "expired"),
        "garbage": (b"\x30\x03garbage", PW, "not-pkcs12"),
    }


@pytest.mark.parametrize("case", ["names-not-owned", "wrong-password", "password-missing",
                                  "no-private-key", "expired", "garbage"])
async def test_store_refusal_changes_nothing(store: CertStore, intermediate_ca: Issued,
                                            case: str) -> None:
    acc = await store.create_account(name="Acme", kind="customer", domains=["acme.com"])
    data, password, rule = _bad_imports(intermediate_ca)[case]
    before = await _state(store, acc.id)
    snapshot_before = await store.snapshot()
    with pytest.raises(InvalidCertificate) as info:
        await store.import_chain(acc.id, data, password)
    assert info.value.rule == rule
    if rule == "names-not-owned":
        assert info.value.names == ("evil.org", "x.acme.com")
    assert await _state(store, acc.id) == before
    assert (await store.snapshot()).seq == snapshot_before.seq


async def test_store_same_certificate_twice_is_a_conflict(store: CertStore,
                                                         intermediate_ca: Issued) -> None:
    acc = await store.create_account(name="Acme", kind="customer", domains=["acme.com"])
    data = leaf_for(intermediate_ca, "acme.com")
    await store.import_chain(acc.id, data, PW)
    before = await _state(store, acc.id)
    with pytest.raises(Conflict):
        await store.import_chain(acc.id, data, PW)
    assert await _state(store, acc.id) == before


async def test_store_checks_the_account_own_domains(store: CertStore,
                                                    intermediate_ca: Issued) -> None:
    """Another account's domain does not count: names are checked per account."""
    await store.create_account(name="Other", kind="customer", domains=["other.org"])
    acc = await store.create_account(name="Acme", kind="customer", domains=["acme.com"])
    before = await _state(store, acc.id)
    with pytest.raises(InvalidCertificate) as info:
        await store.import_chain(acc.id, leaf_for(intermediate_ca, "acme.com", "other.org"), PW)
    assert info.value.rule == "names-not-owned" and info.value.names == ("other.org",)
    assert await _state(store, acc.id) == before
