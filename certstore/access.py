"""Admin API keys, tenant visibility, and the audit log (mixed into CertStore).

Keys are 256-bit random secrets shown once; only their SHA-256 is stored (a fast hash is
right for high-entropy secrets: nothing to brute-force). Visibility is the one rule every
admin route applies: an operator sees every account, a vendor its own and its customers',
a customer its own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Callable

from certstore.audit import ROLES, ApiKey, AuditRecord, current_actor
from certstore.errors import InvalidInput, NotFound
from certstore.persistence.base import Database

KEY_PREFIX = "cgk_"
MAX_AUDIT_PAGE = 1000
# Refused attempts one key gets recorded one by one per minute; the rest are counted in one
# row. A key probing other tenants' ids cannot flood the log (or the disk) with rows.
REFUSALS_PER_MINUTE = 20


def hash_key(secret: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(secret.encode()).hexdigest()


class AccessStore:
    """API keys, visibility and audit operations."""

    _db: Database
    _clock: Callable[[], dt.datetime]

    async def create_api_key(self, *, role: str,
                             account_id: str | None = None) -> tuple[ApiKey, str]:
        """A new key and its secret (shown to the caller once, stored hashed)."""
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if (role == "operator") != (account_id is None):
            raise InvalidInput("an operator key has no account; vendor and customer keys "
                               "need --account")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(id=f"key_{uuid.uuid4().hex[:24]}", role=role,  # type: ignore[arg-type]
                     account_id=account_id, created_at=self._clock(), revoked_at=None)
        async with self._db.write(self._clock()) as w:
            if account_id is not None:
                account = await w.account(account_id)
                if account is None:
                    raise NotFound("account", account_id)
                if account.kind != role:
                    raise InvalidInput(f"account {account_id} is a {account.kind} account; "
                                       f"a {role} key needs a {role} account")
            await w.insert_api_key(key, hash_key(secret))
            await w.write_audit("apikey.created", account_id, key.id, "ok")
        return key, secret

    async def authenticate(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        return await self._db.api_key_by_hash(hash_key(secret))

    async def list_api_keys(self) -> list[ApiKey]:
        """Every key's record (never a secret)."""
        return await self._db.api_keys()

    async def revoke_api_key(self, key_id: str) -> None:
        """Revoke a key."""
        async with self._db.write(self._clock()) as w:
            if not await w.revoke_api_key(key_id):
                raise NotFound("API key", key_id)
            await w.write_audit("apikey.revoked", None, key_id, "ok")

    async def visible_accounts(self, key: ApiKey) -> set[str] | None:
        """Accounts ``key`` may act on; None means every account (operator)."""
        if key.role == "operator":
            return None
        assert key.account_id is not None
        if key.role == "vendor":
            return {key.account_id, *await self._db.customers_of(key.account_id)}
        return {key.account_id}

    async def record_failure(self, action: str, account_id: str | None, target: str | None,
                             reason: str) -> None:
        """Audit a refused or failed attempt (its own transaction: the attempt rolled back),
        rate-limited per key and minute (:data:`REFUSALS_PER_MINUTE`)."""
        async with self._db.write(self._clock()) as w:
            await w.write_refusal(action, account_id, target, reason,
                                  per_minute=REFUSALS_PER_MINUTE)

    async def record(self, action: str, account_id: str | None, target: str | None,
                     detail: str | None = None) -> None:
        """Audit an action that changes nothing in the store (a token issued)."""
        if current_actor() is None:
            return
        async with self._db.write(self._clock()) as w:
            await w.write_audit(action, account_id, target, "ok", detail)

    async def audit_log(self, *, account_ids: set[str] | None = None,
                        since: dt.datetime | None = None, until: dt.datetime | None = None,
                        limit: int = 100, before_seq: int | None = None) -> list[AuditRecord]:
        """Audit records, newest first."""
        if not 1 <= limit <= MAX_AUDIT_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_AUDIT_PAGE}")
        return await self._db.audit_records(account_ids=account_ids, since=since, until=until,
                                            limit=limit, before_seq=before_seq)
