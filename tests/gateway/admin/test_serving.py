"""End to end: a change made through the admin API is what the next TLS handshake on a real
``https`` listener gets, and the API's ``served_for`` says the same as the handshake."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from gateway.server import DEFAULT_NAME
from tests.certfactory import Issued, make_leaf, p12
from tests.gateway.admin.conftest import AdminEnv, Api
from tests.gateway.admin.files import PASSWORD
from tests.gateway.admin.test_workflow import p12_form
from tests.gateway.harness import client_context, fingerprint, handshake

NAME = "shop.test"


async def served(admin: AdminEnv, name: str) -> str:
    """The leaf fingerprint a real client gets for ``name`` on the next handshake."""
    return fingerprint(await handshake(admin.web_port, name))


async def served_for(api: Api, base: str) -> dict[str, list[str]]:
    """What the API says each chain serves now."""
    chains = (await api.ok("GET", f"{base}/chains"))["chains"]
    return {c["id"]: c["served_for"] for c in chains if c["served_for"]}


async def test_api_changes_are_served_on_the_next_handshake(admin: AdminEnv,
                                                            intermediate_ca: Issued) -> None:
    op = admin.api
    account: dict[str, Any] = await op.ok("POST", "/api/v1/accounts", 201, json_body={
        "name": "Shop", "kind": "customer", "domains": [NAME]})
    api = op.as_key(await admin.key_for("customer", account["id"]))
    base = f"/api/v1/accounts/{account['id']}"
    assert DEFAULT_NAME in (await handshake(admin.web_port, NAME)).subject.rfc4514_string()

    leaf = make_leaf(intermediate_ca, dns=[NAME])
    imported = await api.ok("POST", f"{base}/chains/import", 201,
                            data=p12_form(p12(leaf, PASSWORD.encode()), PASSWORD))
    # the customer's own CA verifies what the gateway now serves for the name
    theirs = client_context(intermediate_ca.chain[-1].public_bytes(Encoding.PEM))
    assert fingerprint(await handshake(admin.web_port, NAME, theirs)) == \
        imported["fingerprint_sha256"]
    assert await served_for(api, base) == {imported["id"]: [NAME]}

    # a generated chain expires later than the imported one, so it wins ...
    generated = await api.ok("POST", f"{base}/chains/generate", 201,
                             json_body={"purpose": "tls", "domain": NAME})
    builtin = client_context(admin.root_pem)
    assert fingerprint(await handshake(admin.web_port, NAME, builtin)) == \
        generated["fingerprint_sha256"]
    assert await served_for(api, base) == {generated["id"]: [NAME]}

    # ... until an explicit binding chooses the imported one
    await api.ok("PUT", f"{base}/pki", json_body={
        "signing_chain_id": None, "tls_bindings": {NAME: imported["id"]}})
    assert await served(admin, NAME) == imported["fingerprint_sha256"]
    assert await served_for(api, base) == {imported["id"]: [NAME]}

    await api.ok("DELETE", f"{base}/chains/{imported['id']}", 204)
    assert await served(admin, NAME) == generated["fingerprint_sha256"]

    await api.ok("DELETE", f"{base}/domains/{NAME}")
    assert DEFAULT_NAME in (await handshake(admin.web_port, NAME)).subject.rfc4514_string()
    assert await served_for(api, base) == {}


async def test_wildcard_served_for_matches_handshakes(admin: AdminEnv,
                                                      intermediate_ca: Issued) -> None:
    """A wildcard chain serves names under the domain; an exact chain wins for its name."""
    op = admin.api
    account = await op.ok("POST", "/api/v1/accounts", 201, json_body={
        "name": "Wild", "kind": "customer", "domains": ["wild.test", "exact.wild.test"]})
    base = f"/api/v1/accounts/{account['id']}"
    wildcard = make_leaf(intermediate_ca, dns=["*.wild.test"])
    wild = await op.ok("POST", f"{base}/chains/import", 201,
                       data=p12_form(p12(wildcard, PASSWORD.encode()), PASSWORD))
    exact = await op.ok("POST", f"{base}/chains/generate", 201,
                        json_body={"purpose": "tls", "domain": "exact.wild.test"})
    assert await served_for(op, base) == {wild["id"]: ["*.wild.test"],
                                          exact["id"]: ["exact.wild.test"]}
    assert await served(admin, "any.wild.test") == wild["fingerprint_sha256"]
    assert await served(admin, "exact.wild.test") == exact["fingerprint_sha256"]
