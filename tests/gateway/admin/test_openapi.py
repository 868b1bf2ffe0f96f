"""The OpenAPI document is the contract: it matches the live router, and schemathesis, run
against the live server, finds no server error and no response that breaks it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.admin.app import ENDPOINTS
from gateway.admin.web import PAGE_PATHS
from tests.gateway.admin.conftest import AdminEnv

DOC = "/api/v1/openapi.json"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
# Bounded for CI: ~20 s here. A fixed seed keeps runs reproducible; change it to explore.
MAX_EXAMPLES = 25
SEED = 20251128
# positive_data_acceptance is left out on purpose: it expects every schema-valid request
# to succeed, but DNS names, PKCS#12 files and chain ids are valid or not by rules a JSON
# Schema cannot state (a 422 naming the rule is the right answer there).
# Every other check runs (not_a_server_error, the conformance checks, use_after_free,
# ensure_resource_availability, ignored_auth...). They are excluded on the command line
# rather than the others listed there: a command-line list of checks would override the
# per-operation setting in _config.
EXCLUDED = "positive_data_acceptance,object_level_authorization"


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items()
            for method in ops if method in METHODS}


async def test_document_and_router_describe_the_same_routes(admin: AdminEnv) -> None:
    doc = await admin.api.as_key(None).ok("GET", DOC)
    assert doc["openapi"].startswith("3.1")
    runner = admin.gateway._admin  # the live admin application, as it serves requests
    assert runner is not None
    # The admin page's own routes (HTML, assets, sign-in) are not part of the API.
    routed = {(r.method, r.resource.canonical) for r in runner.app.router.routes()
              if r.resource is not None and r.resource.canonical not in PAGE_PATHS}
    assert routed == _documented(doc)


async def test_document_describes_auth_bodies_and_errors(admin: AdminEnv) -> None:
    doc = await admin.api.as_key(None).ok("GET", DOC)
    schemas = doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer",
        "description": "An API key from 'certgate apikey create'"}
    public = {("GET", "/healthz"), ("GET", "/metrics"), ("GET", DOC), ("GET", "/api/v1/ca.pem"),
              ("GET", "/api/v1/accounts/{id}/jwks.json")}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert (op.get("security") == []) == ((method.upper(), path) in public), where
            if (method.upper(), path) not in public:
                assert "401" in op["responses"], where
            assert any(code.startswith("2") for code in op["responses"]), where
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:  # every JSON body refuses unknown fields
                name = body["schema"]["$ref"].rpartition("/")[2]
                assert schemas[name]["additionalProperties"] is False, where
    for response in doc["components"]["responses"].values():
        assert response["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/ProblemOut"}
    # the chain shapes have no room for a key
    for name in ("ChainOut", "ChainDetail"):
        assert schemas[name]["additionalProperties"] is False
        assert not any("key" in prop and prop != "key_type" for prop in schemas[name][
            "properties"])


async def _seed(admin: AdminEnv, root_pem: bytes) -> dict[str, list[str]]:
    """Real records for schemathesis to aim at, besides the random ids it makes up."""
    ids: dict[str, list[str]] = {"accounts": [], "records": [], "domains": []}
    for kind in ("vendor", "customer"):
        domain = f"{kind}.test"
        account = await admin.api.ok("POST", "/api/v1/accounts", 201, json_body={
            "name": kind, "kind": kind, "domains": [domain]})
        base = f"/api/v1/accounts/{account['id']}"
        chain = await admin.api.ok("POST", f"{base}/chains/generate", 201,
                                   json_body={"purpose": "tls", "domain": domain})
        cas = await admin.api.ok("POST", f"{base}/trusted-cas", 201, data=root_pem)
        ids["accounts"].append(account["id"])
        ids["records"] += [chain["id"], cas["trusted_cas"][0]["id"]]
        ids["domains"].append(domain)
    return ids


def _config(ids: dict[str, list[str]]) -> str:
    """schemathesis.toml: use the seeded ids for half of the generated path values."""
    lines = [f"[dictionaries.{name}]\nvalues = {values!r}\n" for name, values in ids.items()]
    lines.append("[parameters]")
    for param, name in (("path.id", "accounts"), ("path.cid", "records"),
                        ("path.domain", "domains"), ("body.domain", "domains")):
        lines.append(f'"{param}" = {{ dictionary = "{name}", probability = 0.5 }}')
    # PUT .../pki answers 404 for a chain id of another tenant in its body (the tenancy
    # rule, tests/gateway/admin/test_tenancy.py); ST302 reads that as "the account just
    # created is missing". Every other check still runs on that route.
    lines.append('\n[[operations]]\ninclude-path = "/api/v1/accounts/{id}/pki"\n'
                 'include-method = "PUT"\n'
                 "checks.ensure_resource_availability.enabled = false")
    return "\n".join(lines).replace("'", '"') + "\n"


@pytest.mark.slow(seconds=30)
@pytest.mark.timeout(900)  # ~40 s on an idle machine; a loaded one is slow, not wrong
async def test_schemathesis_finds_no_server_error_and_no_contract_break(
        admin: AdminEnv, tmp_path: Path) -> None:
    root = tmp_path / "admin-root.pem"
    root.write_text(admin.root_pem)
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(await _seed(admin, admin.root_pem.encode())))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{admin.api.base}{DOC}", "--tls-verify", str(root),
        "-H", f"Authorization: Bearer {admin.api.key}", "--exclude-checks", EXCLUDED,
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--request-timeout", "20",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 840)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-12000:]
    # every operation was exercised, except the document's own URL (schemathesis skips it)
    assert f"Tested: {len(ENDPOINTS) - 1}" in text, text[-3000:]
