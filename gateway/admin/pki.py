"""PKI settings, tokens, and the public documents (JWKS, the built-in CA root)."""

from __future__ import annotations

import hashlib
import json

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from certstore.model import PkiSettings
from gateway.admin.endpoint import Call, Endpoint
from gateway.admin.models import Jwks, PkiOut, PkiPut, TokenOut, TokenRequest
from gateway.admin.problems import Problem
from gateway.admin.trusted_cas import PEM_CHAIN
from gateway.views import pki_view

BASE = "/api/v1/accounts/{id}"


def etag(settings: PkiSettings) -> str:
    """A strong ETag of the settings' content (RFC 9110 8.8.3): equal content, equal tag."""
    canonical = json.dumps(pki_view(settings), sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


def _matches(header: str, current: str) -> bool:
    """``If-Match`` (RFC 9110 13.1.1): ``*`` or a list of strong tags."""
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or current in tags


async def get_pki(call: Call) -> web.Response:
    """The account's signing chain and explicit TLS bindings (with an ``ETag`` for a
    conditional ``PUT``)."""
    settings = await call.store.pki(call.account_id)
    return web.json_response(pki_view(settings), headers={"ETag": etag(settings)})


async def put_pki(call: Call) -> web.Response:
    """Replace the PKI settings: the signing chain (or null) and every TLS binding.

    With ``If-Match``, only if they are still the version of that ``ETag`` (412 otherwise),
    checked inside the write transaction: a concurrent writer on another node cannot slip
    in between.
    """
    body = call.parsed(PkiPut)
    condition = call.request.headers.get("If-Match")
    expect = None
    if condition is not None:
        if len(condition) > 1024:
            raise Problem(400, "malformed-request", "the If-Match header is too long")
        expect = lambda current: _matches(condition, etag(current))  # noqa: E731
    settings = await call.store.update_pki(call.account_id,
                                           signing_chain_id=body.signing_chain_id,
                                           tls_bindings=body.tls_bindings,
                                           replace_bindings=True, expect=expect)
    return web.json_response(pki_view(settings), headers={"ETag": etag(settings)})


async def issue_token(call: Call) -> web.Response:
    """Sign a JWT with the account's chosen signing chain (409 when none is chosen)."""
    body = call.parsed(TokenRequest)
    issued = await call.store.issue_token(call.account_id, subject=body.subject,
                                          audience=body.audience, ttl_s=body.ttl_s)
    expires = issued.expires_at.isoformat().replace("+00:00", "Z")
    return web.json_response({"token": issued.token, "expires_at": expires,
                              "kid": issued.kid, "chain_id": issued.chain_id}, status=201)


async def get_jwks(call: Call) -> web.Response:
    """The public keys that verify the account's tokens (public: verifiers have no key)."""
    return web.json_response(await call.store.jwks(call.account_id),
                             headers={"Cache-Control": "public, max-age=60"})


async def get_ca_pem(call: Call) -> web.Response:
    """The built-in root CA certificate that clients and terminals trust."""
    pem = call.store.ca_root.public_bytes(Encoding.PEM).decode("ascii")
    return web.Response(text=pem, content_type=PEM_CHAIN)


ENDPOINTS = (
    Endpoint(method="GET", path=BASE + "/pki", handler=get_pki, status=200, response=PkiOut,
             summary="Show the signing chain and TLS bindings"),
    Endpoint(method="PUT", path=BASE + "/pki", handler=put_pki, status=200, response=PkiOut,
             body=PkiPut, audit="pki.updated", errors=(400, 412, 413, 415, 422),
             summary="Choose the signing chain (or null) and set every TLS binding"),
    Endpoint(method="POST", path=BASE + "/tokens", handler=issue_token, status=201,
             response=TokenOut, body=TokenRequest, audit="token.issued",
             errors=(400, 409, 413, 415, 422),
             summary="Issue a JWT signed with the account's signing chain"),
    Endpoint(method="GET", path=BASE + "/jwks.json", handler=get_jwks, status=200,
             response=Jwks, public=True, summary="The JWKS that verifies the account's tokens"),
    Endpoint(method="GET", path="/api/v1/ca.pem", handler=get_ca_pem, status=200,
             response=PEM_CHAIN, public=True, summary="The built-in root CA certificate"),
)
