"""Plumbing shared by the CLI commands: config, the store, output and errors.

The CLI is scripted in loops, so it starts as fast as the interpreter allows: this module and
the command modules import only ``click`` at the top; each command imports what it needs
(the store, the config, cryptography) inside its function, and only ``serve`` imports the
gateway and aiohttp. ``tests/gateway/cli/test_imports.py`` guards that.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from certstore.store import CertStore
    from gateway.config import Config
    from gateway.configfile import StoreSettings

WAIT_TIMEOUT_S = 10.0

T = TypeVar("T")

CONFIG_HELP = "Config file (default: $CERTGATE_CONFIG, else ./certgate.yaml)."


@dataclass(frozen=True, slots=True, kw_only=True)
class CliState:
    """What the command line resolved: where the config is."""

    config_path: str | None

    def config(self) -> Config:
        """Load the configuration (``--config``, ``$CERTGATE_CONFIG``, ``./certgate.yaml``).

        A bad or missing file is a clear one-line refusal (exit 1), never a traceback.
        """
        from gateway.config import find_config, load_config
        from gateway.errors import ConfigError

        try:
            return load_config(find_config(self.config_path))
        except ConfigError as e:
            fail(str(e))

    def store_settings(self) -> StoreSettings:
        """Where the store is, read without validating the rest of the config (fast: no
        pydantic; ``init`` and ``serve`` validate the whole file)."""
        from gateway.configfile import find_config, store_settings
        from gateway.errors import ConfigError

        try:
            return store_settings(find_config(self.config_path))
        except ConfigError as e:
            fail(str(e))


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print machine-readable JSON.")


def pass_state(f: Callable[..., T]) -> Callable[..., T]:
    """Pass the :class:`CliState` first, and accept ``-c/--config`` on the command itself.

    ``certgate account list -c FILE`` and ``certgate -c FILE account list`` are the same;
    given in both places, the one nearer the command wins.
    """

    @functools.wraps(f)
    def wrapper(*args: Any, config_path: str | None = None, **kwargs: Any) -> T:
        if config_path is None:
            root = click.get_current_context().find_object(CliState)
            config_path = root.config_path if root is not None else None
        return f(CliState(config_path=config_path), *args, **kwargs)

    return click.option("-c", "--config", "config_path", metavar="FILE",
                        help=CONFIG_HELP)(wrapper)


def shown(value: object) -> str:
    """A value taken from a certificate or a user, fit for one line of a terminal: every
    control character escaped, newlines included (see :mod:`certstore.text`)."""
    from certstore.text import escaped

    return escaped(str(value))


def say(text: str, *, err: bool = False, nl: bool = True) -> None:
    """Print text built by the program: whatever values it holds, no control character
    but the newline reaches the terminal (the last line of defence: values should also go
    through :func:`shown`)."""
    from certstore.text import escaped

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


def waits() -> bool:
    """Whether this invocation waits for the fleet (no ``--no-wait``)."""
    from gateway.cli.fleet_cmds import waits as fleet_waits

    return fleet_waits()


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning certgate errors into a clear message and exit status 1."""
    import asyncio

    from certstore.errors import CertStoreError
    from gateway.errors import GatewayError

    try:
        return asyncio.run(_await(fn))
    except CertStoreError as e:
        fail(e.message, details=e.details())
    except GatewayError as e:
        fail(str(e))


async def open_store(config: StoreSettings) -> CertStore:
    """Open the initialised store named by the config."""
    from certstore.persistence.keyfile import read_master_key
    from certstore.store import CertStore

    store = await CertStore.open(config.database_location,
                                 read_master_key(config.master_key_path),
                                 token_issuer=config.token_issuer)
    store.lifetimes = config.lifetimes
    return store


def with_store(state: CliState, op: Callable[[CertStore], Awaitable[T]]) -> T:
    """Open the store, run ``op`` on it, close it; errors become a clear exit."""
    from certstore.audit import CLI_ACTOR, acting_as
    from certstore.persistence.conn import tracking_changes

    settings = state.store_settings()

    async def go() -> T:
        store = await open_store(settings)
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
