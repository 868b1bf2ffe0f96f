"""Test PKI for the comparison benchmark: a root, an intermediate and one leaf per tenant.

Tenant ``i`` is ``tenant{i}.bench.example``; its chain file holds the leaf then the
intermediate (what a server sends), its key file the leaf's PKCS#8 key. Everything is written
under a directory the caller chooses (a temporary one by default): keys are never committed.

RSA-2048 key generation costs ~50-100 ms a key, so RSA leaves share a small pool of keys by
default (``key_pool``); the :attr:`TenantSet.key_note` says so, and the report prints it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_TYPES = ("ecdsa", "rsa")
DOMAIN = "bench.example"
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def tenant_name(index: int) -> str:
    """The SNI name of tenant ``index``."""
    return f"tenant{index}.{DOMAIN}"


def new_key(key_type: str) -> PrivateKey:
    """A fresh ECDSA P-256 or RSA-2048 private key."""
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r}; want one of {KEY_TYPES}")


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM of an unencrypted private key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, in hex (what the load generator compares)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certgate bench"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_cert(
    subject: str, key: PrivateKey, issuer: x509.Certificate | None, issuer_key: PrivateKey
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0 if issuer else 1), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Authority:
    """A root CA and the intermediate that issues every leaf, of one key type."""

    key_type: str
    root: x509.Certificate
    intermediate: x509.Certificate
    intermediate_key: PrivateKey

    @classmethod
    def create(cls, key_type: str) -> Authority:
        """Generate a fresh root and intermediate of ``key_type``."""
        root_key = new_key(key_type)
        root = _ca_cert(f"certgate bench root {key_type}", root_key, None, root_key)
        inter_key = new_key(key_type)
        inter = _ca_cert(f"certgate bench intermediate {key_type}", inter_key, root, root_key)
        return cls(key_type, root, inter, inter_key)

    def issue(self, name: str, key: PrivateKey, days: int = 90) -> x509.Certificate:
        """Issue a server leaf for ``name`` (CN and the one SAN)."""
        now = dt.datetime.now(dt.UTC)
        is_rsa = isinstance(key, rsa.RSAPrivateKey)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=is_rsa,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
            .sign(self.intermediate_key, hashes.SHA256())
        )

    def chain_pem(self, leaf: x509.Certificate) -> bytes:
        """The chain a server sends: the leaf, then the intermediate."""
        return cert_pem(leaf) + cert_pem(self.intermediate)


@dataclass(frozen=True)
class Tenant:
    """One tenant: its SNI name and the files of its chain and key."""

    name: str
    chain_path: Path
    key_path: Path
    fingerprint: str


@dataclass
class TenantSet:
    """The tenants of one key type, as files a server can load."""

    key_type: str
    directory: Path
    root_ca_path: Path
    tenants: list[Tenant]
    key_note: str
    authority: Authority | None = field(default=None, repr=False)

    def subset(self, count: int) -> TenantSet:
        """The first ``count`` tenants (same files, same authority)."""
        if count > len(self.tenants):
            raise ValueError(f"only {len(self.tenants)} tenants generated, {count} asked")
        return TenantSet(
            self.key_type,
            self.directory,
            self.root_ca_path,
            self.tenants[:count],
            self.key_note,
            self.authority,
        )

    @property
    def names(self) -> list[str]:
        """SNI names, in tenant order."""
        return [t.name for t in self.tenants]

    def write_names(self, path: Path) -> Path:
        """Write the names file the load generator spreads SNI over."""
        path.write_text("\n".join(self.names) + "\n")
        return path

    def new_chain(self, tenant: Tenant) -> tuple[bytes, bytes, str]:
        """A freshly issued chain (new key) for ``tenant``: chain PEM, key PEM, leaf SHA-256."""
        if self.authority is None:
            self.authority = load_authority(self.directory, self.key_type)
        key = new_key(self.key_type)
        leaf = self.authority.issue(tenant.name, key)
        return self.authority.chain_pem(leaf), key_pem(key), fingerprint(leaf)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def load_authority(directory: Path, key_type: str) -> Authority:
    """Load the root and intermediate saved by :func:`generate`."""
    root = x509.load_pem_x509_certificate((directory / "root.pem").read_bytes())
    inter = x509.load_pem_x509_certificate((directory / "intermediate.pem").read_bytes())
    inter_key = serialization.load_pem_private_key(
        (directory / "intermediate.key").read_bytes(), password=None
    )
    assert isinstance(inter_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return Authority(key_type, root, inter, inter_key)


def _manifest_matches(directory: Path, count: int, key_pool: int) -> list[Tenant] | None:
    manifest = directory / "manifest.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    if data.get("count", 0) < count or data.get("key_pool") != key_pool:
        return None
    tenants = [
        Tenant(t["name"], directory / t["chain"], directory / t["key"], t["fp"])
        for t in data["tenants"]
    ]
    if not all(t.chain_path.exists() and t.key_path.exists() for t in tenants[:count]):
        return None
    return tenants


def key_note(key_type: str, count: int, key_pool: int) -> str:
    """Human wording of how leaf keys are shared."""
    label = "ECDSA P-256" if key_type == "ecdsa" else "RSA-2048"
    if key_pool <= 0 or key_pool >= count:
        return f"{label}, one key per leaf"
    return f"{label}, {key_pool} keys shared round-robin by {count} leaves"


def generate(
    directory: Path, key_type: str, count: int, key_pool: int = 0, *, reuse: bool = True
) -> TenantSet:
    """Generate (or reuse from ``directory``) ``count`` tenants of ``key_type``.

    ``key_pool`` > 0 shares that many keys round-robin among the leaves (each leaf is still
    its own certificate with its own serial and name); 0 gives every leaf its own key.
    """
    directory.mkdir(parents=True, exist_ok=True)
    tenants = _manifest_matches(directory, count, key_pool) if reuse else None
    authority: Authority | None = None
    if tenants is None:
        tenants, authority = _generate_files(directory, key_type, count, key_pool)
    return TenantSet(
        key_type,
        directory,
        directory / "root.pem",
        tenants[:count],
        key_note(key_type, count, key_pool),
        authority,
    )


def _generate_files(
    directory: Path, key_type: str, count: int, key_pool: int
) -> tuple[list[Tenant], Authority]:
    authority = Authority.create(key_type)
    (directory / "root.pem").write_bytes(cert_pem(authority.root))
    (directory / "intermediate.pem").write_bytes(cert_pem(authority.intermediate))
    _write_private(directory / "intermediate.key", key_pem(authority.intermediate_key))
    tenant_dir = directory / "tenants"
    tenant_dir.mkdir(exist_ok=True)
    pool: Sequence[tuple[PrivateKey, bytes]] = []
    if key_pool > 0:
        pool = [(k, key_pem(k)) for k in (new_key(key_type) for _ in range(key_pool))]
    tenants: list[Tenant] = []
    inter_pem = cert_pem(authority.intermediate)
    for index in range(count):
        name = tenant_name(index)
        if pool:
            key, pem = pool[index % len(pool)]
        else:
            key = new_key(key_type)
            pem = key_pem(key)
        leaf = authority.issue(name, key)
        chain_path = tenant_dir / f"{name}.crt"
        key_path = tenant_dir / f"{name}.key"
        chain_path.write_bytes(cert_pem(leaf) + inter_pem)
        _write_private(key_path, pem)
        tenants.append(Tenant(name, chain_path, key_path, fingerprint(leaf)))
    manifest = {
        "key_type": key_type,
        "count": count,
        "key_pool": key_pool,
        "tenants": [
            {
                "name": t.name,
                "chain": str(t.chain_path.relative_to(directory)),
                "key": str(t.key_path.relative_to(directory)),
                "fp": t.fingerprint,
            }
            for t in tenants
        ],
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return tenants, authority
