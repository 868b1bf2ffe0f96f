"""Real-world and hostile files from PyPI ``cryptography-vectors``.

* every PKCS#12 file of ``pkcs12/`` (with every candidate password) and a sample of
  ``x509/PKITS_data/pkcs12/`` goes through ``prepare_import``: the only exception allowed is
  :class:`InvalidCertificate`, and files whose nature is known get their specific rule;
* every certificate file of ``x509/`` and ``x509/custom/`` goes through ``load_certificates``,
  ``describe`` and ``certificate_dns_names``, with specific expectations for the odd ones.

What the PKCS#12 files hold was read with ``openssl pkcs12 -info`` (see the table below).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certstore.chains import check_names, prepare_import
from certstore.errors import InvalidCertificate
from certstore.names import normalize_domain
from certstore.pkcs12 import read_pkcs12
from certstore.x509info import CertInfo, certificate_dns_names, describe, load_certificates
from tests.certstore import p12tools

VECTORS = Path(cryptography_vectors.__file__).parent
PKCS12_DIR = VECTORS / "pkcs12"
PKITS_DIR = VECTORS / "x509" / "PKITS_data" / "pkcs12"
X509_DIRS = (VECTORS / "x509", VECTORS / "x509" / "custom")
CANDIDATES: tuple[bytes | None, ...] = (None, b"cryptography", b"password")
DOMAINS = frozenset({"example.com", "cryptography.io"})
NOW = dt.datetime.now(dt.UTC)

PKCS12_FILES = sorted(PKCS12_DIR.glob("*.p12"))
PKITS_SAMPLE = sorted(PKITS_DIR.glob("*.p12"))[:40]
X509_FILES = sorted(p for d in X509_DIRS for p in d.iterdir()
                    if p.is_file() and p.suffix in {".pem", ".der", ".crt", ".cer"})


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(VECTORS)) for p in paths]


def test_corpus_is_complete() -> None:
    assert len(PKCS12_FILES) == 31
    assert len(PKITS_SAMPLE) == 40
    assert len(X509_FILES) > 150
    assert {"wildcard_san.pem", "utf8-dnsname.pem", "two_basic_constraints.pem",
            "san_ipaddr.pem"} <= {p.name for p in X509_FILES}


# -- pkcs12/ ---------------------------------------------------------------------------------------
#
# From ``openssl pkcs12 -info`` (``-legacy`` where RC2 is used):
# * ``*-no-pwd.p12``, ``no-password.p12``, ``java-truststore.p12``: MAC under the empty password;
# * ``*-pwd.p12`` (except the no-pwd ones): password "password", 3DES key and certificates;
# * ``cert-*``/``no-cert-key-aes256cbc.p12``: password "cryptography";
# * ``no-cert-*``: certificates but no key (``no-cert-key-aes256cbc``: a key, no certificate);
# * ``cert-aes256cbc-no-key``: a certificate, no key;
# * ``cert-none-key-none``: MAC'd, but key (plain keyBag) and certificate stored unencrypted;
# * the others: a key with its certificate "cryptography CA" (no SAN, CN not a DNS name).


def _password_of(name: str) -> bytes | None:
    if "no-pwd" in name or name in {"no-password.p12", "java-truststore.p12"}:
        return None
    return b"cryptography" if name.startswith(("cert-", "no-cert-key")) else b"password"


def _rule_with_right_password(name: str) -> str:
    if _password_of(name) is None:
        return "password-missing"
    if name == "cert-none-key-none.p12":
        return "key-not-protected"
    if name == "no-cert-key-aes256cbc.p12":
        return "key-mismatch"
    if name.startswith("no-cert-") or name == "cert-aes256cbc-no-key.p12":
        return "no-private-key"
    return "invalid-names"  # key + certificate whose only name is the CN "cryptography CA"


def _expected_rule(name: str, password: bytes | None) -> str:
    right = _password_of(name)
    if right is None:
        return "password-missing"
    if password is None:
        return "password-missing"
    if password != right:
        return "wrong-password"
    return _rule_with_right_password(name)


@pytest.mark.parametrize("password", CANDIDATES, ids=["no-password", "cryptography", "password"])
@pytest.mark.parametrize("path", PKCS12_FILES, ids=_ids(PKCS12_FILES))
def test_pkcs12_vector(path: Path, password: bytes | None) -> None:
    data = path.read_bytes()
    try:
        new = prepare_import(data=data, password=password, domains=DOMAINS, now=NOW)
    except InvalidCertificate as e:
        rule = e.rule
        assert e.message, "a refusal must say why"
        if rule == "invalid-names":
            assert e.names == ("cryptography CA",)
    else:  # no file of this directory names a domain of ours
        pytest.fail(f"imported unexpectedly: {new}")
    assert rule == _expected_rule(path.name, password)


@pytest.mark.parametrize("path", [p for p in PKCS12_FILES
                                  if _rule_with_right_password(p.name) == "invalid-names"],
                         ids=_ids([p for p in PKCS12_FILES
                                   if _rule_with_right_password(p.name) == "invalid-names"]))
def test_pkcs12_vector_with_key_is_read(path: Path) -> None:
    """Files holding a key and its certificate open, the key matching one certificate."""
    password = _password_of(path.name)
    contents = read_pkcs12(path.read_bytes(), password)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    mine = contents.key.public_key().public_bytes(der, spki)
    assert [c.public_key().public_bytes(der, spki) for c in contents.certificates].count(mine) == 1
    assert contents.certificates


def test_pkcs12_vector_contents_match_openssl(tmp_path: Path) -> None:
    """The table above is what openssl says (spot checks on the four kinds)."""
    info = p12tools.openssl_info((PKCS12_DIR / "cert-none-key-none.p12").read_bytes(), tmp_path,
                                 "cryptography", "-nodes")
    assert info.returncode == 0 and "Shrouded Keybag" not in info.stderr
    assert "PRIVATE KEY" in info.stdout
    info = p12tools.openssl_info((PKCS12_DIR / "no-cert-name-all-pwd.p12").read_bytes(),
                                 tmp_path, "password", "-nodes")
    assert info.returncode == 0 and "PRIVATE KEY" not in info.stdout
    info = p12tools.openssl_info((PKCS12_DIR / "no-cert-key-aes256cbc.p12").read_bytes(),
                                 tmp_path, "cryptography", "-nodes")
    assert info.returncode == 0 and "CERTIFICATE" not in info.stdout
    info = p12tools.openssl_info((PKCS12_DIR / "no-password.p12").read_bytes(), tmp_path, "",
                                 "-nodes", "-legacy")
    assert info.returncode == 0 and "PRIVATE KEY" in info.stdout


# -- x509/PKITS_data/pkcs12/ (password "password") ------------------------------------------------


@pytest.mark.parametrize("path", PKITS_SAMPLE, ids=_ids(PKITS_SAMPLE))
def test_pkits_pkcs12_sample(path: Path) -> None:
    data = path.read_bytes()
    try:
        new = prepare_import(data=data, password=b"password", domains=DOMAINS, now=NOW)
    except InvalidCertificate as e:
        assert e.message
        # Every PKITS file is protected with "password": never a password or format problem.
        assert e.rule not in {"wrong-password", "password-missing", "key-not-protected",
                              "not-pkcs12"}, e.message
    else:
        pytest.fail(f"imported unexpectedly: {new}")
    with pytest.raises(InvalidCertificate) as wrong:
        prepare_import(data=data, password=b"not-the-password", domains=DOMAINS, now=NOW)
    assert wrong.value.rule == "wrong-password"


@pytest.mark.parametrize("name", ["DSAParametersInheritedCACert.p12",
                                  "ValidDSAParameterInheritanceTest5EE.p12"])
def test_pkits_unparseable_certificate_is_not_a_key_password_problem(name: str,
                                                                     tmp_path: Path) -> None:
    """These files hold a DSA certificate with inherited parameters that ``cryptography``
    cannot parse; key and file share the password "password" (OpenSSL decrypts the key)."""
    data = (PKITS_DIR / name).read_bytes()
    listing = p12tools.openssl_info(data, tmp_path, "password", "-nodes")
    assert listing.returncode == 0 and "BEGIN PRIVATE KEY" in listing.stdout
    with pytest.raises(InvalidCertificate) as info:
        prepare_import(data=data, password=b"password", domains=DOMAINS, now=NOW)
    assert info.value.rule != "key-password-differs", info.value.message


PKITS_IN_VALIDITY = dt.datetime(2020, 6, 1, tzinfo=dt.UTC)  # PKITS 2011: 2010..2030


@pytest.mark.parametrize(
    ("name", "dns"),
    [("ValidDNSnameConstraintsTest30EE.p12", "testserver.testcertificates.gov"),
     ("InvalidDNSnameConstraintsTest33EE.p12", "invalidcertificates.gov")])
def test_pkits_server_certificate_imports_for_its_domain(name: str, dns: str) -> None:
    data = (PKITS_DIR / name).read_bytes()
    new = prepare_import(data=data, password=b"password", domains=frozenset({dns}),
                         now=PKITS_IN_VALIDITY)
    assert new.dns_names == (dns,) and new.key_type == "rsa-2048"
    parent = dns.split(".", 1)[1]
    with pytest.raises(InvalidCertificate) as info:  # a subdomain needs its own domain
        prepare_import(data=data, password=b"password", domains=frozenset({parent}),
                       now=PKITS_IN_VALIDITY)
    assert info.value.rule == "names-not-owned" and info.value.names == (dns,)


# -- x509/ and x509/custom/ -----------------------------------------------------------------------


def _raw_certificates(data: bytes) -> list[x509.Certificate]:
    """What ``cryptography`` itself loads (lazily), bypassing ``load_certificates``."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except Exception:
        return []


