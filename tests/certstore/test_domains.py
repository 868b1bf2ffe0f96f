"""Who may take which domain, and pending domains (issue 10, section 3), in a real store.

The actors are what the admin API sets per request (``acting_as``): a vendor key, a
customer key, an operator key; with none set the caller is the trusted CLI.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from certstore.audit import Actor, acting_as
from certstore.errors import (
    DomainOwned,
    DomainTaken,
    DomainUnverified,
    Forbidden,
    InvalidCertificate,
    NotFound,
)
from certstore.model import Account
from certstore.store import CertStore
from tests.certfactory import Issued, make_leaf, p12

PW = b"pw-domains"


@contextmanager
def as_key(role: str, account: Account | None) -> Iterator[None]:
    actor = Actor(key_id=f"key_{role}", role=role,  # type: ignore[arg-type]
                  account_id=None if account is None else account.id)
    with acting_as(actor):
        yield


async def _world(store: CertStore) -> dict[str, Account]:
    a = await store.create_account(name="Vendor A", kind="vendor", domains=["vendora.test"])
    b = await store.create_account(name="Vendor B", kind="vendor", domains=["vendorb.test"])
    ca = await store.create_account(name="Cust A", kind="customer", parent_id=a.id,
                                    domains=["custa.test"])
    cb = await store.create_account(name="Cust B", kind="customer", parent_id=b.id,
                                    domains=["custb.test"])
    return {"a": a, "b": b, "ca": ca, "cb": cb}


@pytest.mark.parametrize("name", ["shop.vendora.test", "x.y.vendora.test", "vendora.test",
                                  "SHOP.Vendora.Test."])
async def test_a_customer_cannot_take_a_name_of_another_vendor(store: CertStore,
                                                               name: str) -> None:
    w = await _world(store)
    before = await store.list_accounts()
    for role, account in (("customer", w["cb"]), ("vendor", w["b"])):
        with as_key(role, account), pytest.raises((DomainOwned, DomainTaken)) as info:
            await store.add_domain(w["cb"].id, name)
        assert info.value.details()["rule"] == "domain-owned-by-another-account"
        assert info.value.details()["names"] == [name.lower().rstrip(".")]
        assert info.value.http_status == 409
    assert await store.list_accounts() == before


async def test_above_another_accounts_domain_is_taking_too(store: CertStore) -> None:
    w = await _world(store)
    with as_key("vendor", w["b"]):  # B gives its customer a name under the customer's own
        await store.add_domain(w["cb"].id, "print.custb.test")
    await store.remove_domain(w["cb"].id, "custb.test")  # the CLI, trusted
    # custb.test is free now, but sits above B's customer's print.custb.test: taking
    for role, account in (("vendor", w["a"]), ("customer", w["ca"])):
        with as_key(role, account), pytest.raises(DomainOwned) as owned:
            await store.add_domain(account.id, "custb.test")
        assert owned.value.details() == {"rule": "domain-owned-by-another-account",
                                         "names": ["custb.test"]}
    with as_key("vendor", w["b"]):  # B administers the customer: it may take it back
        assert "custb.test" in (await store.add_domain(w["b"].id, "custb.test")).domains


async def test_a_vendor_grants_names_under_its_domain_to_its_customers(
        store: CertStore) -> None:
    w = await _world(store)
    with as_key("vendor", w["a"]):
        granted = await store.add_domain(w["ca"].id, "shop.vendora.test")
        assert "shop.vendora.test" in granted.domains and not granted.pending  # verified
        mine = await store.add_domain(w["a"].id, "www.vendora.test")
        assert "www.vendora.test" in mine.domains
        # above its customer's domain, in its own tree: allowed
        await store.add_domain(w["a"].id, "vendora-customers.test")
        await store.add_domain(w["ca"].id, "eu.vendora-customers.test")
    with as_key("customer", w["ca"]), pytest.raises(DomainOwned):
        await store.add_domain(w["ca"].id, "x.shop.vendora.test")  # only the vendor grants
    with as_key("operator", None):
        # an operator administers every account: it may grant across vendors
        await store.add_domain(w["cb"].id, "b-shop.vendora.test")
    with pytest.raises(DomainTaken) as taken:
        await store.add_domain(w["cb"].id, "shop.vendora.test")  # exact: never, even CLI
    assert taken.value.details()["rule"] == "domain-owned-by-another-account"
    with pytest.raises(DomainTaken) as own:
        await store.add_domain(w["ca"].id, "shop.vendora.test")
    assert "rule" not in own.value.details()  # its own already: no other account involved


async def test_creating_an_account_applies_the_rule(store: CertStore) -> None:
    w = await _world(store)
    with as_key("vendor", w["b"]), pytest.raises(DomainOwned):
        await store.create_account(name="Thief", kind="customer", parent_id=w["b"].id,
                                   domains=["ok.test", "shop.vendora.test"])
    assert [a.name for a in await store.list_accounts()] == ["Vendor A", "Vendor B",
                                                             "Cust A", "Cust B"]
    with as_key("vendor", w["a"]):
        acc = await store.create_account(name="Granted", kind="customer",
                                         parent_id=w["a"].id, domains=["shop.vendora.test"])
    assert acc.domains == ("shop.vendora.test",)


async def test_a_customer_keys_domain_is_pending_and_serves_nothing(
        store: CertStore, intermediate_ca: Issued) -> None:
    w = await _world(store)
    with as_key("customer", w["cb"]):
        acc = await store.add_domain(w["cb"].id, "www.example-bank.com")
    assert "www.example-bank.com" not in acc.domains
    (pending,) = acc.pending
    assert pending.name == "www.example-bank.com"
    assert pending.record_name == "_certgate-challenge.www.example-bank.com"
    assert pending.token.startswith("certgate-") and len(pending.token) > 30
    # the CA issues nothing for it, an import naming it is refused, SNI routes nothing
    with as_key("customer", w["cb"]), pytest.raises(InvalidCertificate) as gen:
        await store.generate_chain(w["cb"].id, purpose="tls", domain="www.example-bank.com")
    assert (gen.value.rule, gen.value.names) == ("domain-unverified",
                                                 ("www.example-bank.com",))
    for names in (["www.example-bank.com"], ["custb.test", "*.www.example-bank.com"]):
        data = p12(make_leaf(intermediate_ca, dns=names), PW)
        with pytest.raises(InvalidCertificate) as imp:
            await store.import_chain(w["cb"].id, data, PW)
        assert imp.value.rule == "domain-unverified"
        assert imp.value.names == tuple(n for n in names if "example-bank" in n)
    leaf = make_leaf(intermediate_ca, dns=["custb.test"])
    await store.import_chain(w["cb"].id, p12(leaf, PW), PW)  # verified names still work
    snap = await store.snapshot()
    assert snap.select("www.example-bank.com") is None
    assert snap.owner("www.example-bank.com") is None
    assert snap.select("custb.test") is not None


async def test_approval_by_vendor_or_operator_not_by_customer(store: CertStore) -> None:
    w = await _world(store)
    with as_key("customer", w["ca"]):
        await store.add_domain(w["ca"].id, "print.custa.test")
        await store.add_domain(w["ca"].id, "scan.custa.test")
        with pytest.raises(Forbidden):
            await store.approve_domain(w["ca"].id, "print.custa.test")
    with as_key("vendor", w["b"]), pytest.raises(NotFound):
        await store.approve_domain(w["ca"].id, "print.custa.test")  # not B's customer
    with as_key("vendor", w["a"]):
        acc = await store.approve_domain(w["ca"].id, "print.custa.test")
        assert "print.custa.test" in acc.domains
        assert await store.approve_domain(w["ca"].id, "print.custa.test") == acc  # idempotent
        with pytest.raises(NotFound):
            await store.approve_domain(w["ca"].id, "never-added.test")
    with as_key("operator", None):
        acc = await store.approve_domain(w["ca"].id, "scan.custa.test")
    assert acc.pending == ()
    assert (await store.snapshot()).owner("print.custa.test") == w["ca"].id
    audit = [r for r in await store.audit_log(account_ids={w["ca"].id})
             if r.action == "domain.verified"]
    assert [(r.key_id, r.role, r.target, r.detail) for r in reversed(audit)] == [
        ("key_vendor", "vendor", "print.custa.test", f"method=approval by={w['a'].id}"),
        ("key_operator", "operator", "scan.custa.test", "method=approval by=operator")]


async def test_dns_challenge_verifies_only_with_the_token(store: CertStore) -> None:
    w = await _world(store)
    with as_key("customer", w["cb"]):
        acc = await store.add_domain(w["cb"].id, "www.example-bank.com")
    token = acc.pending[0].token
    records: dict[str, list[str]] = {}
    asked: list[str] = []

    async def lookup(name: str) -> list[str]:
        asked.append(name)
        return records.get(name, [])

    with as_key("customer", w["cb"]):
        for published in ([], ["v=spf1 -all", token + "x"], [token[:-1]]):
            records["_certgate-challenge.www.example-bank.com"] = published
            with pytest.raises(DomainUnverified) as info:
                await store.verify_domain_dns(w["cb"].id, "www.example-bank.com", lookup)
            assert info.value.details() == {"rule": "domain-unverified",
                                            "names": ["www.example-bank.com"]}
        assert (await store.get_account(w["cb"].id)).pending == acc.pending
        records["_certgate-challenge.www.example-bank.com"] = ["other", token]
        done = await store.verify_domain_dns(w["cb"].id, "www.example-bank.com", lookup)
    assert "www.example-bank.com" in done.domains and not done.pending
    assert set(asked) == {"_certgate-challenge.www.example-bank.com"}
    (row,) = [r for r in await store.audit_log(account_ids={w["cb"].id})
              if r.action == "domain.verified"]
    assert (row.key_id, row.role, row.detail) == ("key_customer", "customer",
                                                  f"method=dns by={w['cb'].id}")


async def test_a_pending_name_blocks_no_one_and_dns_cannot_take(store: CertStore) -> None:
    w = await _world(store)
    with as_key("customer", w["cb"]):
        acc = await store.add_domain(w["cb"].id, "bank.test")  # squatting attempt
    with as_key("vendor", w["a"]):
        await store.add_domain(w["a"].id, "www.bank.test")  # not blocked by a pending name

    async def lookup(name: str) -> list[str]:
        return [acc.pending[0].token]

    # DNS proves control of bank.test, but www.bank.test is vendor A's now: still taking
    with as_key("customer", w["cb"]), pytest.raises(DomainOwned):
        await store.verify_domain_dns(w["cb"].id, "bank.test", lookup)
    assert (await store.get_account(w["cb"].id)).pending_names == {"bank.test"}


async def test_a_pending_claim_gives_way_to_a_verified_domain(store: CertStore) -> None:
    w = await _world(store)
    with as_key("customer", w["cb"]):
        await store.add_domain(w["cb"].id, "www.bank.test")
    with as_key("customer", w["ca"]), pytest.raises(DomainTaken):
        await store.add_domain(w["ca"].id, "www.bank.test")  # pending vs pending: first wins
    with as_key("vendor", w["a"]):
        acc = await store.add_domain(w["a"].id, "www.bank.test")
    assert "www.bank.test" in acc.domains
    assert (await store.get_account(w["cb"].id)).pending == ()
    (row,) = [r for r in await store.audit_log(account_ids={w["cb"].id})
              if r.action == "domain.removed"]
    assert (row.key_id, row.target) == ("key_vendor", "www.bank.test")
    assert "replaced by a verified domain" in (row.detail or "")
