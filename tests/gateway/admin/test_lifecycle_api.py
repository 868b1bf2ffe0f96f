"""Lifecycle through the admin API: status fields, the expiring list, renew now."""

from __future__ import annotations

import datetime as dt

import aiohttp

from tests.certfactory import Issued, make_leaf, p12
from tests.gateway.admin.conftest import AdminEnv
from tests.gateway.harness import fingerprint, handshake

ACCOUNTS = "/api/v1/accounts"


async def test_expiring_list_status_and_renew_now(admin: AdminEnv,
                                                  intermediate_ca: Issued) -> None:
    op = admin.api
    now = dt.datetime.now(dt.UTC)
    acc = await op.ok("POST", ACCOUNTS, 201, json_body={
        "name": "A", "kind": "customer", "domains": ["a.test", "b.test"]})
    base = f"{ACCOUNTS}/{acc['id']}/chains"
    form = aiohttp.FormData()
    form.add_field("file", p12(make_leaf(intermediate_ca, dns=["a.test"],
                                         not_before=now - dt.timedelta(days=1),
                                         not_after=now + dt.timedelta(days=5)), b"pw"),
                   filename="a.p12")
    form.add_field("password", "pw")
    soon = await op.ok("POST", f"{base}/import", 201, data=form)
    assert soon["status"] == "expiring" and 4 * 86400 < soon["expires_in_s"] <= 5 * 86400
    generated = await op.ok("POST", f"{base}/generate", 201,
                            json_body={"purpose": "tls", "domain": "b.test"})
    assert generated["status"] == "valid"
    listed = await op.ok("GET", "/api/v1/expiring?within=30d")
    assert listed["within"] == "30d"
    assert [c["id"] for c in listed["chains"]] == [soon["id"]]
    assert listed["chains"][0]["served_for"] == ["a.test"]
    (await op.get("/api/v1/expiring?within=soon")).problem(422, "invalid-request")
    (await op.get("/api/v1/expiring?within=30d&within=1d")).problem(422, "invalid-request")
    # renew now: the generated chain is replaced and served on the next handshake
    renewed = await op.ok("POST", f"{base}/{generated['id']}/renew", 201)
    assert renewed["id"] != generated["id"] and renewed["dns_names"] == ["b.test"]
    assert renewed["served_for"] == ["b.test"]
    port = admin.web_port
    assert fingerprint(await handshake(port, "b.test")) == renewed["fingerprint_sha256"]
    (await op.post(f"{base}/{generated['id']}/renew")).problem(404, "not-found")
    refused = (await op.post(f"{base}/{soon['id']}/renew")).problem(422, "invalid-input")
    assert "import a new certificate for a.test" in refused["detail"]
    records = (await op.ok("GET", f"/api/v1/audit?account_id={acc['id']}"))["records"]
    assert [r["result"] for r in records if r["action"] == "chain.renewed"] == [
        "refused", "refused", "ok"]