def _check_described(info: CertInfo) -> None:
    assert isinstance(info.subject, str) and isinstance(info.fingerprint_sha256, str)
    assert len(info.fingerprint_sha256) == 64
    try:
        names = certificate_dns_names(info)
    except InvalidCertificate as e:
        assert e.rule in {"no-names", "invalid-names"}, e.rule
        assert e.message
    else:
        assert names and all(isinstance(n, str) and n == n.lower() for n in names)


@pytest.mark.parametrize("path", X509_FILES, ids=_ids(X509_FILES))
def test_x509_vector_never_raises_a_foreign_exception(path: Path) -> None:
    data = path.read_bytes()
    try:
        certs = load_certificates(data)
    except InvalidCertificate as e:
        assert e.rule in {"unreadable", "not-a-certificate", "private-key-given", "empty"}
        assert e.message
        certs = []
    for cert in certs:
        _check_described(describe(cert))
    for cert in _raw_certificates(data):  # describe() on its own wraps every parser error
        try:
            info = describe(cert)
        except InvalidCertificate as e:
            assert e.rule == "unreadable" and "cannot be read" in e.message
        else:
            _check_described(info)


def _load(name: str) -> list[x509.Certificate]:
    path = next(p for p in X509_FILES if str(p.relative_to(VECTORS / "x509")) == name)
    return load_certificates(path.read_bytes())


