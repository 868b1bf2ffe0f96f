"""A running gateway with the admin listener, and an HTTPS client verified against its CA."""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.server import Gateway
from tests.gateway.harness import init_store, root_pem, running_gateway, upstream_server

# Small enough that a test can exceed it cheaply, large enough for every real upload here.
MAX_UPLOAD_BYTES = 300 * 1024


@dataclass
class Reply:
    """One HTTP answer: status, headers, and the body parsed when it is JSON."""

    status: int
    headers: Mapping[str, str]
    text: str
    data: Any = None

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0]

    def problem(self, status: int, code: str) -> dict[str, Any]:
        """Assert this is the RFC 9457 problem ``code`` with ``status``; return its body."""
        assert self.status == status, f"expected {status} {code}, got {self.status}: {self.text}"
        assert self.content_type == "application/problem+json", self.headers
        body: dict[str, Any] = self.data
        assert body["type"] == f"urn:certgate:problem:{code}", body
        assert body["status"] == status and body["title"] and body["detail"], body
        return body


@dataclass
class Api:
    """An admin API client with one key (or none)."""

    session: aiohttp.ClientSession
    base: str
    key: str | None = None

    def as_key(self, key: str | None) -> Api:
        """The same client with another key."""
        return Api(self.session, self.base, key)

    async def call(self, method: str, path: str, *, json_body: Any = None,
                   data: Any = None, headers: Mapping[str, str] | None = None) -> Reply:
        sent = dict(headers or {})
        if self.key is not None:
            sent.setdefault("Authorization", f"Bearer {self.key}")
        async with self.session.request(method, self.base + path, json=json_body, data=data,
                                        headers=sent) as resp:
            text = await resp.text()
            reply = Reply(resp.status, dict(resp.headers), text)
            if "json" in reply.content_type:
                reply.data = json.loads(text)
            return reply

    async def get(self, path: str) -> Reply:
        return await self.call("GET", path)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", path, json_body=body, **kw)

    async def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        """Call and assert ``status``; return the parsed body."""
        reply = await self.call(method, path, **kw)
        assert reply.status == status, f"{method} {path}: {reply.status} {reply.text}"
        return reply.data if reply.data is not None else reply.text


@dataclass
class AdminEnv:
    """The running gateway, its admin client (operator key) and the CA to verify it."""

    gateway: Gateway
    api: Api
    root_pem: str
    upstream_port: int

    async def key_for(self, role: str, account_id: str | None) -> str:
        """A new API key's secret (what 'certgate apikey create' prints once)."""
        return (await self.new_key(role, account_id))[1]

    async def new_key(self, role: str, account_id: str | None) -> tuple[str, str]:
        """A new API key: its id and its secret."""
        key, secret = await self.gateway.store.create_api_key(role=role, account_id=account_id)
        return key.id, secret

    @property
    def web_port(self) -> int:
        return self.gateway.listeners["web"].port


def admin_context(root: str) -> ssl.SSLContext:
    """A client context that verifies the admin listener against certgate's root only."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host (IP SAN)
    ctx.load_verify_locations(cadata=root)
    return ctx


@contextlib.asynccontextmanager
async def admin_env(tmp_path: Path, **admin_settings: Any) -> AsyncIterator[AdminEnv]:
    """A gateway with an ``https`` tenant listener and the admin listener on loopback
    (``admin_settings`` beside its bind), and an operator's client that verifies it."""
    await init_store(tmp_path)
    async with upstream_server() as up_port:
        listener = {"name": "web", "kind": "https", "bind": "127.0.0.1:0",
                    "upstream": f"http://127.0.0.1:{up_port}"}
        admin_cfg = {"bind": "127.0.0.1:0", **admin_settings}
        async with running_gateway(tmp_path, [listener], admin=admin_cfg) as gw:
            root = root_pem(gw.store.ca_root).decode()
            connector = aiohttp.TCPConnector(ssl=admin_context(root))
            async with aiohttp.ClientSession(connector=connector) as session:
                _, operator = await gw.store.create_api_key(role="operator")
                api = Api(session, f"https://127.0.0.1:{gw.admin_port}", operator)
                yield AdminEnv(gateway=gw, api=api, root_pem=root, upstream_port=up_port)


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[AdminEnv]:
    """A gateway with an ``https`` tenant listener and the admin listener on loopback."""
    async with admin_env(tmp_path, max_upload_bytes=MAX_UPLOAD_BYTES) as env:
        yield env
