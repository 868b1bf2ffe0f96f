"""Errors as ``application/problem+json`` (RFC 9457), for every failure of the admin API.

Each problem has a stable ``type`` URI (``urn:certgate:problem:<code>``) that clients switch
on, a fixed ``title`` per type, the HTTP ``status``, a ``detail`` that tells a person what to
fix, and the error's data as extension members (RFC 9457 section 3.2): ``rule`` and
``names`` for refused certificates, ``errors`` for invalid request bodies.

The middleware here is the only place responses for errors are built, so aiohttp's own
404/405/413 and store errors look the same to a client. Nothing here ever echoes a request
body: ``detail`` comes from the error, never from the input.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import ValidationError

from certstore.errors import CertStoreError, StoreUnavailable
from gateway.errors import Unavailable

log = logging.getLogger("certgate.admin")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:certgate:problem:"

# One title per problem code (RFC 9457 3.1.3: the title does not change between occurrences).
TITLES: dict[str, str] = {
    "unauthorized": "Authentication required",
    "forbidden": "Not allowed for this API key",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "malformed-request": "Malformed request",
    "invalid-request": "Invalid request",
    "unsupported-media-type": "Unsupported media type",
    "payload-too-large": "Request body too large",
    "invalid-input": "Invalid input",
    "invalid-name": "Invalid DNS name",
    "invalid-certificate": "Certificate refused",
    "conflict": "Conflict with the current state",
    "domain-taken": "Domain belongs to another account",
    "domain-owned-by-another-account": "Domain is under or above another account's domain",
    "domain-unverified": "Domain not verified",
    "no-signing-chain": "No signing chain chosen",
    "store-setup": "Certificate store unavailable",
    "store-unavailable": "Certificate store temporarily unreachable",
    "precondition-failed": "Changed since you read it",
    "too-many-requests": "Too many concurrent requests",
    "worker-lost": "Worker stopped",
    "job-too-long": "Request needed more CPU than allowed",
    "certstore-error": "Certificate store error",
    "internal-error": "Internal error",
}


class Problem(Exception):
    """An error response: raise it from a handler, the middleware renders it."""

    def __init__(self, status: int, code: str, detail: str, *,
                 extra: Mapping[str, object] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    @classmethod
    def from_store(cls, error: CertStoreError) -> Problem:
        """The problem for a store error: its code, HTTP status, message and data."""
        headers = {}
        if isinstance(error, StoreUnavailable):
            headers["Retry-After"] = str(error.retry_after_s)  # RFC 9110 10.2.3
        return cls(error.http_status, error.code, error.message, extra=error.details(),
                   headers=headers)

    def body(self) -> dict[str, Any]:
        """The problem document."""
        out: dict[str, Any] = {"type": TYPE_PREFIX + self.code,
                               "title": TITLES.get(self.code, TITLES["certstore-error"]),
                               "status": self.status, "detail": self.detail}
        for key, value in self.extra.items():
            out.setdefault(key, value)  # never let data overwrite the standard members
        return out

    def response(self) -> web.Response:
        """The ``application/problem+json`` response."""
        return web.json_response(self.body(), status=self.status, content_type=PROBLEM_JSON,
                                 headers=self.headers)


def unauthorized(detail: str, *, invalid: bool) -> Problem:
    """401 with the ``WWW-Authenticate`` challenge of RFC 6750 section 3."""
    challenge = 'Bearer realm="certgate-admin"'
    if invalid:
        challenge += ', error="invalid_token"'
    return Problem(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


def not_found(kind: str, ident: str) -> Problem:
    """404 for a missing *or invisible* record: the same body either way, so another
    tenant's ids cannot be told apart from ids that do not exist."""
    return Problem(404, "not-found", f"no {kind} with id {ident!r}",
                   extra={"kind": kind, "id": ident})


def invalid_request(what: str, error: ValidationError) -> Problem:
    """A 422 listing each invalid field (pydantic's messages, never the input values)."""
    errors = [{"field": ".".join(str(p) for p in item["loc"]) or "(body)",
               "message": item["msg"], "type": item["type"]}
              for item in error.errors(include_input=False, include_url=False,
                                       include_context=False)]
    listed = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return Problem(422, "invalid-request", f"{what}: {listed}", extra={"errors": errors})


def _from_http(exc: web.HTTPException, limit: int) -> Problem:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        return Problem(405, "method-not-allowed",
                       f"{exc.method} is not allowed here; use {', '.join(allowed)}",
                       headers={"Allow": ", ".join(allowed)})
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return Problem(413, "payload-too-large",
                       f"the request body is larger than the limit of {limit} bytes "
                       "(admin.max_upload_bytes in the config)", extra={"limit_bytes": limit})
    if isinstance(exc, web.HTTPNotFound):
        return Problem(404, "not-found", "no such resource; see /api/v1/openapi.json for "
                       "the API's routes")
    code = "not-found" if exc.status == 404 else "malformed-request"
    return Problem(exc.status, code, exc.reason)


def to_problem(error: Exception, max_upload_bytes: int) -> Problem:
    """The problem answering ``error``: ours, the store's, aiohttp's, or an unexpected one."""
    if isinstance(error, Problem):
        return error
    if isinstance(error, CertStoreError):
        return Problem.from_store(error)
    if isinstance(error, Unavailable):
        return Problem(error.http_status, error.code, error.message,
                       headers={"Retry-After": str(error.retry_after_s)})
    if isinstance(error, web.HTTPException):
        return _from_http(error, max_upload_bytes)
    return Problem(500, "internal-error", "the server failed to handle the request; the "
                   "error is logged")


def problem_middleware(max_upload_bytes: int) -> Middleware:
    """A middleware turning every error into problem+json; ``max_upload_bytes`` is named in
    413 answers."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise  # redirects and other non-errors pass through untouched
            return to_problem(e, max_upload_bytes).response()
        except Exception as e:
            if not isinstance(e, Problem | CertStoreError | Unavailable):
                # A bug, never bad input: log the traceback (no request body is in it) and
                # answer without internals.
                log.exception("admin %s %s failed", request.method, request.path)
            return to_problem(e, max_upload_bytes).response()

    return middleware
