"""Test certificates, made fresh in fixtures (no private key is ever committed).

``Pki`` builds CAs, leaves and PKCS#12 files with ``cryptography``; ``openssl_pkcs12`` builds
them with the real ``openssl pkcs12 -export`` (modern and ``-legacy`` encryption).
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

NOW = dt.datetime.now(dt.UTC)
Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def new_key(kind: str = "ec") -> Key:
    """``ec`` (P-256), ``rsa`` (2048) or ``rsa1024``."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    bits = 1024 if kind == "rsa1024" else 2048
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@dataclass
class Issued:
    """A certificate with its key and the chain above it (leaf first, root excluded)."""

    cert: x509.Certificate
    key: Key
    parents: list[x509.Certificate] = field(default_factory=list)

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.cert, *self.parents]

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def _name(cn: str | None) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])


def make_ca(cn: str = "Test Root", *, issuer: Issued | None = None, key: Key | None = None,
            algorithm: hashes.HashAlgorithm | None = None) -> Issued:
    """A root CA, or an intermediate when ``issuer`` is given."""
    key = key or new_key("ec")
    signer: CertificateIssuerPrivateKeyTypes = issuer.key if issuer else key
    builder = (x509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(issuer.cert.subject if issuer else _name(cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(days=1))
               .not_valid_after(NOW + dt.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
    cert = builder.sign(signer, algorithm or hashes.SHA256())
    return Issued(cert=cert, key=key, parents=issuer.chain if issuer else [])


def make_leaf(issuer: Issued, *, cn: str | None = None, dns: Sequence[str] = (),
              ips: Sequence[str] = (), key: Key | None = None,
              not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
              algorithm: hashes.HashAlgorithm | None = None) -> Issued:
    """A leaf signed by ``issuer``; SAN from ``dns``/``ips`` (absent when both are empty)."""
    import ipaddress

    key = key or new_key("ec")
    builder = (x509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(issuer.cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - dt.timedelta(days=1))
               .not_valid_after(not_after or NOW + dt.timedelta(days=90))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(issuer.key, algorithm or hashes.SHA256())
    return Issued(cert=cert, key=key, parents=issuer.chain)


def p12(leaf: Issued, password: bytes | None, *, extra: Sequence[x509.Certificate] = (),
        include_key: bool = True, include_cert: bool = True) -> bytes:
    """A PKCS#12 file made by ``cryptography`` (AES-256 / PBKDF2 when a password is given)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    return pkcs12.serialize_key_and_certificates(
        b"test", leaf.key if include_key else None, leaf.cert if include_cert else None,
        [*leaf.parents, *extra] or None, encryption)


def openssl_pkcs12(leaf: Issued, password: str, tmp: Path, *, legacy: bool = False) -> bytes:
    """A PKCS#12 file made by the real ``openssl pkcs12 -export``."""
    (tmp / "leaf.pem").write_bytes(leaf.pem())
    (tmp / "key.pem").write_bytes(leaf.key_pem())
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in leaf.parents)
    args = ["openssl", "pkcs12", "-export", "-inkey", str(tmp / "key.pem"),
            "-in", str(tmp / "leaf.pem"), "-passout", "env:P12PW", "-out", str(tmp / "out.p12")]
    if chain:
        (tmp / "chain.pem").write_bytes(chain)
        args += ["-certfile", str(tmp / "chain.pem")]
    if legacy:
        args.append("-legacy")
    subprocess.run(args, check=True, capture_output=True, env={"P12PW": password})
    (tmp / "key.pem").unlink()
    return (tmp / "out.p12").read_bytes()
