"""``certstore.pkcs12.read_pkcs12``: the product page's password rules, on real files.

Files come from ``cryptography`` and from the real ``openssl pkcs12 -export`` (modern
AES/PBKDF2 and ``-legacy`` 3DES/RC2); files OpenSSL cannot be asked to write in one step
(key under another password than the MAC) are assembled with asn1crypto, and every such
fixture is checked with ``openssl pkcs12 -info`` so it is what it claims to be.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12

from certstore.errors import InvalidCertificate
from certstore.pkcs12 import MAX_MAC_ITERATIONS, MAX_PKCS12_BYTES, Pkcs12Contents, read_pkcs12
from tests.certfactory import Issued, make_ca, make_leaf, openssl_pkcs12, p12
from tests.certstore import p12tools

VECTORS_X509 = Path(cryptography_vectors.__file__).parent / "x509"
PASSWORD = "s3cret-pw"

# What each refusal must tell the user (rule -> words its message must contain).
HINTS: dict[str, tuple[str, ...]] = {
    "wrong-password": ("wrong password",),
    "password-missing": ("password",),
    "key-not-protected": ("not password-protected", "export it again"),
    "key-password-differs": ("different password", "export it again"),
    "not-pkcs12": ("not a readable PKCS#12", ".pfx or .p12"),
    "empty": ("empty",),
    "too-large": ("limit", str(MAX_PKCS12_BYTES)),
}


def refused(data: bytes, password: bytes | None, rule: str, *hints: str) -> InvalidCertificate:
    """Assert ``read_pkcs12`` refuses with ``rule`` and an actionable message."""
    with pytest.raises(InvalidCertificate) as info:
        read_pkcs12(data, password)
    err = info.value
    assert err.rule == rule, f"expected {rule!r}, got {err.rule!r}: {err.message}"
    assert err.details()["rule"] == rule
    for word in (*HINTS.get(rule, ()), *hints):
        assert word.lower() in err.message.lower(), f"{word!r} missing from {err.message!r}"
    return err


def assert_opens(contents: Pkcs12Contents, leaf: Issued) -> None:
    """The key is the leaf's key and every certificate of the chain came out."""
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert (contents.key.public_key().public_bytes(der, pub)
            == leaf.key.public_key().public_bytes(der, pub))
    assert set(contents.certificates) == set(leaf.chain)


@pytest.fixture(scope="module")
def leaf() -> Issued:
    root = make_ca("P12 Root")
    return make_leaf(make_ca("P12 Issuing", issuer=root), dns=["example.com"])


def _cryptography_legacy(leaf: Issued, password: bytes) -> bytes:
    encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                  .kdf_rounds(2048)
                  .key_cert_algorithm(crypto_pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                  .hmac_hash(hashes.SHA1()).build(password))
    return crypto_pkcs12.serialize_key_and_certificates(b"legacy", leaf.key, leaf.cert,
                                                       leaf.parents, encryption)


Builder = Callable[[Issued, str, Path], bytes]
BUILDERS: dict[str, Builder] = {
    "cryptography-aes": lambda leaf, pw, tmp: p12(leaf, pw.encode()),
    "cryptography-3des": lambda leaf, pw, tmp: _cryptography_legacy(leaf, pw.encode()),
    "openssl-modern": lambda leaf, pw, tmp: openssl_pkcs12(leaf, pw, tmp),
    "openssl-legacy": lambda leaf, pw, tmp: openssl_pkcs12(leaf, pw, tmp, legacy=True),
    "openssl-sha1-mac": lambda leaf, pw, tmp: p12tools.openssl_export(
        leaf, tmp, password=pw.encode(), options=["-macalg", "sha1"]),
    "openssl-sha512-mac": lambda leaf, pw, tmp: p12tools.openssl_export(
        leaf, tmp, password=pw.encode(), options=["-macalg", "sha512"]),
    "openssl-1-mac-iteration": lambda leaf, pw, tmp: p12tools.openssl_export(
        leaf, tmp, password=pw.encode(), options=["-nomaciter"]),
}


@pytest.fixture(params=sorted(BUILDERS))
def protected(request: pytest.FixtureRequest, leaf: Issued, tmp_path: Path) -> bytes:
    """The leaf's chain in a file protected with PASSWORD, by each producer."""
    data: bytes = BUILDERS[request.param](leaf, PASSWORD, tmp_path)
    return data


# -- properly protected files -----------------------------------------------------------------


