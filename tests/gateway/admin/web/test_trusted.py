"""Trusted CA certificates through the page: import a PEM file and a DER file, see
subject, issuer, fingerprint and expiry, download the bundle, delete with confirmation."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.async_api import expect

from tests.certfactory import make_ca
from tests.gateway.admin.web.conftest import Tab, WebEnv, unique_domain

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_import_download_and_delete_trusted_cas(tab: Tab, web_env: WebEnv) -> None:
    account, key = await web_env.customer(unique_domain())
    ldaps = make_ca("Corp LDAPS Root")
    mail = make_ca("Corp Mail Root")
    await tab.sign_in(key)
    page = tab.page
    section = page.get_by_role("region", name="Trusted CA certificates")
    upload = section.get_by_label("Certificate file (PEM or DER)")
    await upload.set_input_files({"name": "ldaps.pem", "mimeType": "application/x-pem-file",
                                  "buffer": ldaps.pem()})
    await section.get_by_role("button", name="Import", exact=True).click()
    await expect(page.get_by_role("status")).to_contain_text("Imported 1 trusted CA")
    await upload.set_input_files({"name": "mail.der", "mimeType": "application/pkix-cert",
                                  "buffer": mail.cert.public_bytes(serialization.Encoding.DER)})
    await section.get_by_role("button", name="Import", exact=True).click()
    cards = section.locator("#trusted-list > li")
    await expect(cards).to_have_count(2)
    card = cards.filter(has_text="CN=Corp LDAPS Root")
    fp = ldaps.cert.fingerprint(ldaps.cert.signature_hash_algorithm  # type: ignore[arg-type]
                                ).hex()
    await expect(card).to_contain_text("IssuerCN=Corp LDAPS Root")
    assert fp.upper() in (await card.inner_text()).replace(":", "").upper()
    # Expiry: viewer's locale in the text, UTC on hover.
    expires = card.locator("time")
    utc = ldaps.cert.not_valid_after_utc.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    await expect(expires).to_have_attribute("title", utc)
    await tab.shot("08-trusted-cas")

    async with page.expect_download() as info:
        await section.get_by_role("link", name="Download the PEM bundle").click()
    download = await info.value
    bundle = (await download.path()).read_bytes()
    subjects = {c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(bundle)}
    assert subjects == {"CN=Corp LDAPS Root", "CN=Corp Mail Root"}

    await card.get_by_role("button", name="Delete trusted CA CN=Corp LDAPS Root").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("CN=Corp LDAPS Root")
    await dialog.get_by_role("button", name="Delete").click()
    await expect(cards).to_have_count(1)
    assert [c.subject for c in await web_env.store.list_trusted_cas(account)] == [
        "CN=Corp Mail Root"]


async def test_a_file_that_is_not_a_certificate_is_refused_beside_the_form(
        tab: Tab, web_env: WebEnv) -> None:
    account, key = await web_env.customer(unique_domain())
    await tab.sign_in(key)
    section = tab.page.get_by_role("region", name="Trusted CA certificates")
    await section.get_by_label("Certificate file (PEM or DER)").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello, not a cert"})
    await section.get_by_role("button", name="Import", exact=True).click()
    await expect(section.get_by_role("alert")).not_to_be_empty()
    assert await web_env.store.list_trusted_cas(account) == []
