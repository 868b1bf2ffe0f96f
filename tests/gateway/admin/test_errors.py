"""Bad input never gets a 500: every error is RFC 9457 problem+json with a stable type and the
data to act on (rule, names, fields). Includes the odd real-world certificate corpora of
shared/reference/real-clients.md, and a check that no request body or key reaches a log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cryptography_vectors
import pytest

from tests.certfactory import Issued, make_leaf, p12
from tests.gateway.admin.conftest import MAX_UPLOAD_BYTES, AdminEnv, Api
from tests.gateway.admin.files import PASSWORD, pem
from tests.gateway.admin.test_workflow import p12_form

ACCOUNTS = "/api/v1/accounts"
VECTORS = Path(cryptography_vectors.__file__).parent


@pytest.fixture
async def account(admin: AdminEnv) -> str:
    created = await admin.api.ok("POST", ACCOUNTS, 201, json_body={
        "name": "Acme", "kind": "customer", "domains": ["acme.test"]})
    return str(created["id"])


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("raw", "headers", "status", "code", "fields"), [
    (b"{not json", JSON, 400, "malformed-request", None),
    (b"", JSON, 400, "malformed-request", None),
    (b"[1, 2]", JSON, 422, "invalid-request", {"(body)"}),
    (b'{"name": 5, "kind": "customer"}', JSON, 422, "invalid-request", {"name"}),
    (b'{"name": "A", "kind": "reseller"}', JSON, 422, "invalid-request", {"kind"}),
    (b'{"name": "A", "kind": "customer", "domains": "acme.test"}', JSON, 422,
     "invalid-request", {"domains"}),
    (b'{"name": "A", "kind": "customer", "is_admin": true}', JSON, 422, "invalid-request",
     {"is_admin"}),
    (b'{"kind": "customer"}', JSON, 422, "invalid-request", {"name"}),
    (b'{"name": "' + b"n" * 51 + b'", "kind": "vendor"}', JSON, 422, "invalid-request",
     {"name"}),
    (b'{"name": "A", "kind": "vendor"}', {"Content-Type": "text/plain"}, 415,
     "unsupported-media-type", None),
])
async def test_bad_json_bodies_are_4xx_problems(admin: AdminEnv, raw: bytes,
                                                headers: dict[str, str], status: int,
                                                code: str, fields: set[str] | None) -> None:
    reply = await admin.api.call("POST", ACCOUNTS, data=raw, headers=headers)
    body = reply.problem(status, code)
    if fields is not None:
        assert {e["field"] for e in body["errors"]} == fields
        assert all(e["message"] for e in body["errors"])
    assert (await admin.api.ok("GET", ACCOUNTS))["accounts"] == []  # nothing was created


async def test_bad_values_for_every_json_route(admin: AdminEnv, account: str) -> None:
    api, base = admin.api, f"{ACCOUNTS}/{account}"
    cases: list[tuple[str, str, Any, str]] = [
        ("PATCH", base, {"name": "A", "kind": "vendor"}, "invalid-request"),
        ("POST", f"{base}/domains", {"domain": ["a.test"]}, "invalid-request"),
        ("POST", f"{base}/domains", {"domain": "*.acme.test"}, "invalid-name"),
        ("POST", f"{base}/domains", {"domain": "192.0.2.1"}, "invalid-name"),
        ("POST", f"{base}/chains/generate", {"purpose": "ca"}, "invalid-request"),
        ("POST", f"{base}/chains/generate", {"purpose": "tls", "key_type": "dsa"},
         "invalid-request"),
        ("POST", f"{base}/chains/generate", {"purpose": "tls"}, "invalid-input"),
        ("POST", f"{base}/chains/generate", {"purpose": "tls", "domain": "other.test"},
         "invalid-name"),
        ("PUT", f"{base}/pki", {"signing_chain_id": None}, "invalid-request"),
        ("PUT", f"{base}/pki", {"signing_chain_id": None, "tls_bindings": {"acme.test": 1}},
         "invalid-request"),
        ("POST", f"{base}/tokens", {"subject": "s", "ttl_s": "60"}, "invalid-request"),
        ("POST", f"{base}/tokens", {"subject": "s", "ttl_s": 0}, "invalid-request"),
        ("POST", f"{base}/tokens", {"subject": "s", "ttl_s": 10**6}, "invalid-request"),
        ("POST", f"{base}/tokens", {"subject": "s", "ttl_s": True}, "invalid-request"),
    ]
    for method, path, body, code in cases:
        reply = await api.call(method, path, json_body=body)
        reply.problem(422, code)
    # 60.0 is an integer in JSON Schema (and so in this API)
    await api.ok("POST", f"{base}/tokens", 201, json_body={"subject": "s", "ttl_s": 60.0})


async def test_names_the_store_cannot_put_in_a_certificate(admin: AdminEnv,
                                                          account: str) -> None:
    """A CN holds at most 64 characters: long names are refused with a reason, not a 500."""
    long_domain = "a" * 60 + ".acme.test"
    await admin.api.ok("POST", f"{ACCOUNTS}/{account}/domains", 201,
                       json_body={"domain": long_domain})
    reply = await admin.api.post(f"{ACCOUNTS}/{account}/chains/generate",
                                 {"purpose": "tls", "domain": long_domain})
    assert reply.problem(422, "invalid-name")["names"] == [long_domain]
    await admin.gateway.store.rename_account(account, "N" * 60)  # the CLI allows 200
    reply = await admin.api.post(f"{ACCOUNTS}/{account}/chains/generate", {"purpose": "signing"})
    assert "rename the account" in reply.problem(422, "invalid-input")["detail"]


async def test_oversized_uploads_are_413(admin: AdminEnv, account: str,
                                         intermediate_ca: Issued) -> None:
    api, base = admin.api, f"{ACCOUNTS}/{account}"
    big = b"x" * (MAX_UPLOAD_BYTES + 1)

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(MAX_UPLOAD_BYTES // 4096 + 2):
            yield b"y" * 4096

    for reply in (
        await api.call("POST", ACCOUNTS, data=b'{"name": "' + big + b'"}', headers=JSON),
        await api.call("POST", f"{base}/trusted-cas", data=pem(intermediate_ca) + big),
        await api.call("POST", f"{base}/trusted-cas", data=chunked()),
        await api.call("POST", f"{base}/chains/import", data=p12_form(big, PASSWORD)),
    ):
        body = reply.problem(413, "payload-too-large")
        assert body["limit_bytes"] == MAX_UPLOAD_BYTES
    assert (await api.ok("GET", f"{base}/trusted-cas"))["trusted_cas"] == []


BOUNDARY = "certgate-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _form(*fields: tuple[str, bytes, str | None]) -> bytes:
    """A multipart/form-data body written by hand (full control over each part)."""
    out = b""
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"'
                                                     if filename else "")
        out += (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
                + value + b"\r\n")
    return out + f"--{BOUNDARY}--\r\n".encode()


async def test_bad_multipart_bodies(admin: AdminEnv, account: str, root_ca: Issued) -> None:
    api, base = admin.api, f"{ACCOUNTS}/{account}"
    good = p12(make_leaf(root_ca, dns=["acme.test"]), PASSWORD.encode())
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
        ("chains/import", _form(("password", PASSWORD.encode(), None)), MULTIPART, 422,
         "invalid-request"),
        ("chains/import", _form(("file", good, "c.p12"), ("pw", b"x", None)), MULTIPART, 422,
         "invalid-request"),
        ("chains/import", _form(("file", good, "c.p12"), ("file", good, "d.p12")), MULTIPART,
         422, "invalid-request"),
        ("chains/import", good, {"Content-Type": "application/x-pkcs12"}, 415,
         "unsupported-media-type"),
        ("chains/import", b"--x\r\nnot a part", {"Content-Type": "multipart/form-data; "
                                                   "boundary=x"}, 400, "malformed-request"),
        ("chains/import", b"garbage", {"Content-Type": "multipart/form-data"}, 400,
         "malformed-request"),
        ("trusted-cas", _form(("certificate", pem(root_ca), "r.pem")), MULTIPART, 422,
         "invalid-request"),
        ("trusted-cas", _form(("other", b"x", None)), MULTIPART, 422, "invalid-request"),
    ]
    for path, data, headers, status, code in cases:
        (await api.call("POST", f"{base}/{path}", data=data, headers=headers)).problem(
            status, code)
    # parts without a filename are read as bytes (a binary file is not decoded as text)
    ok = await api.call("POST", f"{base}/chains/import", headers=MULTIPART,
                        data=_form(("file", good, None), ("password", PASSWORD.encode(), None)))
    assert ok.status == 201, ok.text


@pytest.mark.parametrize(("data", "rule"), [
    (b"", "empty"),
    (b"hello, I am not a certificate", "not-a-certificate"),
    (b"-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n", "not-a-certificate"),
    (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "not-a-certificate"),
])
async def test_garbage_trusted_ca_files(admin: AdminEnv, account: str, data: bytes,
                                        rule: str) -> None:
    reply = await admin.api.call("POST", f"{ACCOUNTS}/{account}/trusted-cas", data=data)
    assert reply.problem(422, "invalid-certificate")["rule"] == rule


async def test_a_private_key_is_never_taken_as_a_trusted_ca(admin: AdminEnv, account: str,
                                                           root_ca: Issued) -> None:
    reply = await admin.api.call("POST", f"{ACCOUNTS}/{account}/trusted-cas",
                                 data=pem(root_ca) + root_ca.key_pem())
    assert reply.problem(422, "invalid-certificate")["rule"] == "private-key-given"


def _vector_certificates() -> list[Path]:
    found = [*(VECTORS / "x509").glob("*.pem"), *(VECTORS / "x509").glob("*.der"),
             *(VECTORS / "x509" / "custom").iterdir()]
    return sorted(p for p in found if p.is_file())


async def test_odd_certificates_are_imported_or_refused_never_500(admin: AdminEnv,
                                                                  account: str) -> None:
    """Every file of cryptography-vectors' x509 corpus (duplicate extensions, invalid
    versions, raw UTF-8 names, CRLs...): 201, or 422 naming the rule."""
    api, outcomes = admin.api, {201: 0, 422: 0}
    files = _vector_certificates()
    assert len(files) > 150
    for path in files:
        reply = await api.call("POST", f"{ACCOUNTS}/{account}/trusted-cas",
                               data=path.read_bytes())
        assert reply.status in outcomes, f"{path.name}: {reply.status} {reply.text}"
        if reply.status == 422:
            assert reply.problem(422, "invalid-certificate")["rule"], path.name
        outcomes[reply.status] += 1
    assert outcomes[201] and outcomes[422]  # the corpus has both kinds


def _vector_pkcs12() -> list[tuple[Path, str | None]]:
    own = [(p, None if "no-pwd" in p.name or p.name == "no-password.p12" else "cryptography")
           for p in sorted((VECTORS / "pkcs12").glob("*.p12"))]
    pkits = sorted((VECTORS / "x509" / "PKITS_data" / "pkcs12").glob("*.p12"))[::25]
    return own + [(p, "password") for p in pkits]


async def test_pkcs12_corpus_is_imported_or_refused_never_500(admin: AdminEnv,
                                                              account: str) -> None:
    api = admin.api
    for path, password in _vector_pkcs12():
        reply = await api.call("POST", f"{ACCOUNTS}/{account}/chains/import",
                               data=p12_form(path.read_bytes(), password))
        assert reply.status in (201, 409, 422), f"{path.name}: {reply.status} {reply.text}"
        if reply.status == 422:
            assert reply.problem(422, reply.data["type"].rpartition(":")[2])["detail"]


async def test_unknown_routes_and_methods_are_problems(admin: AdminEnv, account: str) -> None:
    api = admin.api
    (await api.get("/api/v1/nothing-here")).problem(404, "not-found")
    (await api.get("/nothing-here")).problem(404, "not-found")  # "/" is the admin page
    (await api.get("/static/nothing.js")).problem(404, "not-found")
    for method, path, allow in (("PUT", ACCOUNTS, "GET, POST"),
                                ("POST", f"{ACCOUNTS}/{account}/pki", "GET, PUT"),
                                ("GET", f"{ACCOUNTS}/{account}/chains/import", "POST"),
                                ("DELETE", "/api/v1/ca.pem", "GET")):
        reply = await api.call(method, path)
        reply.problem(405, "method-not-allowed")
        assert reply.headers["Allow"] == allow


async def test_bad_audit_queries(admin: AdminEnv) -> None:
    for query in ("limit=0", "limit=1001", "limit=ten", "before=-1", "since=yesterday",
                  "since=2025-01-01", "until=0.5", "since=2025-01-01T00:00:00",
                  "unknown=1", "limit=5&limit=6"):
        (await admin.api.get(f"/api/v1/audit?{query}")).problem(422, "invalid-request")


async def test_no_request_body_or_key_reaches_a_log(admin: AdminEnv, account: str,
                                                    root_ca: Issued,
                                                    caplog: pytest.LogCaptureFixture,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    secret_pw = "pw-" + "7" * 20
    leaf = make_leaf(root_ca, dns=["acme.test"])
    api: Api = admin.api
    await api.ok("POST", f"{ACCOUNTS}/{account}/chains/import", 201,
                 data=p12_form(p12(leaf, secret_pw.encode()), secret_pw))
    await api.call("POST", f"{ACCOUNTS}/{account}/chains/import",
                   data=p12_form(p12(leaf, secret_pw.encode()), secret_pw + "-wrong"))
    token = await api.ok("POST", f"{ACCOUNTS}/{account}/tokens", 201,
                         json_body={"subject": "s"})
    # a malformed request quoting the key in a header aiohttp cannot parse
    reader, writer = await _raw_connection(admin)
    writer.write(f"GET /api/v1/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                 f"{api.key}\x00\r\n\r\n".encode())
    await writer.drain()
    assert b" 400 Bad Request" in await reader.read(100)
    writer.close()
    logged = caplog.text + "".join(capsys.readouterr())
    assert caplog.records  # something was logged, so the check means something
    for secret in (secret_pw, str(api.key), token["token"], "PRIVATE KEY"):
        assert secret not in logged


async def _raw_connection(admin: AdminEnv) -> Any:
    import asyncio

    from tests.gateway.admin.conftest import admin_context

    ctx = admin_context(admin.root_pem)
    return await asyncio.open_connection("127.0.0.1", admin.gateway.admin_port, ssl=ctx)
