"""What the page is made of and how it defends itself: headers, local assets only, no
inline script; certificate text rendered as text; another account is a 404 on the page as
in the API; a cross-site page cannot make changes with the administrator's session."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import expect

from gateway.admin.web.pages import ASSETS, CSP
from tests.certfactory import make_ca, make_leaf, p12
from tests.gateway.admin.web.conftest import Tab, WebEnv, unique_domain

pytestmark = pytest.mark.asyncio(loop_scope="session")
XSS = "<img src=x onerror=alert(1)>"


async def test_every_answer_carries_the_security_headers(
        web_env: WebEnv, http: aiohttp.ClientSession) -> None:
    for path, media_type in (("/", "text/html"), ("/static/app.js", "text/javascript"),
                             ("/static/style.css", "text/css"),
                             ("/healthz", "application/json"),
                             ("/static/missing.js", "application/problem+json")):
        async with http.get(web_env.base + path) as resp:
            assert resp.content_type == media_type, path
            assert resp.headers["Content-Security-Policy"] == CSP
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Referrer-Policy"] == "no-referrer"
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["frame-ancestors"] == "'none'" and directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert "unsafe" not in CSP and "http" not in CSP and "*" not in CSP


async def test_the_page_has_no_inline_script_and_no_foreign_asset() -> None:
    html = ASSETS["index.html"][0].decode()
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
    assert scripts and all(body.strip() == "" for body in scripts)
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert "style=" not in html and "<style" not in html
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', html):
        assert ref.startswith("/static/"), ref
    for name, (body, _) in ASSETS.items():
        text = body.decode()
        assert "innerHTML" not in text and "outerHTML" not in text, name
        assert "insertAdjacentHTML" not in text and "eval(" not in text, name
        assert "http://" not in text and "https://" not in text, name


@pytest.mark.parametrize("path", ["/static/../pyproject.toml", "/static/%2e%2e/session.py",
                                  "/static/index.html", "/static/", "/static/app.js/x",
                                  "/static/..%2f..%2fpyproject.toml"])
async def test_static_serves_only_the_shipped_assets(web_env: WebEnv,
                                                     http: aiohttp.ClientSession,
                                                     path: str) -> None:
    async with http.get(web_env.base + path) as resp:
        assert resp.status == 404, path
        assert "[build-system]" not in await resp.text()


async def test_a_certificate_with_markup_in_it_renders_as_text(tab: Tab,
                                                                web_env: WebEnv) -> None:
    domain = unique_domain("xss")
    account, key = await web_env.customer(domain, name=XSS)  # user text too
    hostile_ca = make_ca(XSS)
    leaf = make_leaf(hostile_ca, cn=XSS, dns=[domain])
    await web_env.store.import_trusted_cas(account, hostile_ca.pem())
    await web_env.store.import_chain(account, p12(leaf, b"pw"), b"pw")
    # The API gives subjects as RFC 4514 strings, which escape '<' and '>' with '\\'.
    (ca,) = await web_env.store.list_trusted_cas(account)
    assert ca.subject == "CN=\\<img src=x onerror=alert(1)\\>"
    await tab.sign_in(key)
    page = tab.page
    await expect(page.get_by_role("heading", name=f"Account: {XSS}")).to_have_text(
        f"Account: {XSS}")
    trusted = page.locator("#trusted-list")
    await expect(trusted.get_by_role("heading", level=4)).to_have_text(ca.subject)
    chain = page.locator("#chain-list > li").filter(has_text=domain)
    await expect(chain).to_contain_text("Subject" + ca.subject)
    await expect(chain).to_contain_text("Issuer" + ca.subject)
    assert await page.locator("img").count() == 0  # no element was made from the text
    await tab.shot("11-certificate-text-shown-as-text")
    # The tab fixture fails the test if an alert() opened or a script error was logged.


async def test_a_customer_cannot_open_another_account(tab: Tab, web_env: WebEnv) -> None:
    _, key = await web_env.customer(unique_domain())
    theirs, _ = await web_env.customer(unique_domain(), name="Someone Else")
    await tab.sign_in(key)
    page = tab.page
    answers = {}
    for target in (theirs, "acc_does_not_exist"):
        response = await page.goto(f"{web_env.base}/accounts/{target}")
        assert response is not None and response.status == 404
        await page.wait_for_selector("body[data-ready=true]")
        alert = page.locator("#account-error")
        await expect(alert).to_have_text(f"no account with id '{target}'")
        api = await page.evaluate("""async (id) => {
            const r = await fetch('/api/v1/accounts/' + id);
            return [r.status, await r.json()]; }""", target)
        assert api[0] == 404 and api[1]["detail"] == await alert.inner_text()
        answers[target] = api[1]["title"], api[1]["type"]
        await expect(page.get_by_text("Someone Else")).to_have_count(0)
    assert answers[theirs] == answers["acc_does_not_exist"]
    await tab.shot("12-another-account-is-404")


@pytest_asyncio.fixture(loop_scope="session")
async def attacker_site() -> AsyncIterator[str]:
    """A page on another site (http://localhost, not 127.0.0.1) that tries to add a domain
    to the victim's account with the victim's browser, by fetch and by form."""
    async def page(request: web.Request) -> web.Response:
        target = request.query["target"]
        html = f"""<!doctype html><title>evil</title>
<form id=f method=POST action="{target}" enctype="text/plain">
<input name='{{"domain":"evil-form.example","x":"' value='"}}'></form>
<script>
fetch("{target}", {{method: "POST", credentials: "include", mode: "no-cors",
  headers: {{"Content-Type": "text/plain"}}, body: '{{"domain":"evil-fetch.example"}}'}})
  .finally(() => {{ document.title = "sent"; document.getElementById("f").submit(); }});
</script>"""
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://localhost:{port}/"
    finally:
        await runner.cleanup()


async def test_a_cross_site_page_cannot_change_anything(tab: Tab, web_env: WebEnv,
                                                        attacker_site: str) -> None:
    domain = unique_domain()
    account, key = await web_env.customer(domain)
    await tab.sign_in(key)  # the victim is signed in, in this browser
    target = f"{web_env.base}/api/v1/accounts/{account}/domains"
    async with tab.page.expect_response(lambda r: r.request.method == "POST"
                                        and r.url == target and
                                        r.request.resource_type == "document") as info:
        await tab.page.goto(f"{attacker_site}?target={target}")
    refused = await info.value
    assert refused.status in (401, 403)  # no cookie sent (SameSite), or the Origin is foreign
    assert (await web_env.store.get_account(account)).domains == (domain,)
    tab.errors.clear()  # the attacker page's failed requests are not the admin page's
