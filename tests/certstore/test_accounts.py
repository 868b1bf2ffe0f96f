"""Accounts and domains in a real store."""

from __future__ import annotations

import pytest

from certstore.errors import Conflict, DomainTaken, InvalidInput, InvalidName, NotFound
from certstore.store import CertStore


async def test_create_normalises_domains_and_gets_a_signing_chain(store: CertStore) -> None:
    acc = await store.create_account(name="Acme", kind="customer",
                                     domains=["ACME.com.", "bücher.example", "acme.com"])
    assert acc.domains == ("acme.com", "xn--bcher-kva.example")
    pki = await store.pki(acc.id)
    assert pki.signing_chain_id is not None
    signing = await store.get_chain(pki.signing_chain_id)
    assert (signing.purpose, signing.origin, signing.account_id) == ("signing", "generated",
                                                                     acc.id)
    assert await store.get_account(acc.id) == acc


async def test_domain_belongs_to_one_account_only(store: CertStore) -> None:
    a = await store.create_account(name="A", kind="vendor", domains=["acme.com"])
    with pytest.raises(DomainTaken) as info:
        await store.create_account(name="B", kind="customer", domains=["b.com", "Acme.COM"])
    assert info.value.domain == "acme.com"
    b = await store.create_account(name="B", kind="customer", domains=["b.com"])
    with pytest.raises(DomainTaken):
        await store.add_domain(b.id, "acme.com")
    # a failed create stored nothing: no account "B" twice, b.com free until the 2nd create
    assert [x.name for x in await store.list_accounts()] == ["A", "B"]
    await store.remove_domain(a.id, "acme.com")
    assert (await store.add_domain(b.id, "acme.com")).domains == ("acme.com", "b.com")


async def test_invalid_domains_are_all_listed(store: CertStore) -> None:
    with pytest.raises(InvalidName) as info:
        await store.create_account(name="A", kind="vendor",
                                   domains=["ok.com", "*.acme.com", "10.0.0.1", "bad_name.com"])
    assert info.value.names == ("*.acme.com", "10.0.0.1", "bad_name.com")
    assert await store.list_accounts() == []


async def test_customer_may_belong_to_one_vendor(store: CertStore) -> None:
    vendor = await store.create_account(name="V", kind="vendor")
    customer = await store.create_account(name="C", kind="customer", parent_id=vendor.id)
    assert customer.parent_id == vendor.id
    assert await store.customers_of(vendor.id) == [customer.id]
    with pytest.raises(InvalidInput, match="not a vendor"):
        await store.create_account(name="D", kind="customer", parent_id=customer.id)
    with pytest.raises(InvalidInput, match="vendor account cannot belong"):
        await store.create_account(name="E", kind="vendor", parent_id=vendor.id)
    with pytest.raises(Conflict, match="customer accounts"):
        await store.delete_account(vendor.id)
    await store.delete_account(customer.id)
    await store.delete_account(vendor.id)
    assert await store.list_accounts() == []


@pytest.mark.parametrize(("name", "kind"), [("", "vendor"), ("  ", "customer"),
                                            ("x" * 201, "vendor"), ("ok", "reseller"),
                                            ("tab\there", "vendor")])
async def test_bad_account_fields(store: CertStore, name: str, kind: str) -> None:
    with pytest.raises(InvalidInput):
        await store.create_account(name=name, kind=kind)


async def test_unknown_ids_are_not_found(store: CertStore) -> None:
    for call in (store.get_account("acc_nope"), store.add_domain("acc_nope", "a.com"),
                 store.list_chains("acc_nope"), store.pki("acc_nope"),
                 store.get_chain("chn_nope"), store.delete_chain("chn_nope")):
        with pytest.raises(NotFound):
            await call
    acc = await store.create_account(name="A", kind="vendor", domains=["a.com"])
    with pytest.raises(NotFound):
        await store.remove_domain(acc.id, "other.com")


async def test_rename_and_delete(store: CertStore) -> None:
    acc = await store.create_account(name="A", kind="vendor", domains=["a.com"])
    assert (await store.rename_account(acc.id, "Acme Inc")).name == "Acme Inc"
    await store.delete_account(acc.id)
    with pytest.raises(NotFound):
        await store.get_account(acc.id)
    # its domain is free again, its chains are gone
    other = await store.create_account(name="B", kind="vendor", domains=["a.com"])
    assert other.domains == ("a.com",)
    assert len(await store.list_chains(other.id)) == 1
