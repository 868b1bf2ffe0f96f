"""Sealing private keys at rest: AES-256-GCM under a master key kept outside the database.

The record's identity is the associated data, so a sealed key copied into another record or
another account fails to open (a database row swap cannot move a key between tenants).
Blob layout: version byte (1) | 12-byte random nonce | ciphertext+tag.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certstore.errors import StoreSetupError

MASTER_KEY_BYTES = 32
_VERSION = b"\x01"
_NONCE_BYTES = 12


class SealError(StoreSetupError):
    """A sealed blob does not open: wrong master key, or a record moved or tampered with."""

    code = "seal-error"


def record_aad(kind: str, record_id: str, account_id: str) -> bytes:
    """Associated data binding a sealed blob to its record and account."""
    return f"certgate:v1:{kind}:{record_id}:{account_id}".encode()


class Sealer:
    """Seals and opens secrets with one master key."""

    __slots__ = ("_aead",)

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise StoreSetupError(
                f"the master key must be {MASTER_KEY_BYTES} bytes, got {len(master_key)}; "
                "use the key file written by 'certgate init'"
            )
        self._aead = AESGCM(master_key)

    @staticmethod
    def new_master_key() -> bytes:
        """A fresh random master key."""
        return AESGCM.generate_key(bit_length=MASTER_KEY_BYTES * 8)

    def seal(self, plaintext: bytes, *, aad: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``aad``."""
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def unseal(self, blob: bytes, *, aad: bytes) -> bytes:
        """Decrypt a blob sealed with the same master key and ``aad``."""
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _VERSION:
            raise SealError("a sealed key is malformed (unknown format or truncated)")
        try:
            return self._aead.decrypt(blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :], aad)
        except InvalidTag as e:
            raise SealError(
                "a sealed key does not open: the master key is not the one this database was "
                "created with, or the record was moved or altered"
            ) from e
