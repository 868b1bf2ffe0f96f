"""Persisting the built-in CA: sealing its keys for storage and opening them again."""

from __future__ import annotations

from cryptography import x509

from certstore.ca import CertificateAuthority
from certstore.keys import key_from_der, key_to_der
from certstore.sealing import Sealer, record_aad
from certstore.x509info import to_pem

_ROOT_AAD = record_aad("authority", "root", "-")
_ISSUING_AAD = record_aad("authority", "issuing", "-")


def seal_authority(ca: CertificateAuthority, sealer: Sealer) -> tuple[str, bytes, str, bytes]:
    """Root PEM, sealed root key, issuing PEM, sealed issuing key."""
    return (to_pem([ca.root]), sealer.seal(key_to_der(ca.root_key), aad=_ROOT_AAD),
            to_pem([ca.issuing]), sealer.seal(key_to_der(ca.issuing_key), aad=_ISSUING_AAD))


def open_authority(row: tuple[str, bytes, str, bytes], sealer: Sealer) -> CertificateAuthority:
    """The inverse of :func:`seal_authority`."""
    root_pem, root_key, issuing_pem, issuing_key = row
    return CertificateAuthority(
        root=x509.load_pem_x509_certificate(root_pem.encode()),
        root_key=key_from_der(sealer.unseal(root_key, aad=_ROOT_AAD)),
        issuing=x509.load_pem_x509_certificate(issuing_pem.encode()),
        issuing_key=key_from_der(sealer.unseal(issuing_key, aad=_ISSUING_AAD)),
    )
