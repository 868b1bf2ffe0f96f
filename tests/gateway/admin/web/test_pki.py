"""PKI settings through the page: clearing the signing certificate makes the API refuse
tokens (and the page says so), regenerating it makes tokens work again, and a TLS binding
chosen per domain decides what a real handshake gets."""

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import expect

from tests.certfactory import make_ca, make_leaf, p12
from tests.gateway.admin.web.conftest import Tab, WebEnv, unique_domain
from tests.gateway.harness import fingerprint, handshake

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def token_status(http: aiohttp.ClientSession, env: WebEnv, account: str,
                       key: str) -> int:
    async with http.post(f"{env.base}/api/v1/accounts/{account}/tokens",
                         json={"subject": "terminal-7"},
                         headers={"Authorization": f"Bearer {key}"}) as resp:
        return resp.status


async def test_clearing_the_signing_certificate_refuses_tokens(
        tab: Tab, web_env: WebEnv, http: aiohttp.ClientSession) -> None:
    account, key = await web_env.customer(unique_domain())
    assert await token_status(http, web_env, account, key) == 201
    await tab.sign_in(key)
    pki = tab.page.get_by_role("region", name="PKI settings")
    signing = pki.get_by_label("Signing certificate")
    await expect(pki.get_by_text("tokens are refused")).to_be_hidden()
    await signing.select_option("")
    await expect(pki.get_by_text("this account's token requests are refused")).to_be_visible()
    await pki.get_by_role("button", name="Save signing certificate").click()
    await expect(tab.page.get_by_role("status")).to_contain_text("tokens are now refused")
    assert (await web_env.store.pki(account)).signing_chain_id is None
    assert await token_status(http, web_env, account, key) == 409
    await tab.shot("07-pki-no-signing-certificate")

    await pki.get_by_role("button", name="Regenerate signing chain").click()
    await expect(tab.page.get_by_role("status")).to_contain_text("Generated a new signing chain")
    settings = await web_env.store.pki(account)
    chains = {c.id: c for c in await web_env.store.list_chains(account)}
    assert settings.signing_chain_id in chains and len(chains) == 2
    await expect(signing).to_have_value(settings.signing_chain_id or "?")
    await expect(pki.get_by_text("this account's token requests are refused")).to_be_hidden()
    assert await token_status(http, web_env, account, key) == 201


async def test_tls_binding_per_domain(tab: Tab, web_env: WebEnv) -> None:
    domain = unique_domain("bound")
    account, key = await web_env.customer(domain)
    issuer = make_ca("Binding Root")
    older = make_leaf(issuer, cn="older", dns=[domain])
    wildcard = make_leaf(issuer, cn="wildcard", dns=[f"*.{domain}", domain])
    for leaf in (older, wildcard):
        await web_env.store.import_chain(account, p12(leaf, b"pw"), b"pw")
    chains = {c.subject: c for c in await web_env.store.list_chains(account)}
    await tab.sign_in(key)
    pki = tab.page.get_by_role("region", name="PKI settings")
    binding = pki.get_by_label(f"TLS chain for {domain}")
    await expect(binding).to_have_value("")
    await binding.select_option(chains["CN=older"].id)
    await pki.get_by_role("button", name="Save TLS bindings").click()
    await expect(tab.page.get_by_role("status")).to_contain_text("TLS bindings saved")
    settings = await web_env.store.pki(account)
    assert settings.binding_map() == {domain: chains["CN=older"].id}
    assert fingerprint(await handshake(web_env.tenant_port, domain)) == fingerprint(older.cert)
    await binding.select_option(chains["CN=wildcard"].id)
    async with tab.page.expect_response(lambda r: r.request.method == "PUT") as saved:
        await pki.get_by_role("button", name="Save TLS bindings").click()
    assert (await saved.value).status == 200  # answered once the gateway serves it
    await expect(binding).to_have_value(chains["CN=wildcard"].id)
    assert fingerprint(await handshake(web_env.tenant_port, domain)) == fingerprint(
        wildcard.cert)
