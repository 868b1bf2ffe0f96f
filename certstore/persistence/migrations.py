"""Schema migrations, applied in order; ``PRAGMA user_version`` records the last one."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('vendor', 'customer')),
        parent_id TEXT REFERENCES accounts(id) ON DELETE RESTRICT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE domains (
        name TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE
    );
    CREATE INDEX domains_by_account ON domains(account_id);
    CREATE TABLE trusted_cas (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        fingerprint TEXT NOT NULL,
        subject TEXT NOT NULL, issuer TEXT NOT NULL, serial TEXT NOT NULL,
        not_before TEXT NOT NULL, not_after TEXT NOT NULL,
        is_ca INTEGER NOT NULL, pem TEXT NOT NULL, created_at TEXT NOT NULL,
        UNIQUE (account_id, fingerprint)
    );
    CREATE TABLE chains (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        purpose TEXT NOT NULL CHECK (purpose IN ('tls', 'signing')),
        origin TEXT NOT NULL CHECK (origin IN ('imported', 'generated')),
        key_type TEXT NOT NULL, dns_names TEXT NOT NULL,
        subject TEXT NOT NULL, issuer TEXT NOT NULL, serial TEXT NOT NULL,
        not_before TEXT NOT NULL, not_after TEXT NOT NULL, fingerprint TEXT NOT NULL,
        chain_pem TEXT NOT NULL, sealed_key BLOB NOT NULL, created_at TEXT NOT NULL
    );
    CREATE INDEX chains_by_account ON chains(account_id);
    CREATE TABLE pki_settings (
        account_id TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        signing_chain_id TEXT REFERENCES chains(id) ON DELETE SET NULL
    );
    CREATE TABLE tls_bindings (
        domain TEXT PRIMARY KEY REFERENCES domains(name) ON DELETE CASCADE,
        account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        chain_id TEXT NOT NULL REFERENCES chains(id) ON DELETE CASCADE
    );
    CREATE TABLE authority (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        root_pem TEXT NOT NULL, root_key BLOB NOT NULL,
        issuing_pem TEXT NOT NULL, issuing_key BLOB NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL, kind TEXT NOT NULL, account_id TEXT, entity_id TEXT
    );
    """,
    # 2: admin API keys (hashed) and the audit log
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('operator', 'vendor', 'customer')),
        account_id TEXT REFERENCES accounts(id) ON DELETE CASCADE,
        key_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        key_id TEXT, role TEXT NOT NULL,
        account_id TEXT, action TEXT NOT NULL, target TEXT,
        result TEXT NOT NULL, detail TEXT
    );
    CREATE INDEX audit_by_account ON audit(account_id, seq);
    """,
    # v3: the follower reads an account's bindings on every change, and a vendor's customers
    # are listed per request: both searched, not scanned, at 10,000 accounts.
    """
    CREATE INDEX tls_bindings_by_account ON tls_bindings(account_id);
    CREATE INDEX accounts_by_parent ON accounts(parent_id);
    """,
    # v4 (issue 10): a domain added by a customer key is pending until approved or proven
    # through DNS (status, challenge token); refused requests repeated by one key within a
    # minute share one audit row (count), found by key and time. Portable SQL (PostgreSQL
    # takes it as is): ADD COLUMN with defaults, plain index.
    """
    ALTER TABLE domains ADD COLUMN status TEXT NOT NULL DEFAULT 'verified';
    ALTER TABLE domains ADD COLUMN challenge_token TEXT;
    ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX audit_by_key ON audit(key_id, at);
    """,
)
