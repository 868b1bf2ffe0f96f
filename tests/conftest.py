"""Shared fixtures: a real store on SQLite in a temp dir, and a guard against blocking calls
on the event loop (ARCHITECTURE.md convention 6)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from certstore.sealing import Sealer
from certstore.store import CertStore
from tests.certfactory import Issued, make_ca

# A callback running this long on the loop is a blocking call (RSA key generation takes
# 50-500 ms, PKCS#12 parsing with many iterations similar): fail the test that did it.
SLOW_CALLBACK_S = 0.25


class _SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing ") and " took " in message:
            self.messages.append(message)


@pytest.fixture
async def no_blocking() -> AsyncIterator[None]:
    """Fail the test if any callback blocks the event loop longer than SLOW_CALLBACK_S."""
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_S
    handler = _SlowCallbacks()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        loop.set_debug(False)
    assert not handler.messages, f"the event loop was blocked: {handler.messages}"


@pytest.fixture
def master_key() -> bytes:
    return Sealer.new_master_key()


@pytest.fixture
async def store(tmp_path: Path, master_key: bytes, no_blocking: None) -> AsyncIterator[CertStore]:
    """An initialised store (ECDSA CA to keep tests fast; the default CA is RSA-3072)."""
    opened, created = await CertStore.initialize(tmp_path / "certgate.sqlite", master_key,
                                                 ca_key_type="ecdsa-p256")
    assert created
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(scope="session")
def root_ca() -> Issued:
    """An external root CA (not certgate's), as a customer's own PKI would be."""
    return make_ca("Customer Root")


@pytest.fixture(scope="session")
def intermediate_ca(root_ca: Issued) -> Issued:
    return make_ca("Customer Issuing", issuer=root_ca)
