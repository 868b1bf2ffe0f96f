"""The store suite runs against both backends: every test taking ``store`` runs once on
SQLite and once on a real PostgreSQL database (fresh per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from certstore.store import CertStore
from tests.support.postgres import BACKENDS, PgServer, pg_server, store_location  # noqa: F401


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, pg_server: PgServer,  # noqa: F811
                tmp_path: Path, master_key: bytes, no_blocking: None
                ) -> AsyncIterator[CertStore]:
    """An initialised store on each backend (ECDSA CA to keep tests fast)."""
    async with store_location(request.param, tmp_path, pg_server) as location:
        opened, created = await CertStore.initialize(location, master_key,
                                                     ca_key_type="ecdsa-p256")
        assert created
        try:
            yield opened
        finally:
            await opened.close()
