"""The store's values: accounts, trusted CAs, chains, PKI settings, changes.

Values validate when built, so a malformed one cannot exist anywhere in the program.
None of them ever holds a private key: sealed keys live only in the database module.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, get_args

from certstore.errors import InvalidInput

AccountKind = Literal["vendor", "customer"]
ACCOUNT_KINDS: tuple[str, ...] = get_args(AccountKind)
Origin = Literal["imported", "generated"]
DomainStatus = Literal["verified", "pending"]
CHALLENGE_PREFIX = "_certgate-challenge."
MAX_ACCOUNT_NAME = 200


def check_account_kind(value: str) -> AccountKind:
    """Validate an account kind given by a user."""
    if value not in ACCOUNT_KINDS:
        raise InvalidInput(f"account kind must be one of {', '.join(ACCOUNT_KINDS)}, "
                           f"got {value!r}")
    return value  # type: ignore[return-value]


def check_account_name(value: str) -> str:
    """Validate an account's display name (non-empty, printable, bounded)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("an account needs a non-empty name")
    if len(value) > MAX_ACCOUNT_NAME or not value.isprintable():
        raise InvalidInput(f"an account name must be printable and at most "
                           f"{MAX_ACCOUNT_NAME} characters")
    return value.strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingDomain:
    """A domain added by a customer key, not yet approved or proven through DNS.

    It routes no SNI and no chain may name it until it is verified: by its vendor or an
    operator, or by a DNS TXT record ``_certgate-challenge.<name>`` holding ``token``.
    """

    name: str
    token: str

    @property
    def record_name(self) -> str:
        """The DNS name of the TXT record that proves control of the domain."""
        return CHALLENGE_PREFIX + self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """A vendor or customer tenant and the DNS domains it owns.

    ``domains`` are the verified domains (what SNI routes and chains may name);
    ``pending`` are domains waiting for approval or their DNS challenge.
    """

    id: str
    name: str
    kind: AccountKind
    parent_id: str | None
    domains: tuple[str, ...]
    created_at: dt.datetime
    pending: tuple[PendingDomain, ...] = ()

    @property
    def pending_names(self) -> frozenset[str]:
        """Names of the pending domains."""
        return frozenset(p.name for p in self.pending)

    def __post_init__(self) -> None:
        check_account_kind(self.kind)
        check_account_name(self.name)
        if self.kind == "vendor" and self.parent_id is not None:
            raise InvalidInput("a vendor account cannot belong to another account")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustedCA:
    """A trusted CA certificate of an account (for LDAPS and similar outbound TLS)."""

    id: str
    account_id: str
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint_sha256: str
    is_ca: bool
    pem: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Chain:
    """Public metadata and certificates of a private chain (never its key)."""

    id: str
    account_id: str
    purpose: Literal["tls", "signing"]
    origin: Origin
    key_type: str
    dns_names: tuple[str, ...]
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint_sha256: str
    chain_pem: str
    created_at: dt.datetime

    def valid_at(self, now: dt.datetime) -> bool:
        """True when the leaf is within its validity period."""
        return self.not_before <= now <= self.not_after


@dataclass(frozen=True, slots=True, kw_only=True)
class PkiSettings:
    """An account's chosen signing chain and explicit TLS chain per domain."""

    account_id: str
    signing_chain_id: str | None
    tls_bindings: tuple[tuple[str, str], ...] = ()

    def binding_map(self) -> dict[str, str]:
        """``domain -> chain id``."""
        return dict(self.tls_bindings)


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One entry of the change feed: ``seq`` is monotonic, one per committed mutation."""

    seq: int
    at: dt.datetime
    kind: str
    account_id: str | None
    entity_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    """A serving node of the fleet as it records itself in the store."""

    name: str
    host: str
    pid: int
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    applied_seq: int

    def live_at(self, now: dt.datetime, live_s: float) -> bool:
        """Whether the node's heartbeat is recent enough for it to count as live."""
        return (now - self.heartbeat_at).total_seconds() <= live_s
