"""Trusted CA certificates per account: import, bundle, and a client ``SSLContext``.

An account's trusted CAs are what certgate trusts when it connects *out* on the account's
behalf (LDAPS and similar): the context trusts exactly those certificates, not the system
store, so a tenant's directory server is verified against the tenant's own PKI.
"""

from __future__ import annotations

import datetime as dt
import ssl
import uuid
from collections.abc import Callable

from certstore.errors import InvalidCertificate, NotFound
from certstore.model import TrustedCA
from certstore.offload import Offload, ThreadOffload, read_certificates_job
from certstore.persistence.base import Database

MAX_TRUSTED_CA_BYTES = 1024 * 1024
MAX_CERTIFICATES_PER_IMPORT = 500


class TrustStore:
    """The trusted-CA operations of the store (mixed into :class:`certstore.store.CertStore`)."""

    def __init__(self, db: Database, clock: Callable[[], dt.datetime]) -> None:
        self._db = db
        self._clock = clock
        self.offload: Offload = ThreadOffload()
        """Where CPU-heavy work runs (the gateway sets a process pool)."""

    async def import_trusted_cas(self, account_id: str, data: bytes) -> list[TrustedCA]:
        """Import PEM (one or many certificates) or DER; returns the account's records for
        them (a certificate already trusted by the account is stored once).
        """
        if await self._db.account(account_id) is None:
            raise NotFound("account", account_id)
        if len(data) > MAX_TRUSTED_CA_BYTES:
            raise InvalidCertificate(f"the file is {len(data)} bytes; the limit is "
                                     f"{MAX_TRUSTED_CA_BYTES}", rule="too-large")
        certs = await self.offload.run(read_certificates_job, data=data,
                                       limit=MAX_CERTIFICATES_PER_IMPORT)
        now = self._clock()
        records = []
        for cert in certs:
            info = cert.info
            records.append(TrustedCA(
                id=f"tca_{uuid.uuid4().hex[:24]}", account_id=account_id, subject=info.subject,
                issuer=info.issuer, serial=info.serial, not_before=info.not_before,
                not_after=info.not_after, fingerprint_sha256=info.fingerprint_sha256,
                is_ca=info.is_ca, pem=cert.pem, created_at=now))
        async with self._db.write(now) as w:
            if await w.account(account_id) is None:
                raise NotFound("account", account_id)
            inserted = [r.id for r in records if await w.insert_trusted_ca(r)]
            for ca_id in inserted:
                await w.change("trusted_ca.imported", account_id, ca_id)
        stored = {r.fingerprint_sha256: r for r in await self._db.trusted_cas(account_id)}
        return list({r.fingerprint_sha256: stored[r.fingerprint_sha256] for r in records}.values())

    async def list_trusted_cas(self, account_id: str) -> list[TrustedCA]:
        """An account's trusted CAs."""
        if await self._db.account(account_id) is None:
            raise NotFound("account", account_id)
        return await self._db.trusted_cas(account_id)

    async def delete_trusted_ca(self, account_id: str, ca_id: str) -> None:
        """Stop trusting one CA."""
        async with self._db.write(self._clock()) as w:
            if not await w.delete_trusted_ca(account_id, ca_id):
                raise NotFound("trusted CA", ca_id)
            await w.change("trusted_ca.deleted", account_id, ca_id)

    async def trust_bundle(self, account_id: str) -> str:
        """The account's trusted CAs as one PEM bundle (empty when there are none)."""
        return "".join(ca.pem for ca in await self.list_trusted_cas(account_id))

    async def client_context(self, account_id: str) -> ssl.SSLContext:
        """A client context that verifies peers against exactly the account's CAs."""
        bundle = await self.trust_bundle(account_id)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies + checks hostnames
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if bundle:
            ctx.load_verify_locations(cadata=bundle)
        return ctx
