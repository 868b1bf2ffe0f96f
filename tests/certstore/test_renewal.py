"""Renewal, expiry listing, notices and the lifecycle lease in a real store."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from cryptography import x509

from certstore.audit import acting_as
from certstore.errors import Conflict, InvalidInput, NotFound
from certstore.lifecycle import Lifetimes
from certstore.renewal import LIFECYCLE_ACTOR
from certstore.store import CertStore
from tests.certfactory import Issued, make_leaf, p12
from tests.support.clock import MovableClock

DAY = dt.timedelta(days=1)



@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def timed(tmp_path: Path, master_key: bytes,
                clock: MovableClock) -> AsyncIterator[CertStore]:
    """A store on a clock the test moves."""
    store, _ = await CertStore.initialize(tmp_path / "certgate.sqlite", master_key,
                                          ca_key_type="ecdsa-p256", clock=clock)
    try:
        yield store
    finally:
        await store.close()


async def test_generated_chains_get_the_configured_lifetimes(store: CertStore) -> None:
    acc = await store.create_account(name="A", kind="customer", domains=["a.test"])
    tls = await store.generate_chain(acc.id, purpose="tls", domain="a.test")
    signing = (await store.list_chains(acc.id))[0]
    assert signing.purpose == "signing"
    assert tls.not_after - tls.created_at == pytest.approx(90 * DAY, abs=dt.timedelta(minutes=1))
    assert (signing.not_after - signing.created_at
            == pytest.approx(365 * DAY, abs=dt.timedelta(minutes=1)))
    store.lifetimes = Lifetimes(tls_validity=dt.timedelta(minutes=3))
    short = await store.generate_chain(acc.id, purpose="tls", domain="a.test")
    assert short.not_after - short.created_at == pytest.approx(dt.timedelta(minutes=3),
                                                               abs=dt.timedelta(seconds=5))


async def test_renewing_a_bound_tls_chain_moves_the_binding_and_serves_the_new_one(
        timed: CertStore) -> None:
    acc = await timed.create_account(name="A", kind="customer", domains=["a.test"])
    old = await timed.generate_chain(acc.id, purpose="tls", domain="a.test",
                                     key_type="rsa-2048")
    await timed.update_pki(acc.id, tls_bindings={"a.test": old.id})
    with acting_as(LIFECYCLE_ACTOR):
        new = await timed.renew_chain(old.id, acc.id)
    assert new.id != old.id and new.dns_names == old.dns_names and new.purpose == "tls"
    assert new.key_type == "rsa-2048" and new.origin == "generated"
    leaf_old = x509.load_pem_x509_certificate(old.chain_pem.encode())
    leaf_new = x509.load_pem_x509_certificate(new.chain_pem.encode())
    assert leaf_new.public_key() != leaf_old.public_key()  # a new key, not a re-signing
    leaf_new.verify_directly_issued_by(
        x509.load_pem_x509_certificates(new.chain_pem.encode())[1])
    assert (await timed.pki(acc.id)).binding_map() == {"a.test": new.id}
    assert (await timed.snapshot()).select("a.test").chain_id == new.id  # type: ignore[union-attr]
    with pytest.raises(NotFound):  # a TLS chain's predecessor goes in the same transaction
        await timed.get_chain(old.id)
    [record] = [r for r in await timed.audit_log() if r.action == "chain.renewed"]
    assert record.role == "system" and record.target == new.id
    assert f"old={old.id}" in (record.detail or "") and f"new={new.id}" in (record.detail or "")


async def test_signing_renewal_keeps_old_tokens_verifiable_through_the_jwks(
        timed: CertStore) -> None:
    acc = await timed.create_account(name="A", kind="customer")
    old_id = (await timed.pki(acc.id)).signing_chain_id
    assert old_id is not None
    token = (await timed.issue_token(acc.id, subject="printer-1")).token
    new = await timed.renew_chain(old_id)
    assert (await timed.pki(acc.id)).signing_chain_id == new.id
    jwks = await timed.jwks(acc.id)
    assert len(jwks["keys"]) == 2
    keys = {k["kid"]: jwt.PyJWK(k) for k in jwks["keys"]}
    kid = jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(token, keys[kid].key, algorithms=["ES256"], issuer="certgate",
                        options={"verify_aud": False})
    assert claims["sub"] == "printer-1"
    fresh = (await timed.issue_token(acc.id, subject="printer-2")).token
    assert jwt.get_unverified_header(fresh)["kid"] != kid
    with pytest.raises(Conflict, match=f"already renewed as {new.id}"):
        await timed.renew_chain(old_id)
    assert old_id not in {c.id for c in await timed.due_renewals()}


async def test_only_generated_chains_of_the_account_are_renewed(
        timed: CertStore, intermediate_ca: Issued) -> None:
    acc = await timed.create_account(name="A", kind="customer", domains=["a.test"])
    other = await timed.create_account(name="B", kind="customer", domains=["b.test"])
    imported = await timed.import_chain(
        acc.id, p12(make_leaf(intermediate_ca, dns=["a.test"]), b"pw"), b"pw")
    with pytest.raises(InvalidInput, match=r"import a new certificate for a\.test"):
        await timed.renew_chain(imported.id)
    theirs = await timed.generate_chain(other.id, purpose="tls", domain="b.test")
    with pytest.raises(NotFound):
        await timed.renew_chain(theirs.id, acc.id)
    with pytest.raises(NotFound):
        await timed.renew_chain("chn_missing")


async def test_renewal_is_due_at_the_renewal_point_and_runs_once_among_concurrent_workers(
        tmp_path: Path, master_key: bytes, timed: CertStore, clock: MovableClock) -> None:
    acc = await timed.create_account(name="A", kind="customer", domains=["a.test"])
    chain = await timed.generate_chain(acc.id, purpose="tls", domain="a.test")
    clock.now += 60 * DAY
    assert chain.id not in {c.id for c in await timed.due_renewals()}
    clock.now += 2 * DAY
    due = {c.id for c in await timed.due_renewals()}
    assert chain.id in due
    # a second worker on the same database: both try at once, exactly one renews
    second = await CertStore.open(tmp_path / "certgate.sqlite", master_key, clock=clock)
    try:
        results = await asyncio.gather(timed.renew_chain(chain.id),
                                       second.renew_chain(chain.id), return_exceptions=True)
    finally:
        await second.close()
    renewed = [r for r in results if not isinstance(r, BaseException)]
    assert len(renewed) == 1
    assert all(isinstance(r, Conflict | NotFound) for r in results if r not in renewed)
    tls = [c for c in await timed.list_chains(acc.id) if c.purpose == "tls"]
    assert [c.id for c in tls] == [renewed[0].id]
    assert not await timed.due_renewals()


async def test_a_renewal_that_fails_leaves_the_working_chain(timed: CertStore) -> None:
    acc = await timed.create_account(name="A", kind="customer", domains=["a.test", "b.test"])
    chain = await timed.generate_chain(acc.id, purpose="tls", domain="a.test")
    await timed.remove_domain(acc.id, "a.test")
    before = await timed.list_chains(acc.id)
    with pytest.raises(Exception, match="no longer a domain of the account"):
        await timed.renew_chain(chain.id)
    assert await timed.list_chains(acc.id) == before


async def test_expiring_chains_are_listed_counted_and_noticed_once_per_stage(
        timed: CertStore, clock: MovableClock, intermediate_ca: Issued) -> None:
    acc = await timed.create_account(name="A", kind="customer", domains=["a.test", "b.test"])
    soon = await timed.import_chain(acc.id, p12(make_leaf(
        intermediate_ca, dns=["a.test"], not_before=clock.now - DAY,
        not_after=clock.now + 10 * DAY), b"pw"), b"pw")
    generated = await timed.generate_chain(acc.id, purpose="tls", domain="b.test")
    assert [c.id for c in await timed.expiring(30 * DAY)] == [soon.id]
    assert [c.id for c in await timed.expiring(30 * DAY, [acc.id])] == [soon.id]
    assert await timed.expiring(30 * DAY, ["acc_other"]) == []
    assert {c.id for c in await timed.expiring(400 * DAY)} >= {soon.id, generated.id}
    counts = await timed.status_counts()
    assert counts == {"valid": 2, "expiring": 1, "expired": 0, "not_yet_valid": 0}
    [notice] = await timed.due_notices()  # the generated chain renews instead
    assert notice.chain.id == soon.id and notice.stage == "expiring"
    await timed.record_notice(notice, "webhook=none")
    assert await timed.due_notices() == []
    clock.now += 4 * DAY  # 6 days left
    [notice] = await timed.due_notices()
    assert notice.stage == "7d"
    await timed.record_notice(notice, "webhook=none")
    clock.now += 7 * DAY
    [notice] = await timed.due_notices()
    assert notice.stage == "expired"
    assert (await timed.status_counts())["expired"] == 1
    records = [r for r in await timed.audit_log() if r.action == "chain.expiring"]
    assert [r.target for r in records] == [soon.id, soon.id]


async def test_expired_chain_is_never_served_while_a_valid_one_exists(
        timed: CertStore, intermediate_ca: Issued, clock: MovableClock) -> None:
    acc = await timed.create_account(name="A", kind="customer", domains=["a.test"])
    valid = await timed.import_chain(acc.id, p12(make_leaf(
        intermediate_ca, dns=["a.test"], not_before=clock.now - DAY,
        not_after=clock.now + 30 * DAY), b"pw"), b"pw")
    short = await timed.import_chain(acc.id, p12(make_leaf(
        intermediate_ca, dns=["a.test"], not_before=clock.now - DAY,
        not_after=clock.now + 2 * DAY), b"pw"), b"pw", bind=True)
    assert (await timed.pki(acc.id)).binding_map() == {"a.test": short.id}
    snapshot = await timed.snapshot()
    assert snapshot.select("a.test", clock.now.timestamp()).chain_id == short.id  # type: ignore[union-attr]
    clock.now += 3 * DAY
    assert (await timed.status_counts())["expired"] == 1
    # even bound, an expired chain loses to a valid one
    assert snapshot.select("a.test", clock.now.timestamp()).chain_id == valid.id  # type: ignore[union-attr]


async def test_the_lifecycle_lease_has_one_holder_until_it_runs_out(
        timed: CertStore, clock: MovableClock) -> None:
    assert await timed.claim_lease("lifecycle", "node-a:1", dt.timedelta(minutes=3))
    assert not await timed.claim_lease("lifecycle", "node-b:2", dt.timedelta(minutes=3))
    assert await timed.claim_lease("lifecycle", "node-a:1", dt.timedelta(minutes=3))  # renewed
    clock.now += dt.timedelta(minutes=4)
    assert await timed.claim_lease("lifecycle", "node-b:2", dt.timedelta(minutes=3))
    assert not await timed.claim_lease("lifecycle", "node-a:1", dt.timedelta(minutes=3))
