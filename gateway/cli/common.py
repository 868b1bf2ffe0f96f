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
from certstore.persistence.keyfile import read_master_key
from certstore.store import CertStore
from certstore.text import escaped
from gateway.config import Config, find_config, load_config
from gateway.errors import GatewayError

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class CliState:
    """What the top-level group resolved: where the config is."""

    config_path: str | None

    def config(self) -> Config:
        """Load the configuration (``--config``, ``$CERTGATE_CONFIG``, ``./certgate.yaml``)."""
        return load_config(find_config(self.config_path))


pass_state = click.make_pass_decorator(CliState)
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print machine-readable JSON.")


def shown(value: object) -> str:
    """A value taken from a certificate or a user, fit for one line of a terminal: every
    control character escaped, newlines included (see :mod:`certstore.text`)."""
    return escaped(str(value))


def say(text: str, *, err: bool = False, nl: bool = True) -> None:
    """Print text built by the program: whatever values it holds, no control character
    but the newline reaches the terminal (the last line of defence: values should also go
    through :func:`shown`)."""
    click.echo(escaped(text, keep_newlines=True), err=err, nl=nl)


def fail(message: str, *, details: dict[str, Any] | None = None) -> NoReturn:
    """Print a refusal on stderr and exit non-zero."""
    say(f"error: {shown(message)}", err=True)
    for key, value in (details or {}).items():
        if isinstance(value, list):
            value = ", ".join(shown(v) for v in value)
        say(f"  {key}: {shown(value)}", err=True)
    sys.exit(1)


async def _await(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


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
    return await CertStore.open(config.database_path, read_master_key(config.master_key_path),
                                token_issuer=config.token_issuer)


def with_store(state: CliState, op: Callable[[CertStore], Awaitable[T]]) -> T:
    """Open the store, run ``op`` on it, close it; errors become a clear exit."""

    async def go() -> T:
        store = await open_store(state.config())
        try:
            with acting_as(CLI_ACTOR):  # the CLI's mutations are audited too
                return await op(store)
        finally:
            await store.close()

    return run(go)


def emit(data: Any, as_json: bool, text: str) -> None:
    """Print ``data`` as JSON, or ``text`` for a person. JSON escapes every control
    character and non-ASCII character (``ensure_ascii``); ``text`` goes through
    :func:`say`."""
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=True))
    elif text:
        say(text, nl=not text.endswith("\n"))


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
