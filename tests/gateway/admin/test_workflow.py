"""The Certificates page (shared/reference/certificates-tab.txt), driven through the admin API
over real HTTPS, once per role: an operator on a vendor account, a vendor on its customer's
account, a customer on its own account."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.certfactory import Issued, make_leaf, p12
from tests.gateway.admin.conftest import AdminEnv, Api
from tests.gateway.admin.files import PASSWORD, der, pem, refusals, rule_of

ACCOUNTS = "/api/v1/accounts"


def p12_form(data: bytes, password: str | None) -> aiohttp.FormData:
    """The multipart body of a PKCS#12 import."""
    form = aiohttp.FormData()
    form.add_field("file", data, filename="chain.p12", content_type="application/x-pkcs12")
    if password is not None:
        form.add_field("password", password)
    return form


async def setup_tenants(admin: AdminEnv) -> dict[str, Any]:
    """Operator creates a vendor; the vendor's key creates its customer."""
    op = admin.api
    vendor = await op.ok("POST", ACCOUNTS, 201, json_body={
        "name": "Vendor One", "kind": "vendor", "domains": ["vendor.test"]})
    vendor_api = op.as_key(await admin.key_for("vendor", vendor["id"]))
    customer = await vendor_api.ok("POST", ACCOUNTS, 201, json_body={
        "name": "Acme", "kind": "customer", "domains": ["acme.test"]})
    assert customer["parent_id"] == vendor["id"]  # forced to the vendor's own account
    customer_api = op.as_key(await admin.key_for("customer", customer["id"]))
    return {"vendor": vendor, "customer": customer, "apis": {
        "operator": (op, vendor), "vendor": (vendor_api, customer),
        "customer": (customer_api, customer)}}


async def trusted_cas_step(api: Api, base: str, root_ca: Issued,
                           intermediate_ca: Issued) -> None:
    """Import PEM (two certificates) and DER (multipart, already stored), list, bundle."""
    raw = await api.ok("POST", f"{base}/trusted-cas", 201,
                       data=pem(intermediate_ca) + pem(root_ca),
                       headers={"Content-Type": "application/x-pem-file"})
    assert [c["subject"] for c in raw["trusted_cas"]] == ["CN=Customer Issuing",
                                                          "CN=Customer Root"]
    form = aiohttp.FormData()
    form.add_field("file", der(root_ca), filename="root.cer",
                   content_type="application/pkix-cert")
    again = await api.ok("POST", f"{base}/trusted-cas", 201, data=form)
    assert again["trusted_cas"][0]["id"] == raw["trusted_cas"][1]["id"]  # stored once
    listed = await api.ok("GET", f"{base}/trusted-cas")
    assert len(listed["trusted_cas"]) == 2
    bundle = await api.call("GET", f"{base}/trusted-cas/bundle.pem")
    assert bundle.content_type == "application/pem-certificate-chain"
    assert {c.subject.rfc4514_string() for c in
            x509.load_pem_x509_certificates(bundle.text.encode())} == {
        "CN=Customer Issuing", "CN=Customer Root"}
    await api.ok("DELETE", f"{base}/trusted-cas/{raw['trusted_cas'][0]['id']}", 204)
    assert len((await api.ok("GET", f"{base}/trusted-cas"))["trusted_cas"]) == 1


async def import_step(api: Api, base: str, domain: str, intermediate_ca: Issued,
                      tmp_path: Path) -> dict[str, Any]:
    """A wildcard PKCS#12 passes; files breaking rules are refused naming rule and names."""
    wildcard = make_leaf(intermediate_ca, dns=[domain, f"*.{domain}"])
    chain: dict[str, Any] = await api.ok("POST", f"{base}/chains/import", 201,
                         data=p12_form(p12(wildcard, PASSWORD.encode()), PASSWORD))
    assert chain["origin"] == "imported" and chain["purpose"] == "tls"
    assert chain["dns_names"] == [domain, f"*.{domain}"]
    assert chain["served"] is True and chain["served_for"] == [domain, f"*.{domain}"]
    assert chain["fingerprint_sha256"] == wildcard.cert.fingerprint(hashes.SHA256()).hex()
    assert "PRIVATE KEY" not in json.dumps(chain)
    cases = refusals(intermediate_ca, domain, tmp_path)
    for case in ("names-not-owned", "wrong-password", "expired", "weak-key"):
        refused = await api.call("POST", f"{base}/chains/import",
                                 data=p12_form(cases[case].data, cases[case].password))
        body = refused.problem(422, "invalid-certificate")
        assert body["rule"] == rule_of(case)
        assert tuple(body.get("names", ())) == cases[case].names
    return chain


