"""The fleet settings of the config: ``database`` (path or URL), ``password_file``,
``node_name``; a bad value is one error naming the key, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from certstore.persistence.pgurl import PgLocation
from gateway.config import parse_config
from gateway.errors import ConfigError


def test_sqlite_path_is_resolved_and_url_parsed(tmp_path: Path) -> None:
    config = parse_config({"data_dir": "var", "database": "db/x.sqlite"}, base_dir=tmp_path)
    assert config.database_location == tmp_path / "db" / "x.sqlite"
    config = parse_config({"data_dir": "var"}, base_dir=tmp_path)
    assert config.database_location == tmp_path / "var" / "certgate.sqlite"
    assert config.fleet_node_name == socket.gethostname()
    config = parse_config({"data_dir": "var", "node_name": "gw-a",
                           "database": "postgresql://app@db:6543/certgate",
                           "password_file": "secrets/pw"}, base_dir=tmp_path)
    location = config.database_location
    assert isinstance(location, PgLocation)
    assert (location.host, location.port, location.database) == ("db", 6543, "certgate")
    assert location.password_file == tmp_path / "secrets" / "pw"
    assert config.fleet_node_name == "gw-a"


@pytest.mark.parametrize(("value", "message"), [
    ({"database": "postgresql://app:hunter2@db/certgate"}, "must not hold a password"),
    ({"database": "postgresql://app@db:notaport/certgate"}, "not a valid PostgreSQL URL"),
    ({"database": "redis://db/0"}, "unsupported database URL scheme"),
    ({"database": "   "}, "SQLite file path or postgresql://"),
    ({"node_name": "bad name with spaces"}, "node_name"),
    ({"node_name": ""}, "node_name"),
])
def test_bad_fleet_settings_are_one_clear_error(tmp_path: Path, value: dict[str, str],
                                                message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"data_dir": "var", **value}, base_dir=tmp_path)
    text = str(caught.value)
    assert message in text and "hunter2" not in text
