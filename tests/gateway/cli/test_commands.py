"""The command tree: every command takes --json and -c/--config, and the CLI starts light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from certstore.keys import KEY_TYPES
from gateway import workershare
from gateway.cli import chain_cmds, main
from gateway.cli import serve as serve_module


def _leaves(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += _leaves(cmd, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


def _command(path: tuple[str, ...]) -> click.Command:
    cmd: click.Command = main
    for name in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    return cmd


LEAVES = _leaves(main)


def test_the_tree_is_walked() -> None:
    """A guard on the walk itself: the parametrised tests below cover real commands."""
    assert ("account", "list") in LEAVES and ("serve",) in LEAVES and ("init",) in LEAVES
    assert len(LEAVES) >= 25


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_every_command_takes_json(path: tuple[str, ...]) -> None:
    options = {opt for p in _command(path).params for opt in p.opts}
    assert "--json" in options, f"certgate {' '.join(path)} lacks --json"


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_every_command_takes_config_after_the_command(path: tuple[str, ...]) -> None:
    options = {opt for p in _command(path).params for opt in p.opts}
    assert {"-c", "--config"} <= options, f"certgate {' '.join(path)} lacks -c/--config"


def test_cli_key_types_are_the_stores() -> None:
    """The CLI spells the key types out (to start without cryptography): they must agree."""
    assert set(chain_cmds.KEY_TYPES) == set(KEY_TYPES)


def test_worker_dir_variable_is_the_gateways() -> None:
    assert serve_module.WORKER_DIR_ENV == workershare.ENV


# What only ``serve`` may import: the gateway's server stack and aiohttp (its client alone
# costs ~0.4 s of start-up on a slow machine).
SERVER_STACK = ("aiohttp", "gateway.server", "gateway.admin", "gateway.listener", "gateway.tls",
                "gateway.proxy")

PROBE = """
import json, sys
from gateway.cli import main
try:
    main(sys.argv[1:], prog_name="certgate")
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _modules_after(args: list[str], cwd: Path) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k != "CERTGATE_CONFIG"}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), proc.stderr
    return set(report["modules"])


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] == "aiohttp"
                  or any(m == s or m.startswith(s + ".") for s in SERVER_STACK[1:]))


def test_help_and_store_commands_do_not_import_the_server_stack(tmp_path: Path) -> None:
    """Guards start-up speed without timing it: what each command imports."""
    (tmp_path / "certgate.yaml").write_text("ca: {key_type: ecdsa-p256}\n")
    subprocess.run([sys.executable, "-m", "gateway.cli", "init"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    help_modules = _modules_after(["--help"], tmp_path)
    assert _heavy(help_modules) == []
    # --help needs neither the store, nor the config's validation, nor cryptography.
    assert not {m for m in help_modules if m.split(".")[0] in (
        "certstore", "cryptography", "pydantic", "yaml", "aiosqlite", "asyncio")}
    for args in (["account", "list", "--json"], ["chain", "--help"], ["ca", "show"]):
        modules = _modules_after(args, tmp_path)
        assert _heavy(modules) == [], args
    assert "certstore.store" in modules  # the probe sees what a command really imported
