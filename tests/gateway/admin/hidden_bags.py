"""A PKCS#12 file hiding an expensive key bag inside an encrypted safe (issue 10).

The walk of :mod:`certstore.pkcs12_walk` sees the encrypted safe's own (cheap) derivation
but not the key bag inside it: that bag's PBKDF2 iteration count is only read once the safe
is decrypted, inside ``cryptography``'s single ``load_pkcs12`` call. Only the worker's
per-job CPU limit bounds it.
"""

from __future__ import annotations

import os

from asn1crypto import algos, cms, pkcs12
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from tests.certfactory import Issued, p12
from tests.certstore import p12tools

SAFE_ITERATIONS = 2048


def _encrypt_safe(contents: bytes, password: bytes) -> cms.ContentInfo:
    """``contents`` (a SafeContents) as an encrypted safe: PBES2, PBKDF2-SHA256, AES-256-CBC."""
    salt, iv = os.urandom(16), os.urandom(16)
    key = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt,
                     iterations=SAFE_ITERATIONS).derive(password)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(contents) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    algorithm = algos.EncryptionAlgorithm({
        "algorithm": "pbes2",
        "parameters": {
            "key_derivation_func": {"algorithm": "pbkdf2", "parameters": {
                "salt": algos.Pbkdf2Salt(name="specified", value=salt),
                "iteration_count": SAFE_ITERATIONS,
                "prf": {"algorithm": "sha256"}}},
            "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
        },
    })
    return cms.ContentInfo({"content_type": "encrypted_data", "content": {
        "version": "v0",
        "encrypted_content_info": {"content_type": "data",
                                   "content_encryption_algorithm": algorithm,
                                   "encrypted_content": ciphertext}}})


def hidden_key_bag_file(leaf: Issued, password: str, iterations: int) -> bytes:
    """A genuine file (certificates, MAC) whose shrouded key bag claims ``iterations``
    PBKDF2 iterations and sits inside an encrypted safe. Its ciphertext is the original
    one (made at the default count), so it never decrypts: deriving its key is the cost."""
    parts = p12tools.safes(p12(leaf, password.encode()))
    certs = [s for s in parts if p12tools.safe_kind(s) == "encrypted_data"]
    plain = [s for s in parts if p12tools.safe_kind(s) == "data"]
    bags = pkcs12.SafeContents.load(plain[0]["content"].native)
    for bag in bags:
        if bag["bag_id"].native == "pkcs8_shrouded_key_bag":
            # Claim the huge count in the bag's PBKDF2 parameters (re-parsed from DER so
            # the change is encoded).
            value = bag["bag_value"]
            params = value["encryption_algorithm"]["parameters"]
            params["key_derivation_func"]["parameters"]["iteration_count"] = iterations
    hidden = _encrypt_safe(pkcs12.SafeContents.load(bags.dump(force=True)).dump(),
                           password.encode())
    return p12tools.build_pfx([*certs, hidden], mac_password=password)
