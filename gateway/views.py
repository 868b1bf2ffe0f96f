"""JSON shapes of the store's values, shared by the CLI (``--json``) and the admin API.

Nothing here can expose a private key: the values it formats never hold one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from certstore.model import Account, Chain, PkiSettings, TrustedCA


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def domain_status(account: Account) -> list[dict[str, Any]]:
    """Every domain of the account with its status; a pending one with the DNS challenge
    to publish (a TXT record at ``challenge.name`` holding ``challenge.value``)."""
    out: list[dict[str, Any]] = [{"name": d, "status": "verified", "challenge": None}
                                 for d in account.domains]
    out += [{"name": p.name, "status": "pending",
             "challenge": {"type": "TXT", "name": p.record_name, "value": p.token}}
            for p in account.pending]
    return sorted(out, key=lambda d: str(d["name"]))


def account_view(account: Account) -> dict[str, Any]:
    """An account with its domains: ``domains`` are the verified ones (what it serves),
    ``domain_status`` lists all, pending ones with their DNS challenge."""
    return {"id": account.id, "name": account.name, "kind": account.kind,
            "parent_id": account.parent_id, "domains": list(account.domains),
            "domain_status": domain_status(account), "created_at": _time(account.created_at)}


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


def chain_view(chain: Chain, *, served_for: list[str] | None = None,
               with_pem: bool = True) -> dict[str, Any]:
    """A chain's public metadata (and its certificates as PEM), never its key."""
    out: dict[str, Any] = {
        "id": chain.id, "account_id": chain.account_id, "purpose": chain.purpose,
        "origin": chain.origin, "key_type": chain.key_type, "dns_names": list(chain.dns_names),
        "subject": chain.subject, "issuer": chain.issuer, "serial": chain.serial,
        "not_before": _time(chain.not_before), "not_after": _time(chain.not_after),
        "fingerprint_sha256": chain.fingerprint_sha256, "created_at": _time(chain.created_at)}
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
