"""Built for people: axe-core finds no serious or critical violation on any state of the
page, at 1280 px and at 390 px; the page does not scroll sideways on a phone; everything
can be done with the keyboard alone; dates show the UTC time on hover."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.certfactory import NOW, make_ca, make_leaf, p12
from tests.gateway.admin.web.conftest import DESKTOP, PHONE, Tab, WebEnv, unique_domain

pytestmark = pytest.mark.asyncio(loop_scope="session")
# axe-core 4.14.1 from npm (MPL-2.0), vendored for the tests only; see README "Admin page".
AXE = (Path(__file__).parent / "axe.min.js").read_text()
BLOCKING = {"serious", "critical"}


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now.

    Injected through the DevTools protocol (``evaluate``), which the page's CSP does not
    govern: the page itself still loads no script but its own."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE)
    result = await page.evaluate(
        "axe.run(document, {resultTypes: ['violations'], "
        "runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', "
        "'best-practice']}})")
    return [{"id": v["id"], "impact": v["impact"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in BLOCKING]


async def no_sideways_scroll(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= await page.evaluate("window.innerWidth"), width


async def busy_account(web_env: WebEnv) -> tuple[str, str, str]:
    """A customer with a trusted CA, an imported chain near expiry, and a refusal shown."""
    domain = unique_domain("a11y")
    account, key = await web_env.customer(domain, unique_domain("a11y-two"))
    ca = make_ca("Accessible Root")
    await web_env.store.import_trusted_cas(account, ca.pem())
    leaf = make_leaf(ca, dns=[domain], not_after=NOW + dt.timedelta(days=9))
    await web_env.store.import_chain(account, p12(leaf, b"pw"), b"pw")
    return account, key, domain


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "390px"])
async def test_axe_finds_no_serious_violation(tab: Tab, web_env: WebEnv,
                                              viewport: Any) -> None:
    page = tab.page
    await page.set_viewport_size(viewport)
    wide = viewport["width"]
    await tab.open("/")
    assert await axe_violations(page) == []
    await no_sideways_scroll(page)
    _, key, domain = await busy_account(web_env)
    await tab.sign_in(key)
    card = page.locator("#chain-list > li").filter(has_text=domain)
    await expect(card.get_by_text("Expires in 8 days")).to_be_visible()
    # A refusal on display, too.
    chains = page.get_by_role("region", name="Private certificate chains")
    await chains.get_by_label("PFX or PKCS#12 file").set_input_files(
        {"name": "bad.pfx", "mimeType": "application/x-pkcs12", "buffer": b"not a pfx"})
    await chains.get_by_role("button", name="Import", exact=True).click()
    await expect(page.locator("#chain-import-error")).not_to_be_empty()
    # A pending domain with its DNS challenge and a "Check DNS" refusal beside it.
    pending = unique_domain("a11y-pending")
    account_section = page.get_by_role("region", name="Account:")
    await account_section.get_by_label("New domain").fill(pending)
    await account_section.get_by_role("button", name="Add domain").click()
    await account_section.get_by_role("button", name=f"Check DNS for {pending}").click()
    await expect(page.locator("#domain-list").get_by_role("alert")).to_contain_text(
        "domain-unverified")
    assert await axe_violations(page) == []
    await no_sideways_scroll(page)
    await tab.shot(f"13-customer-{wide}px")
    await card.get_by_role("button", name=f"Delete chain {domain}").click()
    await expect(page.get_by_role("dialog")).to_be_visible()
    assert await axe_violations(page) == []
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_be_hidden()
    await page.get_by_role("button", name="Sign out").click()
    await tab.sign_in(web_env.operator)
    await expect(page.get_by_role("region", name="Audit log").get_by_role(
        "listitem").first).to_be_visible()
    assert await axe_violations(page) == []
    await no_sideways_scroll(page)
    await tab.shot(f"14-operator-{wide}px")


async def test_everything_works_with_the_keyboard_alone(tab: Tab, web_env: WebEnv) -> None:
    first, second = unique_domain("kb-a"), unique_domain("kb-b")
    account, key = await web_env.customer(first, second)
    page = tab.page
    keys = page.keyboard
    await tab.open("/")
    # The key field has focus on arrival; Enter submits.
    await keys.type(key)
    await keys.press("Enter")
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    async def tab_to(name: str) -> None:
        """Press Tab until the focused control has this accessible name (bounded)."""
        for _ in range(80):
            await keys.press("Tab")
            focused = await page.evaluate("""() => {
                const el = document.activeElement;
                return (el.labels && el.labels[0] ? el.labels[0].textContent
                        : el.textContent || '').trim(); }""")
            if focused == name:
                return
        raise AssertionError(f"Tab never reached {name!r}")

    await tab_to("Purpose")
    await tab_to("Domain")
    await keys.press("ArrowDown")  # the second domain
    await expect(page.get_by_label("Domain", exact=True)).to_have_value(second)
    await tab_to("Generate")
    await keys.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text(f"TLS server chain: {second}")
    (chain,) = [c for c in await web_env.store.list_chains(account) if c.purpose == "tls"]
    assert chain.dns_names == (second,)
    # Delete it with the keyboard: the dialog takes focus, Escape cancels, Enter confirms.
    await tab_to(f"Delete chain {second}")
    await keys.press("Enter")
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    await keys.press("Escape")
    await expect(dialog).to_be_hidden()
    assert len(await web_env.store.list_chains(account)) == 2
    await page.get_by_role("button", name=f"Delete chain {second}").focus()
    await keys.press("Enter")
    await keys.press("Tab")
    await expect(dialog.get_by_role("button", name="Delete")).to_be_focused()
    await keys.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text(f"Deleted the chain {second}")
    assert [c.purpose for c in await web_env.store.list_chains(account)] == ["signing"]
    await tab_to("Sign out")
    await keys.press("Enter")
    await expect(page.get_by_label("API key", exact=True)).to_be_visible()


async def test_dates_are_local_with_utc_on_hover(tab: Tab, web_env: WebEnv) -> None:
    account, key = await web_env.customer(unique_domain())
    (chain,) = await web_env.store.list_chains(account)
    await tab.page.context.close()
    context = await tab.page.context.browser.new_context(  # type: ignore[union-attr]
        locale="de-DE", timezone_id="Asia/Tokyo")
    tab.page = await context.new_page()
    try:
        await tab.sign_in(key)
        when = tab.page.locator("#chain-list time").first
        local = chain.not_after.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
        await expect(when).to_contain_text(f"{local.day}.{local.month:02d}.{local.year}")
        await expect(when).to_have_attribute(
            "title", chain.not_after.strftime("%Y-%m-%d %H:%M:%S UTC"))
    finally:
        await context.close()