def test_openssl_legacy_file_really_uses_legacy_ciphers(leaf: Issued, tmp_path: Path) -> None:
    info = p12tools.openssl_info(openssl_pkcs12(leaf, PASSWORD, tmp_path, legacy=True),
                                 tmp_path, PASSWORD, "-nokeys", "-legacy")
    assert info.returncode == 0, info.stderr
    assert "RC2" in info.stderr and "3-KeyTripleDES" in info.stderr


def test_correct_password_opens(protected: bytes, leaf: Issued) -> None:
    assert_opens(read_pkcs12(protected, PASSWORD.encode()), leaf)


@pytest.mark.parametrize("wrong", [b"not-it", PASSWORD.upper().encode(), PASSWORD.encode()[:-1],
                                   PASSWORD.encode() + b" "])
def test_wrong_password(protected: bytes, wrong: bytes) -> None:
    refused(protected, wrong, "wrong-password")


@pytest.mark.parametrize("missing", [None, b""], ids=["None", "empty-bytes"])
def test_no_password_given(protected: bytes, missing: bytes | None) -> None:
    refused(protected, missing, "password-missing", "give its password")


@pytest.mark.parametrize("producer", ["cryptography", "openssl"])
def test_non_ascii_password_opens(leaf: Issued, tmp_path: Path, producer: str) -> None:
    password = "pässwörd-€"
    data = (p12(leaf, password.encode()) if producer == "cryptography"
            else openssl_pkcs12(leaf, password, tmp_path))
    assert_opens(read_pkcs12(data, password.encode()), leaf)
    refused(data, "passwörd-€".encode(), "wrong-password")


@pytest.mark.parametrize("password", [b"\xff\xfe\xfd", b"caf\xe9", b"\xc3"],
                         ids=["ff-fe-fd", "latin1-cafe", "truncated-utf8"])
def test_non_utf8_password_bytes_are_a_clear_refusal(leaf: Issued, password: bytes) -> None:
    data = p12(leaf, "café".encode())
    refused(data, password, "wrong-password")


# -- files not protected by a password --------------------------------------------------------


UNPROTECTED: dict[str, Callable[[Issued, Path], bytes]] = {
    "cryptography-no-encryption": lambda leaf, tmp: p12(leaf, None),
    "openssl-empty-password": lambda leaf, tmp: p12tools.openssl_export(
        leaf, tmp, password=None),
    "openssl-empty-password-legacy": lambda leaf, tmp: p12tools.openssl_export(
        leaf, tmp, password=None, options=["-legacy"]),
    "openssl-nomac": lambda leaf, tmp: p12tools.openssl_export(
        leaf, tmp, password=PASSWORD.encode(), options=["-nomac"]),
    "openssl-no-encryption-nomac": lambda leaf, tmp: p12tools.openssl_export(
        leaf, tmp, password=PASSWORD.encode(),
        options=["-keypbe", "NONE", "-certpbe", "NONE", "-nomac"]),
}


@pytest.mark.parametrize("kind", sorted(UNPROTECTED))
@pytest.mark.parametrize("given", [None, PASSWORD.encode(), b"anything"],
                         ids=["no-password", "the-export-password", "other"])
def test_unprotected_file_is_refused(leaf: Issued, tmp_path: Path, kind: str,
                                     given: bytes | None) -> None:
    data = UNPROTECTED[kind](leaf, tmp_path)
    refused(data, given, "password-missing", "not password-protected", "export it again")


@pytest.mark.parametrize("options", [["-keypbe", "NONE"], ["-keypbe", "NONE", "-certpbe", "NONE"],
                                     ["-keypbe", "NONE", "-legacy"]],
                         ids=["keypbe-none", "keypbe-certpbe-none", "keypbe-none-legacy"])
def test_plain_key_bag_is_refused(leaf: Issued, tmp_path: Path, options: list[str]) -> None:
    data = p12tools.openssl_export(leaf, tmp_path, password=PASSWORD.encode(), options=options)
    listing = p12tools.openssl_info(data, tmp_path, PASSWORD, "-nodes", *(
        ["-legacy"] if "-legacy" in options else []))
    assert listing.returncode == 0, listing.stderr
    assert "Key bag" in listing.stderr and "Shrouded Keybag" not in listing.stderr
    refused(data, PASSWORD.encode(), "key-not-protected")
    refused(data, b"wrong", "wrong-password")  # the MAC is still checked first


# -- key protected with another password than the file ----------------------------------------


