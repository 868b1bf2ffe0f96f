"""Browser sessions of the admin page (mixed into CertStore).

An administrator pastes an API key once; the page exchanges it for a session whose id is a
256-bit random secret held only in an HttpOnly cookie. Like API keys, only the SHA-256 of
the id is stored (a fast hash is right for a high-entropy secret). A session acts with the
key's role and accounts, ends at its expiry or at sign-out, and stops working at once when
its key is revoked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable

from certstore.audit import ApiKey, acting_as
from certstore.errors import InvalidInput
from certstore.persistence.base import Database

SESSION_PREFIX = "cgs_"
MAX_SESSION_TTL_S = 7 * 24 * 3600


def hash_session(secret: str) -> str:
    """The stored form of a session id (domain-separated from API key hashes)."""
    return hashlib.sha256(b"certgate-session:" + secret.encode()).hexdigest()


class SessionStore:
    """Start, resolve and end admin sessions."""

    _db: Database
    _clock: Callable[[], dt.datetime]

    async def start_session(self, key: ApiKey, *, ttl_s: int) -> tuple[str, dt.datetime]:
        """A new session for ``key``: its secret (for the cookie) and when it expires."""
        if not 60 <= ttl_s <= MAX_SESSION_TTL_S:
            raise InvalidInput(f"a session lasts between 60 and {MAX_SESSION_TTL_S} seconds")
        now = self._clock()
        expires = now + dt.timedelta(seconds=ttl_s)
        secret = SESSION_PREFIX + secrets.token_urlsafe(32)
        with acting_as(key.actor):
            async with self._db.write(now) as w:
                await w.insert_session(hash_session(secret), key.id, int(expires.timestamp()))
                await w.write_audit("session.started", key.account_id, key.id, "ok")
        return secret, expires

    async def session_key(self, secret: str) -> ApiKey | None:
        """The key acting through this session, or None (unknown, expired or revoked)."""
        if not secret.startswith(SESSION_PREFIX) or len(secret) > 200:
            return None
        return await self._db.session_key(hash_session(secret),
                                          int(self._clock().timestamp()))

    async def end_session(self, secret: str, key: ApiKey) -> bool:
        """Delete the session (sign-out); False when it was already gone."""
        with acting_as(key.actor):
            async with self._db.write(self._clock()) as w:
                gone = await w.delete_session(hash_session(secret)) > 0
                if gone:
                    await w.write_audit("session.ended", key.account_id, key.id, "ok")
        return gone
