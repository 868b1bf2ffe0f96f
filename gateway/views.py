"""JSON shapes of the store's values, shared by the CLI (``--json``) and the admin API.

Nothing here can expose a private key: the values it formats never hold one. A chain's shape
includes whether it is served now and for which names (:func:`chain_views`): the CLI and the
API both call that one function, so ``certgate chain list --json`` and ``GET .../chains``
cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from certstore.lifecycle import expires_in_s, status
from certstore.model import Account, Chain, PkiSettings, TrustedCA
from certstore.snapshot import Snapshot

if TYPE_CHECKING:
    from certstore.store import CertStore

_PROBE_LABEL = "certgate-wildcard-probe"

EXPIRING_WITHIN = dt.timedelta(days=30)
"""``lifecycle.expiring_within``'s default: where ``status`` turns to ``expiring``."""


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


def _wildcard_probe(parent: str, exact: set[str]) -> str:
    """A name that only the wildcard ``*.parent`` can serve (no chain lists it exactly)."""
    n = 0
    while (name := f"{_PROBE_LABEL}{n or ''}.{parent}") in exact:
        n += 1
    return name


def served_names(snapshot: Snapshot, chains: Iterable[Chain],
                 listed: set[str]) -> dict[str, list[str]]:
    """``chain id -> names`` for which ``snapshot`` selects that chain now.

    An exact name is reported when the chain is what that name gets; a wildcard ``*.p``
    when the chain is what a name under ``p`` gets that no chain lists exactly (``listed``:
    every exact name in the snapshot's chains).
    """
    out: dict[str, list[str]] = {}
    for chain in chains:
        out[chain.id] = []
        for name in chain.dns_names:
            probe = _wildcard_probe(name[2:], listed) if name.startswith("*.") else name
            selected = snapshot.select(probe)
            if selected is not None and selected.chain_id == chain.id:
                out[chain.id].append(name)
    return out


async def account_served(store: CertStore, account_id: str,
                         chains: Iterable[Chain]) -> dict[str, list[str]]:
    """Served names of an account's chains, from a snapshot of that account alone.

    Computed with the gateway's own selection code (:meth:`Snapshot.select`), so it can
    never disagree with what a handshake gets. That agrees with the gateway's full snapshot:
    a chain only serves names under its account's own domains, and a domain belongs to one
    account, so no other account's chain is ever selected for these names first.
    """
    entries = await store.account_entries([account_id])
    listed = {n for e in entries for c in e.chains for n in c.names if not n.startswith("*.")}
    return served_names(Snapshot.build(entries, seq=0), chains, listed)


async def chain_views(store: CertStore, account_id: str, chains: list[Chain], *,
                      with_pem: bool) -> list[dict[str, Any]]:
    """The one shape of an account's chains, with ``served``/``served_for`` and where each
    stands in its lifetime (``status`` by the store's ``expiring_within``): CLI and API."""
    served = await account_served(store, account_id, chains)
    within = store.lifetimes.expiring_within
    return [chain_view(c, served_for=served.get(c.id, []), with_pem=with_pem,
                       expiring_within=within) for c in chains]
