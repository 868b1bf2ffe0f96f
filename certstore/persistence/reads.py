"""Queries of the certgate database, shared by the read connection and write transactions.

Part of the database module: rows become the store's values here, and nothing else in
certstore reads rows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

from certstore.audit import ApiKey, AuditRecord
from certstore.lifecycle import ChainDates
from certstore.model import Account, Chain, Change, PendingDomain, PkiSettings, TrustedCA
from certstore.persistence.conn import Conn, Row
from certstore.snapshot import AccountEntry, ServedChain

CHAIN_COLUMNS = ("id, account_id, purpose, origin, key_type, dns_names, subject, issuer, "
                  "serial, not_before, not_after, fingerprint, chain_pem, created_at")


def ts_text(value: dt.datetime) -> str:
    """A timestamp as stored: ISO 8601 in UTC."""
    return value.astimezone(dt.UTC).isoformat()


def _dt(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _chain(row: Sequence[Any]) -> Chain:
    return Chain(id=row[0], account_id=row[1], purpose=row[2], origin=row[3], key_type=row[4],
                 dns_names=tuple(json.loads(row[5])), subject=row[6], issuer=row[7],
                 serial=row[8], not_before=_dt(row[9]), not_after=_dt(row[10]),
                 fingerprint_sha256=row[11], chain_pem=row[12], created_at=_dt(row[13]))


def _account(row: Sequence[Any]) -> Account:
    domains = json.loads(row[5])  # [[name, status, token], ...]
    verified = sorted(d[0] for d in domains if d[1] == "verified")
    pending = sorted((d[0], d[2] or "") for d in domains if d[1] != "verified")
    return Account(id=row[0], name=row[1], kind=row[2], parent_id=row[3],
                   domains=tuple(verified), created_at=_dt(row[4]),
                   pending=tuple(PendingDomain(name=n, token=t) for n, t in pending))


def _api_key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(id=row[0], role=row[1], account_id=row[2], created_at=_dt(row[3]),
                  revoked_at=_dt(row[4]) if row[4] else None)


def _trusted(row: Sequence[Any]) -> TrustedCA:
    return TrustedCA(id=row[0], account_id=row[1], fingerprint_sha256=row[2], subject=row[3],
                     issuer=row[4], serial=row[5], not_before=_dt(row[6]),
                     not_after=_dt(row[7]), is_ca=bool(row[8]), pem=row[9],
                     created_at=_dt(row[10]))


class Reads:
    """Queries, usable on the read connection or inside a write transaction."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return await self._conn.fetch(sql, args)

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        rows = await self._conn.fetch(sql, args)
        return next(iter(rows), None)

    def _in(self, column: str, values: Iterable[str]) -> tuple[str, list[Any]]:
        return self._conn.dialect.in_list(column, list(values))

    async def accounts(self, ids: Iterable[str] | None = None) -> list[Account]:
        """Accounts with their domains, all or those in ``ids``, ordered by creation."""
        # One statement (one thread hop): the domains come as a JSON array per account.
        sql = (f"SELECT id, name, kind, parent_id, created_at, (SELECT "
               f"{self._conn.dialect.json_domains_agg} FROM domains WHERE domains.account_id "
               "= accounts.id) FROM accounts")
        args: list[Any] = []
        if ids is not None:
            cond, args = self._in("id", ids)
            sql += " WHERE " + cond
        rows = await self._all(sql + " ORDER BY rowid", args)
        return [_account(r) for r in rows]

    async def account(self, account_id: str) -> Account | None:
        """One account, or None."""
        found = await self.accounts([account_id])
        return found[0] if found else None

    async def domain_owner(self, domain: str) -> str | None:
        """The account owning ``domain``."""
        row = await self._one("SELECT account_id FROM domains WHERE name = ?", (domain,))
        return None if row is None else str(row[0])

    async def related_domains(self, name: str) -> list[tuple[str, str, str | None, bool]]:
        """Domains equal to ``name``, above it (its parents) or under it, as (domain,
        owning account, that account's vendor, verified)."""
        labels = name.split(".")
        parents = [".".join(labels[i:]) for i in range(len(labels) - 1)]
        # LDH names hold no LIKE wildcard but '_' could come from an old row: escape both.
        under = "%." + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        cond, args = self._in("d.name", parents)
        rows = await self._all(
            "SELECT d.name, d.account_id, a.parent_id, d.status FROM domains d "
            "JOIN accounts a ON a.id = d.account_id "
            f"WHERE {cond} OR d.name LIKE ? ESCAPE '\\'", [*args, under])
        return [(r[0], r[1], r[2], r[3] == "verified") for r in rows]

    async def pending_domain(self, account_id: str, name: str) -> str | None:
        """The challenge token of a pending domain of the account, or None."""
        row = await self._one("SELECT challenge_token FROM domains WHERE name = ? AND "
                              "account_id = ? AND status = 'pending'", (name, account_id))
        return None if row is None else str(row[0] or "")

    async def pending_domains(self, limit: int = 1000) -> list[tuple[str, str]]:
        """(account id, name) of pending domains, oldest rows first (for a DNS sweep)."""
        rows = await self._all("SELECT account_id, name FROM domains WHERE status = 'pending' "
                               "ORDER BY name LIMIT ?", (limit,))
        return [(r[0], r[1]) for r in rows]

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
        where: list[str] = []
        args: list[Any] = []
        if account_id is not None:
            where.append("account_id = ?")
            args.append(account_id)
        if purpose is not None:
            where.append("purpose = ?")
            args.append(purpose)
        sql = f"SELECT {CHAIN_COLUMNS} FROM chains"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_chain(r) for r in await self._all(sql + " ORDER BY rowid", args)]

    async def chains_by_id(self, ids: Iterable[str]) -> list[Chain]:
        """The chains of ``ids`` that exist, in no particular order (500 per statement)."""
        wanted, out = list(ids), []
        for start in range(0, len(wanted), 500):
            part = wanted[start:start + 500]
            out += [_chain(r) for r in await self._all(
                f"SELECT {CHAIN_COLUMNS} FROM chains WHERE id IN ({','.join('?' * len(part))})",
                part)]
        return out

    async def chain(self, chain_id: str) -> Chain | None:
        """One chain's public data, or None."""
        row = await self._one(f"SELECT {CHAIN_COLUMNS} FROM chains WHERE id = ?", (chain_id,))
        return None if row is None else _chain(row)

    async def sealed_key(self, chain_id: str) -> bytes | None:
        """The sealed private key of a chain (still sealed)."""
        row = await self._one("SELECT sealed_key FROM chains WHERE id = ?", (chain_id,))
        return None if row is None else bytes(row[0])

    async def snapshot_entries(self, account_ids: Iterable[str] | None = None
                               ) -> list[AccountEntry]:
        """The selection snapshot's input for these accounts (all when None; missing ones
        are absent), ordered by account id.

        Start-up reads every tenant through here, so it stays lean: three plain statements
        and no :class:`Account` or :class:`Chain` values (their checks ran when the rows were
        written). Only verified domains count, and only TLS chains, with their sealed keys.
        """
        wanted = None if account_ids is None else list(account_ids)
        args: list[Any] = []
        acc_cond = dom_cond = chain_cond = ""
        if wanted is not None:
            cond, args = self._in("account_id", wanted)
            acc_cond = " WHERE " + self._in("id", wanted)[0]
            dom_cond = chain_cond = " AND " + cond
        ids = sorted(r[0] for r in await self._all("SELECT id FROM accounts" + acc_cond, args))
        domains: dict[str, set[str]] = {}
        for acc, name in await self._all(
                "SELECT account_id, name FROM domains WHERE status = 'verified'" + dom_cond,
                args):
            domains.setdefault(acc, set()).add(name)
        chains: dict[str, list[ServedChain]] = {}
        for r in await self._all(
                "SELECT id, account_id, dns_names, not_before, not_after, chain_pem, "
                "sealed_key, key_type, fingerprint, created_at FROM chains WHERE purpose = "
                f"'tls'{chain_cond} ORDER BY rowid", args):
            chains.setdefault(r[1], []).append(ServedChain(
                chain_id=r[0], account_id=r[1], names=tuple(json.loads(r[2])),
                not_before_ts=_dt(r[3]).timestamp(), not_after_ts=_dt(r[4]).timestamp(),
                chain_pem=r[5].encode(), sealed_key=bytes(r[6]), key_type=r[7],
                fingerprint_sha256=r[8], created_ts=_dt(r[9]).timestamp()))
        bindings: dict[str, dict[str, str]] = {}
        for acc, domain, chain_id in await self.bindings(wanted):
            bindings.setdefault(acc, {})[domain] = chain_id
        return [AccountEntry(account_id=a, domains=frozenset(domains.get(a, ())),
                             bindings=bindings.get(a, {}), chains=tuple(chains.get(a, ())))
                for a in ids]

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
        args: list[Any] = []
        if account_ids is not None:
            cond, args = self._in("account_id", account_ids)
            sql += " WHERE " + cond
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

    async def session_key(self, id_hash: str, now_s: int) -> ApiKey | None:
        """The unrevoked key of the unexpired admin session with this hash."""
        row = await self._one(
            "SELECT k.id, k.role, k.account_id, k.created_at, k.revoked_at FROM admin_sessions s"
            " JOIN api_keys k ON k.id = s.key_id WHERE s.id_hash = ? AND s.expires_at > ?"
            " AND k.revoked_at IS NULL", (id_hash, now_s))
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
            cond, ids = self._in("account_id", account_ids)
            where.append(cond)
            args += ids
        if since is not None:
            where.append("at >= ?")
            args.append(ts_text(since))
        if until is not None:
            where.append("at < ?")
            args.append(ts_text(until))
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        sql = ("SELECT seq, at, key_id, role, account_id, action, target, result, detail, "
               "count FROM audit")
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._all(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit])
        return [AuditRecord(seq=r[0], at=_dt(r[1]), key_id=r[2], role=r[3], account_id=r[4],
                            action=r[5], target=r[6], result=r[7], detail=r[8], count=r[9])
                for r in rows]

    async def chain_dates(self) -> list[ChainDates]:
        """Every chain still in service (renewed ones left out), as the slim rows a
        lifecycle check reads: a whole store at 10,000 tenants is one cheap query."""
        return [ChainDates(id=r[0], account_id=r[1], origin=r[2], not_before=_dt(r[3]),
                           not_after=_dt(r[4]), created_at=_dt(r[5])) for r in await self._all(
            "SELECT id, account_id, origin, not_before, not_after, created_at FROM chains "
            "WHERE id NOT IN (SELECT old_chain_id FROM renewals)")]

    async def status_counts(self, now: dt.datetime, expiring_at: dt.datetime) -> dict[str, int]:
        """Chains in service by status, counted by the database (timestamps are stored as
        UTC ISO 8601 text, so text order is time order)."""
        row = await self._one(
            "SELECT COALESCE(SUM(CASE WHEN not_before > ? THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN not_before <= ? AND not_after < ? THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN not_before <= ? AND not_after >= ? AND not_after < ? "
            "THEN 1 ELSE 0 END), 0), COUNT(*) FROM chains WHERE id NOT IN "
            "(SELECT old_chain_id FROM renewals)",
            [ts_text(now)] * 5 + [ts_text(expiring_at)])
        early, expired, expiring, total = (int(v) for v in (row or (0, 0, 0, 0)))
        return {"valid": total - early - expired - expiring, "expiring": expiring,
                "expired": expired, "not_yet_valid": early}

    async def renewed_ids(self) -> set[str]:
        """Ids of chains that were renewed (their successor serves instead)."""
        return {r[0] for r in await self._all("SELECT old_chain_id FROM renewals")}

    async def renewed_by(self, chain_id: str) -> str | None:
        """The chain that replaced ``chain_id`` at its renewal, if it was renewed."""
        row = await self._one("SELECT new_chain_id FROM renewals WHERE old_chain_id = ?",
                              (chain_id,))
        return None if row is None else str(row[0])

    async def notices(self) -> set[tuple[str, str]]:
        """(chain id, stage) of every expiry notice already sent."""
        return {(r[0], r[1]) for r in await self._all(
            "SELECT chain_id, stage FROM expiry_notices")}

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