def _mac_ok(data: bytes, tmp: Path, password: str) -> bool:
    listing = p12tools.openssl_info(data, tmp, password, "-nokeys")
    return p12tools.MAC_VERIFY_ERROR not in listing.stderr and "MAC:" in listing.stderr


def _two_password_file(kind: str, leaf: Issued, tmp: Path) -> bytes:
    """A file whose MAC is under "file-pw" and whose key is encrypted under "key-pw"."""
    if kind == "openssl-twopass":
        return p12tools.openssl_twopass(leaf, tmp, mac_password="file-pw",
                                        encryption_password="key-pw")
    if kind == "remac-whole-file":
        return p12tools.remac(p12(leaf, b"key-pw"), "file-pw")
    # Certificates encrypted under the file password, only the key under another one.
    certs = [s for s in p12tools.safes(p12(leaf, b"file-pw"))
             if p12tools.safe_kind(s) == "encrypted_data"]
    keys = [s for s in p12tools.safes(p12(leaf, b"key-pw")) if p12tools.safe_kind(s) == "data"]
    assert len(certs) == 1 and len(keys) == 1
    return p12tools.build_pfx([*certs, *keys], mac_password="file-pw")


@pytest.mark.parametrize("kind", ["openssl-twopass", "remac-whole-file", "assembled-key-only"])
def test_key_password_differs(leaf: Issued, tmp_path: Path, kind: str) -> None:
    data = _two_password_file(kind, leaf, tmp_path)
    # The fixture is what it claims: the MAC verifies under file-pw and not under key-pw ...
    assert _mac_ok(data, tmp_path, "file-pw")
    assert not _mac_ok(data, tmp_path, "key-pw")
    # ... and the key does not decrypt with file-pw (OpenSSL fails to output it).
    assert p12tools.openssl_info(data, tmp_path, "file-pw", "-nodes").returncode != 0
    if kind == "assembled-key-only":  # certificates are readable with the file password
        assert p12tools.openssl_info(data, tmp_path, "file-pw", "-nokeys").returncode == 0
    refused(data, b"file-pw", "key-password-differs")
    # With the key's password the file's integrity check fails: refused all the same.
    with pytest.raises(InvalidCertificate) as info:
        read_pkcs12(data, b"key-pw")
    assert info.value.rule in {"wrong-password", "key-password-differs"}


@pytest.mark.parametrize("vector", ["custom/invalid_version.pem",
                                    "PKITS_data/certs/DSAParametersInheritedCACert.crt"])
def test_unreadable_extra_certificate_is_not_a_password_problem(
        leaf: Issued, tmp_path: Path, vector: str) -> None:
    """One password protects everything; an extra certificate that OpenSSL accepts but
    ``cryptography`` cannot parse must not be reported as "key under another password"."""
    raw = (VECTORS_X509 / vector).read_bytes()
    if not raw.startswith(b"-----"):
        raw = b"".join([b"-----BEGIN CERTIFICATE-----\n", base64.encodebytes(raw),
                        b"-----END CERTIFICATE-----\n"])
    data = p12tools.openssl_export(leaf, tmp_path, password=PASSWORD.encode(), extra_pem=raw)
    listing = p12tools.openssl_info(data, tmp_path, PASSWORD, "-nodes")
    assert listing.returncode == 0 and "PRIVATE KEY" in listing.stdout  # key under PASSWORD
    with pytest.raises(InvalidCertificate) as info:
        read_pkcs12(data, PASSWORD.encode())
    assert info.value.rule not in {"key-password-differs", "wrong-password"}, info.value.message


# -- files that are not PKCS#12, or too big ---------------------------------------------------


def _der_certificate(leaf: Issued) -> bytes:
    return leaf.cert.public_bytes(serialization.Encoding.DER)