def _names(name: str) -> list[str]:
    return certificate_dns_names(describe(_load(name)[0]))


def _names_refused(name: str, rule: str) -> InvalidCertificate:
    with pytest.raises(InvalidCertificate) as info:
        _names(name)
    assert info.value.rule == rule, info.value.message
    return info.value


def test_wildcard_san() -> None:
    names = _names("wildcard_san.pem")
    assert names == ["*.langui.sh", "langui.sh", "*.saseliminator.com", "saseliminator.com"]
    leaf = describe(_load("wildcard_san.pem")[0])
    assert check_names(leaf, frozenset({"langui.sh", "saseliminator.com"})) == tuple(names)
    with pytest.raises(InvalidCertificate) as info:
        check_names(leaf, frozenset({"langui.sh"}))
    assert info.value.names == ("*.saseliminator.com", "saseliminator.com")


@pytest.mark.parametrize(("name", "expected"),
                         [("custom/san_idna_names.pem", "xn--80ato2c.cryptography"),
                          ("custom/san_wildcard_idna.pem", "*.xn--80ato2c.cryptography")])
def test_idn_san_matches_u_label_domain(name: str, expected: str) -> None:
    assert _names(name) == [expected]
    leaf = describe(_load(name)[0])
    assert check_names(leaf, frozenset({normalize_domain("пыка.cryptography")})) == (expected,)


