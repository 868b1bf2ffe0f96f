"""Request and response models of the admin API (pydantic).

Request models validate every JSON body: strict types (``"5"`` is not an integer), unknown
fields refused (``extra="forbid"``), bounded sizes. Response models are not used to build
responses (``gateway.views`` does, shared with the CLI); they describe them in the OpenAPI
document, and forbid extra fields there so a contract test catches any field that should
not be in a response (a key above all).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from certstore.keys import KeyType
from certstore.tokens import DEFAULT_TTL_S, MAX_TTL_S

# Bounds that keep one request cheap; the store validates the content of each value.
MAX_DOMAINS_PER_REQUEST = 100
# The store accepts 200 characters, but an account's signing chain is issued to the common
# name "<name> token signing" and X.509 bounds a CN to 64 characters (RFC 5280 appendix A,
# ub-common-name): longer names make chain generation fail inside the store.
MAX_CN = 64
SIGNING_CN_SUFFIX = " token signing"
MAX_ACCOUNT_NAME = MAX_CN - len(SIGNING_CN_SUFFIX)
MAX_DOMAIN_TEXT = 300
MAX_ID_TEXT = 100
MAX_CLAIM_TEXT = 500


class RequestModel(BaseModel):
    """A JSON request body: strict, closed, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ResponseModel(BaseModel):
    """A documented response shape: closed, so undocumented fields break the contract."""

    model_config = ConfigDict(extra="forbid")


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _integral(value: object) -> object:
    """JSON Schema counts ``3.0`` as an integer (2020-12 section 6.1.1); so do we."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _rfc3339(value: object) -> object:
    """Only an RFC 3339 date-time with an offset (pydantic alone would also take numbers
    and other date formats, which the OpenAPI ``date-time`` format does not allow)."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("give an RFC 3339 date-time with an offset, "
                         "e.g. 2025-01-31T12:00:00Z")
    return value


JsonInt = Annotated[int, BeforeValidator(_integral)]
DateTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


# -- requests ------------------------------------------------------------------------------

class AccountCreate(RequestModel):
    """``POST /api/v1/accounts``."""

    name: str = Field(min_length=1, max_length=MAX_ACCOUNT_NAME)
    kind: Literal["vendor", "customer"]
    parent_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_TEXT)
    domains: list[str] = Field(default_factory=list, max_length=MAX_DOMAINS_PER_REQUEST)


class AccountPatch(RequestModel):
    """``PATCH /api/v1/accounts/{id}``: the name is the only field that changes in place
    (domains have their own routes; kind and parent are fixed at creation)."""

    name: str = Field(min_length=1, max_length=MAX_ACCOUNT_NAME)


class DomainAdd(RequestModel):
    """``POST /api/v1/accounts/{id}/domains``."""

    domain: str = Field(min_length=1, max_length=MAX_DOMAIN_TEXT)


class ChainGenerate(RequestModel):
    """``POST /api/v1/accounts/{id}/chains/generate``."""

    purpose: Literal["tls", "signing"]
    domain: str | None = Field(default=None, min_length=1, max_length=MAX_DOMAIN_TEXT)
    key_type: KeyType = "ecdsa-p256"


class PkiPut(RequestModel):
    """``PUT /api/v1/accounts/{id}/pki``: the whole settings (both fields required, so a
    client that sends only one cannot wipe the other by accident)."""

    signing_chain_id: str | None = Field(max_length=MAX_ID_TEXT)
    tls_bindings: dict[str, str] = Field(max_length=MAX_DOMAINS_PER_REQUEST)


class TokenRequest(RequestModel):
    """``POST /api/v1/accounts/{id}/tokens``."""

    subject: str = Field(min_length=1, max_length=MAX_CLAIM_TEXT)
    audience: str | None = Field(default=None, min_length=1, max_length=MAX_CLAIM_TEXT)
    ttl_s: JsonInt = Field(default=DEFAULT_TTL_S, ge=1, le=MAX_TTL_S)


