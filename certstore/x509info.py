"""Reading X.509 certificates safely.

``cryptography`` parses lazily and raises many exception types on odd certificates
(``DuplicateExtension``, ``InvalidVersion``, ``UnsupportedGeneralNameType``, even ``KeyError``
on some subjects). Everything here touches every field we use up front and turns any failure
into :class:`InvalidCertificate`, so no caller ever sees a foreign exception.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from certstore.errors import InvalidCertificate, InvalidName
from certstore.names import normalize_name

_PEM_CERT_MARKER = b"-----BEGIN CERTIFICATE-----"
_PEM_ANY_MARKER = b"-----BEGIN "


@dataclass(frozen=True, slots=True, kw_only=True)
class CertInfo:
    """What certgate keeps about a certificate (all public data)."""

    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint_sha256: str
    is_ca: bool
    common_name: str | None
    san_dns: tuple[str, ...]
    san_ip: tuple[str, ...]
    signature_hash: str | None
    self_signed: bool


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """cryptography warns (not fails) on some RFC 5280 violations, such as negative serial
    numbers. Whether such a certificate is accepted must not depend on the process's
    warning filters (tests turn warnings into errors), so parsing ignores them: the rules
    that matter (names, validity, keys, signatures) are checked explicitly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of the DER encoding, lower-case hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def _describe(cert: x509.Certificate) -> CertInfo:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = bc.ca
    except x509.ExtensionNotFound:
        is_ca = False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        raw_dns = san.get_values_for_type(x509.DNSName)
        san_ip = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        raw_dns, san_ip = [], ()
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if cns else None
    algo = cert.signature_hash_algorithm
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint_sha256=fingerprint(cert),
        is_ca=is_ca,
        common_name=cn if isinstance(cn, str) and cn else None,
        san_dns=tuple(raw_dns),
        san_ip=san_ip,
        signature_hash=algo.name if algo is not None else None,
        self_signed=cert.subject == cert.issuer,
    )


def describe(cert: x509.Certificate) -> CertInfo:
    """Read every field certgate uses, or raise :class:`InvalidCertificate`."""
    try:
        with _quiet():
            return _describe(cert)
    except Exception as e:  # cryptography raises many unrelated types on odd certificates
        raise InvalidCertificate(
            f"the certificate cannot be read ({type(e).__name__}: {e}); export it again "
            "from its source",
            rule="unreadable",
        ) from e


def load_certificates(data: bytes, *, limit: int | None = None) -> list[x509.Certificate]:
    """Load one or many PEM certificates, or one DER certificate.

    Refuses empty input, private keys and anything that is not a certificate, naming which;
    with ``limit``, a PEM file with more certificate blocks is refused before any is parsed.
    """
    if not data or not data.strip():
        raise InvalidCertificate("the file is empty; export the certificate as PEM or DER",
                                 rule="empty")
    if b"PRIVATE KEY-----" in data:
        raise InvalidCertificate(
            "the file contains a private key; trusted CA import takes certificates only "
            "(never send a private key here)",
            rule="private-key-given",
        )
    try:
        with _quiet():
            if _PEM_ANY_MARKER in data:
                if _PEM_CERT_MARKER not in data:
                    raise InvalidCertificate(
                        "the PEM file holds no CERTIFICATE block", rule="not-a-certificate"
                    )
                blocks = data.count(_PEM_CERT_MARKER)
                if limit is not None and blocks > limit:
                    raise InvalidCertificate(f"the file holds {blocks} certificates; import "
                                             f"at most {limit} at once", rule="too-large")
                certs = x509.load_pem_x509_certificates(data)
            else:
                certs = [x509.load_der_x509_certificate(data)]
    except InvalidCertificate:
        raise
    except Exception as e:
        raise InvalidCertificate(
            f"the file is not a PEM or DER certificate ({e}); export it as PEM or DER",
            rule="not-a-certificate",
        ) from e
    for cert in certs:
        describe(cert)  # fail now on anything unreadable, not later in a listing
    return certs


def split_dns_names(info: CertInfo) -> tuple[list[str], list[str]]:
    """``(valid normalised names, invalid raw names)`` the product rules check: the SAN DNS
    names, else the CN. IP addresses in the SAN are filtered out (product page). A SAN dNSName
    is an IA5String: one with non-ASCII characters is invalid, not converted to an A-label."""
    from_san = bool(info.san_dns)
    raw = list(info.san_dns) if from_san else ([info.common_name] if info.common_name else [])
    if not raw:
        raise InvalidCertificate(
            "the certificate has neither DNS names in its subject alternative names nor a "
            "common name; it cannot be matched to the account's domains",
            rule="no-names",
        )
    out: list[str] = []
    bad: list[str] = []
    for name in raw:
        if from_san and not name.isascii():
            bad.append(name)
            continue
        try:
            norm = normalize_name(name, allow_wildcard=True)
        except InvalidName:
            bad.append(name)
            continue
        if norm not in out:
            out.append(norm)
    return out, bad


def certificate_dns_names(info: CertInfo) -> list[str]:
    """The normalised DNS names the product rules check, or :class:`InvalidCertificate`
    listing every invalid name (see :func:`split_dns_names`)."""
    out, bad = split_dns_names(info)
    if bad:
        raise InvalidCertificate(
            "the certificate names invalid DNS names (only whole left-most wildcards '*.' "
            f"are allowed): {', '.join(repr(b) for b in bad)}",
            rule="invalid-names",
            names=bad,
        )
    return out


def key_type(key: object) -> str:
    """A short key-type label (``ecdsa-p256``, ``rsa-2048``...) or raise for unsupported keys."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}.get(key.curve.name)
        if curve is not None:
            return f"ecdsa-{curve}"
        raise InvalidCertificate(f"elliptic curve {key.curve.name} is not supported for TLS; "
                                 "use P-256, P-384 or P-521", rule="unsupported-key")
    raise InvalidCertificate(
        f"{type(key).__name__.lstrip('_')} keys are not supported; use RSA (>= 2048 bits) or ECDSA",
        rule="unsupported-key",
    )


def to_pem(certs: list[x509.Certificate] | tuple[x509.Certificate, ...]) -> str:
    """Concatenate certificates as PEM text."""
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)
