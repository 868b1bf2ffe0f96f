"""The admin page under test: one real gateway (admin listener and an ``https`` tenant
listener on loopback) and one Debian Chromium, driven by Playwright, for the whole session.

Each test gets a fresh browser context (no cookies) and creates its own accounts, so tests
do not depend on each other. Screenshots go to ``test-artifacts/web/`` (git-ignored), or to
``$CERTGATE_ARTIFACTS/web``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

from certstore.store import CertStore
from gateway.admin.web.session import COOKIE
from gateway.server import Gateway
from tests.gateway.harness import (
    handshake,
    init_store,
    root_pem,
    running_gateway,
    upstream_server,
)
from tests.support.dns_server import TxtServer, txt_server

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking switches Chromium tries Google's hosts at start, which
# this machine's closed network refuses; --no-sandbox because the tests run as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
ARTIFACTS = Path(os.environ.get("CERTGATE_ARTIFACTS",
                                Path(__file__).resolve().parents[4] / "test-artifacts")) / "web"
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=390, height=844)


@dataclass
class WebEnv:
    """The running gateway, the page's address, an operator key, and the DNS server the
    gateway asks for domain challenges (``dns.resolvers``)."""

    gateway: Gateway
    base: str
    root_pem: str
    operator: str
    dns: TxtServer

    @property
    def store(self) -> CertStore:
        return self.gateway.store

    @property
    def tenant_port(self) -> int:
        return self.gateway.listeners["web"].port

    async def customer(self, *domains: str, parent: str | None = None,
                       name: str | None = None) -> tuple[str, str]:
        """A new customer account (under ``parent`` if given) and its key's secret."""
        account = await self.store.create_account(
            name=name or f"Customer {uuid.uuid4().hex[:6]}", kind="customer",
            parent_id=parent, domains=list(domains))
        _, secret = await self.store.create_api_key(role="customer", account_id=account.id)
        return account.id, secret

    async def vendor(self, name: str = "Vendor") -> tuple[str, str]:
        account = await self.store.create_account(name=name, kind="vendor", domains=[])
        _, secret = await self.store.create_api_key(role="vendor", account_id=account.id)
        return account.id, secret


def unique_domain(label: str = "shop") -> str:
    """A domain no other test uses (a domain belongs to one account)."""
    return f"{label}-{uuid.uuid4().hex[:8]}.example"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def web_env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WebEnv]:
    data = tmp_path_factory.mktemp("web-gateway")
    await init_store(data)
    with txt_server() as dns_server:
        async with upstream_server() as up_port:
            listener = {"name": "web", "kind": "https", "bind": "127.0.0.1:0",
                        "upstream": f"http://127.0.0.1:{up_port}"}
            admin = {"bind": "127.0.0.1:0", "max_upload_bytes": 300 * 1024}
            # Challenges are looked up only on request ("Check DNS"), in the test's DNS.
            dns = {"resolvers": [dns_server.address], "timeout_s": 5.0, "check_interval_s": 0}
            async with running_gateway(data, [listener], admin=admin, dns=dns) as gw:
                _, operator = await gw.store.create_api_key(role="operator")
                yield WebEnv(gateway=gw, base=f"https://127.0.0.1:{gw.admin_port}",
                             root_pem=root_pem(gw.store.ca_root).decode(),
                             operator=operator, dns=dns_server)


async def admin_spki_pin(env: WebEnv) -> str:
    """The base64 SHA-256 of the admin listener's public key, as Chromium's
    ``--ignore-certificate-errors-spki-list`` takes it."""
    port = env.gateway.admin_port
    assert port is not None
    leaf = await handshake(port, None)
    spki = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(web_env: WebEnv) -> AsyncIterator[Browser]:
    # The browser accepts the admin listener's certificate by its key alone (the built-in
    # CA is not in Chromium's store). The pin makes the connection count as valid, not as
    # a certificate error "proceeded past": with errors ignored instead, Chromium now and
    # then refused to store the Secure session cookie.
    pin = await admin_spki_pin(web_env)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"])
        try:
            yield chromium
        finally:
            await chromium.close()


@dataclass
class Tab:
    """A page in a fresh browser context, and what its console reported."""

    page: Page
    env: WebEnv
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    async def open(self, path: str = "/") -> None:
        await self.page.goto(self.env.base + path)
        await self.page.wait_for_selector("body[data-ready=true]")

    async def sign_in(self, key: str) -> None:
        """Sign in with the page's form, as a person would."""
        await self.open("/")
        await self.page.get_by_label("API key", exact=True).fill(key)
        async with self.page.expect_response(lambda r: r.url.endswith("/session")
                                             and r.request.method == "POST") as info:
            await self.page.get_by_role("button", name="Sign in", exact=True).click()
        assert (await info.value).status == 201
        await expect(self.page.get_by_role("button", name="Sign out")).to_be_visible()
        # Chromium stores a cookie asynchronously; a navigation made a few milliseconds
        # after the sign-in answer was seen to go out without it. Wait (bounded) until the
        # cookie jar has it, as any later request of a person would.
        for _ in range(200):
            if any(c["name"] == COOKIE for c in await self.page.context.cookies()):
                return
            await self.page.wait_for_timeout(25)
        raise AssertionError("the browser did not store the session cookie")

    async def shot(self, name: str, *, full_page: bool = True) -> Path:
        """Save a screenshot artifact."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest_asyncio.fixture(loop_scope="session")
async def tab(browser: Browser, web_env: WebEnv) -> AsyncIterator[Tab]:
    context = await browser.new_context(viewport=DESKTOP,
                                        accept_downloads=True)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    opened = Tab(page=page, env=web_env)

    def console(message: ConsoleMessage) -> None:
        # A CSP violation, a failed asset or a script error is a console error.
        if message.type == "error" and "status of 4" not in message.text:
            opened.errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: opened.errors.append(str(error)))

    async def dialog(d: object) -> None:
        opened.dialogs.append(getattr(d, "message", "?"))
        await d.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", dialog)
    try:
        yield opened
    finally:
        await context.close()
    assert not opened.errors, f"the page reported errors: {opened.errors}"
    assert not opened.dialogs, f"the page opened dialogs (alert...): {opened.dialogs}"


def admin_ssl(root: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=root)
    return ctx


@pytest_asyncio.fixture(loop_scope="session")
async def http(web_env: WebEnv) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTPS client of the admin listener (verifies it against certgate's root),
    with no cookie jar: each test sends the cookies it means to send."""
    connector = aiohttp.TCPConnector(ssl=admin_ssl(web_env.root_pem))
    async with aiohttp.ClientSession(connector=connector,
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session
