"""Pending domains on the page: a domain a customer adds shows as pending with the DNS TXT
record to publish; "Check DNS" shows the API's refusal beside it, and verifies the domain
once the record is in the (real, loopback) DNS server; its vendor approves it. Only verified
domains are offered for Generate and TLS bindings; a customer has no Approve button."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Locator, async_playwright, expect

from tests.gateway.admin.web.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    Tab,
    WebEnv,
    admin_spki_pin,
    unique_domain,
)
from tests.gateway.harness import init_store, root_pem, running_gateway, upstream_server
from tests.support.dns_server import silent_resolver, txt_server

pytestmark = pytest.mark.asyncio(loop_scope="session")
CHALLENGE = "_certgate-challenge."


def row(tab: Tab, domain: str) -> Locator:
    """The domain's row in the account section's list."""
    return tab.page.locator("#domain-list > li").filter(
        has=tab.page.locator(".domain-name", has_text=domain))


async def add_domain(tab: Tab, domain: str) -> None:
    section = tab.page.get_by_role("region", name="Account:")
    await section.get_by_label("New domain").fill(domain)
    await section.get_by_role("button", name="Add domain").click()
    await expect(row(tab, domain)).to_be_visible()


async def token_of(web_env: WebEnv, account: str, domain: str) -> str:
    pending = {p.name: p.token for p in (await web_env.store.get_account(account)).pending}
    return pending[domain]


async def test_customer_adds_a_pending_domain_then_its_vendor_approves_it(
        tab: Tab, web_env: WebEnv) -> None:
    vendor, vendor_key = await web_env.vendor("Approving Vendor")
    first = unique_domain("first")
    account, key = await web_env.customer(first, parent=vendor, name="Pending Customer")
    await tab.sign_in(key)
    page = tab.page
    added = unique_domain("awaiting")
    await add_domain(tab, added)
    line = row(tab, added)
    await expect(line.locator(".badge")).to_have_text("pending")
    token = await token_of(web_env, account, added)
    # The TXT record to publish, as text: name and value exactly as the API gives them.
    values = line.locator(".challenge-value")
    await expect(values).to_have_text([CHALLENGE + added, token])
    await expect(line.get_by_role("button", name=f"Check DNS for {added}")).to_be_visible()
    # A customer is not offered Approve (the API would refuse it with 403).
    await expect(page.get_by_role("button", name=f"Approve {added}")).to_have_count(0)
    await expect(page.get_by_role("button", name="Approve", exact=False)).to_have_count(0)
    # Not offered for Generate, nor for a TLS binding, while pending.
    gen = page.get_by_label("Domain", exact=True)
    await expect(gen.locator("option")).to_have_text([first])
    await expect(page.get_by_label(f"TLS chain for {first}")).to_be_visible()
    await expect(page.get_by_label(f"TLS chain for {added}")).to_have_count(0)
    assert (await web_env.store.get_account(account)).domains == (first,)
    # The copy button puts the exact token on the clipboard.
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                         origin=web_env.base)
    await line.get_by_role("button", name=f"Copy record value for {added}").click()
    await expect(page.locator("#status")).to_contain_text("copied")
    assert await page.evaluate("navigator.clipboard.readText()") == token
    await tab.shot("15-customer-pending-domain")

    # The vendor signs in, picks its customer and approves the domain.
    await page.get_by_role("button", name="Sign out").click()
    await tab.sign_in(vendor_key)
    nav = page.get_by_role("navigation", name="Accounts")
    # The picker finds the customer by its pending domain and says it has one waiting.
    await nav.get_by_label("Search accounts").fill(added)
    await expect(nav.get_by_role("button", name="Pending Customer")).to_contain_text(
        "1 pending")
    await nav.get_by_role("button", name="Pending Customer").click()
    await expect(page.get_by_role("heading", name="Account: Pending Customer")).to_be_visible()
    approve = page.get_by_role("button", name=f"Approve {added}", exact=True)
    await expect(approve).to_be_visible()
    await tab.shot("16-vendor-sees-pending-domain")
    await approve.focus()
    await page.keyboard.press("Enter")  # keyboard alone
    await expect(row(tab, added)).to_contain_text("verified")
    await expect(row(tab, added).locator(".badge")).to_have_count(0)
    # Keyboard focus stays on the domain's row (its first control) after the redraw.
    await expect(row(tab, added).get_by_role("button", name=f"Remove domain {added}")) \
        .to_be_focused()
    await expect(page.get_by_role("status")).to_contain_text(f"Domain {added} approved")
    await expect(row(tab, added).locator(".challenge-value")).to_have_count(0)
    await expect(page.get_by_role("button", name=f"Approve {added}")).to_have_count(0)
    options = await gen.locator("option").all_inner_texts()
    assert set(options) == {first, added}, options
    await expect(page.get_by_label(f"TLS chain for {added}")).to_be_visible()
    # The picker follows: the customer has nothing pending any more.
    await expect(nav.get_by_role("button", name="Pending Customer")).to_contain_text(added)
    await expect(nav.get_by_role("button", name="Pending Customer")).not_to_contain_text(
        "1 pending")
    assert set((await web_env.store.get_account(account)).domains) == {first, added}
    await tab.shot("17-vendor-approved-domain")


async def test_check_dns_shows_the_refusal_then_verifies_the_published_record(
        tab: Tab, web_env: WebEnv) -> None:
    account, key = await web_env.customer(unique_domain("dns-first"))
    await tab.sign_in(key)
    added = unique_domain("dns")
    await add_domain(tab, added)
    line = row(tab, added)
    check = line.get_by_role("button", name=f"Check DNS for {added}")
    # No record yet: the API's 409 domain-unverified shows beside the button.
    await check.click()
    alert = line.get_by_role("alert")
    await expect(alert).to_contain_text("domain-unverified")
    await expect(alert).to_contain_text(added)
    # The button is usable again, and focused, to check once the record is published.
    await expect(check).to_be_enabled()
    await expect(check).to_be_focused()
    assert added in (await web_env.store.get_account(account)).pending_names
    # A wrong token is not enough either.
    web_env.dns.publish(CHALLENGE + added, "certgate-not-the-token")
    await check.click()
    await expect(alert).to_contain_text("domain-unverified")
    # The right one, published where the gateway's resolver looks: verified.
    web_env.dns.publish(CHALLENGE + added, await token_of(web_env, account, added))
    await check.click()
    await expect(row(tab, added)).to_contain_text("verified")
    await expect(tab.page.get_by_role("status")).to_contain_text(
        f"The DNS record of {added} was found")
    await expect(row(tab, added).get_by_role("button", name=f"Check DNS for {added}")) \
        .to_have_count(0)
    await expect(tab.page.get_by_label("Domain", exact=True).locator("option")) \
        .to_contain_text([added])
    assert added in (await web_env.store.get_account(account)).domains


async def test_an_operator_approves_and_a_hostile_domain_is_refused_as_text(
        tab: Tab, web_env: WebEnv) -> None:
    account, key = await web_env.customer(unique_domain("op-first"), name="Operator Case")
    await tab.sign_in(key)
    added = unique_domain("op")
    await add_domain(tab, added)
    # Markup typed as a domain is refused by the API and shown as text, not parsed.
    section = tab.page.get_by_role("region", name="Account:")
    await section.get_by_label("New domain").fill("<img src=x>.example")
    await section.get_by_role("button", name="Add domain").click()
    await expect(section.locator("#domain-error")).to_contain_text("<img")
    await expect(section.locator("#domain-list img")).to_have_count(0)
    await tab.page.get_by_role("button", name="Sign out").click()
    await tab.sign_in(web_env.operator)
    await tab.open(f"/accounts/{account}")
    await expect(tab.page.get_by_role("heading", name="Account: Operator Case")).to_be_visible()
    await tab.page.get_by_role("button", name=f"Approve {added}", exact=True).click()
    await expect(row(tab, added)).to_contain_text("verified")
    assert added in (await web_env.store.get_account(account)).domains


async def test_a_resolver_that_does_not_answer_shows_503_beside_check_dns(
        tmp_path: Path) -> None:
    """A gateway of its own whose only resolver never answers: "Check DNS" shows the API's
    503 dns-lookup-failed beside the button, and the domain stays pending."""
    await init_store(tmp_path)
    with silent_resolver() as dead, txt_server() as unused:
        async with upstream_server() as up_port:
            listener = {"name": "web", "kind": "https", "bind": "127.0.0.1:0",
                        "upstream": f"http://127.0.0.1:{up_port}"}
            dns = {"resolvers": [dead], "timeout_s": 1.0, "check_interval_s": 0}
            async with running_gateway(tmp_path, [listener], admin={"bind": "127.0.0.1:0"},
                                       dns=dns) as gw:
                _, operator = await gw.store.create_api_key(role="operator")
                env = WebEnv(gateway=gw, base=f"https://127.0.0.1:{gw.admin_port}",
                             root_pem=root_pem(gw.store.ca_root).decode(),
                             operator=operator, dns=unused)
                account, key = await env.customer(unique_domain("dead-first"))
                pin = await admin_spki_pin(env)
                async with async_playwright() as pw:
                    chromium = await pw.chromium.launch(
                        executable_path=CHROMIUM,
                        args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"])
                    try:
                        context = await chromium.new_context(viewport=DESKTOP)
                        page = await context.new_page()
                        page.set_default_timeout(20_000)
                        errors: list[str] = []
                        page.on("pageerror", lambda e: errors.append(str(e)))
                        tab = Tab(page=page, env=env)
                        await tab.sign_in(key)
                        added = unique_domain("dead")
                        await add_domain(tab, added)
                        line = row(tab, added)
                        async with page.expect_response(
                                lambda r: r.url.endswith("/verify")) as answer:
                            await line.get_by_role("button",
                                                   name=f"Check DNS for {added}").click()
                        response = await answer.value
                        assert response.status == 503
                        assert (await response.json())["type"].endswith("dns-lookup-failed")
                        alert = line.get_by_role("alert")
                        await expect(alert).to_contain_text("got no answer")
                        await expect(alert).to_contain_text("the domain stays pending")
                        await expect(line.get_by_role(
                            "button", name=f"Check DNS for {added}")).to_be_enabled()
                        await tab.shot("18-check-dns-resolver-down")
                        assert not errors, errors
                    finally:
                        await chromium.close()
                assert added in (await gw.store.get_account(account)).pending_names
