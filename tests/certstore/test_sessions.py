"""Admin page sessions in the store: only a hash is kept, expiry is enforced on read, a
revoked key's sessions stop at once, sign-out deletes the row, every start and end is
audited."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from certstore.errors import InvalidInput
from certstore.sessions import SESSION_PREFIX, hash_session
from certstore.store import CertStore


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


async def test_session_lifecycle(tmp_path: Path, master_key: bytes) -> None:
    clock = Clock()
    path = tmp_path / "certgate.sqlite"
    store, _ = await CertStore.initialize(path, master_key, clock=clock,
                                          ca_key_type="ecdsa-p256")
    try:
        account = await store.create_account(name="A", kind="customer", domains=["a.example"])
        key, _ = await store.create_api_key(role="customer", account_id=account.id)
        secret, expires = await store.start_session(key, ttl_s=3600)
        assert secret.startswith(SESSION_PREFIX) and len(secret) > 40
        assert expires == clock.now + dt.timedelta(hours=1)
        assert await store.session_key(secret) == key
        # The database holds a hash, never the secret.
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT id_hash, key_id FROM admin_sessions").fetchall()
            dump = "\n".join(conn.iterdump())
        assert rows == [(hash_session(secret), key.id)] and secret not in dump
        # Unknown, malformed or foreign-shaped secrets resolve to nothing.
        for other in ("", "cgs_", secret + "x", secret[:-1], "cgk_" + secret[4:],
                      "cgs_" + "a" * 500):
            assert await store.session_key(other) is None
        # Expiry is checked on every read.
        clock.now += dt.timedelta(seconds=3599)
        assert await store.session_key(secret) == key
        clock.now += dt.timedelta(seconds=1)
        assert await store.session_key(secret) is None
        # A new session drops expired rows.
        second, _ = await store.start_session(key, ttl_s=600)
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM admin_sessions").fetchone()[0] == 1
        assert await store.end_session(second, key)
        assert await store.session_key(second) is None
        assert not await store.end_session(second, key)
        # Revoking the key ends its sessions.
        third, _ = await store.start_session(key, ttl_s=600)
        await store.revoke_api_key(key.id)
        assert await store.session_key(third) is None
        actions = [r.action for r in await store.audit_log(account_ids={account.id})]
        assert actions.count("session.started") == 3 and actions.count("session.ended") == 1
    finally:
        await store.close()


@pytest.mark.parametrize("ttl_s", [0, 59, 7 * 24 * 3600 + 1, -5])
async def test_session_lifetimes_out_of_bounds_are_refused(store: CertStore,
                                                           ttl_s: int) -> None:
    key, _ = await store.create_api_key(role="operator")
    with pytest.raises(InvalidInput, match="between 60 and"):
        await store.start_session(key, ttl_s=ttl_s)
