"""Tenant isolation on every route: another tenant's ids answer exactly like missing ids (404),
no key or a bad key answers 401, and nothing of the other tenant changes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway.admin.app import ENDPOINTS
from tests.certfactory import Issued, make_leaf, p12
from tests.gateway.admin.conftest import AdminEnv, Api, Reply
from tests.gateway.admin.files import PASSWORD, pem

ACCOUNTS = "/api/v1/accounts"
MISSING = "acc_000000000000000000000000"
PROTECTED = {e.operation_id for e in ENDPOINTS if not e.public}
# Routes without an account in the path; checked by their own tests below.
UNSCOPED = {"create_account", "list_accounts", "list_audit", "list_expiring", "get_cluster"}


@dataclass(frozen=True)
class Target:
    """An account and one of each of its records."""

    account: str
    domain: str
    chain: str
    ca: str


@dataclass
class World:
    """Two vendors with a customer each; A's keys attack B's records."""

    a_vendor: Target
    a_customer: Target
    b_vendor: Target
    b_customer: Target
    keys: dict[str, tuple[str, str]]
    ca_pem: bytes
    p12: bytes


Request = tuple[str, str, Callable[[], dict[str, Any]]]


def requests_for(t: Target, world: World) -> dict[str, Request]:
    """One plausible, well-formed request per account-scoped route, aimed at ``t``."""
    base = f"{ACCOUNTS}/{t.account}"

    def form() -> dict[str, Any]:
        data = aiohttp.FormData()
        data.add_field("file", world.p12, filename="c.p12")
        data.add_field("password", PASSWORD)
        return {"data": data}

    def body(value: Any) -> Callable[[], dict[str, Any]]:
        return lambda: {"json_body": value}

    none: Callable[[], dict[str, Any]] = dict
    return {
        "get_account": ("GET", base, none),
        "update_account": ("PATCH", base, body({"name": "Hijacked"})),
        "delete_account": ("DELETE", base, none),
        "add_domain": ("POST", f"{base}/domains", body({"domain": f"new.{t.domain}"})),
        "remove_domain": ("DELETE", f"{base}/domains/{t.domain}", none),
        "approve_domain": ("POST", f"{base}/domains/{t.domain}/approve", none),
        "verify_domain": ("POST", f"{base}/domains/{t.domain}/verify", none),
        "import_trusted_cas": ("POST", f"{base}/trusted-cas",
                               lambda: {"data": world.ca_pem}),
        "list_trusted_cas": ("GET", f"{base}/trusted-cas", none),
        "trusted_ca_bundle": ("GET", f"{base}/trusted-cas/bundle.pem", none),
        "delete_trusted_ca": ("DELETE", f"{base}/trusted-cas/{t.ca}", none),
        "import_chain": ("POST", f"{base}/chains/import", form),
        "generate_chain": ("POST", f"{base}/chains/generate",
                           body({"purpose": "tls", "domain": t.domain})),
        "list_chains": ("GET", f"{base}/chains", none),
        "get_chain": ("GET", f"{base}/chains/{t.chain}", none),
        "delete_chain": ("DELETE", f"{base}/chains/{t.chain}", none),
        "renew_chain": ("POST", f"{base}/chains/{t.chain}/renew", none),
        "get_pki": ("GET", f"{base}/pki", none),
        "put_pki": ("PUT", f"{base}/pki", body({"signing_chain_id": None,
                                                "tls_bindings": {}})),
        "issue_token": ("POST", f"{base}/tokens", body({"subject": "intruder"})),
    }


async def send(api: Api, request: Request) -> Reply:
    method, path, kwargs = request
    return await api.call(method, path, **kwargs())


async def _target(admin: AdminEnv, account: dict[str, Any], issuer: Issued) -> Target:
    op, base = admin.api, f"{ACCOUNTS}/{account['id']}"
    domain = account["domains"][0]
    chain = await op.ok("POST", f"{base}/chains/generate", 201,
                        json_body={"purpose": "tls", "domain": domain})
    cas = await op.ok("POST", f"{base}/trusted-cas", 201, data=pem(issuer))
    return Target(account=account["id"], domain=domain, chain=chain["id"],
                  ca=cas["trusted_cas"][0]["id"])


@pytest.fixture
async def world(admin: AdminEnv, root_ca: Issued) -> World:
    op = admin.api
    made: dict[str, dict[str, Any]] = {}
    for side in ("a", "b"):
        vendor = await op.ok("POST", ACCOUNTS, 201, json_body={
            "name": f"Vendor {side}", "kind": "vendor", "domains": [f"{side}-vendor.test"]})
        made[f"{side}_vendor"] = vendor
        made[f"{side}_customer"] = await op.ok("POST", ACCOUNTS, 201, json_body={
            "name": f"Customer {side}", "kind": "customer", "parent_id": vendor["id"],
            "domains": [f"{side}-customer.test"]})
    targets = {name: await _target(admin, acc, root_ca) for name, acc in made.items()}
    keys = {"vendor": await admin.new_key("vendor", made["a_vendor"]["id"]),
            "customer": await admin.new_key("customer", made["a_customer"]["id"])}
    leaf = make_leaf(root_ca, dns=["b-customer.test"])
    return World(**targets, keys=keys, ca_pem=pem(root_ca),
                 p12=p12(leaf, PASSWORD.encode()))


def _same_as_missing(reply: Reply, missing: Reply, ident: str) -> None:
    """An invisible record's 404 must be the missing record's 404, up to the id itself."""
    body = reply.problem(404, "not-found")
    expected = {k: (v.replace(MISSING, ident) if isinstance(v, str) else v)
                for k, v in missing.problem(404, "not-found").items()}
    assert body == expected


async def _state(admin: AdminEnv, t: Target) -> list[Any]:
    op, base = admin.api, f"{ACCOUNTS}/{t.account}"
    chains = await op.ok("GET", f"{base}/chains")
    for chain in chains["chains"]:
        del chain["expires_in_s"]  # counts down between two reads
    return [await op.ok("GET", base), chains,
            await op.ok("GET", f"{base}/trusted-cas"), await op.ok("GET", f"{base}/pki")]


@pytest.mark.parametrize("role", ["vendor", "customer"])
async def test_other_tenants_ids_are_404_on_every_route(admin: AdminEnv, world: World,
                                                        role: str) -> None:
    key_id, secret = world.keys[role]
    api = admin.api.as_key(secret)
    victims = [world.b_vendor, world.b_customer]
    if role == "customer":  # a customer sees neither its vendor nor its siblings
        victims.append(world.a_vendor)
    before = [await _state(admin, v) for v in victims]
    missing_target = Target(account=MISSING, domain="missing.test", chain="chn_x", ca="tca_x")
    covered: set[str] = set()
    for victim in victims:
        missing = requests_for(missing_target, world)
        for op_id, request in requests_for(victim, world).items():
            reply = await send(api, request)
            _same_as_missing(reply, await send(api, missing[op_id]), victim.account)
            covered.add(op_id)
    assert covered | UNSCOPED == PROTECTED, "a new route needs a cross-tenant case here"
    assert [await _state(admin, v) for v in victims] == before
    # Nothing of the attempts is in the victims' audit logs (issue 10, section 4) ...
    for victim in victims:
        audit = (await admin.api.ok("GET", f"/api/v1/audit?account_id={victim.account}"
                                           "&limit=1000"))["records"]
        assert not [r for r in audit if r["key_id"] == key_id], victim
    # ... they are under the attacker's own account, and read the same for a missing id
    # and another tenant's: the request line, the 404, nothing of the victim.
    own = world.a_vendor if role == "vendor" else world.a_customer
    mine = (await admin.api.as_key(secret).ok(
        "GET", f"/api/v1/audit?account_id={own.account}&limit=1000"))["records"]
    refused = [r for r in mine if r["key_id"] == key_id and r["result"] == "refused"]
    assert refused and {r["action"] for r in refused} == {"access.refused"}
    assert {r["detail"] for r in refused} == {"404 not-found kind=account"}
    assert all(r["target"].split(" ")[1].startswith(ACCOUNTS + "/") for r in refused)
    # rate-limited: 20 rows per key and minute, the rest counted in one row per minute
    sent = 2 * len(victims) * len(covered)
    limited = [r for r in mine if r["key_id"] == key_id and r["action"] == "audit.rate_limited"]
    assert len(refused) + sum(r["count"] for r in limited) == sent
    minutes = {r["at"][:16] for r in refused}
    assert len(refused) <= 20 * len(minutes) and len(limited) <= len(minutes)
    assert all(r["result"] == "suppressed" and r["account_id"] == own.account
               for r in limited)


async def test_other_tenants_records_under_my_own_account_are_404(admin: AdminEnv,
                                                                  world: World) -> None:
    api = admin.api.as_key(world.keys["customer"][1])
    mine, theirs = world.a_customer, world.b_customer
    base = f"{ACCOUNTS}/{mine.account}"
    for method, path in (("GET", f"{base}/chains/{theirs.chain}"),
                         ("DELETE", f"{base}/chains/{theirs.chain}"),
                         ("DELETE", f"{base}/trusted-cas/{theirs.ca}")):
        (await api.call(method, path)).problem(404, "not-found")
    for pki in ({"signing_chain_id": theirs.chain, "tls_bindings": {}},
                {"signing_chain_id": None, "tls_bindings": {mine.domain: theirs.chain}}):
        (await api.call("PUT", f"{base}/pki", json_body=pki)).problem(404, "not-found")
    (await api.post(f"{base}/domains", {"domain": theirs.domain})).problem(409, "domain-taken")
    assert (await admin.api.ok("GET", f"{ACCOUNTS}/{theirs.account}/chains/{theirs.chain}")
            )["served_for"] == [theirs.domain]


async def test_unscoped_routes_show_only_visible_accounts(admin: AdminEnv, world: World) -> None:
    vendor = admin.api.as_key(world.keys["vendor"][1])
    customer = admin.api.as_key(world.keys["customer"][1])
    listed = {a["id"] for a in (await vendor.ok("GET", ACCOUNTS))["accounts"]}
    assert listed == {world.a_vendor.account, world.a_customer.account}
    assert [a["id"] for a in (await customer.ok("GET", ACCOUNTS))["accounts"]] == [
        world.a_customer.account]
    (await vendor.post(ACCOUNTS, {"name": "Stolen", "kind": "customer",
                                  "parent_id": world.b_vendor.account})).problem(403, "forbidden")
    for api, visible in ((vendor, {world.a_vendor.account, world.a_customer.account}),
                         (customer, {world.a_customer.account})):
        records = (await api.ok("GET", "/api/v1/audit?limit=1000"))["records"]
        assert records and {r["account_id"] for r in records} <= visible
        for other in (world.b_vendor.account, world.b_customer.account):
            (await api.get(f"/api/v1/audit?account_id={other}")).problem(404, "not-found")
            (await api.get(f"/api/v1/expiring?account_id={other}")).problem(404, "not-found")
        # every chain expires within 10 years: the listing is exactly the visible ones
        expiring = (await api.ok("GET", "/api/v1/expiring?within=3650d"))["chains"]
        assert expiring and {c["account_id"] for c in expiring} == visible


async def test_a_refused_key_is_logged_without_its_secret(
        admin: AdminEnv, world: World, caplog: pytest.LogCaptureFixture) -> None:
    revoked_id, revoked = await admin.new_key("operator", None)
    await admin.gateway.store.revoke_api_key(revoked_id)
    api = admin.api.as_key(None)
    with caplog.at_level(logging.WARNING, logger="certgate.admin"):
        for value in (f"Bearer {revoked}", "Bearer cgk_made-up", "Basic dXNlcjpwdw=="):
            (await api.call("GET", ACCOUNTS, headers={"Authorization": value})).problem(
                401, "unauthorized")
        (await api.get(ACCOUNTS)).problem(401, "unauthorized")  # no key: not an attempt
    refusals = [r.getMessage() for r in caplog.records if "admin: refused" in r.getMessage()]
    assert len(refusals) == 3
    assert all(f"from 127.0.0.1 for GET {ACCOUNTS}" in line for line in refusals)
    assert sum("unknown or revoked" in line for line in refusals) == 2
    for secret in (revoked, "cgk_made-up", "dXNlcjpwdw=="):
        assert secret not in caplog.text


async def test_every_protected_route_needs_a_valid_key(admin: AdminEnv, world: World) -> None:
    revoked_id, revoked = await admin.new_key("operator", None)
    await admin.gateway.store.revoke_api_key(revoked_id)
    routes = dict(requests_for(world.a_customer, world))
    routes["create_account"] = ("POST", ACCOUNTS, lambda: {"json_body": {
        "name": "Anon", "kind": "vendor"}})
    routes["list_accounts"] = ("GET", ACCOUNTS, dict)
    routes["list_audit"] = ("GET", "/api/v1/audit", dict)
    routes["list_expiring"] = ("GET", "/api/v1/expiring", dict)
    routes["get_cluster"] = ("GET", "/api/v1/cluster", dict)
    assert set(routes) == PROTECTED
    before = await _state(admin, world.a_customer)
    for secret, invalid in ((None, False), ("cgk_not-a-key", True), (revoked, True),
                            ("Basic dXNlcjpwdw==", True)):
        api = admin.api.as_key(None)
        headers = {} if secret is None else {"Authorization": (
            secret if secret.startswith("Basic") else f"Bearer {secret}")}
        for op_id, (method, path, kwargs) in routes.items():
            reply = await api.call(method, path, headers=headers, **kwargs())
            reply.problem(401, "unauthorized")
            challenge = reply.headers["WWW-Authenticate"]
            assert challenge.startswith("Bearer "), op_id
            assert ('error="invalid_token"' in challenge) == invalid, (op_id, challenge)
    assert await _state(admin, world.a_customer) == before
    public = admin.api.as_key(None)
    for path in (f"{ACCOUNTS}/{world.b_customer.account}/jwks.json", "/api/v1/ca.pem",
                 "/healthz", "/metrics", "/api/v1/openapi.json"):
        await public.ok("GET", path)


async def test_refused_paths_are_escaped_bounded_and_kept_from_the_victim(
        admin: AdminEnv, world: World, caplog: pytest.LogCaptureFixture) -> None:
    key_id, secret = world.keys["customer"]
    api = admin.api.as_key(secret)
    victim = world.b_customer.account
    hostile = [f"{ACCOUNTS}/{victim}%1B%5B2J%07/chains",  # an id with a terminal escape
               f"{ACCOUNTS}/{victim}/chains/{'c' * 2000}",  # a long path
               f"{ACCOUNTS}/{victim}/domains/x%0D%0Aforged: line/approve"]
    for path in hostile:
        method = "POST" if path.endswith("/approve") else "GET"
        (await api.call(method, path)).problem(404, "not-found")
    records = (await admin.api.ok("GET", f"/api/v1/audit?account_id={world.a_customer.account}"
                                          "&limit=50"))["records"]
    targets = [r["target"] for r in records if r["key_id"] == key_id][:3]
    assert targets[2] == f"GET {ACCOUNTS}/{victim}\\x1b[2J\\x07/chains"
    assert len(targets[1]) == 256 and targets[1].endswith("...")
    assert targets[0] == f"POST {ACCOUNTS}/{victim}/domains/x\\r\\nforged: line/approve"
    # asking for the victim's audit log is a refused access too, under the caller
    (await api.get(f"/api/v1/audit?account_id={victim}")).problem(404, "not-found")
    records = (await admin.api.ok("GET", f"/api/v1/audit?account_id={world.a_customer.account}"
                                          "&limit=1"))["records"]
    assert [(r["key_id"], r["action"], r["target"]) for r in records] == [
        (key_id, "access.refused", "GET /api/v1/audit")]
    victims_log = (await admin.api.ok("GET", f"/api/v1/audit?account_id={victim}&limit=1000")
                   )["records"]
    assert not [r for r in victims_log if r["key_id"] == key_id]
    # the warning for a bad key escapes the path too (one log line per attempt, no forgery)
    with caplog.at_level(logging.WARNING, logger="certgate.admin"):
        (await admin.api.as_key("cgk_nope").get(f"{ACCOUNTS}/x%0Aforged%1B[2J")).problem(
            401, "unauthorized")
    (line,) = [r.getMessage() for r in caplog.records if "admin: refused" in r.getMessage()]
    assert line.endswith(f"for GET {ACCOUNTS}/x\\nforged\\x1b[2J")
