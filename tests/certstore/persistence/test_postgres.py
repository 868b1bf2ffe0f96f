"""The PostgreSQL backend on a real server: setup errors, schema versions, the master-key
check, keys sealed in a dump, two nodes writing at once, NOTIFY, and copying a store."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from certstore.errors import Conflict, DomainTaken, StoreSetupError
from certstore.keys import key_to_der
from certstore.persistence.base import TABLES
from certstore.persistence.copy import copy_store
from certstore.persistence.location import open_database, parse_location
from certstore.persistence.migrations import LATEST
from certstore.persistence.pgurl import PgLocation
from certstore.sealing import Sealer
from certstore.store import CertStore
from tests.certfactory import Issued, make_leaf, new_key, p12
from tests.support.postgres import SUPERUSER, PgServer


@pytest.fixture
async def location(pg_server: PgServer) -> AsyncIterator[PgLocation]:
    name = await pg_server.new_database()
    yield PgLocation.parse(pg_server.url(name), password_file=pg_server.password_file)
    await pg_server.drop_database(name)


async def _sql(pg_server: PgServer, location: PgLocation, sql: str) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", port=pg_server.port, user=SUPERUSER,
                                 password=pg_server.password, database=location.database)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql://u:secret@h:5432/db", "must not hold a password"),
    ("postgresql://u@h:99999/db", "not a valid PostgreSQL URL"),
    ("postgresql://u@:5432/db", "names no host"),
    ("postgresql://u@h:5432/", "must name one database"),
    ("postgresql://u@h:5432/a/b", "must name one database"),
    ("postgresql://u@h/db?application_name=x", "unsupported database URL parameters"),
    ("postgresql://u@h/db?sslmode=sometimes", "sslmode must be one of"),
    ("mysql://u@h/db", "unsupported database URL scheme"),
    ("postgresql://u@h/db#frag", "fragment"),
])
def test_bad_urls_are_refused_with_the_reason(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_location(url)


def test_url_forms() -> None:
    loc = parse_location("postgresql://app@db.example:6543/certgate?sslmode=require")
    assert isinstance(loc, PgLocation)
    assert (loc.user, loc.host, loc.port, loc.database, loc.sslmode) == (
        "app", "db.example", 6543, "certgate", "require")
    assert loc.display == "postgresql://app@db.example:6543/certgate"
    assert parse_location("relative/certgate.sqlite") == Path("relative/certgate.sqlite")


async def test_unreachable_wrong_password_missing_database(pg_server: PgServer,
                                                           tmp_path: Path,
                                                           master_key: bytes) -> None:
    with pytest.raises(StoreSetupError, match=r"cannot reach PostgreSQL at 127\.0\.0\.1:1\b"):
        await CertStore.open(PgLocation.parse("postgresql://x@127.0.0.1:1/db"), master_key)
    wrong = tmp_path / "pw"
    wrong.write_text("not-the-password\n")
    with pytest.raises(StoreSetupError, match=f"refused user {SUPERUSER}.*PGPASSWORD"):
        await CertStore.open(PgLocation.parse(pg_server.url("postgres"), password_file=wrong),
                             master_key)
    with pytest.raises(StoreSetupError, match="'nope' does not exist"):
        await CertStore.open(PgLocation.parse(pg_server.url("nope"),
                                              password_file=pg_server.password_file),
                             master_key)
    with pytest.raises(StoreSetupError, match="cannot read the database password file"):
        await CertStore.open(PgLocation.parse(pg_server.url("postgres"),
                                              password_file=tmp_path / "missing"), master_key)


async def test_schema_must_exist_and_be_known(pg_server: PgServer, location: PgLocation,
                                              master_key: bytes) -> None:
    with pytest.raises(StoreSetupError, match="no certgate schema; run 'certgate init'"):
        await CertStore.open(location, master_key)
    store, created = await CertStore.initialize(location, master_key, ca_key_type="ecdsa-p256")
    await store.close()
    assert created
    again, created_again = await CertStore.initialize(location, master_key,
                                                      ca_key_type="ecdsa-p256")
    await again.close()
    assert not created_again
    with pytest.raises(StoreSetupError, match="master key does not match"):
        await CertStore.open(location, Sealer.new_master_key())
    await _sql(pg_server, location, f"UPDATE certgate_schema SET version = {LATEST + 7}")
    with pytest.raises(StoreSetupError, match=f"schema version {LATEST + 7}, newer than this "
                                              f"certgate \\({LATEST}\\)"):
        await CertStore.open(location, master_key)
    await _sql(pg_server, location, f"UPDATE certgate_schema SET version = {LATEST - 1}")
    with pytest.raises(StoreSetupError, match=f"schema version {LATEST - 1}, older"):
        await CertStore.open(location, master_key)


async def test_init_upgrades_an_older_schema(pg_server: PgServer, location: PgLocation,
                                             master_key: bytes) -> None:
    store, _ = await CertStore.initialize(location, master_key, ca_key_type="ecdsa-p256")
    await store.close()
    # As a store made by the previous release: the last migration (7: domain status and
    # audit counts) undone by hand.
    assert LATEST == 7, "undo the newest migration here"
    await _sql(pg_server, location, "ALTER TABLE domains DROP COLUMN status, DROP COLUMN "
               "challenge_token; ALTER TABLE audit DROP COLUMN count; DROP INDEX audit_by_key; "
               f"UPDATE certgate_schema SET version = {LATEST - 1}")
    store, created = await CertStore.initialize(location, master_key)
    assert not created
    assert await store.database.nodes() == []
    # the columns are back, with their defaults
    acc = await store.create_account(name="A", kind="customer", domains=["a.test"])
    assert (await store.get_account(acc.id)).domains == ("a.test",)
    assert [r.count for r in await store.audit_log()] == [1] * len(await store.audit_log())
    await store.close()


async def test_dump_holds_no_private_key(pg_server: PgServer, location: PgLocation,
                                         master_key: bytes, intermediate_ca: Issued) -> None:
    store, _ = await CertStore.initialize(location, master_key, ca_key_type="ecdsa-p256")
    try:
        acc = await store.create_account(name="A", kind="customer", domains=["a.com"])
        leaf = make_leaf(intermediate_ca, dns=["a.com"], key=new_key("rsa"))
        await store.import_chain(acc.id, p12(leaf, b"pw"), b"pw")
        generated = await store.generate_chain(acc.id, purpose="tls", domain="a.com")
        assert generated.id in {c.id for c in await store.list_chains(acc.id)}
    finally:
        await store.close()
    dump = await asyncio.to_thread(pg_server.dump, location.database)
    assert acc.id.encode() in dump  # the dump is the store's
    der = key_to_der(leaf.key)
    for needle in (der[-48:], der[-48:].hex().encode(), b"PRIVATE KEY"):
        assert needle not in dump


async def _two_nodes(location: PgLocation, master_key: bytes
                     ) -> tuple[CertStore, CertStore]:
    first, _ = await CertStore.initialize(location, master_key, ca_key_type="ecdsa-p256")
    return first, await CertStore.open(location, master_key)


async def test_two_nodes_claiming_one_domain_at_once(location: PgLocation,
                                                     master_key: bytes) -> None:
    a_node, b_node = await _two_nodes(location, master_key)
    try:
        a = await a_node.create_account(name="A", kind="customer")
        b = await b_node.create_account(name="B", kind="customer")
        for round_ in range(5):
            domain = f"d{round_}.example"
            results = await asyncio.gather(a_node.add_domain(a.id, domain),
                                           b_node.add_domain(b.id, domain),
                                           return_exceptions=True)
            assert sum(isinstance(r, DomainTaken) for r in results) == 1, results
            owners = [acc for acc in await a_node.list_accounts() if domain in acc.domains]
            assert len(owners) == 1
    finally:
        await a_node.close()
        await b_node.close()


async def test_two_nodes_importing_one_certificate_at_once(location: PgLocation,
                                                           master_key: bytes,
                                                           intermediate_ca: Issued) -> None:
    a_node, b_node = await _two_nodes(location, master_key)
    try:
        acc = await a_node.create_account(name="A", kind="customer", domains=["a.com"])
        data = p12(make_leaf(intermediate_ca, dns=["a.com"]), b"pw")
        results = await asyncio.gather(a_node.import_chain(acc.id, data, b"pw"),
                                       b_node.import_chain(acc.id, data, b"pw"),
                                       return_exceptions=True)
        assert sum(isinstance(r, Conflict) for r in results) == 1, results
        assert len(await a_node.list_chains(acc.id)) == 2  # the signing chain + one
    finally:
        await a_node.close()
        await b_node.close()


async def test_another_node_hears_each_commit(location: PgLocation,
                                              master_key: bytes) -> None:
    a_node, b_node = await _two_nodes(location, master_key)
    heard = asyncio.Event()
    try:
        b_node.watch(heard.set)  # starts LISTEN; the first signal is the connection's
        async with asyncio.timeout(10):
            await heard.wait()
        assert b_node.health.connected
        heard.clear()
        await a_node.create_account(name="A", kind="customer")
        async with asyncio.timeout(10):
            await heard.wait()  # NOTIFY from the other node's transaction
    finally:
        await a_node.close()
        await b_node.close()


async def test_copy_sqlite_store_to_postgresql(location: PgLocation, tmp_path: Path,
                                               master_key: bytes,
                                               intermediate_ca: Issued) -> None:
    source, _ = await CertStore.initialize(tmp_path / "certgate.sqlite", master_key,
                                           ca_key_type="ecdsa-p256")
    try:
        vendor = await source.create_account(name="V", kind="vendor", domains=["v.com"])
        acc = await source.create_account(name="A", kind="customer", parent_id=vendor.id,
                                          domains=["a.com", "b.com"])
        chain = await source.import_chain(acc.id, p12(make_leaf(intermediate_ca,
                                                                dns=["a.com"]), b"pw"), b"pw")
        await source.update_pki(acc.id, tls_bindings={"a.com": chain.id})
        await source.create_api_key(role="operator")
        target = await open_database(location, create=True)
        try:
            await copy_store(source.database, target, source_now())
            with pytest.raises(Conflict, match="already holds a certgate store"):
                await copy_store(source.database, target, source_now())
            for table in TABLES:
                assert (await target.table_rows(table.name, table.columns, table.order_by)
                        == await source.database.table_rows(table.name, table.columns,
                                                            table.order_by)), table.name
        finally:
            await target.close()
        expected = await source.account_entries()
        last = await source.last_seq()
    finally:
        await source.close()
    copied = await CertStore.open(location, master_key)  # same key opens it
    try:
        assert await copied.account_entries() == expected
        served = await copied.served_chain(chain.id)
        assert copied.open_key(served)  # the sealed key still opens under its id
        new = await copied.create_account(name="N", kind="customer")
        assert (await copied.changes_since(last))[0].entity_id == new.id  # seq continues
    finally:
        await copied.close()
    with pytest.raises(StoreSetupError, match="master key does not match"):
        await CertStore.open(location, Sealer.new_master_key())


def source_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
