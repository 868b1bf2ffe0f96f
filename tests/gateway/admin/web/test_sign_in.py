"""Sign-in and sign-out in the browser: the key is exchanged for an HttpOnly session and
never kept by the page; sign-out ends the session on the server."""

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import expect

from certstore.sessions import hash_session
from tests.gateway.admin.web.conftest import Tab, WebEnv, unique_domain

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_sign_in_then_sign_out(tab: Tab, web_env: WebEnv,
                                     http: aiohttp.ClientSession) -> None:
    domain = unique_domain()
    account, key = await web_env.customer(domain, name="Sign-in Customer")
    await tab.open("/")
    await expect(tab.page.get_by_label("API key", exact=True)).to_be_focused()
    await tab.shot("01-sign-in")
    await tab.sign_in(key)
    page = tab.page
    await expect(page.get_by_role("heading", name="Account: Sign-in Customer")).to_be_visible()
    await expect(page.locator("#domain-list").get_by_text(domain, exact=True)).to_be_visible()
    assert page.url.endswith("/") or account in page.url

    # The key is nowhere in the page's reach: not in storage, not in a readable cookie.
    kept = await page.evaluate("""() => JSON.stringify([document.cookie,
        Object.entries(localStorage), Object.entries(sessionStorage),
        document.getElementById('api-key').value])""")
    assert key not in kept and "certgate_session" not in kept, kept
    cookies = await page.context.cookies()
    (session,) = [c for c in cookies if c["name"] == "__Host-certgate_session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert session["path"] == "/" and session["value"] != key
    # Only a hash of the session id is stored.
    rows = await web_env.store._db._all("SELECT id_hash FROM admin_sessions")
    hashes = {r[0] for r in rows}
    assert hash_session(session["value"]) in hashes and session["value"] not in hashes
    await tab.shot("02-signed-in-customer")

    await page.get_by_role("button", name="Sign out", exact=True).click()
    await expect(page.get_by_label("API key", exact=True)).to_be_visible()
    assert not [c for c in await page.context.cookies() if c["name"] == session["name"]]
    # The old cookie value is worthless: the server deleted the session.
    assert hash_session(session["value"]) not in {
        r[0] for r in await web_env.store._db._all("SELECT id_hash FROM admin_sessions")}
    async with http.get(f"{web_env.base}/api/v1/accounts/{account}",
                        headers={"Cookie": f"{session['name']}={session['value']}"}) as resp:
        assert resp.status == 401


async def test_a_wrong_key_is_refused_on_the_page(tab: Tab) -> None:
    await tab.open("/")
    await tab.page.get_by_label("API key", exact=True).fill("cgk_not-a-real-key")
    await tab.page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(tab.page.get_by_role("alert").filter(has_text="not valid")).to_be_visible()
    await expect(tab.page.get_by_label("API key", exact=True)).to_have_value("")
    assert not await tab.page.context.cookies()
