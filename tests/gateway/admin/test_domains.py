"""Domains a tenant cannot take, pending domains and their DNS challenge, through the admin
API over real HTTPS, with a real DNS server on loopback and real TLS handshakes (issue 10,
section 3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.certfactory import Issued, make_leaf, p12
from tests.gateway.admin.conftest import Api, admin_context
from tests.gateway.admin.test_workflow import p12_form
from tests.gateway.harness import (
    fingerprint,
    handshake,
    init_store,
    root_pem,
    running_gateway,
    upstream_server,
)
from tests.support.dns_server import TxtServer, silent_resolver, txt_server

ACCOUNTS = "/api/v1/accounts"
PASSWORD = "domains-pw"


@dataclass
class Env:
    """A gateway whose dns.resolvers is the test DNS server, and keys of two vendors."""

    op: Api
    dns: TxtServer
    web_port: int
    accounts: dict[str, dict[str, Any]]
    keys: dict[str, Api]


async def _env(tmp_path: Path, resolver: str, dns: TxtServer,
               check_interval_s: float = 0) -> AsyncIterator[Env]:
    await init_store(tmp_path)
    async with upstream_server() as up:
        listener = {"name": "web", "kind": "https", "bind": "127.0.0.1:0",
                    "upstream": f"http://127.0.0.1:{up}"}
        async with running_gateway(
                tmp_path, [listener], admin={"bind": "127.0.0.1:0"},
                dns={"resolvers": [resolver], "timeout_s": 2.0,
                     "check_interval_s": check_interval_s}) as gw:
            root = root_pem(gw.store.ca_root).decode()
            connector = aiohttp.TCPConnector(ssl=admin_context(root))
            async with aiohttp.ClientSession(connector=connector) as session:
                _, secret = await gw.store.create_api_key(role="operator")
                op = Api(session, f"https://127.0.0.1:{gw.admin_port}", secret)
                accounts: dict[str, dict[str, Any]] = {}
                keys: dict[str, Api] = {}
                for side in ("a", "b"):
                    vendor = await op.ok("POST", ACCOUNTS, 201, json_body={
                        "name": f"V{side}", "kind": "vendor",
                        "domains": [f"vendor{side}.test"]})
                    customer = await op.ok("POST", ACCOUNTS, 201, json_body={
                        "name": f"C{side}", "kind": "customer", "parent_id": vendor["id"],
                        "domains": [f"cust{side}.test"]})
                    accounts[f"v{side}"], accounts[f"c{side}"] = vendor, customer
                    for role, acc in (("vendor", vendor), ("customer", customer)):
                        _, key = await gw.store.create_api_key(role=role, account_id=acc["id"])
                        keys[f"{role[0]}{side}"] = op.as_key(key)
                yield Env(op=op, dns=dns, web_port=gw.listeners["web"].port,
                          accounts=accounts, keys=keys)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    with txt_server() as dns:
        async for e in _env(tmp_path, dns.address, dns):
            yield e


def _status(account: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in account["domain_status"] if d["name"] == name)
    return found


async def test_the_reported_attack_is_refused(env: Env, intermediate_ca: Issued) -> None:
    """Issue 10: B's customer added shop.vendora.test and took its SNI from vendor A."""
    va, cb = env.accounts["va"], env.accounts["cb"]
    wildcard = await env.keys["va"].ok("POST", f"{ACCOUNTS}/{va['id']}/chains/import", 201,
                                       data=p12_form(p12(make_leaf(
                                           intermediate_ca, dns=["*.vendora.test"]),
                                           PASSWORD.encode()), PASSWORD))
    before = await handshake(env.web_port, "shop.vendora.test")
    assert fingerprint(before) == wildcard["fingerprint_sha256"]
    for key in ("cb", "vb"):
        for name in ("shop.vendora.test", "vendora.test", "a.b.vendora.test"):
            reply = await env.keys[key].post(f"{ACCOUNTS}/{cb['id']}/domains", {"domain": name})
            code = "domain-taken" if name == "vendora.test" else "domain-owned-by-another-account"
            body = reply.problem(409, code)
            assert body["rule"] == "domain-owned-by-another-account"
            assert body["names"] == [name]
    (await env.keys["cb"].post(f"{ACCOUNTS}/{cb['id']}/chains/generate", {
        "purpose": "tls", "domain": "shop.vendora.test"})).problem(422, "invalid-name")
    after = await handshake(env.web_port, "shop.vendora.test")
    assert fingerprint(after) == wildcard["fingerprint_sha256"]
    # vendor A may grant the name to its own customer, verified at once
    ca = env.accounts["ca"]
    granted = await env.keys["va"].ok("POST", f"{ACCOUNTS}/{ca['id']}/domains", 201,
                                      json_body={"domain": "shop.vendora.test"})
    assert _status(granted, "shop.vendora.test") == {"name": "shop.vendora.test",
                                                     "status": "verified", "challenge": None}


