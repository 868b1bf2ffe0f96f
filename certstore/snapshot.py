"""The selection snapshot: which chain serves a TLS server name.

Theory of operation
-------------------
The gateway must pick a chain inside the TLS handshake (an SNI callback), so selection is a
pure, synchronous, O(1) lookup in an immutable snapshot built from the store:

* ``exact``: normalised name -> candidate chains, for names a chain lists literally;
* ``wild``: parent -> candidate chains, for ``*.parent`` names. A server name is tried
  exactly, then as the one-label wildcard of its parent (RFC 6125 6.4.3: ``*.example.com``
  serves ``a.example.com``, never ``example.com`` nor ``a.b.example.com``).

A chain only contributes names its account may serve *now* (the import rule applied to the
account's current domains), so removing a domain stops serving it even if an old chain
still names it. Candidates are ordered once, at build time: an explicit TLS binding from the
account's PKI settings first, then the chain that expires last. ``select`` returns the first
candidate valid at the given time, so an expired chain is skipped without a rebuild.

A change to one account builds a new snapshot by copying the maps and replacing only that
account's entries (``with_accounts``); readers keep whatever snapshot they hold, so a
handshake in progress is never affected by a swap.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from certstore.names import allowed_for_domains, wildcard_parent


@dataclass(frozen=True, slots=True, kw_only=True)
class ServedChain:
    """What a TLS listener needs to serve one chain. ``sealed_key`` is still sealed."""

    chain_id: str
    account_id: str
    names: tuple[str, ...]
    not_before_ts: float
    not_after_ts: float
    chain_pem: bytes
    sealed_key: bytes = field(repr=False)
    key_type: str
    fingerprint_sha256: str
    created_ts: float = 0.0
    """When the chain was stored: of two chains expiring in the same second (two generated
    within one second), the newer one is served."""

    def valid_at(self, ts: float) -> bool:
        """True when the leaf is valid at Unix time ``ts``."""
        return self.not_before_ts <= ts <= self.not_after_ts

    def covers(self, host: str) -> bool:
        """True when this chain's names cover ``host`` (exact or one-label wildcard)."""
        if host in self.names:
            return True
        parent = wildcard_parent(host)
        return parent is not None and ("*." + parent) in self.names


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountEntry:
    """One account's input to the snapshot: its domains, TLS bindings and TLS chains."""

    account_id: str
    domains: frozenset[str]
    bindings: Mapping[str, str]
    chains: tuple[ServedChain, ...]


_Key = tuple[bool, str]  # (is_wildcard, name or parent)


def _account_keys(entry: AccountEntry) -> dict[_Key, tuple[ServedChain, ...]]:
    grouped: dict[_Key, list[ServedChain]] = {}
    for chain in entry.chains:
        for name in chain.names:
            if not allowed_for_domains(name, entry.domains):
                continue
            key = (True, name[2:]) if name.startswith("*.") else (False, name)
            grouped.setdefault(key, []).append(chain)
    out: dict[_Key, tuple[ServedChain, ...]] = {}
    for key, chains in grouped.items():
        bound = entry.bindings.get(key[1])
        chains.sort(key=lambda c: (c.chain_id != bound, -c.not_after_ts, -c.created_ts,
                                   c.chain_id))
        out[key] = tuple(chains)
    return out


class Snapshot:
    """Immutable name -> chain map; build with :meth:`build` or :meth:`with_accounts`."""

    __slots__ = ("_by_account", "_exact", "_owners", "_wild", "seq")

    def __init__(self, *, seq: int, exact: dict[str, tuple[ServedChain, ...]],
                 wild: dict[str, tuple[ServedChain, ...]], owners: dict[str, str],
                 by_account: dict[str, tuple[frozenset[str], tuple[_Key, ...]]]) -> None:
        self.seq = seq
        self._exact = exact
        self._wild = wild
        self._owners = owners
        self._by_account = by_account

    @classmethod
    def empty(cls) -> Snapshot:
        """A snapshot serving nothing."""
        return cls(seq=0, exact={}, wild={}, owners={}, by_account={})

    @classmethod
    def build(cls, entries: Iterable[AccountEntry], *, seq: int) -> Snapshot:
        """Build from every account of the store."""
        return cls.empty().with_accounts(entries, seq=seq)

    def with_accounts(self, entries: Iterable[AccountEntry], *, seq: int,
                      removed: Iterable[str] = ()) -> Snapshot:
        """A new snapshot with these accounts' entries replaced and ``removed`` dropped."""
        # Copying a dict that never had a key deleted is a block copy (~30 µs for 10,000
        # names); one deletion forces an entry-by-entry copy, seven times slower, at every
        # later change. So keys that are set again below are overwritten, not deleted:
        # replacing a chain (the common change) deletes nothing.
        exact, wild = dict(self._exact), dict(self._wild)
        owners, by_account = dict(self._owners), dict(self._by_account)
        new = {entry.account_id: (entry, _account_keys(entry)) for entry in entries}
        for account_id in [*removed, *new]:
            domains, keys = by_account.get(account_id, (frozenset(), ()))
            entry, grouped = new.get(account_id, (None, {}))
            kept = entry.domains if entry is not None else frozenset()
            if entry is None:
                by_account.pop(account_id, None)
            for d in domains:
                if d not in kept and owners.get(d) == account_id:
                    del owners[d]
            for key in keys:
                if key in grouped:
                    continue
                target = wild if key[0] else exact
                current = target.get(key[1])
                if current and current[0].account_id == account_id:
                    del target[key[1]]
        for entry, grouped in new.values():
            for (is_wild, name), chains in grouped.items():
                (wild if is_wild else exact)[name] = chains
            owners.update(dict.fromkeys(entry.domains, entry.account_id))
            by_account[entry.account_id] = (entry.domains, tuple(grouped))
        return Snapshot(seq=seq, exact=exact, wild=wild, owners=owners, by_account=by_account)

    def select(self, server_name: str, now: float | None = None) -> ServedChain | None:
        """The chain serving ``server_name`` (SNI, any case, optional trailing dot), or None."""
        name = server_name.lower().rstrip(".")
        ts = time.time() if now is None else now
        for chains in (self._exact.get(name), self._wild.get(wildcard_parent(name) or "")):
            if chains:
                for chain in chains:
                    if chain.valid_at(ts):
                        return chain
        return None

    def selected(self, account_id: str, now: float | None = None) -> list[ServedChain]:
        """The chains serving an account's names right now (each once)."""
        ts = time.time() if now is None else now
        _domains, keys = self._by_account.get(account_id, (frozenset(), ()))
        seen: dict[str, ServedChain] = {}
        for is_wild, name in keys:
            for chain in (self._wild if is_wild else self._exact).get(name, ()):
                if chain.valid_at(ts):
                    seen.setdefault(chain.chain_id, chain)
                    break
        return list(seen.values())

    def chains(self) -> list[ServedChain]:
        """Every chain that serves at least one name (each once)."""
        seen: dict[str, ServedChain] = {}
        for candidates in (*self._exact.values(), *self._wild.values()):
            for chain in candidates:
                seen.setdefault(chain.chain_id, chain)
        return list(seen.values())

    def owner(self, domain: str) -> str | None:
        """The account owning ``domain``, if any."""
        return self._owners.get(domain.lower().rstrip("."))

    def __len__(self) -> int:
        return len(self._exact) + len(self._wild)
