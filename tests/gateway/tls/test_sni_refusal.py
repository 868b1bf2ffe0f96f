"""A server name that is not a host name (UTF-8 bytes, spaces, control bytes) is refused with
``unrecognized_name``, logged at most once per interval, never with a traceback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from certstore.persistence.keyfile import read_master_key
from certstore.store import CertStore
from tests.gateway.harness import init_store, running_gateway, upstream_server
from tests.support.clienthello import client_hello, first_record

ALERT, HANDSHAKE = 21, 22
FATAL_UNRECOGNIZED_NAME = b"\x02\x70"  # level fatal, description 112 (RFC 6066 section 3)
INVALID = ["bücher.acme.test".encode(), b"acme.test\xff", b"a b.acme.test", b"\x01acme.test",
           "xn--bcher-kva.acme.test\u00a0".encode()]


@pytest.fixture
async def tenant(tmp_path: Path) -> None:
    key = await init_store(tmp_path)
    store = await CertStore.open(tmp_path / "certgate.sqlite", read_master_key(key))
    try:
        acc = await store.create_account(name="Acme", kind="customer", domains=["acme.test"])
        await store.generate_chain(acc.id, purpose="tls", domain="acme.test")
    finally:
        await store.close()


async def test_invalid_server_names_get_unrecognized_name_quietly(
        tmp_path: Path, tenant: None, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="certgate.tls")
    async with upstream_server() as up, running_gateway(tmp_path, [{
            "name": "web", "kind": "https", "bind": "127.0.0.1:0",
            "upstream": f"http://127.0.0.1:{up}"}]) as gw:
        port = gw.listeners["web"].port
        for _ in range(6):
            for name in INVALID:
                record = await asyncio.to_thread(first_record, port, client_hello(name))
                assert record == (ALERT, FATAL_UNRECOGNIZED_NAME), name
        # Valid names and no name still get a ServerHello, so the refusal is the name's.
        for name in (b"acme.test", b"unknown.example", None):
            kind, _ = await asyncio.to_thread(first_record, port, client_hello(name))
            assert kind == HANDSHAKE, name
        refused = gw.metrics.handshakes[("web", "invalid_sni")]
    assert refused == 6 * len(INVALID)
    lines = [r for r in caplog.records if "not a host name" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "Traceback" not in capfd.readouterr().err
