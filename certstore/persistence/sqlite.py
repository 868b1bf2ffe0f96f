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
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from certstore.audit import CLI_ACTOR, ApiKey, AuditRecord, current_actor
from certstore.errors import DomainTaken, StoreSetupError
from certstore.model import Account, Chain, Change, PkiSettings, TrustedCA
from certstore.persistence.migrations import MIGRATIONS

_BUSY_TIMEOUT_MS = 10_000
_CHAIN_COLUMNS = ("id, account_id, purpose, origin, key_type, dns_names, subject, issuer, "
                  "serial, not_before, not_after, fingerprint, chain_pem, created_at")


def _ts(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _dt(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _chain(row: Sequence[Any]) -> Chain:
    return Chain(id=row[0], account_id=row[1], purpose=row[2], origin=row[3], key_type=row[4],
                 dns_names=tuple(json.loads(row[5])), subject=row[6], issuer=row[7],
                 serial=row[8], not_before=_dt(row[9]), not_after=_dt(row[10]),
                 fingerprint_sha256=row[11], chain_pem=row[12], created_at=_dt(row[13]))


def _api_key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(id=row[0], role=row[1], account_id=row[2], created_at=_dt(row[3]),
                  revoked_at=_dt(row[4]) if row[4] else None)


def _trusted(row: Sequence[Any]) -> TrustedCA:
    return TrustedCA(id=row[0], account_id=row[1], fingerprint_sha256=row[2], subject=row[3],
                     issuer=row[4], serial=row[5], not_before=_dt(row[6]),
                     not_after=_dt(row[7]), is_ca=bool(row[8]), pem=row[9],
                     created_at=_dt(row[10]))


class _Reads:
    """Queries, usable on the read connection or inside a write transaction."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        async with self._conn.execute(sql, args) as cur:
            return list(await cur.fetchall())

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        async with self._conn.execute(sql, args) as cur:
            return await cur.fetchone()

    async def accounts(self, ids: Iterable[str] | None = None) -> list[Account]:
        """Accounts with their domains, all or those in ``ids``, ordered by creation."""
        sql = "SELECT id, name, kind, parent_id, created_at FROM accounts"
        args: list[str] = []
        if ids is not None:
            args = list(ids)
            sql += f" WHERE id IN ({','.join('?' * len(args))})"
        rows = await self._all(sql + " ORDER BY rowid", args)
        domains: dict[str, list[str]] = {}
        dsql = "SELECT account_id, name FROM domains"
        if ids is not None:
            dsql += f" WHERE account_id IN ({','.join('?' * len(args))})"
        for account_id, name in await self._all(dsql + " ORDER BY name", args):
            domains.setdefault(account_id, []).append(name)
        return [Account(id=r[0], name=r[1], kind=r[2], parent_id=r[3],
                        domains=tuple(domains.get(r[0], ())), created_at=_dt(r[4]))
                for r in rows]

    async def account(self, account_id: str) -> Account | None:
        """One account, or None."""
        found = await self.accounts([account_id])
        return found[0] if found else None

    async def domain_owner(self, domain: str) -> str | None:
        """The account owning ``domain``."""
        row = await self._one("SELECT account_id FROM domains WHERE name = ?", (domain,))
        return None if row is None else str(row[0])

    async def customers_of(self, vendor_id: str) -> list[str]:
        """Ids of the customer accounts belonging to a vendor."""
        rows = await self._all("SELECT id FROM accounts WHERE parent_id = ?", (vendor_id,))
        return [r[0] for r in rows]

    async def trusted_cas(self, account_id: str) -> list[TrustedCA]:
        """An account's trusted CA certificates, oldest first."""
        return [_trusted(r) for r in await self._all(
            "SELECT id, account_id, fingerprint, subject, issuer, serial, not_before, "
            "not_after, is_ca, pem, created_at FROM trusted_cas WHERE account_id = ? "
            "ORDER BY rowid", (account_id,))]

    async def chains(self, account_id: str | None = None, *,
                     purpose: str | None = None) -> list[Chain]:
        """Chains of one account (or all), optionally of one purpose, oldest first."""
        where, args = [], []
        if account_id is not None:
            where.append("account_id = ?")
            args.append(account_id)
        if purpose is not None:
            where.append("purpose = ?")
            args.append(purpose)
        sql = f"SELECT {_CHAIN_COLUMNS} FROM chains"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_chain(r) for r in await self._all(sql + " ORDER BY rowid", args)]

    async def chain(self, chain_id: str) -> Chain | None:
        """One chain's public data, or None."""
        row = await self._one(f"SELECT {_CHAIN_COLUMNS} FROM chains WHERE id = ?", (chain_id,))
        return None if row is None else _chain(row)

    async def sealed_key(self, chain_id: str) -> bytes | None:
        """The sealed private key of a chain (still sealed)."""
        row = await self._one("SELECT sealed_key FROM chains WHERE id = ?", (chain_id,))
        return None if row is None else bytes(row[0])

    async def served_rows(self, account_ids: Iterable[str] | None = None
                          ) -> list[tuple[Chain, bytes]]:
        """TLS chains with their sealed keys, for building the selection snapshot."""
        sql = f"SELECT {_CHAIN_COLUMNS}, sealed_key FROM chains WHERE purpose = 'tls'"
        args: list[str] = []
        if account_ids is not None:
            args = list(account_ids)
            sql += f" AND account_id IN ({','.join('?' * len(args))})"
        return [(_chain(r), bytes(r[14])) for r in await self._all(sql, args)]

    async def pki(self, account_id: str) -> PkiSettings:
        """An account's PKI settings."""
        row = await self._one("SELECT signing_chain_id FROM pki_settings WHERE account_id = ?",
                              (account_id,))
        bindings = await self._all(
            "SELECT domain, chain_id FROM tls_bindings WHERE account_id = ? ORDER BY domain",
            (account_id,))
        return PkiSettings(account_id=account_id, signing_chain_id=row[0] if row else None,
                           tls_bindings=tuple((b[0], b[1]) for b in bindings))

    async def bindings(self, account_ids: Iterable[str] | None = None
                       ) -> list[tuple[str, str, str]]:
        """TLS bindings as (account id, domain, chain id), of some accounts or all."""
        sql = "SELECT account_id, domain, chain_id FROM tls_bindings"
        args: list[str] = []
        if account_ids is not None:
            args = list(account_ids)
            sql += f" WHERE account_id IN ({','.join('?' * len(args))})"
        return [(r[0], r[1], r[2]) for r in await self._all(sql, args)]

    async def authority(self) -> tuple[str, bytes, str, bytes] | None:
        """The built-in CA: root PEM, sealed root key, issuing PEM, sealed issuing key."""
        row = await self._one(
            "SELECT root_pem, root_key, issuing_pem, issuing_key FROM authority WHERE id = 1")
        return None if row is None else (row[0], bytes(row[1]), row[2], bytes(row[3]))

    async def meta(self, key: str) -> bytes | None:
        """A value of the meta table."""
        row = await self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The unrevoked key with this hash."""
        row = await self._one("SELECT id, role, account_id, created_at, revoked_at FROM api_keys"
                              " WHERE key_hash = ? AND revoked_at IS NULL", (key_hash,))
        return None if row is None else _api_key(row)

    async def api_keys(self) -> list[ApiKey]:
        """Every API key (revoked ones too), oldest first."""
        return [_api_key(r) for r in await self._all(
            "SELECT id, role, account_id, created_at, revoked_at FROM api_keys ORDER BY rowid")]

    async def audit_records(self, *, account_ids: Iterable[str] | None = None,
                    since: dt.datetime | None = None, until: dt.datetime | None = None,
                    limit: int = 100, before_seq: int | None = None) -> list[AuditRecord]:
        """Audit records, newest first, filtered by account, time and position."""
        where: list[str] = []
        args: list[object] = []
        if account_ids is not None:
            ids = list(account_ids)
            where.append(f"account_id IN ({','.join('?' * len(ids))})")
            args += ids
        if since is not None:
            where.append("at >= ?")
            args.append(_ts(since))
        if until is not None:
            where.append("at < ?")
            args.append(_ts(until))
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        sql = ("SELECT seq, at, key_id, role, account_id, action, target, result, detail "
               "FROM audit")
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._all(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit])
        return [AuditRecord(seq=r[0], at=_dt(r[1]), key_id=r[2], role=r[3], account_id=r[4],
                            action=r[5], target=r[6], result=r[7], detail=r[8]) for r in rows]

    async def last_seq(self) -> int:
        """The sequence number of the latest change (0 when there is none)."""
        row = await self._one("SELECT COALESCE(MAX(seq), 0) FROM changes")
        return int(row[0]) if row else 0

    async def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """Changes after ``seq``, oldest first."""
        rows = await self._all("SELECT seq, at, kind, account_id, entity_id FROM changes "
                               "WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))
        return [Change(seq=r[0], at=_dt(r[1]), kind=r[2], account_id=r[3], entity_id=r[4])
                for r in rows]


class Writer(_Reads):
    """Mutations, valid only inside :meth:`Database.write`."""

    def __init__(self, conn: aiosqlite.Connection, now: dt.datetime) -> None:
        super().__init__(conn)
        self.now = now

    async def _exec(self, sql: str, args: Sequence[Any] = ()) -> int:
        async with self._conn.execute(sql, args) as cur:
            return cur.rowcount

    async def change(self, kind: str, account_id: str | None, entity_id: str | None) -> None:
        """Append to the change feed and, when someone is acting, to the audit log (same
        transaction as the mutation)."""
        await self._exec("INSERT INTO changes (at, kind, account_id, entity_id) "
                         "VALUES (?, ?, ?, ?)", (_ts(self.now), kind, account_id, entity_id))
        if current_actor() is not None:
            await self.write_audit(kind, account_id, entity_id, "ok")

    async def write_audit(self, action: str, account_id: str | None, target: str | None,
                    result: str, detail: str | None = None) -> None:
        """Write an audit record for the current actor (the CLI when none is set)."""
        actor = current_actor() or CLI_ACTOR
        await self._exec("INSERT INTO audit (at, key_id, role, account_id, action, target, "
                         "result, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (_ts(self.now), actor.key_id, actor.role, account_id, action, target,
                          result, detail))

    async def insert_api_key(self, key: ApiKey, key_hash: str) -> None:
        """Store a new API key by its hash."""
        await self._exec("INSERT INTO api_keys (id, role, account_id, key_hash, created_at) "
                         "VALUES (?, ?, ?, ?, ?)", (key.id, key.role, key.account_id, key_hash,
                                                    _ts(key.created_at)))

    async def revoke_api_key(self, key_id: str) -> int:
        """Revoke a key (it stops authenticating at once)."""
        return await self._exec("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND "
                                "revoked_at IS NULL", (_ts(self.now), key_id))

    async def insert_account(self, account: Account) -> None:
        """Insert an account (its domains with :meth:`insert_domain`)."""
        await self._exec("INSERT INTO accounts (id, name, kind, parent_id, created_at) "
                         "VALUES (?, ?, ?, ?, ?)", (account.id, account.name, account.kind,
                                                    account.parent_id, _ts(account.created_at)))
        await self._exec("INSERT INTO pki_settings (account_id) VALUES (?)", (account.id,))

    async def rename_account(self, account_id: str, name: str) -> None:
        """Change an account's display name."""
        await self._exec("UPDATE accounts SET name = ? WHERE id = ?", (name, account_id))

    async def delete_account(self, account_id: str) -> None:
        """Delete an account and everything it owns."""
        await self._exec("UPDATE pki_settings SET signing_chain_id = NULL WHERE account_id = ?",
                         (account_id,))
        await self._exec("DELETE FROM accounts WHERE id = ?", (account_id,))

    async def insert_domain(self, account_id: str, domain: str) -> None:
        """Give a domain to an account; :class:`DomainTaken` if any account owns it."""
        try:
            await self._exec("INSERT INTO domains (name, account_id) VALUES (?, ?)",
                             (domain, account_id))
        except sqlite3.IntegrityError as e:
            raise DomainTaken(domain) from e

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
             _ts(ca.not_before), _ts(ca.not_after), int(ca.is_ca), ca.pem,
             _ts(ca.created_at))))

    async def delete_trusted_ca(self, account_id: str, ca_id: str) -> int:
        """Remove one trusted CA of an account."""
        return await self._exec("DELETE FROM trusted_cas WHERE id = ? AND account_id = ?",
                                (ca_id, account_id))

    async def insert_chain(self, chain: Chain, sealed_key: bytes) -> None:
        """Store a chain and its sealed key."""
        await self._exec(
            f"INSERT INTO chains ({_CHAIN_COLUMNS}, sealed_key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (chain.id, chain.account_id, chain.purpose, chain.origin, chain.key_type,
             json.dumps(list(chain.dns_names)), chain.subject, chain.issuer, chain.serial,
             _ts(chain.not_before), _ts(chain.not_after), chain.fingerprint_sha256,
             chain.chain_pem, _ts(chain.created_at), sealed_key))

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
                         (root_pem, root_key, issuing_pem, issuing_key, _ts(self.now)))

    async def set_meta(self, key: str, value: bytes) -> None:
        """Set a value of the meta table."""
        await self._exec("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


class Database(_Reads):
    """An open certgate database."""

    def __init__(self, read: aiosqlite.Connection, write: aiosqlite.Connection,
                 path: Path | None = None) -> None:
        super().__init__(read)
        self._write = write
        self._path = path
        self._lock = asyncio.Lock()
        self._on_commit: list[Callable[[], None]] = []

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each committed write transaction."""
        self._on_commit.append(callback)

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
        for callback in self._on_commit:
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
