"""The session cookie as an API credential, over plain HTTPS (no browser): sign-in rules,
CSRF (token and Origin both required), expiry, revocation, sign-out, hostile input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import pytest

from certstore.sessions import hash_session
from gateway.admin.web.session import COOKIE, CSRF_HEADER
from tests.gateway.admin.web.conftest import WebEnv, unique_domain

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Signed:
    """A signed-in session: its cookie value and CSRF token."""

    def __init__(self, env: WebEnv, http: aiohttp.ClientSession, secret: str,
                 csrf: str) -> None:
        self.env, self.http, self.secret, self.csrf = env, http, secret, csrf

    async def call(self, method: str, path: str, *, csrf: str | None = "own",
                   origin: str | None = "own", json: Any = None,
                   cookie: str | None = None) -> tuple[int, Any]:
        headers: dict[str, str] = {"Cookie": f"{COOKIE}={cookie or self.secret}"}
        if csrf is not None:
            headers[CSRF_HEADER] = self.csrf if csrf == "own" else csrf
        if origin is not None:
            headers["Origin"] = self.env.base if origin == "own" else origin
        async with self.http.request(method, self.env.base + path, json=json,
                                     headers=headers) as resp:
            body = await resp.json() if "json" in resp.content_type else await resp.text()
            return resp.status, body


async def sign_in(env: WebEnv, http: aiohttp.ClientSession, key: str,
                  headers: Mapping[str, str] | None = None) -> aiohttp.ClientResponse:
    sent = {"Origin": env.base, **(headers or {})}
    async with http.post(f"{env.base}/session", json={"api_key": key}, headers=sent) as resp:
        await resp.read()
        return resp


async def signed(env: WebEnv, http: aiohttp.ClientSession, key: str) -> Signed:
    resp = await sign_in(env, http, key)
    assert resp.status == 201
    body = await resp.json()
    return Signed(env, http, resp.cookies[COOKIE].value, body["csrf_token"])


async def test_sign_in_sets_a_strict_cookie_and_returns_no_key(
        web_env: WebEnv, http: aiohttp.ClientSession) -> None:
    account, key = await web_env.customer(unique_domain())
    resp = await sign_in(web_env, http, key)
    assert resp.status == 201
    header = resp.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=28800"):
        assert attribute in header, header
    assert "Domain" not in header and header.startswith("__Host-certgate_session=")
    text = await resp.text()
    assert key not in text and resp.cookies[COOKIE].value not in text
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["role"] == "customer" and body["account_id"] == account


@pytest.mark.parametrize("origin", [None, "https://evil.example", "null",
                                    "http://127.0.0.1", "https://127.0.0.1"])
async def test_sign_in_from_another_origin_is_refused(
        web_env: WebEnv, http: aiohttp.ClientSession, origin: str | None) -> None:
    _, key = await web_env.customer(unique_domain())
    headers = {} if origin is None else {"Origin": origin}
    async with http.post(f"{web_env.base}/session", json={"api_key": key},
                         headers=headers) as resp:
        assert resp.status == 403, await resp.text()
        assert COOKIE not in resp.cookies


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"api_key": 5}', b'{"api_key": ""}',
                                  b'{"api_key": "cgk_x", "role": "operator"}',
                                  b'{"api_key": "' + b"x" * 5000 + b'"}',
                                  b'{"api_key": "cgk_\\u0000"}'])
async def test_malformed_sign_in_bodies_are_client_errors(
        web_env: WebEnv, http: aiohttp.ClientSession, body: bytes) -> None:
    async with http.post(f"{web_env.base}/session", data=body, headers={
            "Origin": web_env.base, "Content-Type": "application/json"}) as resp:
        assert 400 <= resp.status < 500 and resp.status != 404, await resp.text()
        assert resp.content_type == "application/problem+json"
        assert COOKIE not in resp.cookies


async def test_a_mutation_needs_the_token_and_the_origin(
        web_env: WebEnv, http: aiohttp.ClientSession) -> None:
    account, key = await web_env.customer(unique_domain())
    session = await signed(web_env, http, key)
    path = f"/api/v1/accounts/{account}/domains"
    for csrf, origin in ((None, "own"), ("0" * 64, "own"), ("own", None),
                         ("own", "https://evil.example"), ("own", "null"),
                         (None, None)):
        status, body = await session.call("POST", path, csrf=csrf, origin=origin,
                                          json={"domain": unique_domain("csrf")})
        assert status == 403, (csrf, origin, body)
        assert body["type"] == "urn:certgate:problem:forbidden"
    assert len((await web_env.store.get_account(account)).domains) == 1  # nothing changed
    status, body = await session.call("POST", path, json={"domain": unique_domain("ok")})
    assert status == 201, body
    # Reads need no token (the page loads them; nothing changes).
    status, _ = await session.call("GET", f"/api/v1/accounts/{account}", csrf=None,
                                   origin=None)
    assert status == 200
    # Another session's token does not fit this session.
    other = await signed(web_env, http, key)
    status, _ = await session.call("POST", path, csrf=other.csrf,
                                   json={"domain": unique_domain("x")})
    assert status == 403


async def test_the_session_acts_with_its_keys_role(web_env: WebEnv,
                                                   http: aiohttp.ClientSession) -> None:
    mine, key = await web_env.customer(unique_domain())
    theirs, _ = await web_env.customer(unique_domain())
    session = await signed(web_env, http, key)
    status, listed = await session.call("GET", "/api/v1/accounts")
    assert status == 200 and [a["id"] for a in listed["accounts"]] == [mine]
    hidden = await session.call("GET", f"/api/v1/accounts/{theirs}")
    missing = await session.call("GET", "/api/v1/accounts/acc_does_not_exist")
    assert hidden[0] == missing[0] == 404
    assert hidden[1]["detail"] == f"no account with id '{theirs}'"
    assert missing[1]["detail"] == "no account with id 'acc_does_not_exist'"
    status, _ = await session.call("POST", f"/api/v1/accounts/{theirs}/domains",
                                   json={"domain": unique_domain()})
    assert status == 404
    status, _ = await session.call("POST", "/api/v1/accounts",
                                   json={"name": "x", "kind": "customer"})
    assert status == 403  # a customer key creates no account, through a session neither
    # The page's URL for the other account answers the same 404 as a missing one.
    for target in (theirs, "acc_does_not_exist"):
        status, text = await session.call("GET", f"/accounts/{target}")
        assert status == 404 and "<title>" in text


async def test_expired_revoked_and_signed_out_sessions_are_refused(
        web_env: WebEnv, http: aiohttp.ClientSession) -> None:
    account, key = await web_env.customer(unique_domain())
    path = f"/api/v1/accounts/{account}"
    expired = await signed(web_env, http, key)
    await web_env.store._db._write.execute(
        "UPDATE admin_sessions SET expires_at = 1 WHERE id_hash = ?",
        (hash_session(expired.secret),))
    assert (await expired.call("GET", path))[0] == 401
    assert (await expired.call("GET", "/session"))[0] == 401

    out = await signed(web_env, http, key)
    assert (await out.call("DELETE", "/session", csrf=None))[0] == 403  # CSRF on sign-out
    assert (await out.call("GET", path))[0] == 200
    assert (await out.call("DELETE", "/session"))[0] == 204
    assert (await out.call("GET", path))[0] == 401
    assert (await out.call("DELETE", "/session"))[0] == 401

    key_id, secret = await web_env.gateway.store.create_api_key(role="customer",
                                                               account_id=account)
    revoked = await signed(web_env, http, secret)
    assert (await revoked.call("GET", path))[0] == 200
    await web_env.store.revoke_api_key(key_id.id)
    assert (await revoked.call("GET", path))[0] == 401


@pytest.mark.parametrize("value", ["", "x", "cgs_", "cgs_" + "A" * 43, "cgs_" + "A" * 5000,
                                   "cgk_notasession", "é", '"cgs_quoted"', "cgs_\t1"])
async def test_hostile_cookie_values_are_401_not_errors(
        web_env: WebEnv, http: aiohttp.ClientSession, value: str) -> None:
    headers = {"Cookie": f"{COOKIE}={value}"}
    async with http.get(f"{web_env.base}/api/v1/accounts", headers=headers) as resp:
        assert resp.status in (400, 401), await resp.text()
    async with http.get(f"{web_env.base}/session", headers=headers) as resp:
        assert resp.status in (400, 401)
    async with http.get(f"{web_env.base}/accounts/acc_x", headers=headers) as resp:
        assert resp.status in (200, 400)  # not signed in: the page asks for a key


async def test_a_bearer_key_still_works_beside_a_cookie(web_env: WebEnv,
                                                        http: aiohttp.ClientSession) -> None:
    account, key = await web_env.customer(unique_domain())
    headers = {"Authorization": f"Bearer {key}", "Cookie": f"{COOKIE}=cgs_garbage"}
    async with http.post(f"{web_env.base}/api/v1/accounts/{account}/domains",
                         json={"domain": unique_domain()}, headers=headers) as resp:
        assert resp.status == 201  # API clients need no CSRF token: no cookie is used
