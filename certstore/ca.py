"""The built-in certificate authority and the chains it generates.

A root signs an issuing intermediate; generated chains are leaf + intermediate. The root is
what embedded terminals are provisioned with. The CA uses RSA by default because old
terminals (TLS 1.2 only) may not verify ECDSA signatures on a chain; the leaves default to
ECDSA P-256 and can be RSA-2048 for those terminals.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certstore.keys import KeyType, SigningKey, generate_key
from certstore.lifecycle import SIGNING_VALIDITY, TLS_VALIDITY

Purpose = Literal["tls", "signing"]
ROOT_VALIDITY = dt.timedelta(days=20 * 365)
ISSUING_VALIDITY = dt.timedelta(days=10 * 365)
MAX_CN = 64
# Backdate a little so a client whose clock lags does not see "not yet valid".
_BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateAuthority:
    """The root and issuing certificates with their private keys."""

    root: x509.Certificate
    root_key: SigningKey
    issuing: x509.Certificate
    issuing_key: SigningKey


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedChain:
    """A generated leaf key and its chain, leaf first."""

    key: SigningKey
    certificates: tuple[x509.Certificate, ...]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certgate"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ski(key: SigningKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def _ca_cert(*, subject: x509.Name, key: SigningKey, issuer: x509.Name, issuer_key: SigningKey,
             path_length: int, now: dt.datetime, validity: dt.timedelta) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE).not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(_ski(key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA256())


def create_ca(*, now: dt.datetime, key_type: KeyType = "rsa-3072",
              name: str = "certgate") -> CertificateAuthority:
    """Create a root and an issuing intermediate (CPU-heavy: call off the event loop)."""
    root_key = generate_key(key_type)
    root_name = _name(f"{name} Root CA")
    root = _ca_cert(subject=root_name, key=root_key, issuer=root_name, issuer_key=root_key,
                    path_length=1, now=now, validity=ROOT_VALIDITY)
    issuing_key = generate_key("rsa-2048" if key_type.startswith("rsa") else key_type)
    issuing = _ca_cert(subject=_name(f"{name} Issuing CA"), key=issuing_key, issuer=root_name,
                       issuer_key=root_key, path_length=0, now=now, validity=ISSUING_VALIDITY)
    return CertificateAuthority(root=root, root_key=root_key, issuing=issuing,
                                issuing_key=issuing_key)


def issue_chain(ca: CertificateAuthority, *, purpose: Purpose, common_name: str,
                dns_name: str | None, key_type: KeyType, now: dt.datetime,
                ip_addresses: tuple[str, ...] = (),
                validity: dt.timedelta | None = None) -> IssuedChain:
    """Generate a key and a leaf signed by the issuing CA.

    ``tls``: SAN = ``dns_name``, server-auth EKU. ``signing``: digital-signature key usage
    only, no server-auth, so the key cannot be used to impersonate a TLS server.
    """
    key = generate_key(key_type)
    is_rsa = key_type.startswith("rsa")
    # X.509 caps a CN at 64 characters (RFC 5280 ub-common-name). A longer DNS name lives in
    # the SAN alone (which is what clients check); a longer label is shortened.
    if len(common_name) > MAX_CN:
        subject = x509.Name([]) if dns_name else x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, common_name[: MAX_CN - 3] + "...")])
    else:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    tls = purpose == "tls"
    if validity is None:
        validity = TLS_VALIDITY if tls else SIGNING_VALIDITY
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.issuing.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE).not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=tls and is_rsa, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(_ski(key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.issuing_key.public_key()), critical=False)
    )
    if tls:
        if dns_name is None:
            raise ValueError("a TLS chain needs a DNS name")
        sans: list[x509.GeneralName] = [x509.DNSName(dns_name)]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        builder = builder.add_extension(
            x509.SubjectAlternativeName(sans), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    leaf = builder.sign(ca.issuing_key, hashes.SHA256())
    return IssuedChain(key=key, certificates=(leaf, ca.issuing))
