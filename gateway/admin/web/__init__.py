"""The Certificates tab as a web page on the admin listener (issue 14).

The page is static HTML, CSS and small JavaScript modules served by certgate itself; every
action it offers is a call to the existing ``/api/v1`` routes, authenticated by a session
cookie (see :mod:`gateway.admin.web.session`) instead of a bearer key. No rule is
implemented twice: what the API refuses, the page shows.

Routes added to the admin application (outside ``/api/v1``, so the OpenAPI document stays
the API's contract): ``/`` and ``/accounts/{id}`` (the page), ``/static/{name}`` (its
assets) and ``/session`` (sign-in, current session, sign-out).
"""

from __future__ import annotations

from aiohttp import web

from certstore.store import CertStore
from gateway.admin.web import pages, session

PAGE_PATHS: frozenset[str] = frozenset({pages.INDEX, pages.ACCOUNT, pages.STATIC,
                                        session.SESSION_PATH})


def mount(app: web.Application, store: CertStore, *,
          session_ttl_s: int = session.DEFAULT_SESSION_TTL_S) -> None:
    """Add the page, its assets, the session routes and the security headers to ``app``."""
    app[session.STORE] = store
    app[session.TTL] = session_ttl_s
    app.on_response_prepare.append(pages.security_headers)
    pages.add_routes(app)
    session.add_routes(app)