async def test_pending_domain_serves_nothing_until_dns_proves_it(
        env: Env, intermediate_ca: Issued) -> None:
    cb = env.accounts["cb"]
    base = f"{ACCOUNTS}/{cb['id']}"
    api = env.keys["cb"]
    added = await api.ok("POST", f"{base}/domains", 201,
                         json_body={"domain": "www.example-bank.com"})
    assert "www.example-bank.com" not in added["domains"]
    state = _status(added, "www.example-bank.com")
    challenge = state["challenge"]
    assert state["status"] == "pending"
    assert challenge["type"] == "TXT"
    assert challenge["name"] == "_certgate-challenge.www.example-bank.com"
    assert (await api.ok("GET", base))["domain_status"] == added["domain_status"]
    # nothing issued, imported or served for it
    (await api.post(f"{base}/chains/generate", {"purpose": "tls",
                                                "domain": "www.example-bank.com"})
     ).problem(422, "invalid-certificate")
    leaf = make_leaf(intermediate_ca, dns=["www.example-bank.com"])
    refused = await api.call("POST", f"{base}/chains/import",
                             data=p12_form(p12(leaf, PASSWORD.encode()), PASSWORD))
    body = refused.problem(422, "invalid-certificate")
    assert (body["rule"], body["names"]) == ("domain-unverified", ["www.example-bank.com"])
    # verify before publishing: still pending, 409 naming the rule
    body = (await api.post(f"{base}/domains/www.example-bank.com/verify")).problem(
        409, "domain-unverified")
    assert body["names"] == ["www.example-bank.com"] and "TXT" in body["detail"]
    assert "_certgate-challenge.www.example-bank.com" in env.dns.queries
    env.dns.publish(challenge["name"], "unrelated", challenge["value"])
    verified = await api.ok("POST", f"{base}/domains/www.example-bank.com/verify")
    assert "www.example-bank.com" in verified["domains"]
    assert _status(verified, "www.example-bank.com")["challenge"] is None
    chain = await api.ok("POST", f"{base}/chains/generate", 201, json_body={
        "purpose": "tls", "domain": "www.example-bank.com"})
    served = await handshake(env.web_port, "www.example-bank.com")
    assert fingerprint(served) == chain["fingerprint_sha256"]
    audit = (await env.op.ok("GET", f"/api/v1/audit?account_id={cb['id']}"))["records"]
    row = next(r for r in audit if r["action"] == "domain.verified")
    assert (row["role"], row["target"], row["detail"]) == (
        "customer", "www.example-bank.com", f"method=dns by={cb['id']}")


async def test_vendor_or_operator_approve_a_customer_domain(
        env: Env, intermediate_ca: Issued) -> None:
    cb = env.accounts["cb"]
    base = f"{ACCOUNTS}/{cb['id']}"
    for name in ("print.custb.test", "scan.custb.test"):
        await env.keys["cb"].ok("POST", f"{base}/domains", 201, json_body={"domain": name})
    leaf = make_leaf(intermediate_ca, dns=["print.custb.test"])
    served_before = await handshake(env.web_port, "print.custb.test")
    (await env.keys["cb"].post(f"{base}/domains/print.custb.test/approve")).problem(
        403, "forbidden")
    (await env.keys["va"].post(f"{base}/domains/print.custb.test/approve")).problem(
        404, "not-found")  # another vendor's customer
    approved = await env.keys["vb"].ok("POST", f"{base}/domains/print.custb.test/approve")
    assert _status(approved, "print.custb.test")["status"] == "verified"
    await env.op.ok("POST", f"{base}/domains/scan.custb.test/approve")
    chain = await env.keys["cb"].ok("POST", f"{base}/chains/import", 201,
                                    data=p12_form(p12(leaf, PASSWORD.encode()), PASSWORD))
    served = await handshake(env.web_port, "print.custb.test")
    assert fingerprint(served) == chain["fingerprint_sha256"] != fingerprint(served_before)
    audit = (await env.op.ok("GET", f"/api/v1/audit?account_id={cb['id']}"))["records"]
    rows = [(r["role"], r["target"], r["detail"]) for r in reversed(audit)
            if r["action"] == "domain.verified" and r["result"] == "ok"]
    vendor_b = env.accounts["vb"]["id"]
    assert rows == [("vendor", "print.custb.test", f"method=approval by={vendor_b}"),
                    ("operator", "scan.custb.test", "method=approval by=operator")]
    refused = [r for r in audit if r["action"] == "domain.verified" and r["result"] == "refused"]
    assert [r["detail"] for r in refused] == ["403 forbidden"]


async def test_a_dead_resolver_is_a_503_and_the_domain_stays_pending(tmp_path: Path) -> None:
    with txt_server() as dns, silent_resolver() as dead:
        async for e in _env(tmp_path, dead, dns):
            cb = e.accounts["cb"]
            base = f"{ACCOUNTS}/{cb['id']}"
            await e.keys["cb"].ok("POST", f"{base}/domains", 201, json_body={"domain": "x.test"})
            body = (await e.keys["cb"].post(f"{base}/domains/x.test/verify")).problem(
                503, "dns-lookup-failed")
            assert dead in body["detail"]
            assert _status(await e.op.ok("GET", base), "x.test")["status"] == "pending"


async def test_the_gateway_checks_pending_domains_by_itself(tmp_path: Path) -> None:
    with txt_server() as dns:
        async for e in _env(tmp_path, dns.address, dns, check_interval_s=0.05):
            cb = e.accounts["cb"]
            base = f"{ACCOUNTS}/{cb['id']}"
            added = await e.keys["cb"].ok("POST", f"{base}/domains", 201,
                                          json_body={"domain": "auto.test"})
            challenge = _status(added, "auto.test")["challenge"]
            dns.publish(challenge["name"], challenge["value"])
            for _ in range(400):  # bounded wait for the condition, not for a duration
                account = await e.op.ok("GET", base)
                if "auto.test" in account["domains"]:
                    break
                await asyncio.sleep(0.025)
            assert "auto.test" in account["domains"]
            audit = (await e.op.ok("GET", f"/api/v1/audit?account_id={cb['id']}"))["records"]
            row = next(r for r in audit if r["action"] == "domain.verified")
            assert (row["role"], row["key_id"], row["detail"]) == ("system", None,
                                                                   "method=dns by=system")
