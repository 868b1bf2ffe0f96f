"""Mutations, shared by both backends: valid only inside ``Database.write``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from certstore.audit import CLI_ACTOR, ApiKey, current_actor
from certstore.errors import DomainTaken
from certstore.model import Account, Chain, TrustedCA
from certstore.persistence.conn import Conn, IntegrityViolation
from certstore.persistence.reads import CHAIN_COLUMNS, Reads, ts_text
from certstore.text import escaped

# Audit text is escaped and bounded here, whoever wrote it: a request path or a name from
# a certificate must not carry terminal escapes into whatever later shows the log.
MAX_AUDIT_TARGET = 256
MAX_AUDIT_DETAIL = 1000
RATE_LIMITED = "audit.rate_limited"


class Writer(Reads):
    """Mutations, valid only inside :meth:`Database.write`."""

    def __init__(self, conn: Conn, now: dt.datetime) -> None:
        super().__init__(conn)
        self.now = now
        self.changes: list[int] = []
        """Sequence numbers of the changes this transaction appended."""

    async def _exec(self, sql: str, args: Sequence[Any] = ()) -> int:
        return await self._conn.execute(sql, args)

    async def change(self, kind: str, account_id: str | None, entity_id: str | None,
                     detail: str | None = None, *, audit: bool = True) -> None:
        """Append to the change feed and, when someone is acting, to the audit log (same
        transaction as the mutation); ``audit=False`` when the caller wrote a richer one."""
        rows = await self._conn.fetch(
            "INSERT INTO changes (at, kind, account_id, entity_id) VALUES (?, ?, ?, ?) "
            "RETURNING seq", (ts_text(self.now), kind, account_id, entity_id))
        seq = int(rows[0][0])
        self.changes.append(seq)
        # PostgreSQL delivers the NOTIFY at commit, and drops it on rollback: the fleet
        # hears of exactly the committed changes.
        await self._conn.notify(seq)
        if audit and current_actor() is not None:
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

    async def insert_session(self, id_hash: str, key_id: str, expires_s: int) -> None:
        """Record an admin session (its id hashed); drops sessions that have expired."""
        now_s = int(self.now.timestamp())
        await self._exec("DELETE FROM admin_sessions WHERE expires_at <= ?", (now_s,))
        await self._exec("INSERT INTO admin_sessions (id_hash, key_id, created_at, expires_at)"
                         " VALUES (?, ?, ?, ?)", (id_hash, key_id, ts_text(self.now), expires_s))

    async def delete_session(self, id_hash: str) -> int:
        """End an admin session."""
        return await self._exec("DELETE FROM admin_sessions WHERE id_hash = ?", (id_hash,))

    async def insert_renewal(self, old_chain_id: str, new_chain_id: str) -> None:
        """Record that ``new_chain_id`` replaced ``old_chain_id`` (a kept signing chain)."""
        await self._exec("INSERT INTO renewals (old_chain_id, new_chain_id, renewed_at) "
                         "VALUES (?, ?, ?)", (old_chain_id, new_chain_id, ts_text(self.now)))

    async def insert_notice(self, chain_id: str, stage: str) -> None:
        """Record an expiry notice (a stage already recorded stays as it was)."""
        await self._exec("INSERT INTO expiry_notices (chain_id, stage, sent_at) VALUES "
                         "(?, ?, ?) ON CONFLICT (chain_id, stage) DO NOTHING",
                         (chain_id, stage, ts_text(self.now)))

    async def claim_lease(self, name: str, holder: str, until: dt.datetime) -> bool:
        """Take or extend the lease ``name`` for ``holder`` unless another holder's lease
        is still running; True when ``holder`` has it. Atomic: one statement in the write
        transaction (write transactions are serialised on both backends)."""
        await self._exec(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
            "expires_at = excluded.expires_at "
            "WHERE leases.holder = excluded.holder OR leases.expires_at < ?",
            (name, holder, ts_text(until), ts_text(self.now)))
        row = await self._one("SELECT holder FROM leases WHERE name = ?", (name,))
        return row is not None and row[0] == holder

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
        except IntegrityViolation as e:
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
            "INSERT INTO trusted_cas (id, account_id, fingerprint, subject, issuer, "
            "serial, not_before, not_after, is_ca, pem, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
        await self._exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO "
                         "UPDATE SET value = excluded.value", (key, value))

    async def insert_rows(self, table: str, columns: Sequence[str],
                          rows: Sequence[Sequence[Any]]) -> None:
        """Insert raw rows (``store copy``: ids and sequence numbers kept as they are)."""
        sql = (f"INSERT INTO {table} ({', '.join(columns)}) "
               f"VALUES ({', '.join('?' * len(columns))})")
        for row in rows:
            await self._exec(sql, row)

    async def execute_raw(self, sql: str) -> None:
        """A backend-specific maintenance statement (no arguments)."""
        await self._conn.fetch(sql)
