"""The page's HTML and static assets, and the headers every admin response carries.

Assets are read from the package once, at import, and served from memory with a fixed
media type per extension: no path from the URL ever reaches the file system, so there is
no traversal to defend against, and the set of files is what the package ships.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from gateway.admin.web.session import COOKIE, STORE

INDEX = "/"
ACCOUNT = "/accounts/{id}"
STATIC = "/static/{name}"
_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript",
          ".png": "image/png", ".svg": "image/svg+xml"}

# Strict by construction: only this origin's scripts, styles and fetches; no inline script
# or style, no eval, no plugins, no framing (CSP Level 3; frame-ancestors replaces
# X-Frame-Options, which is kept for older browsers).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _load() -> dict[str, tuple[bytes, str]]:
    root = resources.files("gateway.admin.web") / "static"
    out: dict[str, tuple[bytes, str]] = {}
    for entry in root.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            out[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return out


ASSETS = _load()


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer of the admin listener, page or API, carries the page's headers."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)


def _page(status: int = 200) -> web.Response:
    body, media_type = ASSETS["index.html"]
    return web.Response(body=body, status=status, content_type=media_type, charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def index(request: web.Request) -> web.Response:
    """The page (it signs in, or shows the signed-in administrator's accounts)."""
    return _page()


async def account_page(request: web.Request) -> web.Response:
    """The page opened on one account: the same 404 as the API when the session's key may
    not see it (or it does not exist), so a URL cannot tell the two apart either."""
    secret = request.cookies.get(COOKIE)
    if secret is None:
        return _page()  # not signed in: the page asks for a key, then loads the account
    store = request.app[STORE]
    key = await store.session_key(secret)
    if key is None:
        return _page()
    account_id = request.match_info["id"]
    visible = await store.visible_accounts(key)
    exists = visible is None or account_id in visible
    if exists:
        exists = bool(await store.list_accounts([account_id]))
    # Status 404 either way; the page's script asks the API for the account and shows the
    # API's own problem text, so page and API say the same thing.
    return _page(200 if exists else 404)


async def static(request: web.Request) -> web.Response:
    """One of the page's assets."""
    asset = ASSETS.get(request.match_info["name"])
    if asset is None or request.match_info["name"] == "index.html":
        raise web.HTTPNotFound()
    body, media_type = asset
    return web.Response(body=body, content_type=media_type,
                        headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    """The page's routes (GET only)."""
    app.router.add_route("GET", INDEX, index)
    app.router.add_route("GET", ACCOUNT, account_page)
    app.router.add_route("GET", STATIC, static)
