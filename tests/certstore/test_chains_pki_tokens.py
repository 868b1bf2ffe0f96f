"""Chains, PKI settings and tokens in a real store."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt

import jwt
import pytest
from cryptography import x509

from certstore.errors import InvalidInput, InvalidName, NoSigningChain, NotFound
from certstore.store import CertStore
from tests.certfactory import Issued, make_leaf, new_key, p12


async def test_generated_tls_chain_is_served_and_listed_without_key(store: CertStore) -> None:
    acc = await store.create_account(name="A", kind="customer", domains=["a.com", "p.a.com"])
    ec_chain = await store.generate_chain(acc.id, purpose="tls", domain="P.A.com")
    rsa_chain = await store.generate_chain(acc.id, purpose="tls", domain="a.com",
                                           key_type="rsa-2048")
    assert ec_chain.dns_names == ("p.a.com",) and ec_chain.key_type == "ecdsa-p256"
    assert rsa_chain.key_type == "rsa-2048"
    certs = x509.load_pem_x509_certificates(ec_chain.chain_pem.encode())
    assert len(certs) == 2
    certs[0].verify_directly_issued_by(certs[1])
    certs[1].verify_directly_issued_by(store.ca_root)
    snap = await store.snapshot()
    assert snap.select("p.a.com").chain_id == ec_chain.id  # type: ignore[union-attr]
    assert snap.select("a.com").chain_id == rsa_chain.id  # type: ignore[union-attr]
    for chain in await store.list_chains(acc.id):
        assert "PRIVATE" not in repr(chain) and "PRIVATE" not in chain.chain_pem


async def test_generate_refuses_foreign_domains_and_bad_arguments(store: CertStore) -> None:
    acc = await store.create_account(name="A", kind="customer", domains=["a.com"])
    with pytest.raises(InvalidName):
        await store.generate_chain(acc.id, purpose="tls", domain="b.com")
    with pytest.raises(InvalidInput):
        await store.generate_chain(acc.id, purpose="tls")
    with pytest.raises(InvalidInput):
        await store.generate_chain(acc.id, purpose="email", domain="a.com")
    with pytest.raises(InvalidInput, match="key type"):
        await store.generate_chain(acc.id, purpose="tls", domain="a.com", key_type="dsa")
    with pytest.raises(InvalidInput, match="no domain"):
        await store.generate_chain(acc.id, purpose="signing", domain="a.com")
    assert len(await store.list_chains(acc.id)) == 1  # only the default signing chain


async def test_delete_chain_stops_serving_and_clears_choices(store: CertStore,
                                                             intermediate_ca: Issued) -> None:
    acc = await store.create_account(name="A", kind="customer", domains=["a.com"])
    imported = await store.import_chain(acc.id, p12(make_leaf(intermediate_ca, dns=["a.com"]),
                                                    b"pw"), b"pw")
    await store.update_pki(acc.id, signing_chain_id=imported.id,
                           tls_bindings={"a.com": imported.id})
    await store.delete_chain(imported.id)
    pki = await store.pki(acc.id)
    assert pki.signing_chain_id is None and pki.tls_bindings == ()
    assert (await store.snapshot()).select("a.com") is None
    other = await store.create_account(name="B", kind="customer")
    chain = await store.generate_chain(acc.id, purpose="tls", domain="a.com")
    with pytest.raises(NotFound):  # another account cannot see or delete it
        await store.delete_chain(chain.id, account_id=other.id)
    with pytest.raises(NotFound):
        await store.get_chain(chain.id, account_id=other.id)


async def test_tls_binding_overrides_latest_expiry(store: CertStore,
                                                   intermediate_ca: Issued) -> None:
    acc = await store.create_account(name="A", kind="customer", domains=["a.com"])
    now = dt.datetime.now(dt.UTC)
    short = make_leaf(intermediate_ca, dns=["a.com"], not_after=now + dt.timedelta(days=5))
    short_chain = await store.import_chain(acc.id, p12(short, b"pw"), b"pw")
    generated = await store.generate_chain(acc.id, purpose="tls", domain="a.com")
    assert (await store.snapshot()).select("a.com").chain_id == generated.id  # type: ignore[union-attr]
    pki = await store.update_pki(acc.id, tls_bindings={"a.com": short_chain.id})
    assert pki.binding_map() == {"a.com": short_chain.id}
    assert (await store.snapshot()).select("a.com").chain_id == short_chain.id  # type: ignore[union-attr]
    signing_id = pki.signing_chain_id
    assert signing_id is not None
    with pytest.raises(InvalidInput, match="not a TLS chain"):
        await store.update_pki(acc.id, tls_bindings={"a.com": signing_id})
    with pytest.raises(InvalidName):
        await store.update_pki(acc.id, tls_bindings={"b.com": generated.id})
    await store.update_pki(acc.id, tls_bindings={}, replace_bindings=True)
    assert (await store.pki(acc.id)).tls_bindings == ()


async def _verify(store: CertStore, account_id: str, token: str, audience: str | None) -> dict:
    jwks = jwt.PyJWKSet.from_dict(await store.jwks(account_id))
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwks[kid]
    return jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=audience,
                      issuer="certgate")


async def test_token_is_verified_with_the_account_jwks(store: CertStore) -> None:
    acc = await store.create_account(name="A", kind="customer")
    issued = await store.issue_token(acc.id, subject="terminal-7", audience="print-api",
                                     ttl_s=600)
    claims = await _verify(store, acc.id, issued.token, "print-api")
    assert claims["sub"] == "terminal-7" and claims["account_id"] == acc.id
    assert claims["exp"] - claims["iat"] == 600
    header = jwt.get_unverified_header(issued.token)
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    assert header["kid"] == issued.kid and leaf.subject.rfc4514_string() == "CN=A token signing"
    other = await store.create_account(name="B", kind="customer")
    with pytest.raises(KeyError):  # another account's JWKS does not verify it
        jwt.PyJWKSet.from_dict(await store.jwks(other.id))[issued.kid]


async def test_signing_chain_can_be_switched_regenerated_and_cleared(
        store: CertStore, intermediate_ca: Issued) -> None:
    acc = await store.create_account(name="A", kind="customer", domains=["a.com"])
    first = (await store.pki(acc.id)).signing_chain_id
    old_token = (await store.issue_token(acc.id, subject="s")).token
    regenerated = await store.generate_chain(acc.id, purpose="signing", key_type="rsa-2048")
    assert (await store.pki(acc.id)).signing_chain_id == regenerated.id != first
    token = await store.issue_token(acc.id, subject="s")
    assert jwt.get_unverified_header(token.token)["alg"] == "RS256"
    assert (await _verify(store, acc.id, token.token, None))["sub"] == "s"
    # a token signed before the rotation still verifies while its chain exists
    assert (await _verify(store, acc.id, old_token, None))["sub"] == "s"
    # RSA key generation is the test's own work: off the loop, which no_blocking watches.
    rsa_file = await asyncio.to_thread(
        lambda: p12(make_leaf(intermediate_ca, dns=["a.com"], key=new_key("rsa")), b"pw"))
    imported = await store.import_chain(acc.id, rsa_file, b"pw")
    await store.update_pki(acc.id, signing_chain_id=imported.id)
    via_import = await store.issue_token(acc.id, subject="s")
    assert via_import.chain_id == imported.id
    assert (await _verify(store, acc.id, via_import.token, None))["sub"] == "s"
    await store.update_pki(acc.id, signing_chain_id=None)
    with pytest.raises(NoSigningChain, match="no signing chain"):
        await store.issue_token(acc.id, subject="s")
    with pytest.raises(NotFound):
        await store.update_pki(acc.id, signing_chain_id="chn_missing")


@pytest.mark.parametrize(("subject", "ttl"), [("", 60), ("s", 0), ("s", 10**9)])
async def test_bad_token_requests(store: CertStore, subject: str, ttl: int) -> None:
    acc = await store.create_account(name="A", kind="customer")
    with pytest.raises(InvalidInput):
        await store.issue_token(acc.id, subject=subject, ttl_s=ttl)


async def test_names_longer_than_a_common_name_still_get_chains(store: CertStore) -> None:
    # X.509 caps a CN at 64 characters; the name then lives in the SAN alone.
    long_domain = "a" * 60 + ".example.com"
    acc = await store.create_account(name="N" * 200, kind="customer", domains=[long_domain])
    tls = await store.generate_chain(acc.id, purpose="tls", domain=long_domain)
    leaf = x509.load_pem_x509_certificates(tls.chain_pem.encode())[0]
    assert leaf.subject == x509.Name([])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [long_domain]
    assert (await store.snapshot()).select(long_domain).chain_id == tls.id  # type: ignore[union-attr]
    signing = await store.get_chain((await store.pki(acc.id)).signing_chain_id or "")
    assert signing.subject.startswith("CN=NNNN") and len(signing.subject) <= 3 + 64


async def test_import_with_bind_serves_the_new_chain_at_once(store: CertStore,
                                                             intermediate_ca: Issued) -> None:
    acc = await store.create_account(name="A", kind="customer",
                                     domains=["a.com", "p.a.com"])
    generated = await store.generate_chain(acc.id, purpose="tls", domain="a.com")
    # a replacement that expires sooner than the generated chain (397 days)
    short = make_leaf(intermediate_ca, dns=["a.com", "*.a.com"],
                      not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    start = await store.last_seq()
    chain = await store.import_chain(acc.id, p12(short, b"pw"), b"pw", bind=True)
    # built from what was inserted (no read after the commit), and equal to a read
    assert await store.get_chain(chain.id) == chain
    assert await store.get_chain(generated.id) == generated
    assert (await store.pki(acc.id)).binding_map() == {"a.com": chain.id}
    snap = await store.snapshot()
    assert snap.select("a.com").chain_id == chain.id != generated.id  # type: ignore[union-attr]
    assert snap.select("x.a.com").chain_id == chain.id  # type: ignore[union-attr]
    assert [c.kind for c in await store.changes_since(start)] == ["chain.imported"]  # one commit