class AuditQuery(BaseModel):
    """``GET /api/v1/audit`` query: strings from the URL, converted (not strict)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID_TEXT)
    since: DateTime | None = None
    until: DateTime | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    before: int | None = Field(default=None, ge=1, le=2**63 - 1)


# -- responses -----------------------------------------------------------------------------

class ChallengeOut(ResponseModel):
    """The DNS record that proves control of a pending domain."""

    type: Literal["TXT"]
    name: str = Field(description="The record's name: _certgate-challenge.<domain>.")
    value: str = Field(description="The token the TXT record must hold.")


class DomainStatusOut(ResponseModel):
    """One domain of an account and whether it is verified."""

    name: str
    status: Literal["verified", "pending"]
    challenge: ChallengeOut | None


class AccountOut(ResponseModel):
    """An account with its domains: ``domains`` are the verified ones (the names it may
    serve), ``domain_status`` lists every domain, pending ones with their DNS challenge."""

    id: str
    name: str
    kind: Literal["vendor", "customer"]
    parent_id: str | None
    domains: list[str]
    domain_status: list[DomainStatusOut]
    created_at: dt.datetime


class AccountList(ResponseModel):
    """The accounts visible to the caller."""

    accounts: list[AccountOut]


class TrustedCAOut(ResponseModel):
    """A trusted CA certificate (public data)."""

    id: str
    account_id: str
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint_sha256: str
    is_ca: bool


class TrustedCAList(ResponseModel):
    """Trusted CA certificates of an account."""

    trusted_cas: list[TrustedCAOut]


class ChainOut(ResponseModel):
    """A chain's public metadata, and whether it is served now and for which of its names.
    Never a private key."""

    id: str
    account_id: str
    purpose: Literal["tls", "signing"]
    origin: Literal["imported", "generated"]
    key_type: str
    dns_names: list[str]
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint_sha256: str
    created_at: dt.datetime
    expires_in_s: int
    status: Literal["valid", "expiring", "expired", "not_yet_valid"]
    served: bool
    served_for: list[str]


class ExpiringList(ResponseModel):
    """Chains that expire within a window, soonest first, with the names they serve."""

    within: str
    chains: list[ChainOut]


class ChainDetail(ChainOut):
    """A chain with its certificates (leaf first) as PEM."""

    chain_pem: str


class ChainList(ResponseModel):
    """An account's chains."""

    chains: list[ChainOut]


class PkiOut(ResponseModel):
    """An account's PKI settings."""

    account_id: str
    signing_chain_id: str | None
    tls_bindings: dict[str, str]


class TokenOut(ResponseModel):
    """A signed JWT (shown once; never stored or audited)."""

    token: str
    expires_at: dt.datetime
    kid: str
    chain_id: str


class Jwk(BaseModel):
    """A public JSON Web Key (RFC 7517) with its certificate chain."""

    model_config = ConfigDict(extra="allow")

    kty: str
    kid: str
    alg: str
    use: str
    x5c: list[str]


class Jwks(ResponseModel):
    """The keys that verify an account's tokens."""

    keys: list[Jwk]


class AuditRecordOut(ResponseModel):
    """One audited action (no key, password or token text)."""

    seq: int
    at: dt.datetime
    key_id: str | None
    role: str
    account_id: str | None
    action: str
    target: str | None
    result: str
    detail: str | None
    count: int = Field(description="Refusals this record stands for (1, or more for a "
                       "rate-limited audit.rate_limited record).")


class AuditPage(ResponseModel):
    """Audit records, newest first; pass ``next_before`` as ``before`` for the next page."""

    records: list[AuditRecordOut]
    next_before: int | None


class Health(ResponseModel):
    """Liveness; ``degraded`` while the store's database is unreachable (TLS is still
    served from the last snapshot, admin changes answer 503)."""

    status: Literal["ok", "degraded"]
    reason: str | None = None


class ClusterNode(ResponseModel):
    """A gateway node serving from this store."""

    name: str
    host: str
    pid: int
    started_at: AwareDatetime
    heartbeat_at: AwareDatetime
    applied_change: int
    lag: int
    live: bool


class ClusterOut(ResponseModel):
    """The fleet as the store records it."""

    backend: Literal["sqlite", "postgresql"]
    last_change: int
    nodes: list[ClusterNode]


class OpenApiDocument(BaseModel):
    """An OpenAPI 3.1 document."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, object]
    paths: dict[str, object]


class ProblemOut(BaseModel):
    """An RFC 9457 problem document, with certgate's extension members."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    rule: str | None = Field(default=None, description="The certificate rule broken.")
    names: list[str] | None = Field(default=None, description="Every offending DNS name.")
    errors: list[dict[str, object]] | None = Field(
        default=None, description="Where a request body is invalid, field by field.")
