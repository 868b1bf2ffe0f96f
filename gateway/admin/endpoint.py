"""Declared endpoints and the one wrapper every admin route runs through.

An :class:`Endpoint` says everything about a route once: method, path, handler, request
body model, success response, whether it is public, and its audit action. The router and
the OpenAPI document are both built from the same declarations, and :func:`bind` applies
the same sequence to every request:

1. authenticate the bearer key (401 before anything else is looked at);
2. refuse an account the key may not see with the *same* 404 as a missing one;
3. run the handler as the key's actor (``acting_as``), so every store mutation writes its
   audit record in its own transaction;
4. on any failure of a mutation, audit the refused attempt (``record_failure``), with the
   error's code and data but never the request body. A request naming an account the key
   may not see (another tenant's, or none) is audited as ``access.refused`` under the
   *caller's* account, on every route: the other tenant's log never shows it, and the
   caller's log reads the same for a missing id and another tenant's. The store
   rate-limits refused rows per key and minute.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError

from certstore.audit import ApiKey, acting_as
from certstore.persistence.conn import tracking_changes
from certstore.store import CertStore
from certstore.text import escaped
from gateway.admin.limits import MutationLimits
from gateway.admin.problems import (
    Problem,
    invalid_request,
    not_found,
    to_problem,
    unauthorized,
)
from gateway.admin.uploads import read_json
from gateway.admin.web.session import cookie_key
from gateway.fleet import wait_fleet

log = logging.getLogger("certgate.admin")

MAX_UPLOAD = web.AppKey("certgate_max_upload_bytes", int)
M = TypeVar("M", bound=BaseModel)
Upload = Literal["pkcs12", "certificates"]
_MAX_AUDIT_TEXT = 256
ACCESS_REFUSED = "access.refused"
WAIT_PARAM = "wait"
CHANGE_ID_HEADER = "Certgate-Change-Id"
FLEET_PENDING_HEADER = "Certgate-Fleet-Pending"
"""With ``wait=fleet``: the live nodes that did not serve the change in time (``none``)."""
FLEET_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated API key and the accounts it may act on (None: every account)."""

    key: ApiKey
    visible: frozenset[str] | None

    def sees(self, account_id: str) -> bool:
        """True when the key may act on ``account_id``."""
        return self.visible is None or account_id in self.visible


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """What a handler gets: the request, the store, the caller and the parsed body."""

    request: web.Request
    store: CertStore
    caller: Caller | None
    body: BaseModel | None = None
    query: BaseModel | None = None

    @property
    def me(self) -> Caller:
        """The caller of an authenticated route."""
        assert self.caller is not None, "public routes have no caller"
        return self.caller

    @property
    def account_id(self) -> str:
        """The ``{id}`` path parameter (already checked as visible)."""
        return self.request.match_info["id"]

    def param(self, name: str) -> str:
        """A path parameter."""
        return self.request.match_info[name]

    def parsed(self, model: type[M]) -> M:
        """The validated JSON body, as the endpoint's declared model."""
        assert isinstance(self.body, model), f"endpoint body is not {model.__name__}"
        return self.body

    def parsed_query(self, model: type[M]) -> M:
        """The validated query string, as the endpoint's declared model."""
        assert isinstance(self.query, model), f"endpoint query is not {model.__name__}"
        return self.query


