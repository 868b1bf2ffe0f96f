"""Persistence: schema, file modes, transactions, the change feed, keys at rest."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from certstore.errors import StoreSetupError
from certstore.persistence.keyfile import create_master_key, read_master_key
from certstore.persistence.migrations import MIGRATIONS
from certstore.sealing import Sealer
from certstore.store import CertStore
from tests.certfactory import Issued, make_leaf, p12


def _db(store_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(store_dir / "certgate.sqlite")


@pytest.fixture
async def store(tmp_path: Path, master_key: bytes, no_blocking: None
                ) -> AsyncIterator[CertStore]:
    """These tests look into the SQLite file itself: SQLite only (the package's ``store``
    runs on both backends)."""
    opened, _ = await CertStore.initialize(tmp_path / "certgate.sqlite", master_key,
                                           ca_key_type="ecdsa-p256")
    try:
        yield opened
    finally:
        await opened.close()


async def test_schema_version_wal_and_private_file_modes(store: CertStore,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "certgate.sqlite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with _db(tmp_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_initialize_twice_is_safe(tmp_path: Path, master_key: bytes) -> None:
    first, created = await CertStore.initialize(tmp_path / "db", master_key,
                                                ca_key_type="ecdsa-p256")
    root = first.ca_root
    await first.close()
    second, created_again = await CertStore.initialize(tmp_path / "db", master_key,
                                                       ca_key_type="ecdsa-p256")
    assert created and not created_again and second.ca_root == root
    await second.close()


async def test_open_errors_are_clear(tmp_path: Path, master_key: bytes) -> None:
    with pytest.raises(StoreSetupError, match="certgate init"):
        await CertStore.open(tmp_path / "missing.sqlite", master_key)
    store, _ = await CertStore.initialize(tmp_path / "db", master_key, ca_key_type="ecdsa-p256")
    await store.close()
    with pytest.raises(StoreSetupError, match="master key does not match"):
        await CertStore.open(tmp_path / "db", Sealer.new_master_key())
    with sqlite3.connect(tmp_path / "db") as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreSetupError, match="newer than this certgate"):
        await CertStore.open(tmp_path / "db", master_key)


def test_master_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    assert create_master_key(path) and not create_master_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = read_master_key(path)
    assert len(key) == 32 and create_master_key(path) is False and read_master_key(path) == key
    path.chmod(0o644)
    with pytest.raises(StoreSetupError, match="chmod 600"):
        read_master_key(path)
    path.chmod(0o600)
    path.write_text("not base64 !!\n")
    with pytest.raises(StoreSetupError, match="base64"):
        read_master_key(path)
    with pytest.raises(StoreSetupError, match="missing"):
        read_master_key(tmp_path / "nope.key")


async def test_database_copied_without_master_key_gives_no_key_away(
        store: CertStore, tmp_path: Path, intermediate_ca: Issued) -> None:
    acc = await store.create_account(name="A", kind="customer", domains=["a.com"])
    leaf = make_leaf(intermediate_ca, dns=["a.com"])
    await store.import_chain(acc.id, p12(leaf, b"pw"), b"pw")
    from certstore.keys import key_to_der

    raw = b"".join(p.read_bytes() for p in tmp_path.glob("certgate.sqlite*"))
    der = key_to_der(leaf.key)
    assert der not in raw and der[-32:] not in raw and b"PRIVATE KEY" not in raw
    # and a sealed key copied onto another row does not open
    with _db(tmp_path) as conn:
        rows = conn.execute("SELECT id, sealed_key FROM chains ORDER BY created_at").fetchall()
        conn.execute("UPDATE chains SET sealed_key = ? WHERE id = ?", (rows[-1][1], rows[0][0]))
    from certstore.sealing import SealError

    with pytest.raises(SealError):
        await store.issue_token(acc.id, subject="s")  # signing chain now has the TLS key blob


async def test_per_account_reads_search_indexes(store: CertStore, tmp_path: Path) -> None:
    # The follower reads these for every change; a scan would grow with the tenant count.
    queries = [
        "SELECT account_id, domain, chain_id FROM tls_bindings WHERE account_id IN (?)",
        "SELECT id FROM accounts WHERE parent_id = ?",
        "SELECT id FROM chains WHERE purpose = 'tls' AND account_id IN (?)",
        "SELECT json_group_array(name) FROM domains WHERE domains.account_id = ?",
    ]
    with _db(tmp_path) as conn:
        for sql in queries:
            plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", ("x",)))
            assert "SEARCH" in plan and "SCAN" not in plan, (sql, plan)
