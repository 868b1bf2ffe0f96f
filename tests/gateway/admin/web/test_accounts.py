"""Accounts through the page: a vendor with 1,000 customers finds one by search and pages
through them; domains are added and removed; an operator reads the audit log filtered by
account."""

from __future__ import annotations

import asyncio
import time

import pytest
from playwright.async_api import expect

from tests.gateway.admin.web.conftest import Tab, WebEnv, unique_domain

pytestmark = pytest.mark.asyncio(loop_scope="session")
CUSTOMERS = 1000
BATCH = 16


async def test_a_vendor_with_1000_customers_searches_and_pages(tab: Tab,
                                                               web_env: WebEnv) -> None:
    vendor, key = await web_env.vendor("Big Vendor")
    started = time.monotonic()
    # Batches within the admin crypto pool's bound (workers + crypto_queue = 20 jobs; each
    # new account generates its signing chain there): more at once is refused with 503.
    for batch in range(0, CUSTOMERS, BATCH):
        await asyncio.gather(*(web_env.store.create_account(
            name=f"Customer {n:04d}", kind="customer", parent_id=vendor,
            domains=[f"c{n:04d}-{vendor[-8:]}.example"])
            for n in range(batch, min(batch + BATCH, CUSTOMERS))))
    print(f"created {CUSTOMERS} customer accounts in {time.monotonic() - started:.1f} s")
    await tab.sign_in(key)
    page = tab.page
    nav = page.get_by_role("navigation", name="Accounts")
    await expect(nav.get_by_text(f"Page 1 of {(CUSTOMERS + 1 + 19) // 20} "
                                 f"({CUSTOMERS + 1} shown)")).to_be_visible()
    await expect(nav.get_by_role("listitem")).to_have_count(20)
    await tab.shot("09-vendor-1000-customers")
    await nav.get_by_role("button", name="Next page").click()
    await expect(nav.get_by_text("Page 2 of")).to_be_visible()
    await nav.get_by_label("Search accounts").fill("Customer 0777")
    await expect(nav.get_by_role("listitem")).to_have_count(1)
    await nav.get_by_role("button", name="Customer 0777").click()
    await expect(page.get_by_role("heading", name="Account: Customer 0777")).to_be_visible()
    await expect(nav.get_by_role("button", name="Customer 0777")).to_have_attribute(
        "aria-current", "true")
    assert "/accounts/acc_" in page.url
    # Search by domain too, and an empty result says so.
    await nav.get_by_label("Search accounts").fill(f"c0042-{vendor[-8:]}")
    await expect(nav.get_by_role("listitem")).to_have_text([
        f"Customer 0042customer · c0042-{vendor[-8:]}.example"])
    await nav.get_by_label("Search accounts").fill("no such customer")
    await expect(nav.get_by_role("listitem")).to_have_text(["No account matches."])


async def test_add_and_remove_a_domain(tab: Tab, web_env: WebEnv) -> None:
    first = unique_domain("own")
    account, key = await web_env.customer(first)
    taken = unique_domain("taken")
    await web_env.customer(taken)
    await tab.sign_in(key)
    section = tab.page.get_by_role("region", name="Account:")
    added = unique_domain("added")
    await section.get_by_label("New domain").fill(added)
    await section.get_by_role("button", name="Add domain").click()
    await expect(section.locator("#domain-list")).to_contain_text(added)
    # A customer's new domain is pending (see test_domains.py): listed, not yet offered.
    await expect(section.locator("#domain-list")).to_contain_text("pending")
    await expect(tab.page.get_by_label("Domain", exact=True).locator("option")).to_have_text(
        [first])
    stored = await web_env.store.get_account(account)
    assert stored.domains == (first,) and stored.pending_names == {added}
    # Another account's domain: the API's refusal shows beside the form.
    await section.get_by_label("New domain").fill(taken)
    await section.get_by_role("button", name="Add domain").click()
    await expect(section.get_by_role("alert")).to_contain_text(taken)
    await section.get_by_role("button", name=f"Remove domain {added}").click()
    await tab.page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    await expect(section.locator("#domain-list")).not_to_contain_text(added)
    stored = await web_env.store.get_account(account)
    assert stored.domains == (first,) and not stored.pending


async def test_operator_reads_the_audit_log_by_account(tab: Tab, web_env: WebEnv) -> None:
    one, _ = await web_env.customer(unique_domain("audit-a"))
    two, _ = await web_env.customer(unique_domain("audit-b"))
    await tab.sign_in(web_env.operator)
    section = tab.page.get_by_role("region", name="Audit log")
    await expect(section).to_be_visible()
    await section.get_by_label("Account id (empty: every account)").fill(one)
    await section.get_by_role("button", name="Show records").click()
    records = section.get_by_role("listitem")
    await expect(records.first).to_contain_text(f"account {one}")
    texts = await records.all_inner_texts()
    assert texts and all(f"account {one}" in t for t in texts), texts
    assert not any(two in t for t in texts)
    await tab.shot("10-operator-audit-log")


async def test_a_customer_has_no_picker_and_no_audit_section(tab: Tab,
                                                             web_env: WebEnv) -> None:
    _, key = await web_env.customer(unique_domain())
    await tab.sign_in(key)
    await expect(tab.page.get_by_role("navigation", name="Accounts")).to_be_hidden()
    await expect(tab.page.get_by_role("region", name="Audit log")).to_be_hidden()
