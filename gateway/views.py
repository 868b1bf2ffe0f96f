"""JSON shapes of the store's values, shared by the CLI (``--json``) and the admin API.

Nothing here can expose a private key: the values it formats never hold one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from certstore.lifecycle import expires_in_s, status
from certstore.model import Account, Chain, PkiSettings, TrustedCA

EXPIRING_WITHIN = dt.timedelta(days=30)
"""``lifecycle.expiring_within``'s default: where ``status`` turns to ``expiring``."""


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def account_view(account: Account) -> dict[str, Any]:
    """An account with its domains."""
    return {"id": account.id, "name": account.name, "kind": account.kind,
            "parent_id": account.parent_id, "domains": list(account.domains),
            "created_at": _time(account.created_at)}


def trusted_ca_view(ca: TrustedCA, *, with_pem: bool = True) -> dict[str, Any]:
    """A trusted CA certificate."""
    out: dict[str, Any] = {
        "id": ca.id, "account_id": ca.account_id, "subject": ca.subject, "issuer": ca.issuer,
        "serial": ca.serial, "not_before": _time(ca.not_before),
        "not_after": _time(ca.not_after), "fingerprint_sha256": ca.fingerprint_sha256,
        "is_ca": ca.is_ca}
    if with_pem:
        out["pem"] = ca.pem
    return out


def chain_view(chain: Chain, *, served_for: list[str] | None = None, with_pem: bool = True,
               expiring_within: dt.timedelta = EXPIRING_WITHIN,
               now: dt.datetime | None = None) -> dict[str, Any]:
    """A chain's public metadata (and its certificates as PEM), never its key; with where
    it stands in its lifetime (``status``, ``expires_in_s``)."""
    at = now or dt.datetime.now(dt.UTC)
    out: dict[str, Any] = {
        "id": chain.id, "account_id": chain.account_id, "purpose": chain.purpose,
        "origin": chain.origin, "key_type": chain.key_type, "dns_names": list(chain.dns_names),
        "subject": chain.subject, "issuer": chain.issuer, "serial": chain.serial,
        "not_before": _time(chain.not_before), "not_after": _time(chain.not_after),
        "fingerprint_sha256": chain.fingerprint_sha256, "created_at": _time(chain.created_at),
        "expires_in_s": expires_in_s(chain, at),
        "status": status(chain, at, expiring_within)}
    if served_for is not None:
        out["served"] = bool(served_for)
        out["served_for"] = served_for
    if with_pem:
        out["chain_pem"] = chain.chain_pem
    return out


def pki_view(pki: PkiSettings) -> dict[str, Any]:
    """An account's PKI settings."""
    return {"account_id": pki.account_id, "signing_chain_id": pki.signing_chain_id,
            "tls_bindings": pki.binding_map()}
