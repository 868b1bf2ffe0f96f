"""Domains of an account: who may take which name, and pending domains (mixed into
CertStore).

A domain is what SNI routes on, so taking a name is taking traffic. Two rules (issue 10):

* **No taking.** A name equal to, under or above a verified domain of another account is
  refused (``domain-owned-by-another-account``) unless the caller administers that account
  too: an operator or the CLI administers every account, a vendor its own and its
  customers'. So a vendor can give ``shop.vendor.test`` to one of its customers, and no
  customer can take it. Both directions count: ``vendor.test`` above another account's
  ``shop.vendor.test`` takes the names that account serves under it by wildcard.
* **Pending until proven.** A domain added by a customer key is ``pending``: it routes no
  SNI and no chain may name it, until its vendor or an operator approves it, or a DNS TXT
  record ``_certgate-challenge.<name>`` holds the token given when it was added. Domains
  added by operators, vendors and the CLI are verified at once.

A pending domain blocks nothing: names above or under it stay free, and a verified domain
of the same name replaces it (a customer cannot squat names it never proves). Verification
checks the first rule again.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from certstore.audit import Actor, current_actor
from certstore.errors import (
    DomainOwned,
    DomainTaken,
    DomainUnverified,
    Forbidden,
    NotFound,
)
from certstore.model import CHALLENGE_PREFIX, Account
from certstore.names import normalize_domains

if TYPE_CHECKING:
    from certstore.persistence.base import Database
    from certstore.persistence.writer import Writer

# Looks up the TXT strings of a DNS name through the configured resolver (the gateway's
# I/O); raises ChallengeLookupFailed when the resolver does not answer.
TxtLookup = Callable[[str], Awaitable[list[str]]]


def administers(actor: Actor | None, account_id: str, parent_id: str | None) -> bool:
    """True when ``actor`` administers the account (or is the CLI / an operator)."""
    if actor is None or actor.role in ("operator", "cli"):
        return True
    if actor.role == "vendor":
        return actor.account_id in (account_id, parent_id)
    return actor.account_id == account_id


def challenge_token() -> str:
    """A fresh DNS challenge token (192 random bits, DNS TXT-safe characters)."""
    return "certgate-" + secrets.token_urlsafe(24)


class DomainOps:
    """Adding, removing, approving and verifying domains (mixed into :class:`CertStore`)."""

    _db: Database
    _clock: Callable[[], dt.datetime]

    if TYPE_CHECKING:  # provided by CertStore
        async def get_account(self, account_id: str) -> Account: ...
        async def _account_in(self, w: Writer, account_id: str) -> Account: ...

    async def _check_taking(self, w: Writer, name: str, account_id: str,
                            actor: Actor | None, *, pending: bool) -> None:
        """Refuse ``name`` for ``account_id`` when another account holds it or a verified
        name above or under it that ``actor`` does not administer. Another account's
        *pending* claim on the same name gives way to a verified domain (it proved
        nothing); against another pending claim it stands (first come)."""
        for domain, owner, owner_parent, verified in await w.related_domains(name):
            if domain == name:
                if owner == account_id or verified or pending:
                    raise DomainTaken(name, other_account=owner != account_id)
                await w.delete_domain(owner, name)
                await w.change("domain.removed", owner, name,
                               "pending claim replaced by a verified domain of another "
                               "account")
                continue
            if owner == account_id or not verified:
                continue
            if not administers(actor, owner, owner_parent):
                raise DomainOwned(name)

    async def _insert_domains(self, w: Writer, account_id: str, names: Iterable[str]) -> None:
        """Insert domains after the taking check; pending when a customer key adds them."""
        actor = current_actor()
        pending = actor is not None and actor.role == "customer"
        for name in names:
            await self._check_taking(w, name, account_id, actor, pending=pending)
            await w.insert_domain(account_id, name, challenge_token() if pending else None)

    async def add_domain(self, account_id: str, domain: str) -> Account:
        """Give a domain to an account (see the module's rules); pending when the caller
        is a customer key."""
        (name,) = normalize_domains([domain])
        async with self._db.write(self._clock()) as w:
            await self._account_in(w, account_id)
            await self._insert_domains(w, account_id, [name])
            await w.change("domain.added", account_id, name)
        return await self.get_account(account_id)

    async def remove_domain(self, account_id: str, domain: str) -> Account:
        """Remove a domain (verified or pending); chains naming it stop being served for
        it."""
        (name,) = normalize_domains([domain])
        async with self._db.write(self._clock()) as w:
            await self._account_in(w, account_id)
            if not await w.delete_domain(account_id, name):
                raise NotFound("domain", name)
            await w.change("domain.removed", account_id, name)
        return await self.get_account(account_id)

    async def approve_domain(self, account_id: str, domain: str) -> Account:
        """Verify a pending domain by decision of its vendor, an operator or the CLI (a
        customer key cannot approve). Audited as ``domain.verified`` with
        ``method=approval``."""
        actor = current_actor()
        if actor is not None and actor.role == "customer":
            raise Forbidden("a customer key cannot approve domains: ask your vendor or an "
                            "operator, or publish the DNS challenge and verify it")
        (name,) = normalize_domains([domain])
        async with self._db.write(self._clock()) as w:
            account = await self._account_in(w, account_id)
            if not administers(actor, account.id, account.parent_id):
                raise NotFound("account", account_id)
            await self._verify(w, account, name, actor, "approval")
        return await self.get_account(account_id)

    async def verify_domain_dns(self, account_id: str, domain: str,
                                lookup: TxtLookup) -> Account:
        """Verify a pending domain when ``_certgate-challenge.<name>`` has its token in a
        TXT record (``lookup`` reads it through the configured resolver); otherwise
        :class:`DomainUnverified`, and the domain stays pending."""
        (name,) = normalize_domains([domain])
        account = await self.get_account(account_id)
        token = await self._db.pending_domain(account_id, name)
        if token is None:
            if name in account.domains:
                return account  # already verified: nothing to prove
            raise NotFound("pending domain", name)
        record = CHALLENGE_PREFIX + name
        values = await lookup(record)
        if token not in values:
            raise DomainUnverified(name, (
                f"no TXT record {record} with this domain's token was found "
                f"({len(values)} TXT value(s) seen): publish the token shown for the "
                "domain, wait for DNS to serve it, then verify again"))
        # DNS proves control of one name, never a right over another account's tree: the
        # check runs with no more rights than the account itself has.
        as_account = Actor(key_id=None, role="customer", account_id=account_id)
        async with self._db.write(self._clock()) as w:
            current = await self._account_in(w, account_id)
            if await w.pending_domain(account_id, name) not in (None, token):
                # removed and added again meanwhile: the new claim has a new token
                raise DomainUnverified(name, f"{name} was added again with a new token "
                                       "while it was looked up; publish the new token")
            await self._verify(w, current, name, as_account, "dns")
        return await self.get_account(account_id)

    async def pending_domains(self, limit: int = 1000) -> list[tuple[str, str]]:
        """(account id, name) of pending domains, for a periodic DNS check."""
        return await self._db.pending_domains(limit)

    async def _verify(self, w: Writer, account: Account, name: str, check_as: Actor | None,
                      method: str) -> None:
        """Mark ``name`` verified, checking the taking rule again with ``check_as``'s rights
        (a verified name above or under it may have appeared while it was pending)."""
        if name not in account.pending_names:
            if name in account.domains:
                return  # already verified (approved twice, or a DNS check raced)
            raise NotFound("pending domain", name)
        await self._check_taking_on_verify(w, name, account.id, check_as)
        await w.verify_domain(account.id, name)
        actor = current_actor()
        # The audit row has the key id and role; the approver's account goes in the detail.
        by = "cli" if actor is None else (actor.account_id or actor.role)
        await w.change("domain.verified", account.id, name, f"method={method} by={by}")

    async def _check_taking_on_verify(self, w: Writer, name: str, account_id: str,
                                      actor: Actor | None) -> None:
        for domain, owner, owner_parent, verified in await w.related_domains(name):
            if domain != name and owner != account_id and verified and not administers(
                    actor, owner, owner_parent):
                raise DomainOwned(name)

