"""SQLite persistence through aiosqlite: the only module of certstore that touches the database.

Two connections: one for writes, whose transactions (``BEGIN IMMEDIATE``) are serialised by a
lock, and one for reads, which in WAL mode sees only committed data and never waits for a
writer. Every mutation appends to ``changes`` inside its own transaction, so the change feed
can never disagree with the data (a failed operation leaves both as they were).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from certstore.audit import CLI_ACTOR, ApiKey, current_actor
from certstore.errors import DomainTaken, StoreSetupError
from certstore.model import Account, Chain, TrustedCA
from certstore.persistence.migrations import MIGRATIONS
from certstore.persistence.reads import CHAIN_COLUMNS, Reads, ts_text
from certstore.text import escaped

_BUSY_TIMEOUT_MS = 10_000
# Audit text is escaped and bounded here, whoever wrote it: a request path or a name from
# a certificate must not carry terminal escapes into whatever later shows the log.
MAX_AUDIT_TARGET = 256
MAX_AUDIT_DETAIL = 1000
RATE_LIMITED = "audit.rate_limited"


class Writer(Reads):
    """Mutations, valid only inside :meth:`Database.write`."""

    def __init__(self, conn: aiosqlite.Connection, now: dt.datetime) -> None:
        super().__init__(conn)
        self.now = now

    async def _exec(self, sql: str, args: Sequence[Any] = ()) -> int:
        # One thread hop: the cursor is freed when its last reference goes (CPython
        # refcounting) instead of by a second hop to close it.
        cursor = await self._conn.execute(sql, args)
        return cursor.rowcount

    async def change(self, kind: str, account_id: str | None, entity_id: str | None,
                     detail: str | None = None) -> None:
        """Append to the change feed and, when someone is acting, to the audit log (same
        transaction as the mutation)."""
        await self._exec("INSERT INTO changes (at, kind, account_id, entity_id) "
                         "VALUES (?, ?, ?, ?)", (ts_text(self.now), kind, account_id, entity_id))
        if current_actor() is not None:
            await self.write_audit(kind, account_id, entity_id, "ok", detail)

    async def write_audit(self, action: str, account_id: str | None, target: str | None,
                    result: str, detail: str | None = None) -> None:
        """Write an audit record for the current actor (the CLI when none is set)."""
        actor = current_actor() or CLI_ACTOR
        await self._exec("INSERT INTO audit (at, key_id, role, account_id, action, target, "
                         "result, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (ts_text(self.now), actor.key_id, actor.role, account_id, action,
                          None if target is None else escaped(target, MAX_AUDIT_TARGET),
                          result, None if detail is None else escaped(detail, MAX_AUDIT_DETAIL)))

    async def write_refusal(self, action: str, account_id: str | None, target: str | None,
                            reason: str, *, per_minute: int) -> None:
        """Audit a refused attempt, at most ``per_minute`` rows per key and minute: past
        that, one ``audit.rate_limited`` row of the key's own account counts the rest."""
        actor = current_actor() or CLI_ACTOR
        if actor.key_id is None:
            await self.write_audit(action, account_id, target, "refused", reason)
            return
        minute = ts_text(self.now.replace(second=0, microsecond=0))
        row = await self._one("SELECT COUNT(*) FROM audit WHERE key_id = ? AND at >= ? AND "
                              "result = 'refused'", (actor.key_id, minute))
        if row is None or int(row[0]) < per_minute:
            await self.write_audit(action, account_id, target, "refused", reason)
            return
        summary = await self._one("SELECT seq FROM audit WHERE key_id = ? AND at >= ? AND "
                                  "action = ? ORDER BY seq DESC LIMIT 1",
                                  (actor.key_id, minute, RATE_LIMITED))
        if summary is not None:
            await self._exec("UPDATE audit SET count = count + 1 WHERE seq = ?", (summary[0],))
            return
        await self.write_audit(RATE_LIMITED, actor.account_id, None, "suppressed",
                               f"more than {per_minute} refused requests by this key in the "
                               f"minute from {minute}; count = refusals not recorded one by "
                               "one")

    async def insert_api_key(self, key: ApiKey, key_hash: str) -> None:
        """Store a new API key by its hash."""
        await self._exec("INSERT INTO api_keys (id, role, account_id, key_hash, created_at) "
                         "VALUES (?, ?, ?, ?, ?)", (key.id, key.role, key.account_id, key_hash,
                                                    ts_text(key.created_at)))

    async def revoke_api_key(self, key_id: str) -> int:
        """Revoke a key (it stops authenticating at once)."""
        return await self._exec("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND "
                                "revoked_at IS NULL", (ts_text(self.now), key_id))

    async def insert_account(self, account: Account) -> None:
        """Insert an account (its domains with :meth:`insert_domain`)."""
        await self._exec("INSERT INTO accounts (id, name, kind, parent_id, created_at) "
                         "VALUES (?, ?, ?, ?, ?)", (account.id, account.name, account.kind,
                                                    account.parent_id, ts_text(account.created_at)))
        await self._exec("INSERT INTO pki_settings (account_id) VALUES (?)", (account.id,))

    async def rename_account(self, account_id: str, name: str) -> None:
        """Change an account's display name."""
        await self._exec("UPDATE accounts SET name = ? WHERE id = ?", (name, account_id))

    async def delete_account(self, account_id: str) -> None:
        """Delete an account and everything it owns."""
        await self._exec("UPDATE pki_settings SET signing_chain_id = NULL WHERE account_id = ?",
                         (account_id,))
        await self._exec("DELETE FROM accounts WHERE id = ?", (account_id,))

    async def insert_domain(self, account_id: str, domain: str,
                            challenge_token: str | None = None) -> None:
        """Give a domain to an account, pending when it has a ``challenge_token``;
        :class:`DomainTaken` if any account owns it."""
        try:
            await self._exec("INSERT INTO domains (name, account_id, status, challenge_token) "
                             "VALUES (?, ?, ?, ?)",
                             (domain, account_id,
                              "verified" if challenge_token is None else "pending",
                              challenge_token))
        except sqlite3.IntegrityError as e:
            raise DomainTaken(domain) from e

    async def verify_domain(self, account_id: str, domain: str) -> int:
        """Mark a pending domain verified; returns the number of rows changed (0 or 1)."""
        return await self._exec("UPDATE domains SET status = 'verified', challenge_token = NULL "
                                "WHERE name = ? AND account_id = ? AND status = 'pending'",
                                (domain, account_id))

    async def delete_domain(self, account_id: str, domain: str) -> int:
        """Remove a domain from an account; returns the number of rows removed."""
        return await self._exec("DELETE FROM domains WHERE name = ? AND account_id = ?",
                                (domain, account_id))

    async def insert_trusted_ca(self, ca: TrustedCA) -> bool:
        """Store a trusted CA; False when the account already has this certificate."""
        return bool(await self._exec(
            "INSERT OR IGNORE INTO trusted_cas (id, account_id, fingerprint, subject, issuer, "
            "serial, not_before, not_after, is_ca, pem, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ca.id, ca.account_id, ca.fingerprint_sha256, ca.subject, ca.issuer, ca.serial,
             ts_text(ca.not_before), ts_text(ca.not_after), int(ca.is_ca), ca.pem,
             ts_text(ca.created_at))))

    async def delete_trusted_ca(self, account_id: str, ca_id: str) -> int:
        """Remove one trusted CA of an account."""
        return await self._exec("DELETE FROM trusted_cas WHERE id = ? AND account_id = ?",
                                (ca_id, account_id))

    async def insert_chain(self, chain: Chain, sealed_key: bytes) -> None:
        """Store a chain and its sealed key."""
        await self._exec(
            f"INSERT INTO chains ({CHAIN_COLUMNS}, sealed_key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (chain.id, chain.account_id, chain.purpose, chain.origin, chain.key_type,
             json.dumps(list(chain.dns_names)), chain.subject, chain.issuer, chain.serial,
             ts_text(chain.not_before), ts_text(chain.not_after), chain.fingerprint_sha256,
             chain.chain_pem, ts_text(chain.created_at), sealed_key))

    async def delete_chain(self, chain_id: str) -> int:
        """Delete a chain (bindings and signing choice pointing at it go with it)."""
        return await self._exec("DELETE FROM chains WHERE id = ?", (chain_id,))

    async def set_signing(self, account_id: str, chain_id: str | None) -> None:
        """Choose (or clear) the account's signing chain."""
        await self._exec("UPDATE pki_settings SET signing_chain_id = ? WHERE account_id = ?",
                         (chain_id, account_id))

    async def set_binding(self, account_id: str, domain: str, chain_id: str | None) -> None:
        """Bind a domain to a chain explicitly, or remove the binding (None)."""
        await self._exec("DELETE FROM tls_bindings WHERE domain = ?", (domain,))
        if chain_id is not None:
            await self._exec("INSERT INTO tls_bindings (domain, account_id, chain_id) "
                             "VALUES (?, ?, ?)", (domain, account_id, chain_id))

    async def put_authority(self, root_pem: str, root_key: bytes, issuing_pem: str,
                            issuing_key: bytes) -> None:
        """Store the built-in CA (once)."""
        await self._exec("INSERT INTO authority (id, root_pem, root_key, issuing_pem, "
                         "issuing_key, created_at) VALUES (1, ?, ?, ?, ?, ?)",
                         (root_pem, root_key, issuing_pem, issuing_key, ts_text(self.now)))

    async def set_meta(self, key: str, value: bytes) -> None:
        """Set a value of the meta table."""
        await self._exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


