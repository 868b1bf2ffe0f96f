"""Renewal and expiry operations of CertStore (the lifecycle's decisions are in
:mod:`certstore.lifecycle`; the gateway's task that runs them on a timer is
:mod:`gateway.lifecycle`).

A renewal is one transaction: a new key and certificate for the same names from the
built-in CA, the same purpose and key type; every TLS binding and the signing choice that
named the old chain name the new one; the change feed and the audit log (``chain.renewed``,
old and new ids) record it. A TLS chain's predecessor is deleted in that transaction (the
gateway serves the new one on the next handshake; open connections keep theirs). A signing
chain's predecessor stays, marked as renewed, so the JWKS keeps its key until it expires and
tokens signed before the renewal still verify. A renewal that fails changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from certstore import lifecycle
from certstore.audit import Actor
from certstore.errors import Conflict, InvalidInput, InvalidName, NotFound
from certstore.keys import check_key_type
from certstore.lifecycle import Lifetimes, Stage
from certstore.model import Chain

if TYPE_CHECKING:
    from certstore.ca import Purpose
    from certstore.chains import NewChain
    from certstore.keys import KeyType
    from certstore.model import Account
    from certstore.persistence.base import Database
    from certstore.persistence.writer import Writer

LIFECYCLE_ACTOR = Actor(key_id=None, role="system", account_id=None)
"""Who the gateway's own lifecycle work (automatic renewal, notices) is audited as."""
RENEWAL_ACTION = "chain.renewed"
NOTICE_ACTION = "chain.expiring"


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """An expiry notice due for a chain: what to tell its owner."""

    chain: Chain
    stage: Stage


