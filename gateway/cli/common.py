"""Plumbing shared by the CLI commands: config, the store, output and errors."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from certstore.audit import CLI_ACTOR, acting_as
from certstore.errors import CertStoreError
from certstore.persistence.conn import tracking_changes
from certstore.persistence.keyfile import read_master_key
from certstore.store import CertStore
from gateway.config import Config, find_config, load_config
from gateway.errors import GatewayError

WAIT_TIMEOUT_S = 10.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class CliState:
    """What the top-level group resolved: where the config is."""

    config_path: str | None

    def config(self) -> Config:
        """Load the configuration (``--config``, ``$CERTGATE_CONFIG``, ``./certgate.yaml``)."""
        return load_config(find_config(self.config_path))


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print machine-readable JSON.")


def fail(message: str, *, details: dict[str, Any] | None = None) -> NoReturn:
    """Print a refusal on stderr and exit non-zero."""
    click.echo(f"error: {message}", err=True)
    for key, value in (details or {}).items():
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        click.echo(f"  {key}: {value}", err=True)
    sys.exit(1)


async def _await(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


def waits() -> bool:
    """Whether this invocation waits for the fleet (no ``--no-wait``)."""
    from gateway.cli.fleet_cmds import waits as fleet_waits

    return fleet_waits()


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning certgate errors into a clear message and exit status 1."""
    try:
        return asyncio.run(_await(fn))
    except CertStoreError as e:
        fail(e.message, details=e.details())
    except GatewayError as e:
        fail(str(e))


async def open_store(config: Config) -> CertStore:
    """Open the initialised store named by the config."""
    return await CertStore.open(config.database_location, read_master_key(config.master_key_path),
                                token_issuer=config.token_issuer)


def with_store(state: CliState, op: Callable[[CertStore], Awaitable[T]]) -> T:
    """Open the store, run ``op`` on it, close it; errors become a clear exit."""

    async def go() -> T:
        store = await open_store(state.config())
        try:
            with acting_as(CLI_ACTOR), tracking_changes() as changes:  # audited too
                result = await op(store)
            if changes and waits():
                await _wait_for_fleet(store, max(changes))
            return result
        finally:
            await store.close()

    return run(go)


async def _wait_for_fleet(store: CertStore, seq: int) -> None:
    """Return once every live gateway node serves change ``seq`` (bounded): "the command
    returned" then means "every node serves it"."""
    from gateway.fleet import wait_fleet

    pending = await wait_fleet(store.database, seq, WAIT_TIMEOUT_S)
    if pending:
        click.echo(f"warning: change {seq} is committed but not yet served by "
                   f"{', '.join(pending)} (waited {WAIT_TIMEOUT_S:.0f} s)", err=True)


def emit(data: Any, as_json: bool, text: str) -> None:
    """Print ``data`` as JSON, or ``text`` for a person."""
    if as_json:
        click.echo(json.dumps(data, indent=2))
    elif text:
        click.echo(text, nl=not text.endswith("\n"))


def read_password(password_file: Path | None, password_env: str | None) -> bytes | None:
    """A PKCS#12 password from a file, an environment variable or a prompt; never argv.

    An empty password means none (the import then explains that one is required).
    """
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except OSError as e:
            fail(f"cannot read the password file {password_file}: {e}")
        text = text.removesuffix("\n").removesuffix("\r")
    elif password_env is not None:
        if password_env not in os.environ:
            fail(f"the environment variable {password_env} is not set")
        text = os.environ[password_env]
    elif sys.stdin.isatty():
        text = click.prompt("PKCS#12 password", hide_input=True, default="",
                            show_default=False)
    else:
        fail("give the password with --password-file FILE or --password-env VAR "
             "(passwords are never taken from the command line)")
    return text.encode("utf-8") if text else None


def read_input(path: Path) -> bytes:
    """Read an input file, or '-' for standard input."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as e:
        fail(f"cannot read {path}: {e}")
