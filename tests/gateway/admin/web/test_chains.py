"""Private certificate chains through the page: import (accepted and refused), generation
for a domain picked from the drop-down and then served in a real TLS handshake, deletion
with a confirmation naming the names that lose their chain."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from playwright.async_api import FilePayload, Locator, expect

from tests.certfactory import Issued, make_ca, make_leaf, p12
from tests.gateway.admin.web.conftest import Tab, WebEnv, unique_domain
from tests.gateway.harness import client_context, fingerprint, handshake

pytestmark = pytest.mark.asyncio(loop_scope="session")
PASSWORD = "pfx pass 42"


@pytest.fixture(scope="module")
def issuer() -> Issued:
    return make_ca("Web Test Root")


def pfx(data: bytes, name: str = "chain.pfx") -> FilePayload:
    return {"name": name, "mimeType": "application/x-pkcs12", "buffer": data}


def chain_card(tab: Tab, text: str) -> Locator:
    return tab.page.locator("#chain-list > li").filter(has_text=text)


async def test_import_a_good_pfx_and_see_it_listed(tab: Tab, web_env: WebEnv,
                                                   issuer: Issued) -> None:
    domain = unique_domain()
    _, key = await web_env.customer(domain)
    leaf = make_leaf(issuer, cn=domain, dns=[domain, f"*.{domain}"])
    await tab.sign_in(key)
    page = tab.page
    chains = page.get_by_role("region", name="Private certificate chains")
    await chains.get_by_label("PFX or PKCS#12 file").set_input_files(
        pfx(p12(leaf, PASSWORD.encode())))
    await chains.get_by_label("Password", exact=True).fill(PASSWORD)
    await chains.get_by_role("button", name="Import", exact=True).click()
    await expect(page.get_by_role("status")).to_contain_text(f"Imported the chain for {domain}")
    card = chain_card(tab, f"{domain}, *.{domain}")
    await expect(card).to_have_count(1)
    for text in ("TLS server", "Imported", "ecdsa-p256", "CN=Web Test Root",
                 f"Served now for{domain}, *.{domain}"):
        await expect(card).to_contain_text(text)
    await expect(chains.get_by_label("Password", exact=True)).to_have_value("")
    await tab.shot("03-chain-imported")


async def test_import_for_a_foreign_name_shows_the_reason(tab: Tab, web_env: WebEnv,
                                                          issuer: Issued) -> None:
    domain = unique_domain("test")
    account, key = await web_env.customer(domain)
    leaf = make_leaf(issuer, dns=[domain, f"my.{domain}", "other.example"])
    await tab.sign_in(key)
    chains = tab.page.get_by_role("region", name="Private certificate chains")
    upload = chains.get_by_label("PFX or PKCS#12 file")
    await upload.set_input_files(pfx(p12(leaf, PASSWORD.encode()), "foreign.pfx"))
    await chains.get_by_label("Password", exact=True).fill(PASSWORD)
    await chains.get_by_role("button", name="Import", exact=True).click()
    error = tab.page.locator("#chain-import-error")
    await expect(error).to_contain_text("not domains of the account")
    await expect(error).to_contain_text("names-not-owned")
    # Every offending name is listed, one per item; the owned name is not.
    await expect(error.get_by_role("listitem")).to_have_text([f"my.{domain}", "other.example"])
    # The form keeps the file (for a retry) but never the password.
    await expect(chains.get_by_label("Password", exact=True)).to_have_value("")
    assert await upload.evaluate("input => input.files.length") == 1
    assert await upload.evaluate("input => input.files[0].name") == "foreign.pfx"
    await expect(chain_card(tab, "other.example")).to_have_count(0)
    # Nothing was stored: only the account's default signing chain is there.
    assert [c.purpose for c in await web_env.store.list_chains(account)] == ["signing"]
    await tab.shot("04-chain-refused")


async def test_generate_for_a_domain_from_the_drop_down_then_it_is_served(
        tab: Tab, web_env: WebEnv) -> None:
    first, second = unique_domain("first"), unique_domain("second")
    account, key = await web_env.customer(first, second)
    await tab.sign_in(key)
    chains = tab.page.get_by_role("region", name="Private certificate chains")
    await chains.get_by_label("Purpose", exact=True).select_option(label="TLS server")
    domain_menu = chains.get_by_label("Domain", exact=True)
    await expect(domain_menu.locator("option")).to_have_text([first, second])
    await domain_menu.select_option(second)
    await chains.get_by_label("Key type").select_option("ecdsa-p384")
    await chains.get_by_role("button", name="Generate", exact=True).click()
    await expect(tab.page.get_by_role("status")).to_contain_text(
        f"Generated a TLS server chain: {second}")
    card = chain_card(tab, "Generated").filter(has_text="TLS server")
    await expect(card).to_contain_text(f"Served now for{second}")
    await expect(card).to_contain_text("ecdsa-p384")
    (chain,) = [c for c in await web_env.store.list_chains(account) if c.purpose == "tls"]
    assert chain.dns_names == (second,)
    # A real TLS client, verifying against certgate's root, now gets this chain for the name.
    leaf = await handshake(web_env.tenant_port, second, client_context(web_env.root_pem))
    assert fingerprint(leaf) == chain.fingerprint_sha256.replace(":", "").lower()
    await tab.shot("05-chain-generated")


async def test_delete_names_the_names_losing_their_chain(tab: Tab, web_env: WebEnv,
                                                         issuer: Issued) -> None:
    domain = unique_domain("gone")
    account, key = await web_env.customer(domain)
    leaf = make_leaf(issuer, dns=[domain])
    await web_env.store.import_chain(account, p12(leaf, PASSWORD.encode()), PASSWORD.encode())
    assert await web_env.gateway.settle()  # served before the page is even opened
    served = await handshake(web_env.tenant_port, domain)
    assert served.public_bytes(serialization.Encoding.DER) == leaf.cert.public_bytes(
        serialization.Encoding.DER)
    await tab.sign_in(key)
    page = tab.page
    card = chain_card(tab, "Imported")
    await card.get_by_role("button", name=f"Delete chain {domain}").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("These names lose their chain now:")
    await expect(dialog.get_by_role("listitem")).to_have_text([domain])
    await tab.shot("06-delete-confirmation")
    await dialog.get_by_role("button", name="Cancel").click()  # cancel changes nothing
    await expect(dialog).to_be_hidden()
    assert len(await web_env.store.list_chains(account)) == 2
    await card.get_by_role("button", name=f"Delete chain {domain}").click()
    await dialog.get_by_role("button", name="Delete").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Deleted the chain {domain}")
    await expect(chain_card(tab, "Imported")).to_have_count(0)
    assert [c.purpose for c in await web_env.store.list_chains(account)] == ["signing"]
    # The gateway stops serving it (the default chain answers instead).
    after = await handshake(web_env.tenant_port, domain)
    assert fingerprint(after) != fingerprint(leaf.cert)