class RenewalOps:
    """Renewal, expiry listing and notices (mixed into :class:`CertStore`)."""

    _db: Database
    _clock: Callable[[], dt.datetime]
    lifetimes: Lifetimes

    if TYPE_CHECKING:  # provided by CertStore
        async def get_chain(self, chain_id: str, account_id: str | None = None) -> Chain: ...
        async def get_account(self, account_id: str) -> Account: ...
        async def _account_in(self, w: Writer, account_id: str) -> Account: ...
        async def _generate(self, purpose: Purpose, domain: str | None, common_name: str,
                            key_type: KeyType) -> NewChain: ...
        async def _insert_chain(self, w: Writer, account_id: str, new: NewChain) -> Chain: ...

    async def renew_chain(self, chain_id: str, account_id: str | None = None) -> Chain:
        """Renew a generated chain now; returns the new chain (see the module docstring).

        :class:`Conflict` if it was renewed already (by another worker or node, say),
        :class:`InvalidInput` for an imported chain, :class:`InvalidName` if a TLS chain's
        name is no longer a domain of the account.
        """
        old = await self.get_chain(chain_id, account_id)
        if old.origin != "generated":
            raise InvalidInput(f"chain {old.id} was imported: certgate renews only the chains "
                               "it generated; import a new certificate for "
                               f"{', '.join(old.dns_names) or 'its names'}")
        successor = await self._db.renewed_by(old.id)
        if successor is not None:
            raise Conflict(f"chain {old.id} was already renewed as {successor}")
        key_type = check_key_type(old.key_type)
        if old.purpose == "tls":
            new = await self._generate("tls", old.dns_names[0], old.dns_names[0], key_type)
        else:
            owner = await self.get_account(old.account_id)
            new = await self._generate("signing", None, f"{owner.name} token signing",
                                       key_type)
        async with self._db.write(self._clock()) as w:
            account = await self._account_in(w, old.account_id)
            # Checked again inside the transaction: another renewer may have won meanwhile.
            if await w.chain(old.id) is None:
                raise NotFound("chain", old.id)
            if (successor := await w.renewed_by(old.id)) is not None:
                raise Conflict(f"chain {old.id} was already renewed as {successor}")
            if old.purpose == "tls" and not set(new.dns_names) <= set(account.domains):
                raise InvalidName("the chain's name is no longer a domain of the account; "
                                  "nothing to renew", names=list(new.dns_names))
            chain = await self._insert_chain(w, old.account_id, new)
            settings = await w.pki(old.account_id)
            for domain, bound in settings.tls_bindings:
                if bound == old.id:
                    await w.set_binding(old.account_id, domain, chain.id)
            if settings.signing_chain_id == old.id:
                await w.set_signing(old.account_id, chain.id)
            if old.purpose == "tls":
                await w.delete_chain(old.id)
            else:
                await w.insert_renewal(old.id, chain.id)
            await w.write_audit(RENEWAL_ACTION, old.account_id, chain.id, "ok",
                                f"old={old.id} new={chain.id} not_after="
                                f"{chain.not_after.isoformat()}")
            await w.change(RENEWAL_ACTION, old.account_id, chain.id, audit=False)
        return chain

    async def due_renewals(self) -> list[Chain]:
        """Generated chains past their renewal point that were not renewed yet."""
        now = self._clock()
        return await self._chains([c.id for c in await self._db.chain_dates()
                                   if lifecycle.renewal_due(c, now, self.lifetimes.renew_fraction)])

    async def expiring(self, within: dt.timedelta,
                       account_ids: Iterable[str] | None = None) -> list[Chain]:
        """Chains (of the given accounts, or all) that expire within ``within`` or have
        expired, soonest first; renewed signing chains kept for verification are left out."""
        now = self._clock()
        wanted = None if account_ids is None else set(account_ids)
        found = [c for c in await self._db.chain_dates()
                 if (wanted is None or c.account_id in wanted) and c.not_after - now < within]
        found.sort(key=lambda c: (c.not_after, c.id))
        return await self._chains([c.id for c in found])

    async def status_counts(self) -> dict[str, int]:
        """How many chains are in each status (renewed signing chains left out)."""
        now = self._clock()
        return await self._db.status_counts(now, now + self.lifetimes.expiring_within)

    async def due_notices(self) -> list[Notice]:
        """Expiry notices not sent yet. A generated chain gets one only once its renewal is
        overdue (renewal normally replaces it first); renewed chains get none."""
        now = self._clock()
        sent = await self._db.notices()
        due: dict[str, Stage] = {}
        for dates in await self._db.chain_dates():
            stage = lifecycle.notice_stage(dates, now, self.lifetimes.expiring_within)
            if stage is None or (dates.id, stage) in sent:
                continue
            if (dates.origin == "generated"
                    and not lifecycle.renewal_due(dates, now, self.lifetimes.renew_fraction)):
                continue
            due[dates.id] = stage
        return [Notice(chain=c, stage=due[c.id]) for c in await self._chains(list(due))]

    async def _chains(self, ids: list[str]) -> list[Chain]:
        """The chains of ``ids`` that still exist (one may be deleted since it was listed),
        in the order of ``ids``."""
        found = {c.id: c for c in await self._db.chains_by_id(ids)}
        return [found[i] for i in ids if i in found]

    async def record_notice(self, notice: Notice, detail: str) -> None:
        """Mark a notice sent (with the stages before it) and audit it."""
        chain = notice.chain
        async with self._db.write(self._clock()) as w:
            if await w.chain(chain.id) is None:
                return  # deleted meanwhile: nothing to warn about any more
            for stage in lifecycle.stages_through(notice.stage):
                await w.insert_notice(chain.id, stage)
            await w.write_audit(NOTICE_ACTION, chain.account_id, chain.id, "ok",
                                f"stage={notice.stage} not_after={chain.not_after.isoformat()}"
                                f" {detail}")

    async def claim_lease(self, name: str, holder: str, ttl: dt.timedelta) -> bool:
        """Hold the lease ``name`` for ``ttl`` unless another holder's lease runs; True when
        ``holder`` has it (work that must run once per fleet runs under it)."""
        now = self._clock()
        async with self._db.write(now) as w:
            return await w.claim_lease(name, holder, now + ttl)
