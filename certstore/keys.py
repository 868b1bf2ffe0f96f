"""Key generation and (de)serialisation of private keys."""

from __future__ import annotations

from typing import Literal, get_args

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from certstore.errors import InvalidInput

KeyType = Literal["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"]
KEY_TYPES: tuple[str, ...] = get_args(KeyType)
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def check_key_type(value: str) -> KeyType:
    """Validate a key-type name given by a user."""
    if value not in KEY_TYPES:
        raise InvalidInput(f"unknown key type {value!r}; choose one of {', '.join(KEY_TYPES)}")
    return value  # type: ignore[return-value]


def generate_key(key_type: KeyType) -> SigningKey:
    """Generate a private key (CPU-heavy for RSA: call it off the event loop)."""
    if key_type.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    curve = ec.SECP384R1() if key_type == "ecdsa-p384" else ec.SECP256R1()
    return ec.generate_private_key(curve)


def key_to_der(key: PrivateKeyTypes) -> bytes:
    """Unencrypted PKCS#8 DER: only ever handed to the sealer, never written anywhere."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_from_der(der: bytes) -> SigningKey:
    """Load a PKCS#8 DER key that certgate itself sealed (RSA or ECDSA only)."""
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InvalidInput(f"unsupported stored key type {type(key).__name__}")
    return key
