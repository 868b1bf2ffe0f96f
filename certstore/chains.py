"""Preparing chains to store: PKCS#12 import by the product page's rules, and generation.

Pure functions: bytes and values in, a :class:`NewChain` out. The plaintext key in a
``NewChain`` exists only in memory until the store seals it in the same call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from certstore import ca as builtin_ca
from certstore.errors import InvalidCertificate
from certstore.keys import KeyType, key_to_der
from certstore.model import Origin
from certstore.names import offending_names
from certstore.x509info import CertInfo, describe, key_type, split_dns_names, to_pem

MIN_RSA_BITS = 2048
WEAK_HASHES = frozenset({"md5", "sha1"})


@dataclass(frozen=True, slots=True, kw_only=True)
class NewChain:
    """A chain ready to be sealed and stored."""

    purpose: builtin_ca.Purpose
    origin: Origin
    key_type: str
    dns_names: tuple[str, ...]
    leaf: CertInfo
    chain_pem: str
    key_der: bytes

    def __repr__(self) -> str:  # never let a key reach a log through repr()
        return f"NewChain(purpose={self.purpose!r}, leaf={self.leaf.subject!r}, key=<hidden>)"


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def order_chain(leaf: x509.Certificate,
                others: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """Leaf first, then each issuer found among ``others``; unrelated certificates dropped."""
    chain = [leaf]
    pool = [c for c in others if c != leaf]
    current = leaf
    while current.subject != current.issuer:
        parent = next((c for c in pool if c.subject == current.issuer), None)
        if parent is None:
            break
        chain.append(parent)
        pool.remove(parent)
        current = parent
    return tuple(chain)


def check_key(key: object) -> str:
    """The key type label, refusing unsupported and weak keys."""
    label = key_type(key)
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise InvalidCertificate(f"the RSA key has {key.key_size} bits; at least "
                                 f"{MIN_RSA_BITS} are required", rule="weak-key")
    return label


def check_validity(leaf: CertInfo, now: dt.datetime) -> None:
    """Refuse a leaf that is expired or not yet valid."""
    if now > leaf.not_after:
        raise InvalidCertificate(f"the certificate expired on {leaf.not_after.isoformat()}",
                                 rule="expired")
    if now < leaf.not_before:
        raise InvalidCertificate(
            f"the certificate is not valid before {leaf.not_before.isoformat()}",
            rule="not-yet-valid")


def check_signatures(chain: Sequence[CertInfo]) -> None:
    """Refuse MD5/SHA-1 signatures on the leaf or intermediates (a root's own is irrelevant)."""
    weak = [c.subject for i, c in enumerate(chain)
            if (i == 0 or not c.self_signed) and (c.signature_hash or "") in WEAK_HASHES]
    if weak:
        raise InvalidCertificate(
            "MD5 or SHA-1 signatures are not accepted; reissue with SHA-256 or better: "
            + "; ".join(weak), rule="weak-signature")


def check_names(leaf: CertInfo, domains: frozenset[str]) -> tuple[str, ...]:
    """The page's SAN/CN rule; the refusal lists every name the account does not own."""
    valid, invalid = split_dns_names(leaf)
    bad = offending_names(valid, domains)
    if invalid:
        raise InvalidCertificate(
            "the certificate names invalid DNS names (only whole left-most wildcards '*.' "
            f"are allowed): {', '.join(repr(b) for b in invalid)}"
            + (f"; and these are not domains of the account: {', '.join(bad)}" if bad else ""),
            rule="invalid-names", names=[*invalid, *bad])
    names = valid
    if bad:
        raise InvalidCertificate(
            "these names are not domains of the account (a wildcard '*.d' needs the domain "
            "'d'; a subdomain must be added to the account itself): " + ", ".join(bad),
            rule="names-not-owned", names=bad)
    return tuple(names)


def prepare_import(*, data: bytes, password: bytes | None, domains: frozenset[str],
                   now: dt.datetime) -> NewChain:
    """Validate a PKCS#12 file for an account by every rule of the product page."""
    # Imported here: asn1crypto is only needed by an import, and every CLI command loads
    # this module (start-up time).
    from certstore.pkcs12 import read_pkcs12

    contents = read_pkcs12(data, password)
    label = check_key(contents.key)
    spki = _spki(contents.key.public_key())
    leaf = next((c for c in contents.certificates if _spki(c.public_key()) == spki), None)
    if leaf is None:
        raise InvalidCertificate(
            "no certificate in the file matches its private key" if contents.certificates
            else "the file holds a private key but no certificate", rule="key-mismatch")
    chain = order_chain(leaf, contents.certificates)
    infos = [describe(c) for c in chain]
    check_validity(infos[0], now)
    check_signatures(infos)
    names = check_names(infos[0], domains)
    return NewChain(purpose="tls", origin="imported", key_type=label, dns_names=names,
                    leaf=infos[0], chain_pem=to_pem(chain), key_der=key_to_der(contents.key))


def prepare_generated(*, authority: builtin_ca.CertificateAuthority,
                      purpose: builtin_ca.Purpose, domain: str | None, common_name: str,
                      key_type: KeyType, now: dt.datetime,
                      validity: dt.timedelta | None = None) -> NewChain:
    """Generate a chain with the built-in CA (CPU-heavy: call it off the event loop)."""
    issued = builtin_ca.issue_chain(authority, purpose=purpose, common_name=common_name,
                                    dns_name=domain, key_type=key_type, now=now,
                                    validity=validity)
    leaf = describe(issued.certificates[0])
    return NewChain(purpose=purpose, origin="generated", key_type=key_type,
                    dns_names=(domain,) if domain else (), leaf=leaf,
                    chain_pem=to_pem(issued.certificates), key_der=key_to_der(issued.key))
