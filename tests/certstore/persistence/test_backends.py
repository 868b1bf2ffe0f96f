"""Persistence rules every backend keeps (runs on SQLite and PostgreSQL): the change
feed, failed operations leaving no trace, keys sealed at rest, fleet-wide locks."""

from __future__ import annotations

import pytest

from certstore.errors import DomainTaken, InvalidCertificate
from certstore.keys import key_to_der
from certstore.persistence.base import TABLES
from certstore.persistence.conn import tracking_changes
from certstore.store import CertStore
from tests.certfactory import Issued, make_leaf, p12


async def _dump(store: CertStore) -> dict[str, list[tuple[object, ...]]]:
    return {t.name: await store.database.table_rows(t.name, t.columns, t.order_by)
            for t in TABLES}


async def test_every_mutation_appends_one_change_in_order(store: CertStore) -> None:
    start = await store.last_seq()
    with tracking_changes() as committed:
        acc = await store.create_account(name="A", kind="customer", domains=["a.com"])
        await store.add_domain(acc.id, "b.com")
        chain = await store.generate_chain(acc.id, purpose="tls", domain="a.com")
        await store.update_pki(acc.id, tls_bindings={"a.com": chain.id})
        await store.remove_domain(acc.id, "b.com")
        await store.delete_chain(chain.id)
    changes = await store.changes_since(start)
    assert [c.kind for c in changes] == ["account.created", "domain.added", "chain.generated",
                                         "pki.updated", "domain.removed", "chain.deleted"]
    assert [c.seq for c in changes] == sorted(c.seq for c in changes) == committed
    assert all(c.account_id == acc.id for c in changes)
    assert await store.changes_since(changes[-1].seq) == []
    assert (await store.changes_since(start, limit=2))[-1].kind == "domain.added"


async def test_failed_operations_leave_the_store_exactly_as_it_was(
        store: CertStore, intermediate_ca: Issued) -> None:
    await store.create_account(name="A", kind="customer", domains=["a.com"])
    b = await store.create_account(name="B", kind="customer", domains=["b.com"])
    before = await _dump(store)
    with tracking_changes() as committed:
        with pytest.raises(DomainTaken):  # fails on the 2nd domain, after the account insert
            await store.create_account(name="C", kind="customer", domains=["c.com", "a.com"])
        with pytest.raises(InvalidCertificate):
            await store.import_chain(b.id, p12(make_leaf(intermediate_ca, dns=["a.com"]),
                                               b"pw"), b"pw")
        with pytest.raises(InvalidCertificate):
            await store.import_trusted_cas(b.id, b"nonsense")
    assert await _dump(store) == before
    assert committed == []  # no change id reported for what was rolled back


async def test_private_keys_never_stored_in_clear(store: CertStore,
                                                  intermediate_ca: Issued) -> None:
    acc = await store.create_account(name="A", kind="customer", domains=["a.com"])
    leaf = make_leaf(intermediate_ca, dns=["a.com"])
    await store.import_chain(acc.id, p12(leaf, b"pw"), b"pw")
    raw = repr(await _dump(store)).encode()
    der = key_to_der(leaf.key)
    assert der[-32:] not in raw and der[-32:].hex().encode() not in raw
    assert b"PRIVATE KEY" not in raw


async def test_exclusive_is_held_once(store: CertStore) -> None:
    async with store.database.exclusive("renewal") as first:
        assert first
        async with store.database.exclusive("renewal") as second:
            assert not second  # a second holder (another node's connection) is refused
        async with store.database.exclusive("other") as other:
            assert other
    async with store.database.exclusive("renewal") as again:
        assert again
