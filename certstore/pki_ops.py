"""PKI settings (signing chain, TLS bindings) and tokens: operations of CertStore."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509

from certstore import tokens
from certstore.errors import (
    InvalidInput,
    InvalidName,
    NoSigningChain,
    NotFound,
    PreconditionFailed,
)
from certstore.model import Chain, PkiSettings
from certstore.names import normalize_domains
from certstore.offload import Offload, sign_token_job
from certstore.sealing import record_aad

if TYPE_CHECKING:
    from certstore.model import Account
    from certstore.persistence.base import Database
    from certstore.persistence.writer import Writer
    from certstore.sealing import Sealer


class Unset(enum.Enum):
    """Marks an argument that was not given (distinct from an explicit ``None``)."""

    UNSET = enum.auto()


UNSET = Unset.UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedToken:
    """A signed JWT and what signed it."""

    token: str
    expires_at: dt.datetime
    kid: str
    chain_id: str


class PkiOps:
    """The PKI-settings and token operations (mixed into :class:`CertStore`)."""

    _db: Database
    _clock: Callable[[], dt.datetime]
    _sealer: Sealer
    _token_issuer: str
    offload: Offload

    if TYPE_CHECKING:  # provided by CertStore
        async def get_account(self, account_id: str) -> Account: ...
        async def get_chain(self, chain_id: str, account_id: str | None = None) -> Chain: ...
        async def record(self, action: str, account_id: str | None, target: str | None,
                         detail: str | None = None) -> None: ...
        async def _account_in(self, w: Writer, account_id: str) -> Account: ...
        async def _sealed(self, chain_id: str) -> bytes: ...

    async def pki(self, account_id: str) -> PkiSettings:
        """An account's PKI settings."""
        await self.get_account(account_id)
        return await self._db.pki(account_id)

    async def update_pki(self, account_id: str, *,
                         signing_chain_id: str | Unset | None = UNSET,
                         tls_bindings: Mapping[str, str | None] | None = None,
                         replace_bindings: bool = False,
                         expect: Callable[[PkiSettings], bool] | None = None) -> PkiSettings:
        """Choose/clear the signing chain and set/remove TLS bindings, in one transaction.

        ``signing_chain_id``: ``UNSET`` leaves it, ``None`` clears it. ``tls_bindings`` maps a
        domain to a chain id (``None`` removes the binding); ``replace_bindings`` drops every
        binding not named. ``expect``, when given, must accept the settings as they are
        inside the transaction (:class:`PreconditionFailed` otherwise): a writer who read an
        older version does not overwrite a newer one.
        """
        bindings = {normalize_domains([d])[0]: c for d, c in (tls_bindings or {}).items()}
        async with self._db.write(self._clock()) as w:
            account = await self._account_in(w, account_id)
            if expect is not None and not expect(await w.pki(account_id)):
                raise PreconditionFailed("the PKI settings changed since you read them; "
                                         "read them again (GET) and retry with the new ETag")
            chains = {c.id: c for c in await w.chains(account_id)}
            if not isinstance(signing_chain_id, Unset):
                if signing_chain_id is not None and signing_chain_id not in chains:
                    raise NotFound("chain", signing_chain_id)
                await w.set_signing(account_id, signing_chain_id)
            if replace_bindings:
                for domain, _ in (await w.pki(account_id)).tls_bindings:
                    bindings.setdefault(domain, None)
            for domain, chain_id in bindings.items():
                if domain not in account.domains:
                    raise InvalidName(f"{domain!r} is not a domain of the account",
                                      names=[domain])
                if chain_id is not None:
                    _check_binding(domain, chains.get(chain_id), chain_id)
                await w.set_binding(account_id, domain, chain_id)
            await w.change("pki.updated", account_id, account_id)
        return await self._db.pki(account_id)

    async def issue_token(self, account_id: str, *, subject: str,
                          audience: str | None = None,
                          ttl_s: int = tokens.DEFAULT_TTL_S) -> IssuedToken:
        """Sign a JWT with the account's chosen signing chain (:class:`NoSigningChain` if none)."""
        settings = await self.pki(account_id)
        if settings.signing_chain_id is None:
            raise NoSigningChain(account_id)
        chain = await self.get_chain(settings.signing_chain_id)
        key_der = self._sealer.unseal(await self._sealed(chain.id),
                                      aad=record_aad("chain", chain.id, account_id))
        token, expires, kid = await self.offload.run(
            sign_token_job, key_der=key_der, chain_pem=chain.chain_pem.encode(),
            issuer=self._token_issuer, account_id=account_id, subject=subject,
            audience=audience, ttl_s=ttl_s, now=self._clock())
        # The audit names the subject and key, never the token itself.
        await self.record("token.issued", account_id, chain.id,
                          f"sub={subject} aud={audience or '-'} kid={kid} ttl_s={ttl_s}")
        return IssuedToken(token=token, expires_at=expires, kid=kid, chain_id=chain.id)

    async def jwks(self, account_id: str) -> dict[str, list[dict[str, Any]]]:
        """The keys that verify the account's tokens: the chosen chain, then other valid
        signing chains (so tokens signed before a rotation keep verifying until they expire).
        """
        settings = await self.pki(account_id)
        now = self._clock()
        chosen = [settings.signing_chain_id] if settings.signing_chain_id else []
        others = [c.id for c in await self._db.chains(account_id, purpose="signing")
                  if c.valid_at(now) and c.id not in chosen]
        keys = []
        for chain_id in [*chosen, *others]:
            chain = await self.get_chain(chain_id)
            keys.append(tokens.jwk(x509.load_pem_x509_certificates(chain.chain_pem.encode())))
        return {"keys": keys}


def _check_binding(domain: str, chain: Chain | None, chain_id: str) -> None:
    if chain is None:
        raise NotFound("chain", chain_id)
    if chain.purpose != "tls" or not ({domain, "*." + domain} & set(chain.dns_names)):
        raise InvalidInput(f"chain {chain_id} is not a TLS chain for {domain!r} (its names: "
                           f"{', '.join(chain.dns_names) or 'none'})")
