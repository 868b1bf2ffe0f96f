"""Sign-in, sign-out and the session cookie that the admin API accepts beside bearer keys.

The cookie is ``__Host-`` prefixed (RFC 6265bis 4.1.3.2: Secure, Path=/, no Domain, so no
sibling host can plant or shadow it), HttpOnly (page scripts never see it) and
SameSite=Strict (no other site's page sends it). Mutations made with it must also carry
the session's CSRF token in a header *and* an ``Origin`` equal to this listener's own
(OWASP CSRF cheat sheet: token plus origin check). The token is derived from the session
secret with a separate hash, so nothing more is stored and the stored hash cannot give it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging

from aiohttp import web
from pydantic import Field

from certstore.audit import ApiKey
from certstore.store import CertStore
from gateway.admin.models import RequestModel
from gateway.admin.problems import Problem, unauthorized
from gateway.admin.uploads import read_json

log = logging.getLogger("certgate.admin")

COOKIE = "__Host-certgate_session"
CSRF_HEADER = "X-CSRF-Token"
DEFAULT_SESSION_TTL_S = 8 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_PATH = "/session"
STORE = web.AppKey("certgate_web_store", CertStore)
TTL = web.AppKey("certgate_web_session_ttl_s", int)


class SignIn(RequestModel):
    """``POST /session``: the API key, sent once."""

    api_key: str = Field(min_length=1, max_length=200)


def csrf_token(secret: str) -> str:
    """The CSRF token of a session (a hash of its secret, distinct from the stored one)."""
    return hashlib.sha256(b"certgate-csrf:" + secret.encode()).hexdigest()


def check_origin(request: web.Request) -> None:
    """403 unless the request's ``Origin`` is this listener's own origin."""
    origin = request.headers.get("Origin")
    own = f"{request.scheme}://{request.host}"
    if origin is None or not hmac.compare_digest(origin.encode(), own.encode()):
        raise Problem(403, "forbidden", "this request must come from the admin page itself: "
                      "its Origin header is missing or names another site")


def _check_csrf(request: web.Request, secret: str) -> None:
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), csrf_token(secret).encode()):
        raise Problem(403, "forbidden", f"a change made with the session cookie needs the "
                      f"session's {CSRF_HEADER} header; reload the page")


async def cookie_key(request: web.Request, store: CertStore) -> ApiKey | None:
    """The key acting through the request's session cookie, None when there is no cookie.

    An unknown or expired session is a 401; a mutation without the CSRF token or from
    another origin is a 403 (checked before the session is looked up: no database read for
    a forged request).
    """
    secret = request.cookies.get(COOKIE)
    if secret is None:
        return None
    if request.method not in SAFE_METHODS:
        check_origin(request)
        _check_csrf(request, secret)
    key = await store.session_key(secret)
    if key is None:
        raise unauthorized("the session has ended or expired: sign in again", invalid=True)
    return key


def _session_body(key: ApiKey, secret: str, expires: dt.datetime | None) -> dict[str, object]:
    return {"role": key.role, "account_id": key.account_id, "key_id": key.id,
            "csrf_token": csrf_token(secret),
            "expires_at": None if expires is None
            else expires.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")}


def _no_store(response: web.Response) -> web.Response:
    response.headers["Cache-Control"] = "no-store"
    return response


async def sign_in(request: web.Request) -> web.Response:
    """Exchange an API key for a session cookie (the key is not kept by the browser)."""
    check_origin(request)  # no login CSRF: another site cannot sign a browser in
    store = request.app[STORE]
    body = await read_json(request, SignIn, 4096)
    key = await store.authenticate(body.api_key.strip())
    if key is None:
        log.warning("admin: refused an unknown or revoked API key at sign-in from %s",
                    request.remote)
        raise unauthorized("the API key is not valid (unknown or revoked)", invalid=True)
    secret, expires = await store.start_session(key, ttl_s=request.app[TTL])
    response = web.json_response(_session_body(key, secret, expires), status=201)
    response.set_cookie(COOKIE, secret, max_age=request.app[TTL], path="/", secure=True,
                        httponly=True, samesite="Strict")
    return _no_store(response)


async def current(request: web.Request) -> web.Response:
    """The signed-in session (role, account, CSRF token), or 401."""
    secret = request.cookies.get(COOKIE)
    key = None if secret is None else await request.app[STORE].session_key(secret)
    if key is None or secret is None:
        raise unauthorized("not signed in: paste an API key to sign in", invalid=False)
    return _no_store(web.json_response(_session_body(key, secret, None)))


async def sign_out(request: web.Request) -> web.Response:
    """End the session: its row is deleted, so the cookie is worthless even if kept."""
    store = request.app[STORE]
    key = await cookie_key(request, store)
    secret = request.cookies.get(COOKIE)
    if key is None or secret is None:
        raise unauthorized("not signed in", invalid=False)
    await store.end_session(secret, key)
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return _no_store(response)


def add_routes(app: web.Application) -> None:
    """The session routes."""
    app.router.add_route("POST", SESSION_PATH, sign_in)
    app.router.add_route("GET", SESSION_PATH, current)
    app.router.add_route("DELETE", SESSION_PATH, sign_out)
