"""Where the store runs its CPU-heavy work, and that work as picklable jobs.

The store never runs PKCS#12 parsing, key generation, certificate signing or token signing
on the event loop. *Where* it runs them is an :class:`Offload`: by default a thread
(:class:`ThreadOffload`, enough for the CLI, which serves nothing), and in the gateway a
process pool (``gateway.admin.workers``), because a thread still shares the GIL with the
TLS handshakes of every tenant (issue 10: a crafted import stalled them for seconds).

So that the same calls work in another process, every job here takes and returns plain
values (bytes, strings, frozen dataclasses): ``cryptography``'s key and certificate objects
cannot be pickled. Private keys cross the pool's pipe as DER bytes in memory only; nothing
here writes or logs them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certstore import tokens
from certstore.ca import CertificateAuthority, Purpose
from certstore.chains import NewChain, prepare_generated
from certstore.errors import InvalidCertificate
from certstore.keys import KeyType, key_from_der, key_to_der
from certstore.x509info import CertInfo, describe, load_certificates, to_pem

T = TypeVar("T")


class Offload(Protocol):
    """Runs a picklable function with picklable arguments away from the event loop."""

    async def run(self, fn: Callable[..., T], /, **kwargs: object) -> T:
        """``fn(**kwargs)``, awaited without blocking the loop; errors are re-raised."""
        ...


class ThreadOffload:
    """The default: a worker thread (:func:`asyncio.to_thread`)."""

    async def run(self, fn: Callable[..., T], /, **kwargs: object) -> T:
        """``fn(**kwargs)`` in a thread."""
        return await asyncio.to_thread(functools.partial(fn, **kwargs))


@dataclass(frozen=True, slots=True)
class AuthorityMaterial:
    """The built-in CA as bytes (DER certificates, PKCS#8 DER keys), to sign in a worker."""

    root_der: bytes
    root_key_der: bytes
    issuing_der: bytes
    issuing_key_der: bytes

    def __repr__(self) -> str:  # never let a key reach a log through repr()
        return "AuthorityMaterial(<hidden>)"

    @classmethod
    def of(cls, ca: CertificateAuthority) -> AuthorityMaterial:
        """The material of an open authority."""
        return cls(root_der=ca.root.public_bytes(Encoding.DER),
                   root_key_der=key_to_der(ca.root_key),
                   issuing_der=ca.issuing.public_bytes(Encoding.DER),
                   issuing_key_der=key_to_der(ca.issuing_key))


@functools.lru_cache(maxsize=2)
def _authority(material: AuthorityMaterial) -> CertificateAuthority:
    # Loading (and checking) the CA's RSA key costs milliseconds; a worker keeps the last
    # one it was given in memory, as the serving process does.
    return CertificateAuthority(root=x509.load_der_x509_certificate(material.root_der),
                                root_key=key_from_der(material.root_key_der),
                                issuing=x509.load_der_x509_certificate(material.issuing_der),
                                issuing_key=key_from_der(material.issuing_key_der))


def generate_job(*, authority: AuthorityMaterial, purpose: Purpose, domain: str | None,
                 common_name: str, key_type: KeyType, now: dt.datetime,
                 validity: dt.timedelta | None = None) -> NewChain:
    """:func:`certstore.chains.prepare_generated` from picklable arguments."""
    return prepare_generated(authority=_authority(authority), purpose=purpose, domain=domain,
                             common_name=common_name, key_type=key_type, now=now,
                             validity=validity)


def sign_token_job(*, key_der: bytes, chain_pem: bytes, issuer: str, account_id: str,
                   subject: str, audience: str | None, ttl_s: int,
                   now: dt.datetime) -> tuple[str, dt.datetime, str]:
    """A signed JWT, its expiry and ``kid`` (see :func:`certstore.tokens.issue`)."""
    certs = x509.load_pem_x509_certificates(chain_pem)
    token, expires = tokens.issue(key=key_from_der(key_der), chain=certs, issuer=issuer,
                                  account_id=account_id, subject=subject, audience=audience,
                                  ttl_s=ttl_s, now=now)
    return token, expires, tokens.key_id(certs[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadCertificate:
    """A certificate read from an upload: what the store keeps of it, and its PEM."""

    info: CertInfo
    pem: str


def read_certificates_job(*, data: bytes, limit: int) -> tuple[ReadCertificate, ...]:
    """Every certificate of a PEM/DER upload, read and described (``InvalidCertificate``
    otherwise); more than ``limit`` certificates are refused before any is described."""
    certs = load_certificates(data, limit=limit)
    if len(certs) > limit:
        raise InvalidCertificate(f"the file holds {len(certs)} certificates; import at most "
                                 f"{limit} at once", rule="too-large")
    return tuple(ReadCertificate(info=describe(c), pem=to_pem([c])) for c in certs)
