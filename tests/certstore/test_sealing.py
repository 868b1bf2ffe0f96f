"""Sealing: AES-256-GCM with the record's identity as associated data."""

from __future__ import annotations

import pytest

from certstore.errors import StoreSetupError
from certstore.sealing import Sealer, SealError, record_aad

AAD = record_aad("chain", "chn_1", "acc_1")


def test_roundtrip_and_randomised() -> None:
    sealer = Sealer(Sealer.new_master_key())
    a, b = sealer.seal(b"secret key", aad=AAD), sealer.seal(b"secret key", aad=AAD)
    assert a != b  # fresh nonce every time
    assert b"secret key" not in a
    assert sealer.unseal(a, aad=AAD) == b"secret key"


def test_blob_cannot_move_to_another_record_or_account() -> None:
    sealer = Sealer(Sealer.new_master_key())
    blob = sealer.seal(b"k", aad=AAD)
    for other in (record_aad("chain", "chn_2", "acc_1"), record_aad("chain", "chn_1", "acc_2")):
        with pytest.raises(SealError, match="moved or altered"):
            sealer.unseal(blob, aad=other)


def test_wrong_master_key_and_tampering_fail() -> None:
    blob = Sealer(Sealer.new_master_key()).seal(b"k", aad=AAD)
    with pytest.raises(SealError):
        Sealer(Sealer.new_master_key()).unseal(blob, aad=AAD)
    sealer = Sealer(Sealer.new_master_key())
    blob = bytearray(sealer.seal(b"k", aad=AAD))
    blob[-1] ^= 1
    with pytest.raises(SealError):
        sealer.unseal(bytes(blob), aad=AAD)
    with pytest.raises(SealError, match="malformed"):
        sealer.unseal(b"\x02" + bytes(40), aad=AAD)


def test_master_key_must_be_32_bytes() -> None:
    with pytest.raises(StoreSetupError, match="32 bytes"):
        Sealer(b"short")
