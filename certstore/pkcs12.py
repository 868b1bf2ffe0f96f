"""Reading PKCS#12 / PFX files by the product page's password rules.

The page requires "both the key pair and the keystore file ... password protected with the
same password". ``cryptography`` reports every failure as one "Invalid password or PKCS12
data", so this module looks at the PFX structure itself (RFC 7292) to say *which* rule failed:

1. no password given, or the file opens without one -> ``password-missing``;
2. the file's integrity MAC does not verify with the password -> ``wrong-password``;
3. a private key stored unencrypted (a plain ``keyBag``) -> ``key-not-protected``;
4. the MAC verifies but the key does not decrypt -> ``key-password-differs``.

The MAC is checked with the PKCS#12 key derivation of RFC 7292 appendix B. Files using a MAC
we cannot check (PBMAC1, RFC 9579) fall back to trying to open the file.
"""

from __future__ import annotations

import hashlib
import hmac
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms, pkcs12
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import load_der_private_key
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12

from certstore.errors import InvalidCertificate
from certstore.pkcs12_walk import MAX_CERTIFICATES, MAX_ITERATIONS, RULE, Pkcs12Work, walk

MAX_PKCS12_BYTES = 256 * 1024
# A file could ask for billions of iterations; refuse instead of burning a CPU for hours.
MAX_MAC_ITERATIONS = MAX_ITERATIONS
_MAC_HASHES = {"sha1": "sha1", "sha224": "sha224", "sha256": "sha256",
               "sha384": "sha384", "sha512": "sha512"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Pkcs12Contents:
    """The private key and every certificate found in a PKCS#12 file."""

    key: PrivateKeyTypes
    certificates: tuple[x509.Certificate, ...]


def _refuse(message: str, rule: str) -> InvalidCertificate:
    return InvalidCertificate(message, rule=rule)


def _pkcs12_kdf(hash_name: str, password: bytes, salt: bytes, iterations: int, n: int) -> bytes:
    """RFC 7292 appendix B.2 key derivation with ID 3 (MAC key)."""
    new: Callable[..., Any] = getattr(hashlib, hash_name)  # ~2x faster than hashlib.new
    u: int = new().digest_size
    v: int = new().block_size

    def stretch(data: bytes) -> bytes:
        if not data:
            return b""
        length = v * -(-len(data) // v)
        return (data * (length // len(data) + 1))[:length]

    d = bytes([3]) * v
    i = stretch(salt) + stretch(password)
    out = b""
    while len(out) < n:
        a = new(d + i).digest()
        for _ in range(iterations - 1):
            a = new(a).digest()
        out += a
        b = int.from_bytes((a * (v // u + 1))[:v], "big") + 1
        mask = (1 << (v * 8)) - 1
        i = b"".join(
            ((int.from_bytes(i[j : j + v], "big") + b) & mask).to_bytes(v, "big")
            for j in range(0, len(i), v)
        )
    return out[:n]


def _bmp_password_variants(password: bytes) -> list[bytes]:
    text = password.decode("utf-8", errors="strict")
    bmp = text.encode("utf-16-be") + b"\x00\x00"
    # OpenSSL treats an empty password both as "no password" (empty P) and as "" (00 00).
    return [bmp, b""] if not text else [bmp]


def _mac_verifies(pfx: pkcs12.Pfx, password: bytes) -> bool | None:
    """True/False when the MAC can be checked, None when its algorithm is not supported."""
    mac_data = pfx["mac_data"]
    algo = mac_data["mac"]["digest_algorithm"]["algorithm"].native
    hash_name = _MAC_HASHES.get(algo)
    if hash_name is None:
        return None
    iterations = mac_data["iterations"].native  # bounded by the walk already
    salt = mac_data["mac_salt"].native
    expected = mac_data["mac"]["digest"].native
    content = pfx["auth_safe"]["content"].native
    try:
        variants = _bmp_password_variants(password)
    except UnicodeDecodeError:
        return False
    for variant in variants:
        key = _pkcs12_kdf(hash_name, variant, salt, iterations, hashlib.new(hash_name).digest_size)
        if hmac.compare_digest(hmac.new(key, content, hash_name).digest(), expected):
            return True
    return False


def _plain_safe_bags(pfx: pkcs12.Pfx, bag_id: str) -> Iterator[pkcs12.SafeBag]:
    """Bags of kind ``bag_id`` in the unencrypted safes (encrypted safes are protected by
    the file password as a whole, and their bags cannot be seen without it)."""
    for info in pfx.authenticated_safe:
        if info["content_type"].native == "data":
            for bag in pkcs12.SafeContents.load(info["content"].native):
                if bag["bag_id"].native == bag_id:
                    yield bag


def _has_plain_key_bag(pfx: pkcs12.Pfx) -> bool:
    """True if a private key is stored without encryption in an unencrypted safe."""
    return any(True for _ in _plain_safe_bags(pfx, "key_bag"))


def _key_bags_decrypt(pfx: pkcs12.Pfx, password: bytes) -> bool:
    """False if a shrouded key bag of an unencrypted safe does not decrypt with ``password``."""
    for bag in _plain_safe_bags(pfx, "pkcs8_shrouded_key_bag"):
        try:
            load_der_private_key(bag["bag_value"].untag().dump(), password)
        except Exception:
            return False
    return True


def _not_pkcs12(e: Exception) -> InvalidCertificate:
    detail = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    return _refuse(f"the file is not a readable PKCS#12/PFX file ({detail}); export the "
                   "chain with its private key as .pfx or .p12", "not-pkcs12")


def _parse_structure(data: bytes) -> pkcs12.Pfx:
    """The parsed file; asn1crypto parses lazily, so everything read later is forced here
    (the whole file, the authenticated safe and every plain safe's bags)."""
    try:
        pfx = pkcs12.Pfx.load(data)
        pfx.native  # noqa: B018
        if pfx["auth_safe"]["content_type"].native != "data":
            raise ValueError("public-key integrity mode is not supported")
        for info in pfx.authenticated_safe:
            if not isinstance(info, cms.ContentInfo):
                raise ValueError("unexpected content")
            info.native  # noqa: B018
        if pfx["mac_data"].native is not None:
            pfx["mac_data"]["mac"]["digest"].native  # noqa: B018
    except Exception as e:
        raise _not_pkcs12(e) from e
    return pfx


def _walk(pfx: pkcs12.Pfx) -> Pkcs12Work:
    try:
        work = walk(pfx)
        for bag_id in ("key_bag", "pkcs8_shrouded_key_bag"):  # what the diagnosis reads
            for bag in _plain_safe_bags(pfx, bag_id):
                bag["bag_value"].untag().dump()
    except InvalidCertificate:
        raise
    except Exception as e:
        raise _not_pkcs12(e) from e
    return work


def _diagnose(pfx: pkcs12.Pfx, password: bytes, error: Exception) -> InvalidCertificate:
    """Why a file that cryptography refused does not open (the rules, in their order)."""
    mac_ok = _mac_verifies(pfx, password)
    if mac_ok is False:
        if _mac_verifies(pfx, b"") is True:
            return _refuse("the file is not password-protected (empty password); export it "
                           "again protecting the file and the key with one password",
                           "password-missing")
        return _refuse("wrong password: the file's integrity check fails with the password "
                       "given", "wrong-password")
    if _has_plain_key_bag(pfx):
        return _refuse("the private key inside the file is not password-protected; export "
                       "it again protecting the key with the file's password",
                       "key-not-protected")
    if mac_ok and not _key_bags_decrypt(pfx, password):
        return _refuse("the file's password is right, but its private key (or certificates) "
                       "are protected with a different password; export it again with one "
                       "password for both", "key-password-differs")
    if mac_ok:
        return _refuse(f"the password is right, but the file's content cannot be read "
                       f"({type(error).__name__}: {error}); export it again from its source",
                       "unreadable")
    return _refuse(f"the file cannot be opened with this password ({error})", "wrong-password")


def read_pkcs12(data: bytes, password: bytes | None) -> Pkcs12Contents:
    """Open a PKCS#12 file by the product's password rules, or raise InvalidCertificate.

    The file's whole key-derivation work is counted and bounded before any derivation
    (:mod:`certstore.pkcs12_walk`). The normal path derives the MAC key once (inside
    cryptography); the slower diagnosis (our own MAC check, then the key bags) runs only
    for a file that does not open. No other exception escapes: whatever a malformed file
    makes a parser raise is turned into ``InvalidCertificate``.
    """
    try:
        return _read(data, password)
    except InvalidCertificate:
        raise
    except Exception as e:  # a parser's surprise on a malformed file is still bad input
        raise _refuse(f"the file cannot be read ({type(e).__name__}); export it again from "
                      "its source as .pfx or .p12", "unreadable") from e


def _read(data: bytes, password: bytes | None) -> Pkcs12Contents:
    if len(data) > MAX_PKCS12_BYTES:
        raise _refuse(f"the file is {len(data)} bytes; the limit is {MAX_PKCS12_BYTES} bytes",
                      "too-large")
    if not data:
        raise _refuse("the file is empty", "empty")
    pfx = _parse_structure(data)
    if pfx["mac_data"].native is None:
        raise _refuse("the file is not password-protected; export it again protecting both "
                      "the file and the private key with one password", "password-missing")
    _walk(pfx)
    if not password:
        if _mac_verifies(pfx, b"") is True:
            raise _refuse("the file is not password-protected (empty password); export it "
                          "again protecting the file and the key with one password",
                          "password-missing")
        raise _refuse("the file is password-protected: give its password", "password-missing")
    try:
        # cryptography warns (not fails) when it falls back to BER: whether a file opens
        # must not depend on the process's warning filters (as in certstore.x509info).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = crypto_pkcs12.load_pkcs12(data, password)
    except Exception as e:
        raise _diagnose(pfx, password, e) from e
    if _has_plain_key_bag(pfx):
        raise _refuse("the private key inside the file is not password-protected; export it "
                      "again protecting the key with the file's password", "key-not-protected")
    if loaded.key is None:
        raise _refuse("the file holds no private key; a private chain needs its key "
                      "(certificates without a key are ignored)", "no-private-key")
    certs = [loaded.cert.certificate] if loaded.cert is not None else []
    certs += [c.certificate for c in loaded.additional_certs]
    if len(certs) > MAX_CERTIFICATES:
        raise _refuse(f"the file holds {len(certs)} certificates (at most {MAX_CERTIFICATES}); "
                      "export it again with the chain only", RULE)
    return Pkcs12Contents(key=loaded.key, certificates=tuple(certs))