def test_idna2003_only_san_is_invalid() -> None:
    assert _names_refused("custom/san_idna2003_dnsname.pem", "invalid-names").names == (
        "xn--k4h.ws",)


def test_ip_only_san_falls_back_to_cn_which_is_absent() -> None:
    info = describe(_load("custom/san_ipaddr.pem")[0])
    assert info.san_dns == () and info.san_ip == ("127.0.0.1", "ff::")
    assert info.common_name is None
    _names_refused("custom/san_ipaddr.pem", "no-names")


def test_ip_entries_next_to_dns_name_are_ignored() -> None:
    info = describe(_load("custom/san_email_dns_ip_dirname_uri.pem")[0])
    assert info.san_ip and info.common_name == "cryptography"
    assert certificate_dns_names(info) == ["cryptography.io"]


def test_no_san_uses_cn() -> None:
    assert _names("custom/aia_ocsp.pem") == ["cryptography.io"]


def test_empty_dns_name_is_invalid() -> None:
    assert _names_refused("custom/san_empty_hostname.pem", "invalid-names").names == ("",)


def test_raw_utf8_in_dns_name_is_invalid() -> None:
    """A dNSName is an IA5String: raw UTF-8 in it is not a valid name (it must not be
    silently turned into an A-label and accepted)."""
    err = _names_refused("utf8-dnsname.pem", "invalid-names")
    assert "biztosítás.hu" in err.names and "*.biztosítás.hu" in err.names


@pytest.mark.parametrize(("name", "cn"), [("custom/utf8_common_name.pem", "We heart UTF8!™"),
                                          ("e-trust.ru.der", "Головной удостоверяющий центр")])
def test_no_san_with_non_ascii_cn(name: str, cn: str) -> None:
    info = describe(_load(name)[0])
    assert info.san_dns == () and info.common_name == cn
    assert _names_refused(name, "invalid-names").names == (cn,)


def test_no_san_and_no_cn() -> None:
    _names_refused("custom/bc_path_length_zero.pem", "no-names")


def test_duplicated_extension_is_unreadable() -> None:
    with pytest.raises(InvalidCertificate) as info:
        _load("custom/two_basic_constraints.pem")
    assert info.value.rule == "unreadable" and "Duplicate" in info.value.message
    raw = x509.load_pem_x509_certificate(
        (VECTORS / "x509" / "custom" / "two_basic_constraints.pem").read_bytes())
    with pytest.raises(InvalidCertificate) as info:
        describe(raw)
    assert info.value.rule == "unreadable"


@pytest.mark.parametrize("name", ["custom/malformed-san.pem", "custom/malformed-ian.pem",
                                  "custom/empty-eku.pem", "custom/cp_invalid.pem",
                                  "custom/nc_invalid_ip_netmask.pem",
                                  "custom/inhibit_any_policy_negative.pem",
                                  "custom/invalid-sct-length.der", "san_x400address.der",
                                  "san_edipartyname.der", "wosign-bc-invalid.pem"])
def test_unreadable_extensions(name: str) -> None:
    with pytest.raises(InvalidCertificate) as info:
        _load(name)
    assert info.value.rule == "unreadable"
    assert "cannot be read" in info.value.message and "export it again" in info.value.message


def test_invalid_version_is_not_a_certificate() -> None:
    with pytest.raises(InvalidCertificate) as info:
        _load("custom/invalid_version.pem")
    assert info.value.rule == "not-a-certificate" and "version" in info.value.message


@pytest.mark.parametrize("name", ["cryptography.io.with_garbage.pem",
                                  "cryptography.io.with_headers.pem"])
def test_file_with_private_key_is_refused(name: str) -> None:
    with pytest.raises(InvalidCertificate) as info:
        _load(name)
    assert info.value.rule == "private-key-given"


def test_chain_file_loads_every_certificate() -> None:
    certs = _load("cryptography.io.chain.pem")
    assert len(certs) == 2
    assert _names("cryptography.io.chain.pem") == ["www.cryptography.io", "cryptography.io"]
