"""The whole-file work budget of PKCS#12 import (issue 10): counted before any derivation.

Files are assembled from real encrypted safes (``cryptography`` writes them at a chosen
iteration count) with ``p12tools``; "before any derivation" is checked by time: a refusal
that had derived even one safe at these counts would take far longer than the bound.
"""

from __future__ import annotations

import pickle
import time

import pytest
from asn1crypto import cms, pkcs12
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12

from certstore.errors import InvalidCertificate
from certstore.pkcs12 import read_pkcs12
from certstore.pkcs12_walk import (
    MAX_BAGS,
    MAX_CERTIFICATES,
    MAX_ITERATIONS,
    MAX_NESTING,
    MAX_SAFES,
    MAX_WORK_ITERATIONS,
    RULE,
)
from tests.certfactory import Issued, make_ca, make_leaf, p12
from tests.certstore import p12tools

PASSWORD = b"budget-pw"


def encrypted(leaf: Issued, rounds: int) -> bytes:
    """The leaf's chain, every safe and key bag at ``rounds`` PBKDF2 iterations."""
    encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                  .kdf_rounds(rounds)
                  .key_cert_algorithm(crypto_pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                  .hmac_hash(hashes.SHA256()).build(PASSWORD))
    return crypto_pkcs12.serialize_key_and_certificates(b"b", leaf.key, leaf.cert, leaf.parents,
                                                        encryption)


@pytest.fixture(scope="module")
def leaf() -> Issued:
    return make_leaf(make_ca("Budget Root"), dns=["budget.example"])


@pytest.fixture(scope="module")
def at_cap(leaf: Issued) -> bytes:
    """A real file whose certificate safe and key bag are at the per-item cap."""
    return encrypted(leaf, MAX_ITERATIONS)


def split(data: bytes) -> tuple[cms.ContentInfo, cms.ContentInfo]:
    """(the encrypted certificate safe, the plain safe with the shrouded key bag)."""
    parts = p12tools.safes(data)
    cert_safe = next(s for s in parts if p12tools.safe_kind(s) == "encrypted_data")
    key_safe = next(s for s in parts if p12tools.safe_kind(s) == "data")
    return cert_safe, key_safe


def refused_fast(data: bytes, password: bytes | None, rule: str) -> InvalidCertificate:
    start = time.perf_counter()
    with pytest.raises(InvalidCertificate) as info:
        read_pkcs12(data, password)
    elapsed = time.perf_counter() - start
    # One derivation at the cap takes ~0.3 s (OpenSSL) to ~1 s (the Python MAC check) here.
    assert elapsed < 0.25, f"refusal took {elapsed:.2f}s: something was derived first"
    assert info.value.rule == rule, info.value.message
    return info.value


def test_many_safes_each_under_the_cap_are_refused_as_a_whole(at_cap: bytes) -> None:
    cert_safe, key_safe = split(at_cap)
    data = p12tools.build_pfx([cert_safe] * 5 + [key_safe], mac_password=PASSWORD.decode())
    assert len(data) < 16 * 1024  # a few KB asking for minutes of CPU before this budget
    for password in (PASSWORD, b"wrong", None):
        err = refused_fast(data, password, RULE)
        assert f"{MAX_WORK_ITERATIONS:,}" in err.message  # names the budget ...
        assert "6,000,000" in err.message  # ... and what the file's safes and bag ask for
        assert "export it again" in err.message
        assert err.details() == {"rule": RULE}


def test_the_diagnosis_of_a_wrong_password_counts_in_the_budget(at_cap: bytes) -> None:
    """MAC, safe and key bag at the cap open (3,000,000) but a wrong password's pure-Python
    MAC checks would add 3,000,000 more: refused before either, whatever the password."""
    data = p12tools.remac(at_cap, PASSWORD.decode(), iterations=MAX_ITERATIONS)
    for password in (PASSWORD, b"wrong"):
        err = refused_fast(data, password, RULE)
        assert "checks of a wrong password: 3,000,000" in err.message


def test_a_file_within_the_budget_opens(at_cap: bytes, leaf: Issued) -> None:
    cert_safe, key_safe = split(at_cap)
    data = p12tools.build_pfx([cert_safe, cert_safe, key_safe], mac_password=PASSWORD.decode())
    contents = read_pkcs12(data, PASSWORD)  # 2048 + 3,000,000 + diagnosis < the budget
    assert leaf.cert in contents.certificates


def test_wrong_password_at_the_mac_cap_is_named_within_the_budget(leaf: Issued) -> None:
    data = p12tools.remac(p12(leaf, PASSWORD), PASSWORD.decode(), iterations=MAX_ITERATIONS)
    with pytest.raises(InvalidCertificate) as info:
        read_pkcs12(data, b"not the password")
    assert info.value.rule == "wrong-password"


def _cert_bag(leaf: Issued) -> pkcs12.SafeBag:
    der = leaf.cert.public_bytes(serialization.Encoding.DER)
    return pkcs12.SafeBag({"bag_id": "cert_bag", "bag_value": pkcs12.CertBag(
        {"cert_id": "x509", "cert_value": cms.ParsableOctetString(der)})})


def _plain_safe(bags: list[pkcs12.SafeBag]) -> cms.ContentInfo:
    return cms.ContentInfo({"content_type": "data",
                            "content": pkcs12.SafeContents(bags).dump()})


def test_too_many_safes(leaf: Issued) -> None:
    data = p12tools.build_pfx([_plain_safe([_cert_bag(leaf)])] * (MAX_SAFES + 1),
                              mac_password=PASSWORD.decode())
    assert f"more than {MAX_SAFES} safes" in refused_fast(data, PASSWORD, RULE).message


def test_too_many_bags(leaf: Issued) -> None:
    data = p12tools.build_pfx([_plain_safe([_cert_bag(leaf)] * (MAX_BAGS + 1))],
                              mac_password=PASSWORD.decode())
    assert f"more than {MAX_BAGS} bags" in refused_fast(data, PASSWORD, RULE).message


def test_nesting_is_bounded(leaf: Issued) -> None:
    bags = [_cert_bag(leaf)]
    for _ in range(MAX_NESTING + 1):
        bags = [pkcs12.SafeBag({"bag_id": "safe_contents",
                                "bag_value": pkcs12.SafeContents(bags)})]
    data = p12tools.build_pfx([_plain_safe(bags)], mac_password=PASSWORD.decode())
    assert "nests" in refused_fast(data, PASSWORD, "not-pkcs12").message


def test_too_many_certificates(leaf: Issued) -> None:
    extra = [make_leaf(make_ca(f"Extra {i}"), dns=["x.example"]).cert
             for i in range(MAX_CERTIFICATES)]
    with pytest.raises(InvalidCertificate) as info:
        read_pkcs12(p12(leaf, PASSWORD, extra=extra), PASSWORD)
    assert info.value.rule == RULE and str(MAX_CERTIFICATES) in info.value.message


def test_refusals_survive_a_process_boundary() -> None:
    """The admin API runs imports in worker processes: errors come back by pickle."""
    err = InvalidCertificate("no", rule="names-not-owned", names=["a.example"])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is InvalidCertificate
    assert (back.message, back.rule, back.names, str(back)) == (
        "no", "names-not-owned", ("a.example",), "no")