async def page_workflow(api: Api, account: dict[str, Any], admin: AdminEnv,
                        root_ca: Issued, intermediate_ca: Issued, tmp_path: Path,
                        approver: Api | None = None) -> None:
    """Every action of the page, through one key, on one account. With ``approver`` (a
    customer's key), the added domain is pending until the approver's key approves it."""
    base = f"{ACCOUNTS}/{account['id']}"
    domain = account["domains"][0]
    added = await api.ok("POST", f"{base}/domains", 201, json_body={"domain": f"Print.{domain}."})
    if approver is not None:
        assert f"print.{domain}" not in added["domains"]
        assert {"name": f"print.{domain}", "status": "pending"}.items() <= next(
            d for d in added["domain_status"] if d["name"] == f"print.{domain}").items()
        (await api.post(f"{base}/chains/generate", {"purpose": "tls",
                                                    "domain": f"print.{domain}"})
         ).problem(422, "invalid-certificate")
        (await api.post(f"{base}/domains/print.{domain}/approve")).problem(403, "forbidden")
        added = await approver.ok("POST", f"{base}/domains/print.{domain}/approve")
    assert f"print.{domain}" in added["domains"]  # normalised once, at the edge
    await trusted_cas_step(api, base, root_ca, intermediate_ca)
    imported = await import_step(api, base, domain, intermediate_ca, tmp_path)

    tls = await api.ok("POST", f"{base}/chains/generate", 201, json_body={
        "purpose": "tls", "domain": f"print.{domain}", "key_type": "rsa-2048"})
    assert tls["key_type"] == "rsa-2048" and tls["served_for"] == [f"print.{domain}"]
    assert "BEGIN CERTIFICATE" in tls["chain_pem"]
    default_signing = (await api.ok("GET", f"{base}/pki"))["signing_chain_id"]
    signing = await api.ok("POST", f"{base}/chains/generate", 201,
                           json_body={"purpose": "signing"})
    assert (await api.ok("GET", f"{base}/pki"))["signing_chain_id"] == signing["id"]
    listed = (await api.ok("GET", f"{base}/chains"))["chains"]
    assert {c["id"] for c in listed} == {default_signing, imported["id"], tls["id"],
                                         signing["id"]}
    assert all("chain_pem" not in c for c in listed)

    # switch back to the default signing chain, and bind the base domain explicitly
    pki = await api.ok("PUT", f"{base}/pki", json_body={
        "signing_chain_id": default_signing, "tls_bindings": {domain: imported["id"]}})
    assert pki == {"account_id": account["id"], "signing_chain_id": default_signing,
                   "tls_bindings": {domain: imported["id"]}}
    token = await api.ok("POST", f"{base}/tokens", 201, json_body={
        "subject": "printer-17", "audience": "print-api", "ttl_s": 600})
    await verify_token(admin, account["id"], token, default_signing)

    cleared = await api.ok("PUT", f"{base}/pki", json_body={"signing_chain_id": None,
                                                           "tls_bindings": {}})
    assert cleared["signing_chain_id"] is None and cleared["tls_bindings"] == {}
    refused = await api.post(f"{base}/tokens", {"subject": "printer-17"})
    refused.problem(409, "no-signing-chain")

    await api.ok("DELETE", f"{base}/chains/{tls['id']}", 204)
    (await api.get(f"{base}/chains/{tls['id']}")).problem(404, "not-found")
    removed = await api.ok("DELETE", f"{base}/domains/print.{domain}")
    assert f"print.{domain}" not in removed["domains"]
    renamed = await api.ok("PATCH", base, json_body={"name": "Renamed"})
    assert renamed["name"] == "Renamed"


async def verify_token(admin: AdminEnv, account_id: str, token: dict[str, Any],
                       chain_id: str) -> None:
    """Verify the JWT with the account's public JWKS, fetched without any key (PyJWT)."""
    jwks = await admin.api.as_key(None).ok("GET", f"{ACCOUNTS}/{account_id}/jwks.json")
    header = jwt.get_unverified_header(token["token"])
    assert header["kid"] == token["kid"] and token["chain_id"] == chain_id
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = jwt.decode(token["token"], key.key, algorithms=[header["alg"]],
                        audience="print-api", issuer="certgate")
    assert claims["sub"] == "printer-17" and claims["account_id"] == account_id
    assert claims["exp"] - claims["iat"] == 600