class Database(Reads):
    """An open certgate database."""

    def __init__(self, read: aiosqlite.Connection, write: aiosqlite.Connection,
                 path: Path | None = None) -> None:
        super().__init__(read)
        self._write = write
        self._path = path
        self._lock = asyncio.Lock()
        self._on_commit: list[Callable[[], None]] = []

    def on_commit(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` after each committed write transaction; returns an
        unsubscriber."""
        self._on_commit.append(callback)
        return lambda: self._on_commit.remove(callback)

    @classmethod
    async def open(cls, path: Path, *, create: bool = False) -> Database:
        """Open (and migrate) the database; it must exist unless ``create``."""
        if not create and not path.exists():
            raise StoreSetupError(f"no certgate database at {path}; run 'certgate init' first")
        if create and not path.exists():
            # Created 0600 up front: SQLite gives its -wal/-shm files the database's mode.
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            write = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreSetupError(f"cannot open the database {path}: {e}") from e
        try:
            await _configure(write)
            await _migrate(write, path)
            read = await aiosqlite.connect(path, isolation_level=None)
            await _configure(read)
        except BaseException:
            await write.close()
            raise
        return cls(read, write, path)

    def file_signature(self) -> tuple[int, ...]:
        """Size and mtime of the database and its WAL: changes whenever any process commits.

        A ``stat`` costs a few microseconds on the event loop; a query costs a thread hop.
        Followers check this first and only query the feed when it changed.
        """
        out: list[int] = []
        if self._path is not None:
            for path in (self._path, self._path.with_name(self._path.name + "-wal")):
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    out += [0, 0]
                else:
                    out += [st.st_size, st.st_mtime_ns]
        return tuple(out)

    async def close(self) -> None:
        """Close both connections."""
        await self._conn.close()
        await self._write.close()

    @asynccontextmanager
    async def write(self, now: dt.datetime) -> AsyncIterator[Writer]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self._lock:
            await self._write.execute("BEGIN IMMEDIATE")
            try:
                yield Writer(self._write, now)
            except BaseException:
                await self._write.execute("ROLLBACK")
                raise
            await self._write.execute("COMMIT")
        for callback in list(self._on_commit):
            callback()


async def _configure(conn: aiosqlite.Connection) -> None:
    await conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    await conn.execute("PRAGMA foreign_keys = ON")
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = NORMAL")


async def _migrate(conn: aiosqlite.Connection, path: Path) -> None:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        raise StoreSetupError(f"the database {path} has schema version {version}, newer than "
                              f"this certgate ({len(MIGRATIONS)}); upgrade certgate")
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript commits implicitly, so the version bump goes inside the script.
        await conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};"
                                 "\nCOMMIT;")
