"""The store suite runs against both backends: every test taking ``store`` runs once on
SQLite and once on a real PostgreSQL database (fresh per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from certstore.persistence.pgurl import PgLocation
from certstore.store import CertStore
from tests.support.postgres import PgServer, pg_server  # noqa: F401

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, pg_server: PgServer,  # noqa: F811
                tmp_path: Path, master_key: bytes, no_blocking: None
                ) -> AsyncIterator[CertStore]:
    """An initialised store on each backend (ECDSA CA to keep tests fast)."""
    database = None
    if request.param == "sqlite":
        location: Path | PgLocation = tmp_path / "certgate.sqlite"
    else:
        database = await pg_server.new_database()
        location = PgLocation.parse(pg_server.url(database),
                                    password_file=pg_server.password_file)
    opened, created = await CertStore.initialize(location, master_key,
                                                 ca_key_type="ecdsa-p256")
    assert created
    try:
        yield opened
    finally:
        await opened.close()
        if database is not None:
            await pg_server.drop_database(database)