GARBAGE: dict[str, Callable[[Issued], bytes]] = {
    "random-bytes": lambda leaf: secrets.token_bytes(2048),
    "text": lambda leaf: b"this is not a pfx file\n",
    "zeros": lambda leaf: bytes(64),
    "pem-certificate": lambda leaf: leaf.pem(),
    "der-certificate": _der_certificate,
    "pem-private-key": lambda leaf: leaf.key_pem(),
    "asn1-sequence-not-pfx": lambda leaf: bytes.fromhex("3003020101"),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_is_not_pkcs12(leaf: Issued, kind: str) -> None:
    refused(GARBAGE[kind](leaf), PASSWORD.encode(), "not-pkcs12")


@pytest.mark.parametrize("keep", [1, 10, 100, -100, -1], ids=lambda k: f"keep{k}")
def test_truncated_file_is_not_pkcs12(protected: bytes, keep: int) -> None:
    refused(protected[:keep], PASSWORD.encode(), "not-pkcs12")


@pytest.mark.parametrize("password", [None, PASSWORD.encode()], ids=["no-password", "password"])
def test_empty_file(password: bytes | None) -> None:
    refused(b"", password, "empty")


def test_oversized_file(protected: bytes) -> None:
    padded = protected + bytes(MAX_PKCS12_BYTES + 1 - len(protected))
    refused(padded, PASSWORD.encode(), "too-large", str(len(padded)))
    refused(secrets.token_bytes(10 * MAX_PKCS12_BYTES), PASSWORD.encode(), "too-large")


def test_file_of_exactly_the_limit_is_not_too_large() -> None:
    refused(b"\x00" * MAX_PKCS12_BYTES, PASSWORD.encode(), "not-pkcs12")


# -- MAC iteration bound --------------------------------------------------------------------------


def test_test_kdf_reproduces_openssl_macs(protected: bytes) -> None:
    """The fixture KDF (p12tools) is right: it verifies the MAC each producer wrote."""
    assert p12tools.stored_mac_matches(protected, PASSWORD)
    assert not p12tools.stored_mac_matches(protected, PASSWORD + "x")


def _refused_quickly(data: bytes, password: bytes | None) -> InvalidCertificate:
    start = time.perf_counter()
    with pytest.raises(InvalidCertificate) as info:
        read_pkcs12(data, password)
    elapsed = time.perf_counter() - start
    # Computing even one million SHA iterations in Python takes ~0.5 s here.
    assert elapsed < 0.2, f"refusal took {elapsed:.2f}s: the MAC was computed"
    return info.value


def test_mac_iterations_over_the_limit_refused_without_computing(leaf: Issued,
                                                                 tmp_path: Path) -> None:
    data = p12tools.remac(p12(leaf, PASSWORD.encode()), PASSWORD,
                          iterations=MAX_MAC_ITERATIONS + 1)
    # A genuine file: OpenSSL verifies its MAC at MAX+1 iterations with the password.
    listing = p12tools.openssl_info(data, tmp_path, PASSWORD, "-nokeys")
    assert listing.returncode == 0, listing.stderr
    assert f"Iteration {MAX_MAC_ITERATIONS + 1}" in listing.stderr
    for password in (PASSWORD.encode(), None, b"wrong"):
        err = _refused_quickly(data, password)
        assert "iterations" in err.message and str(MAX_MAC_ITERATIONS + 1) in err.message
        assert "export it again" in err.message
        assert err.rule not in {"wrong-password", "password-missing"}


@pytest.mark.parametrize("iterations", [2**31 - 1, 2**63 - 1])
def test_absurd_mac_iterations_refused_without_computing(leaf: Issued,
                                                         iterations: int) -> None:
    data = p12tools.set_mac_iterations(p12(leaf, PASSWORD.encode()), iterations)
    err = _refused_quickly(data, PASSWORD.encode())
    assert str(iterations) in err.message


def test_mac_iterations_at_the_limit_are_accepted(leaf: Issued) -> None:
    data = p12tools.remac(p12(leaf, PASSWORD.encode()), PASSWORD,
                          iterations=MAX_MAC_ITERATIONS)
    assert_opens(read_pkcs12(data, PASSWORD.encode()), leaf)


def test_key_derivation_iterations_are_capped_before_any_derivation(
        intermediate_ca: Issued) -> None:
    """A file asking for more PBKDF2 rounds than the cap (for its key bag and safes) is
    refused by the pre-derivation check, whose message names key-derivation iterations."""
    leaf = make_leaf(intermediate_ca, dns=["a.example"])
    encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                  .kdf_rounds(MAX_MAC_ITERATIONS + 1)
                  .key_cert_algorithm(crypto_pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                  .hmac_hash(hashes.SHA256()).build(b"pw"))
    data = crypto_pkcs12.serialize_key_and_certificates(b"x", leaf.key, leaf.cert, None,
                                                        encryption)
    with pytest.raises(InvalidCertificate) as info:
        read_pkcs12(data, b"pw")
    assert info.value.rule == "unreadable"
    assert f"{MAX_MAC_ITERATIONS + 1} key-derivation iterations" in str(info.value)