@pytest.mark.parametrize("role", ["operator", "vendor", "customer"])
async def test_certificates_page_workflow(admin: AdminEnv, role: str, root_ca: Issued,
                                          intermediate_ca: Issued, tmp_path: Path) -> None:
    tenants = await setup_tenants(admin)
    api, account = tenants["apis"][role]
    # A customer key's new domain waits for its vendor's approval (issue 10).
    approver = tenants["apis"]["vendor"][0] if role == "customer" else None
    await page_workflow(api, account, admin, root_ca, intermediate_ca, tmp_path, approver)


async def test_account_rules_per_role(admin: AdminEnv) -> None:
    tenants = await setup_tenants(admin)
    op, vendor = tenants["apis"]["operator"]
    vendor_api, customer = tenants["apis"]["vendor"]
    customer_api, _ = tenants["apis"]["customer"]
    other = await op.ok("POST", ACCOUNTS, 201, json_body={"name": "Other", "kind": "vendor"})

    (await customer_api.post(ACCOUNTS, {"name": "X", "kind": "customer"})).problem(
        403, "forbidden")
    (await vendor_api.post(ACCOUNTS, {"name": "X", "kind": "vendor"})).problem(403, "forbidden")
    (await vendor_api.post(ACCOUNTS, {"name": "X", "kind": "customer",
                                      "parent_id": other["id"]})).problem(403, "forbidden")
    # listings: operator all, vendor itself and its customers, customer itself
    assert len((await op.ok("GET", ACCOUNTS))["accounts"]) == 3
    assert {a["id"] for a in (await vendor_api.ok("GET", ACCOUNTS))["accounts"]} == {
        vendor["id"], customer["id"]}
    assert [a["id"] for a in (await customer_api.ok("GET", ACCOUNTS))["accounts"]] == [
        customer["id"]]
    # a key never deletes its own account; a vendor deletes its customer's
    (await customer_api.call("DELETE", f"{ACCOUNTS}/{customer['id']}")).problem(403, "forbidden")
    (await vendor_api.call("DELETE", f"{ACCOUNTS}/{vendor['id']}")).problem(403, "forbidden")
    # an operator cannot delete a vendor that still has customers
    (await op.call("DELETE", f"{ACCOUNTS}/{vendor['id']}")).problem(409, "conflict")
    await vendor_api.ok("DELETE", f"{ACCOUNTS}/{customer['id']}", 204)
    # the customer's key went with its account
    (await customer_api.get(ACCOUNTS)).problem(401, "unauthorized")
    await op.ok("DELETE", f"{ACCOUNTS}/{vendor['id']}", 204)


async def test_domain_owned_by_another_account_is_refused_for_everyone(
        admin: AdminEnv) -> None:
    tenants = await setup_tenants(admin)
    op, vendor = tenants["apis"]["operator"]
    vendor_api, customer = tenants["apis"]["vendor"]
    for api, account in ((vendor_api, customer), (op, vendor)):
        taken = await api.post(f"{ACCOUNTS}/{account['id']}/domains", {"domain": "ACME.test"})
        assert taken.problem(409, "domain-taken")["names"] == ["acme.test"]
    (await op.post(ACCOUNTS, {"name": "Copy", "kind": "customer", "domains": ["acme.test"]})
     ).problem(409, "domain-taken")


async def test_key_created_with_the_cli_opens_the_api(admin: AdminEnv, tmp_path: Path) -> None:
    """The documented path: 'certgate apikey create --json' prints the key once."""
    config = tmp_path / "cli.yaml"
    config.write_text(f"data_dir: {tmp_path}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from gateway.cli import main; main()", "-c", str(config),
        "apikey", "create", "--role", "operator", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    created = json.loads(out)
    assert created["role"] == "operator" and created["key"].startswith("cgk_")
    api = admin.api.as_key(created["key"])
    await api.ok("POST", ACCOUNTS, 201, json_body={"name": "Via CLI key", "kind": "vendor"})
    records = (await api.ok("GET", "/api/v1/audit?limit=1"))["records"]
    assert records[0]["key_id"] == created["id"] and records[0]["action"] == "account.created"
