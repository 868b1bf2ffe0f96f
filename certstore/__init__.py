"""certstore: the multi-tenant certificate store behind certgate.

Pure logic (names, PKCS#12 rules, the built-in CA, sealing, tokens, the selection snapshot)
plus one persistence package. Start with :class:`certstore.store.CertStore`.
"""

from certstore.errors import (
    CertStoreError,
    Conflict,
    DomainTaken,
    InvalidCertificate,
    InvalidInput,
    InvalidName,
    NoSigningChain,
    NotFound,
    StoreSetupError,
)
from certstore.model import Account, Chain, Change, PkiSettings, TrustedCA
from certstore.pki_ops import IssuedToken
from certstore.snapshot import ServedChain, Snapshot
from certstore.store import CertStore

__all__ = [
    "Account",
    "CertStore",
    "CertStoreError",
    "Chain",
    "Change",
    "Conflict",
    "DomainTaken",
    "InvalidCertificate",
    "InvalidInput",
    "InvalidName",
    "IssuedToken",
    "NoSigningChain",
    "NotFound",
    "PkiSettings",
    "ServedChain",
    "Snapshot",
    "StoreSetupError",
    "TrustedCA",
]