ApiHandler = Callable[[Call], Awaitable[web.StreamResponse]]
# Waits (bounded) until this process serves every committed change; True when it does.
Settle = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One route of the admin API, as the router and the OpenAPI document see it.

    ``response`` is a model for JSON, a media type for text (PEM), or None for 204.
    ``audit`` names the action of a mutation (``chain.imported``...): refused attempts are
    audited under it, and its success waits for the gateway to serve it. ``errors`` lists
    the error statuses this route can answer besides 401/404 (documented).
    """

    method: str
    path: str
    handler: ApiHandler
    summary: str
    status: int
    response: type[BaseModel] | str | None
    body: type[BaseModel] | None = None
    upload: Upload | None = None
    query: type[BaseModel] | None = None
    public: bool = False
    audit: str | None = None
    errors: tuple[int, ...] = field(default=())

    @property
    def operation_id(self) -> str:
        """The OpenAPI ``operationId`` (the handler's name)."""
        return self.handler.__name__


async def authenticate(request: web.Request, store: CertStore) -> Caller:
    """The caller of ``request``, or a 401 problem."""
    header = request.headers.get("Authorization")
    if header is None:
        # The admin page's session cookie stands for its key (same roles and visibility);
        # mutations through it carry a CSRF token and this origin (web.session).
        session_key = await cookie_key(request, store)
        if session_key is not None:
            return await _caller(store, session_key)
        raise unauthorized("this route needs an API key: send 'Authorization: Bearer KEY' "
                           "(create a key with 'certgate apikey create')", invalid=False)
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        _refused(request, "credentials that are not a bearer key")
        raise unauthorized("use the Bearer scheme: 'Authorization: Bearer KEY'", invalid=True)
    key = await store.authenticate(secret.strip())
    if key is None:
        _refused(request, "an unknown or revoked API key")
        raise unauthorized("the API key is not valid (unknown or revoked)", invalid=True)
    return await _caller(store, key)


async def _caller(store: CertStore, key: ApiKey) -> Caller:
    visible = await store.visible_accounts(key)
    return Caller(key=key, visible=None if visible is None else frozenset(visible))


def _refused(request: web.Request, what: str) -> None:
    """A log line per refused credential, for the operator's alerting (fail2ban and the
    like). Not an audit record: those are database rows, and anyone can send bad keys. The
    secret itself is never logged."""
    log.warning("admin: refused %s from %s for %s", what, request.remote,
                _request_line(request))


def _wait_mode(request: web.Request) -> str:
    """``?wait=fleet``: answer once every live node serves the change (bounded)."""
    values = request.query.getall(WAIT_PARAM, [])
    if not values:
        return "node"
    if len(values) > 1 or values[0] not in ("node", "fleet"):
        raise Problem(422, "invalid-request", "wait must be given once, as 'node' (the "
                      "default: this node serves the change) or 'fleet' (every live node)")
    return values[0]


def _query(request: web.Request, model: type[BaseModel]) -> BaseModel:
    names = [name for name, _ in request.query.items() if name != WAIT_PARAM]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # which one would win is a guess; refuse instead
        raise Problem(422, "invalid-request", "query parameters given more than once: "
                      + ", ".join(repeated))
    try:
        return model.model_validate({k: v for k, v in request.query.items()
                                     if k != WAIT_PARAM})
    except ValidationError as e:
        raise invalid_request("the query string is invalid", e) from None


def _clean(text: str) -> str:
    """A path value fit for an audit record or a log line: escaped, bounded."""
    return escaped(text, _MAX_AUDIT_TEXT)


def _request_line(request: web.Request) -> str:
    """``METHOD /path`` as decoded by the server, escaped and bounded."""
    return _clean(f"{request.method} {request.path}")


def _reason(error: Exception, limit: int) -> str:
    """What the audit keeps of a refusal: status, problem code and its data (never input)."""
    problem = to_problem(error, limit)
    parts = [f"{problem.status} {problem.code}"]
    for name in ("rule", "names", "kind"):
        if name in problem.extra:
            parts.append(f"{name}={problem.extra[name]}")
    return _clean(" ".join(parts))


async def _audit_refusal(store: CertStore, endpoint: Endpoint, request: web.Request,
                         error: Exception) -> None:
    assert endpoint.audit is not None
    info = request.match_info
    account_id = info.get("id")
    others = [v for k, v in info.items() if k != "id"]
    target = others[-1] if others else account_id
    try:
        await store.record_failure(endpoint.audit,
                                   None if account_id is None else _clean(account_id),
                                   None if target is None else _clean(target),
                                   _reason(error, request.app[MAX_UPLOAD]))
    except Exception:  # the refusal itself must still reach the client
        log.exception("could not audit a refused %s", endpoint.audit)


async def audit_access_refused(store: CertStore, caller: Caller, request: web.Request,
                               error: Exception) -> None:
    """Audit a request on an account the key may not see, under the caller's account."""
    try:
        await store.record_failure(ACCESS_REFUSED, caller.key.account_id,
                                   _request_line(request),
                                   _reason(error, request.app[MAX_UPLOAD]))
    except Exception:  # the refusal itself must still reach the client
        log.exception("could not audit a refused access")


def bind(endpoint: Endpoint, store: CertStore, settle: Settle | None = None,
         limits: MutationLimits | None = None) -> Handler:
    """The aiohttp handler running ``endpoint`` with authentication, visibility and audit;
    after a successful mutation it awaits ``settle`` (see :func:`create_app`). ``limits``
    bounds the concurrent mutations of one key and one account (429 past them)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        caller = None if endpoint.public else await authenticate(request, store)
        mutation = endpoint.audit is not None
        wait = _wait_mode(request) if mutation else "node"
        # A 429 is decided before anything is read or audited: refusing costs nothing.
        held = (limits.hold(caller.key) if limits is not None and caller is not None
                and mutation else nullcontext())
        with held, acting_as(caller.key.actor) if caller is not None else nullcontext(), \
                tracking_changes() as changes:
            try:
                account_id = request.match_info.get("id")
                if caller is not None and account_id is not None and not caller.sees(account_id):
                    raise not_found("account", account_id)
                body = None
                if endpoint.body is not None:
                    body = await read_json(request, endpoint.body, request.app[MAX_UPLOAD])
                query = None if endpoint.query is None else _query(request, endpoint.query)
                response = await endpoint.handler(Call(request=request, store=store,
                                                       caller=caller, body=body, query=query))
            except Exception as e:
                path_account = request.match_info.get("id")
                if caller is not None and path_account is not None and not caller.sees(
                        path_account):
                    await audit_access_refused(store, caller, request, e)
                elif caller is not None and mutation:
                    await _audit_refusal(store, endpoint, request, e)
                raise
        if mutation and settle is not None and not await settle():
            log.warning("%s committed but not yet served by this process", endpoint.audit)
        if changes:
            # The change this request made: what GET /api/v1/cluster's applied_change is
            # compared with, and what wait=fleet waits for.
            response.headers[CHANGE_ID_HEADER] = str(max(changes))
            if wait == "fleet":
                pending = await wait_fleet(store.database, max(changes), FLEET_WAIT_S)
                response.headers[FLEET_PENDING_HEADER] = ", ".join(pending) or "none"
        if not endpoint.public:
            # Answers to a key may hold tokens and tenant data: never cached (RFC 6750 5.3).
            response.headers["Cache-Control"] = "no-store"
        return response

    handle.__name__ = endpoint.operation_id
    return handle
