"""The audit log: every mutation, every token and every refused attempt, with who did it, and
never a key, password, token or private key in it."""

from __future__ import annotations

import json
from typing import Any

from tests.certfactory import Issued, make_leaf, p12
from tests.gateway.admin.conftest import AdminEnv
from tests.gateway.admin.files import pem
from tests.gateway.admin.test_workflow import p12_form

ACCOUNTS = "/api/v1/accounts"
AUDIT = "/api/v1/audit"


def _row(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["role"], r["account_id"], r["action"], r["target"], r["result"])


async def test_mutations_tokens_and_refusals_are_audited_without_secrets(
        admin: AdminEnv, root_ca: Issued) -> None:
    op = admin.api
    vendor = await op.ok("POST", ACCOUNTS, 201, json_body={"name": "V", "kind": "vendor"})
    key_id, secret = await admin.new_key("vendor", vendor["id"])
    api = op.as_key(secret)
    password = "audit-secret-pw-123"

    customer = await api.ok("POST", ACCOUNTS, 201, json_body={
        "name": "C", "kind": "customer", "domains": ["c.test"]})
    cid = customer["id"]
    base = f"{ACCOUNTS}/{cid}"
    await api.ok("POST", f"{base}/domains", 201, json_body={"domain": "www.c.test"})
    cas = await api.ok("POST", f"{base}/trusted-cas", 201, data=pem(root_ca))
    leaf = make_leaf(root_ca, dns=["c.test"])
    chain = await api.ok("POST", f"{base}/chains/import", 201,
                         data=p12_form(p12(leaf, password.encode()), password))
    refused = await api.call("POST", f"{base}/chains/import",
                             data=p12_form(p12(leaf, password.encode()), password + "x"))
    refused.problem(422, "invalid-certificate")
    (await api.post(f"{base}/domains", {"domain": "c.test"})).problem(409, "domain-taken")
    (await api.post(ACCOUNTS, {"name": "W", "kind": "vendor"})).problem(403, "forbidden")
    token = await api.ok("POST", f"{base}/tokens", 201, json_body={"subject": "device-1"})
    await api.ok("PUT", f"{base}/pki", json_body={"signing_chain_id": None, "tls_bindings": {}})
    (await api.post(f"{base}/tokens", {"subject": "device-1"})).problem(409, "no-signing-chain")
    await api.ok("DELETE", f"{base}/trusted-cas/{cas['trusted_cas'][0]['id']}", 204)
    await api.ok("DELETE", f"{base}/chains/{chain['id']}", 204)

    page = await op.ok("GET", f"{AUDIT}?limit=1000")
    mine = [r for r in page["records"] if r["key_id"] == key_id]
    assert [_row(r) for r in reversed(mine)] == [
        ("vendor", cid, "account.created", cid, "ok"),
        ("vendor", cid, "domain.added", "www.c.test", "ok"),
        ("vendor", cid, "trusted_ca.imported", cas["trusted_cas"][0]["id"], "ok"),
        ("vendor", cid, "chain.imported", chain["id"], "ok"),
        ("vendor", cid, "chain.imported", cid, "refused"),
        ("vendor", cid, "domain.added", cid, "refused"),
        ("vendor", None, "account.created", None, "refused"),
        ("vendor", cid, "token.issued", token["chain_id"], "ok"),
        ("vendor", cid, "pki.updated", cid, "ok"),
        ("vendor", cid, "token.issued", cid, "refused"),
        ("vendor", cid, "trusted_ca.deleted", cas["trusted_cas"][0]["id"], "ok"),
        ("vendor", cid, "chain.deleted", chain["id"], "ok"),
    ]
    details = {r["action"] + "/" + r["result"]: r["detail"] for r in mine}
    assert details["chain.imported/refused"] == "422 invalid-certificate rule=wrong-password"
    assert details["domain.added/refused"] == "409 domain-taken names=['c.test']"
    assert details["token.issued/refused"] == "409 no-signing-chain"
    assert "sub=device-1" in details["token.issued/ok"]
    assert all(r["at"].endswith("Z") for r in mine)
    dump = json.dumps(page)
    for text in (secret, password, token["token"], token["token"].split(".")[2],
                 "PRIVATE KEY"):
        assert text not in dump


async def test_audit_filters_by_account_and_time_and_pages(admin: AdminEnv) -> None:
    op = admin.api
    ids = [(await op.ok("POST", ACCOUNTS, 201, json_body={"name": f"A{i}", "kind": "vendor"})
            )["id"] for i in range(5)]
    for account_id in ids:
        await op.ok("PATCH", f"{ACCOUNTS}/{account_id}", json_body={"name": "Renamed"})
    everything = (await op.ok("GET", f"{AUDIT}?limit=1000"))["records"]
    assert [r["seq"] for r in everything] == sorted((r["seq"] for r in everything),
                                                     reverse=True)
    # by account
    one = (await op.ok("GET", f"{AUDIT}?account_id={ids[2]}"))["records"]
    assert [r["action"] for r in one] == ["account.updated", "account.created"]
    # by time: since is inclusive, until exclusive
    middle = next(r for r in everything if r["account_id"] == ids[2]
                  and r["action"] == "account.updated")
    since = (await op.ok("GET", f"{AUDIT}?since={middle['at']}&limit=1000"))["records"]
    until = (await op.ok("GET", f"{AUDIT}?until={middle['at']}&limit=1000"))["records"]
    assert middle in since and middle not in until
    assert {r["seq"] for r in since} | {r["seq"] for r in until} == {
        r["seq"] for r in everything}
    # pages of 3, following next_before, give everything once
    seen: list[int] = []
    query = f"{AUDIT}?limit=3"
    while True:
        page = await op.ok("GET", query)
        seen += [r["seq"] for r in page["records"]]
        if page["next_before"] is None:
            break
        query = f"{AUDIT}?limit=3&before={page['next_before']}"
    assert seen == [r["seq"] for r in everything]
