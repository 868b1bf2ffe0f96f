"""Fleet routes on one (SQLite) node: the cluster view, change ids, wait=fleet, the PKI
ETag, and hostile input to each (bad keys, roles, malformed parameters and headers)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from tests.gateway.admin.conftest import AdminEnv, Reply

ACCOUNTS = "/api/v1/accounts"


def _etag(reply: Reply) -> str:
    return CIMultiDict(reply.headers)["ETag"]  # header names are case-insensitive


async def test_cluster_lists_this_node_for_operators_only(admin: AdminEnv) -> None:
    api = admin.api
    account = await api.ok("POST", ACCOUNTS, 201, json_body={
        "name": "A", "kind": "customer", "domains": ["a.test"]})
    reply = await api.call("POST", f"{ACCOUNTS}/{account['id']}/domains?wait=fleet",
                           json_body={"domain": "b.test"})
    assert reply.status == 201
    change = int(reply.headers["Certgate-Change-Id"])
    assert reply.headers["Certgate-Fleet-Pending"] == "none"  # this node has applied it
    cluster = await api.ok("GET", "/api/v1/cluster")
    assert cluster["backend"] == "sqlite" and cluster["last_change"] >= change
    (node,) = cluster["nodes"]
    assert node["live"] and node["applied_change"] >= change and node["lag"] == 0
    customer = api.as_key(await admin.key_for("customer", account["id"]))
    (await customer.get("/api/v1/cluster")).problem(403, "forbidden")
    (await api.as_key(None).get("/api/v1/cluster")).problem(401, "unauthorized")
    (await api.as_key("cgk_forged").get("/api/v1/cluster")).problem(401, "unauthorized")


@pytest.mark.parametrize("query", ["wait=everyone", "wait=", "wait=fleet&wait=node",
                                   "wait=%00fleet"])
async def test_malformed_wait_is_refused_before_any_change(admin: AdminEnv,
                                                           query: str) -> None:
    before = await admin.gateway.store.last_seq()
    reply = await admin.api.call("POST", f"{ACCOUNTS}?{query}", json_body={
        "name": "A", "kind": "customer", "domains": ["w.test"]})
    reply.problem(422, "invalid-request")
    assert await admin.gateway.store.last_seq() == before


async def test_reads_carry_no_change_id_and_failures_none(admin: AdminEnv) -> None:
    reply = await admin.api.get(ACCOUNTS)
    assert reply.status == 200 and "Certgate-Change-Id" not in reply.headers
    reply = await admin.api.call("POST", ACCOUNTS, json_body={"name": "", "kind": "x"})
    assert reply.status == 422 and "Certgate-Change-Id" not in reply.headers


async def test_pki_etag_and_if_match(admin: AdminEnv) -> None:
    api = admin.api
    account = await api.ok("POST", ACCOUNTS, 201, json_body={
        "name": "A", "kind": "customer", "domains": ["a.test"]})
    pki = f"{ACCOUNTS}/{account['id']}/pki"
    first = await api.get(pki)
    tag = _etag(first)
    assert _etag(await api.get(pki)) == tag  # same content, same tag
    body = {"signing_chain_id": None, "tls_bindings": {}}
    for bad in ('"nope"', 'W/' + tag, tag + "x", "", "\"" * 3):
        (await api.call("PUT", pki, json_body=body, headers={"If-Match": bad})
         ).problem(412, "precondition-failed")
    (await api.call("PUT", pki, json_body=body, headers={"If-Match": "x" * 2000})
     ).problem(400, "malformed-request")
    assert (await api.get(pki)).data == first.data  # nothing changed by the refusals
    ok = await api.call("PUT", pki, json_body=body, headers={"If-Match": f'"a", {tag}'})
    assert ok.status == 200 and _etag(ok) != tag
    (await api.call("PUT", pki, json_body=body, headers={"If-Match": tag})
     ).problem(412, "precondition-failed")
    star = await api.call("PUT", pki, json_body=body, headers={"If-Match": "*"})
    assert star.status == 200


async def test_healthz_and_metric_say_connected(admin: AdminEnv) -> None:
    assert (await admin.api.get("/healthz")).data == {"status": "ok"}
    metrics = (await admin.api.get("/metrics")).text
    assert "certgate_store_connected 1.0" in metrics
    assert "certgate_applied_change " in metrics
