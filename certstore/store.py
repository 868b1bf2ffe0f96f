"""The certificate store: every operation the CLI and the admin API offer.

This class is the seam between the pure logic (names, chains, tokens, snapshot) and the
database module. CPU-heavy work (key generation, PKCS#12 parsing, signing) runs through
:attr:`offload` (a thread by default, a process pool in the gateway: see
:mod:`certstore.offload`), never on the event loop. Every mutation validates
first, then writes in one transaction that also appends to the change feed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable, Iterable

from cryptography import x509

from certstore.access import AccessStore
from certstore.authority import open_authority, seal_authority
from certstore.ca import CertificateAuthority, Purpose, create_ca, issue_chain
from certstore.chains import NewChain, check_names, prepare_import
from certstore.domains import DomainOps
from certstore.errors import (
    Conflict,
    InvalidInput,
    InvalidName,
    NotFound,
    StoreSetupError,
)
from certstore.keys import KeyType, check_key_type, key_to_der
from certstore.lifecycle import Lifetimes
from certstore.model import (
    Account,
    Chain,
    Change,
    check_account_kind,
    check_account_name,
)
from certstore.names import bound_domains, check_unverified, normalize_domains
from certstore.offload import AuthorityMaterial, generate_job
from certstore.persistence.base import Database, StoreHealth
from certstore.persistence.location import Location, open_database
from certstore.persistence.writer import Writer
from certstore.pki_ops import PkiOps
from certstore.renewal import RenewalOps
from certstore.sealing import Sealer, SealError, record_aad
from certstore.sessions import SessionStore
from certstore.snapshot import AccountEntry, ServedChain, Snapshot
from certstore.trust import TrustStore
from certstore.x509info import describe, to_pem

_KEY_CHECK = b"certgate master key check v1"
_KEY_CHECK_AAD = record_aad("meta", "key_check", "-")
Clock = Callable[[], dt.datetime]




def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id(prefix: str) -> str:
    """A random record id such as ``acc_3f2a...`` (96 bits)."""
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class CertStore(TrustStore, AccessStore, PkiOps, DomainOps, RenewalOps, SessionStore):
    """An open store. Create with :meth:`open` (or :meth:`initialize`), then :meth:`close`."""

    def __init__(self, db: Database, sealer: Sealer, authority: CertificateAuthority, *,
                 clock: Clock, token_issuer: str) -> None:
        super().__init__(db, clock)
        self._sealer = sealer
        self._authority = authority
        self._authority_material = AuthorityMaterial.of(authority)
        self._token_issuer = token_issuer
        # Lifetimes of generated chains and the renewal point: the config's `lifecycle:`
        # section, set by whoever opened the store (the gateway, the CLI).
        self.lifetimes = Lifetimes()

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` after every commit made through this store object (the
        gateway's follower wakes at once for changes made in its own process; other
        processes' changes are found by polling :meth:`last_seq`). Returns an unsubscriber.
        """
        return self._db.on_commit(callback)

    @property
    def database(self) -> Database:
        """The persistence layer (fleet bookkeeping: health, nodes, locks)."""
        return self._db

    @property
    def health(self) -> StoreHealth:
        """Whether the database answers (PostgreSQL outages show here)."""
        return self._db.health

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def initialize(cls, db_path: Location, master_key: bytes, *, clock: Clock = _utcnow,
                         ca_key_type: KeyType = "rsa-3072",
                         token_issuer: str = "certgate") -> tuple[CertStore, bool]:
        """Create the schema, key check and built-in CA if missing; safe to run twice.

        Returns the open store and whether anything was created.
        """
        sealer = Sealer(master_key)
        db = await open_database(db_path, create=True)
        try:
            created = False
            if await db.meta("key_check") is None:
                ca = await asyncio.to_thread(create_ca, now=clock(), key_type=ca_key_type)
                sealed = seal_authority(ca, sealer)
                async with db.write(clock()) as w:
                    if await w.meta("key_check") is None:  # lost a race with another init
                        await w.set_meta("key_check", sealer.seal(_KEY_CHECK, aad=_KEY_CHECK_AAD))
                        await w.put_authority(*sealed)
                        await w.change("ca.created", None, None)
                        created = True
            store = await cls._load(db, sealer, clock, token_issuer)
        except BaseException:
            await db.close()
            raise
        return store, created

    @classmethod
    async def open(cls, db_path: Location, master_key: bytes, *, clock: Clock = _utcnow,
                   token_issuer: str = "certgate") -> CertStore:
        """Open an initialised store; a clear error if it is not, or the key is wrong."""
        sealer = Sealer(master_key)
        db = await open_database(db_path)
        try:
            return await cls._load(db, sealer, clock, token_issuer)
        except BaseException:
            await db.close()
            raise

    @classmethod
    async def _load(cls, db: Database, sealer: Sealer, clock: Clock,
                    token_issuer: str) -> CertStore:
        check = await db.meta("key_check")
        row = await db.authority()
        if check is None or row is None:
            raise StoreSetupError("the store is not initialised; run 'certgate init'")
        try:
            sealer.unseal(check, aad=_KEY_CHECK_AAD)
        except SealError as e:
            raise StoreSetupError("the master key does not match this database: use the key "
                                  "file created with it (see master_key_file in the config)"
                                  ) from e
        authority = open_authority(row, sealer)
        return cls(db, sealer, authority, clock=clock, token_issuer=token_issuer)

    async def close(self) -> None:
        """Close the database."""
        await self._db.close()

    @property
    def ca_root(self) -> x509.Certificate:
        """The built-in root certificate (what terminals are provisioned with)."""
        return self._authority.root

    # -- accounts and domains ----------------------------------------------------------------

    async def create_account(self, *, name: str, kind: str, parent_id: str | None = None,
                             domains: Iterable[str] = ()) -> Account:
        """Create an account with its domains and a generated default signing chain."""
        kind = check_account_kind(kind)
        name = check_account_name(name)
        names = normalize_domains(domains)
        if kind == "vendor" and parent_id is not None:
            raise InvalidInput("a vendor account cannot belong to another account")
        signing = await self._generate("signing", None, f"{name} token signing", "ecdsa-p256")
        account = Account(id=new_id("acc"), name=name, kind=kind, parent_id=parent_id,
                          domains=tuple(names), created_at=self._clock())
        async with self._db.write(self._clock()) as w:
            if parent_id is not None:
                parent = await w.account(parent_id)
                if parent is None or parent.kind != "vendor":
                    raise InvalidInput(f"parent {parent_id!r} is not a vendor account")
            await w.insert_account(account)
            await self._insert_domains(w, account.id, names)
            chain_id = (await self._insert_chain(w, account.id, signing)).id
            await w.set_signing(account.id, chain_id)
            await w.change("account.created", account.id, account.id)
        return account

    async def list_accounts(self, ids: Iterable[str] | None = None) -> list[Account]:
        """All accounts, or those in ``ids``."""
        return await self._db.accounts(ids)

    async def get_account(self, account_id: str) -> Account:
        """One account, or :class:`NotFound`."""
        account = await self._db.account(account_id)
        if account is None:
            raise NotFound("account", account_id)
        return account

    async def customers_of(self, vendor_id: str) -> list[str]:
        """Ids of a vendor's customer accounts."""
        return await self._db.customers_of(vendor_id)

    async def rename_account(self, account_id: str, name: str) -> Account:
        """Change an account's name."""
        name = check_account_name(name)
        async with self._db.write(self._clock()) as w:
            await self._account_in(w, account_id)
            await w.rename_account(account_id, name)
            await w.change("account.updated", account_id, account_id)
        return await self.get_account(account_id)

    async def delete_account(self, account_id: str) -> None:
        """Delete an account with its domains, CAs and chains (a vendor must have no customers)."""
        async with self._db.write(self._clock()) as w:
            await self._account_in(w, account_id)
            if await w.customers_of(account_id):
                raise Conflict("the vendor still has customer accounts; delete or move them "
                               "first")
            await w.delete_account(account_id)
            await w.change("account.deleted", account_id, account_id)

    # -- chains ------------------------------------------------------------------------------

    async def import_chain(self, account_id: str, data: bytes, password: bytes | None, *,
                           bind: bool = False) -> Chain:
        """Import a PKCS#12/PFX chain by the product page's rules.

        ``bind`` also binds every account domain the chain names (``d`` for ``d`` or
        ``*.d``) to it, in the same transaction: the new chain is served at once even if
        another chain for those names expires later (replacing a compromised chain).
        """
        account = await self.get_account(account_id)
        # Pending domains pass the ownership rule here, to be refused by name just below.
        new = await self.offload.run(prepare_import, data=data, password=password,
                                     domains=frozenset(account.domains) | account.pending_names,
                                     now=self._clock())
        async with self._db.write(self._clock()) as w:
            current = await self._account_in(w, account_id)
            check_unverified(new.dns_names, current.pending_names)
            check_names(new.leaf, frozenset(current.domains))  # domains may have changed
            stored = next((c for c in await w.chains(account_id)
                           if c.fingerprint_sha256 == new.leaf.fingerprint_sha256), None)
            if stored is not None and not bind:
                raise Conflict(_already_stored(account_id, stored, current.domains))
            # Importing again with ``bind`` means "serve this one now": the stored chain is
            # bound rather than the import refused (the key is the same either way).
            chain = stored or await self._insert_chain(w, account_id, new)
            if bind:
                for domain in sorted(bound_domains(new.dns_names, current.domains)):
                    await w.set_binding(account_id, domain, chain.id)
            if stored is None:
                await w.change("chain.imported", account_id, chain.id)
            else:
                await w.change("pki.updated", account_id, account_id)
        return chain

    async def generate_chain(self, account_id: str, *, purpose: str, domain: str | None = None,
                             key_type: str = "ecdsa-p256") -> Chain:
        """Generate a chain with the built-in CA.

        ``tls`` needs one of the account's domains; ``signing`` takes no domain and becomes
        the account's signing chain (generating again replaces the default).
        """
        kt = check_key_type(key_type)
        account = await self.get_account(account_id)
        if purpose == "tls":
            if domain is None:
                raise InvalidInput("a TLS chain needs one of the account's domains")
            (name,) = normalize_domains([domain])
            check_unverified([name], account.pending_names)
            if name not in account.domains:
                raise InvalidName(f"{name!r} is not a domain of the account", names=[name])
            new = await self._generate("tls", name, name, kt)
        elif purpose == "signing":
            if domain is not None:
                raise InvalidInput("a signing chain takes no domain")
            new = await self._generate("signing", None, f"{account.name} token signing", kt)
        else:
            raise InvalidInput(f"purpose must be 'tls' or 'signing', got {purpose!r}")
        async with self._db.write(self._clock()) as w:
            current = await self._account_in(w, account_id)
            if new.purpose == "tls" and not set(new.dns_names) <= set(current.domains):
                raise InvalidName("the domain was removed from the account meanwhile",
                                  names=new.dns_names)
            chain = await self._insert_chain(w, account_id, new)
            if new.purpose == "signing":
                await w.set_signing(account_id, chain.id)
            await w.change("chain.generated", account_id, chain.id)
        return chain

    async def list_chains(self, account_id: str) -> list[Chain]:
        """An account's chains (public data only)."""
        await self.get_account(account_id)
        return await self._db.chains(account_id)

    async def get_chain(self, chain_id: str, account_id: str | None = None) -> Chain:
        """One chain; with ``account_id``, only if it belongs to that account."""
        chain = await self._db.chain(chain_id)
        if chain is None or (account_id is not None and chain.account_id != account_id):
            raise NotFound("chain", chain_id)
        return chain

    async def delete_chain(self, chain_id: str, account_id: str | None = None) -> None:
        """Delete a chain; it stops being served, and bindings or signing choice on it go."""
        async with self._db.write(self._clock()) as w:
            chain = await w.chain(chain_id)
            if chain is None or (account_id is not None and chain.account_id != account_id):
                raise NotFound("chain", chain_id)
            await w.delete_chain(chain_id)
            await w.change("chain.deleted", chain.account_id, chain_id)

    # -- feed and snapshot (for the gateway) -------------------------------------------------

    async def last_seq(self) -> int:
        """Sequence number of the latest committed change."""
        return await self._db.last_seq()

    def file_signature(self) -> tuple[int, ...]:
        """Changes whenever any process commits (see ``Database.file_signature``)."""
        return self._db.file_signature()

    async def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """Committed changes after ``seq``."""
        return await self._db.changes_since(seq, limit)

    async def account_entries(self, account_ids: Iterable[str] | None = None
                              ) -> list[AccountEntry]:
        """Snapshot input for the given accounts (all when None); missing ones are absent."""
        return await self._db.snapshot_entries(None if account_ids is None
                                               else list(account_ids))

    async def snapshot(self) -> Snapshot:
        """A full selection snapshot; its ``seq`` is read first, so no change is missed."""
        seq = await self._db.last_seq()
        return Snapshot.build(await self.account_entries(), seq=seq)

    async def served_chain(self, chain_id: str) -> ServedChain:
        """One chain as the gateway serves it (for a configured default chain)."""
        chain = await self.get_chain(chain_id)
        return _served(chain, await self._sealed(chain_id))

    async def ephemeral_chain(self, *, name: str, ip_addresses: tuple[str, ...] = (),
                              key_type: KeyType = "rsa-2048") -> tuple[ServedChain, bytes]:
        """A chain from the built-in CA that is never stored: the gateway's default for
        clients without SNI when the config names none (RSA: old terminals want it).
        Returns the chain and its PKCS#8 DER key.
        """
        issued = await asyncio.to_thread(issue_chain, self._authority, purpose="tls",
                                         common_name=name, dns_name=name, key_type=key_type,
                                         now=self._clock(), ip_addresses=ip_addresses)
        leaf = describe(issued.certificates[0])
        served = ServedChain(chain_id="default", account_id="", names=(name,),
                             not_before_ts=leaf.not_before.timestamp(),
                             not_after_ts=leaf.not_after.timestamp(),
                             chain_pem=to_pem(issued.certificates).encode(), sealed_key=b"",
                             key_type=key_type, fingerprint_sha256=leaf.fingerprint_sha256)
        return served, key_to_der(issued.key)

    def open_key(self, served: ServedChain) -> bytes:
        """The PKCS#8 DER key of a served chain, for building a TLS context in memory."""
        return self._sealer.unseal(served.sealed_key,
                                   aad=record_aad("chain", served.chain_id, served.account_id))

    # -- internals ---------------------------------------------------------------------------

    async def _account_in(self, w: Writer, account_id: str) -> Account:
        account = await w.account(account_id)
        if account is None:
            raise NotFound("account", account_id)
        return account

    async def _sealed(self, chain_id: str) -> bytes:
        sealed = await self._db.sealed_key(chain_id)
        if sealed is None:
            raise NotFound("chain", chain_id)
        return sealed

    async def _generate(self, purpose: Purpose, domain: str | None, common_name: str,
                        key_type: KeyType) -> NewChain:
        return await self.offload.run(generate_job, authority=self._authority_material,
                                      purpose=purpose, domain=domain, common_name=common_name,
                                      key_type=key_type, now=self._clock(),
                                      validity=self.lifetimes.validity(purpose))

    async def _insert_chain(self, w: Writer, account_id: str, new: NewChain) -> Chain:
        """Insert and return the chain (as a read would: no query after the commit)."""
        chain_id = new_id("chn")
        leaf = new.leaf
        chain = Chain(id=chain_id, account_id=account_id, purpose=new.purpose,
                      origin=new.origin, key_type=new.key_type, dns_names=new.dns_names,
                      subject=leaf.subject, issuer=leaf.issuer, serial=leaf.serial,
                      not_before=leaf.not_before, not_after=leaf.not_after,
                      fingerprint_sha256=leaf.fingerprint_sha256, chain_pem=new.chain_pem,
                      created_at=self._clock())
        sealed = self._sealer.seal(new.key_der, aad=record_aad("chain", chain_id, account_id))
        await w.insert_chain(chain, sealed)
        return chain


def _already_stored(account_id: str, chain: Chain, domains: Iterable[str]) -> str:
    """The refusal of a second import of one certificate, with how to serve the stored one."""
    names = sorted(bound_domains(chain.dns_names, tuple(domains))) or ["DOMAIN"]
    return (f"this certificate is already stored as chain {chain.id}; to serve it, bind it: "
            f"`certgate pki bind {account_id} {names[0]} {chain.id}` (API: PUT "
            f"/api/v1/accounts/{account_id}/pki with it in tls_bindings), or run "
            "`certgate chain import --bind` again")


def _served(chain: Chain, sealed: bytes) -> ServedChain:
    return ServedChain(chain_id=chain.id, account_id=chain.account_id, names=chain.dns_names,
                       not_before_ts=chain.not_before.timestamp(),
                       not_after_ts=chain.not_after.timestamp(),
                       chain_pem=chain.chain_pem.encode(), sealed_key=sealed,
                       key_type=chain.key_type, fingerprint_sha256=chain.fingerprint_sha256,
                       created_ts=chain.created_at.timestamp())
