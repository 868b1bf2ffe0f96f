"""The single-node SQLite case: the CLI returns only once the running gateway serves its
change, so the very next handshake gets the new chain (formerly, under CPU load, up to
about a second of handshakes still got the old one)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.gateway.fleet.nodes import Node

pytestmark = pytest.mark.timeout(600)


async def test_cli_change_is_served_by_the_next_handshake(tmp_path: Path) -> None:
    node = Node(tmp_path / "single", "single", "./var/certgate.sqlite",
                dict(os.environ)).write_config()
    node.cli("init")
    account = node.cli_json("account", "create", "--name", "A", "--kind", "customer",
                            "--domain", "a.test")["id"]
    node.cli_json("chain", "generate", account, "--purpose", "tls", "--domain", "a.test")
    node.start()
    try:
        for _ in range(5):
            new = json.loads(node.cli("chain", "generate", account, "--purpose", "tls",
                                      "--domain", "a.test", "--json").stdout)
            assert await node.served() == str(new["fingerprint_sha256"]).replace(
                ":", "").lower()
        bad = node.cli("store", "copy", "--to", "nope://x", check=False)
        assert bad.returncode == 1 and "unsupported database URL scheme" in bad.stderr
    finally:
        node.stop()
