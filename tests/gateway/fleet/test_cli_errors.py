"""``certgate`` against a PostgreSQL store that is not usable: one ``error:`` line naming
the problem and exit status 1, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.gateway.fleet.nodes import Node
from tests.support.postgres import PgServer

pytestmark = pytest.mark.timeout(300)


def _one_error_line(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr, stderr
    first = stderr.splitlines()[0]
    assert first.startswith("error: ") and expected in first, stderr


async def test_unusable_databases_are_one_clear_line(tmp_path: Path,
                                                     pg_server: PgServer) -> None:
    env = pg_server.client_env()
    unreachable = Node(tmp_path / "a", "a", "postgresql://certgate@127.0.0.1:1/x",
                       env).write_config()
    for command in (("init",), ("serve",), ("account", "list")):
        out = unreachable.cli(*command, check=False)
        assert out.returncode == 1
        _one_error_line(out.stderr, "cannot reach PostgreSQL at 127.0.0.1:1")
    missing = Node(tmp_path / "b", "b", pg_server.url("no_such_db"), env).write_config()
    _one_error_line(missing.cli("init", check=False).stderr, "'no_such_db' does not exist")
    name = await pg_server.new_database()
    try:
        empty = Node(tmp_path / "c", "c", pg_server.url(name), env).write_config()
        out = empty.cli("serve", check=False)
        _one_error_line(out.stderr, "no certgate schema; run 'certgate init'")
        wrong = Node(tmp_path / "d", "d", pg_server.url(name),
                     {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
                     | {"PGPASSWORD": "wrong"}).write_config()
        _one_error_line(wrong.cli("init", check=False).stderr, "refused user certgate")
        bad_url = Node(tmp_path / "e", "e", "postgresql://u:pw@h/db", env).write_config()
        out = bad_url.cli("serve", check=False)
        assert out.returncode == 1 and "Traceback" not in out.stderr
        assert "database: the database URL must not hold a password" in out.stderr
        assert "pw@" not in out.stderr
    finally:
        await pg_server.drop_database(name)
