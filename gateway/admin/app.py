"""The admin aiohttp application: health, Prometheus metrics, and the admin API.

It runs on the admin listener only (never on a tenant listener). Every route is declared as
an :class:`~gateway.admin.endpoint.Endpoint` in its resource module; this module registers
them all, and the OpenAPI document is built from the same list.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from certstore.domains import TxtLookup
from certstore.store import CertStore
from gateway.admin import accounts, audit_log, chains, cluster, lifecycle, pki, trusted_cas
from gateway.admin import web as web_page
from gateway.admin.endpoint import MAX_UPLOAD, Call, Endpoint, Settle, bind
from gateway.admin.limits import MutationLimits, body_limit_middleware
from gateway.admin.models import Health, OpenApiDocument
from gateway.admin.openapi import build_document
from gateway.admin.problems import problem_middleware
from gateway.admin.web.session import DEFAULT_SESSION_TTL_S
from gateway.observe import Metrics

METRICS_KEY = web.AppKey("metrics", Metrics)
LIMITS = web.AppKey("mutation_limits", MutationLimits)
OPENAPI_PATH = "/api/v1/openapi.json"


class _NoRequestBytes(logging.Filter):
    """Keeps aiohttp's server errors but drops their exception text: a malformed request's
    exception quotes the raw bytes, and a malformed Authorization header would put an API
    key in the log. Handler errors are logged by the problem middleware instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.msg} ({type(record.exc_info[1]).__name__})"
            record.exc_info = None
            record.exc_text = None
        return True


SERVER_LOG = logging.getLogger("certgate.admin.server")
SERVER_LOG.addFilter(_NoRequestBytes())


async def healthz(call: Call) -> web.Response:
    """Liveness: the process runs and answers; ``degraded`` names a store outage."""
    health = call.store.health
    if health.connected:
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "degraded", "reason": health.reason})


async def metrics(call: Call) -> web.Response:
    """Prometheus exposition of the gateway's metrics (every worker's, see workershare)."""
    body = generate_latest(call.request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(call: Call) -> web.Response:
    """This API's OpenAPI 3.1 document."""
    return web.json_response(document())


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document, built on first use (keeps the admin listener's start cheap)."""
    return build_document(ENDPOINTS)


SERVICE = (
    Endpoint(method="GET", path="/healthz", handler=healthz, status=200, response=Health,
             public=True, summary="Liveness"),
    Endpoint(method="GET", path="/metrics", handler=metrics, status=200,
             response="text/plain", public=True, summary="Prometheus metrics"),
    Endpoint(method="GET", path=OPENAPI_PATH, handler=openapi, status=200,
             response=OpenApiDocument,
             public=True, summary="This OpenAPI document"),
)
ENDPOINTS: tuple[Endpoint, ...] = (*SERVICE, *accounts.ENDPOINTS, *trusted_cas.ENDPOINTS,
                                   *chains.ENDPOINTS, *lifecycle.ENDPOINTS, *pki.ENDPOINTS,
                                   *audit_log.ENDPOINTS, *cluster.ENDPOINTS)


def router_path(path: str, paths: Iterable[str]) -> str:
    """``path`` for aiohttp, with a trailing ``{param}`` that cannot match a literal sibling.

    ``/chains/{cid}`` must not match ``/chains/import``: otherwise ``GET .../chains/import``
    would be routed (answering 404) and a 405 would advertise methods the document does not
    list for that path.
    """
    prefix, _, last = path.rpartition("/")
    if not (last.startswith("{") and last.endswith("}")):
        return path
    siblings = sorted({p.rpartition("/")[2] for p in paths
                       if p.rpartition("/")[0] == prefix and "{" not in p.rpartition("/")[2]})
    if not siblings:
        return path
    exclude = "|".join(re.escape(s) + "$" for s in siblings)
    return f"{prefix}/{{{last[1:-1]}:(?!{exclude})[^{{}}/]+}}"


def create_app(m: Metrics, store: CertStore, *, max_upload_bytes: int,
               settle: Settle | None = None,
               session_ttl_s: int = DEFAULT_SESSION_TTL_S,
               lookup: TxtLookup | None = None,
               limits: MutationLimits | None = None) -> web.Application:
    """The admin application over ``store``; request bodies are capped at
    ``max_upload_bytes`` (413 past it, at once when announced). ``settle``, when given, is
    awaited after every successful mutation, so the caller's next handshake is served from
    the new state. The admin page signs in for ``session_ttl_s`` seconds. ``lookup`` reads
    DNS challenges (default: the system's resolvers). ``limits`` bounds concurrent
    mutations per key and account (429)."""
    app = web.Application(client_max_size=max_upload_bytes,
                          middlewares=[problem_middleware(max_upload_bytes),
                                       body_limit_middleware(max_upload_bytes)])
    app[METRICS_KEY] = m
    if lookup is None:
        # Imported here: dnspython costs ~0.25 s of start-up that CLI commands never need.
        from gateway.dnscheck import txt_lookup

        lookup = txt_lookup((), 5.0)
    app[accounts.TXT_LOOKUP] = lookup
    app[MAX_UPLOAD] = max_upload_bytes
    if limits is not None:
        app[LIMITS] = limits
    paths = [endpoint.path for endpoint in ENDPOINTS]
    for endpoint in ENDPOINTS:
        # No automatic HEAD routes: the router must match the document exactly.
        app.router.add_route(endpoint.method, router_path(endpoint.path, paths),
                             bind(endpoint, store, settle, limits))
    # The Certificates tab at /, a page on top of the routes above.
    web_page.mount(app, store, session_ttl_s=session_ttl_s)
    return app
