"""Fleet commands: ``certgate store copy``, and the ``--no-wait`` flag of every mutating
command (by default the CLI returns once every live node serves its change).

Heavy modules (the store, asyncpg) are imported inside the command functions: the CLI's
start-up stays cheap for the commands that do not need them.
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.common import CliState, pass_state

NO_WAIT = "certgate.no_wait"


def waits(ctx: click.Context | None = None) -> bool:
    """Whether this invocation waits for the fleet (no ``--no-wait`` given)."""
    ctx = ctx or click.get_current_context(silent=True)
    return not (ctx is not None and ctx.meta.get(NO_WAIT, False))


def _set_no_wait(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[NO_WAIT] = True


def add_no_wait(group: click.Group) -> None:
    """Give every command under ``group`` the ``--no-wait`` flag."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            add_no_wait(command)
        elif not any(p.name == "no_wait" for p in command.params):
            command.params.append(click.Option(
                ["--no-wait"], is_flag=True, expose_value=False, callback=_set_no_wait,
                help="Return once committed, without waiting for the live gateway nodes "
                     "to serve the change."))


@click.group("store")
def store_group() -> None:
    """The store as a whole (moving it to PostgreSQL for a fleet)."""


@store_group.command("copy")
@click.option("--to", "target", required=True, metavar="URL",
              help="An empty PostgreSQL database: postgresql://USER@HOST:PORT/DBNAME.")
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False),
              help="File holding the target's password (else PGPASSWORD or ~/.pgpass).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@pass_state
def store_copy(state: CliState, target: str, password_file: Path | None,
               as_json: bool) -> None:
    """Copy this config's store into an empty database, ids and sealed keys unchanged.

    Point 'database:' at the target afterwards; every node needs the same master key.
    """
    import datetime as dt

    from certstore.persistence.copy import copy_store
    from certstore.persistence.keyfile import read_master_key
    from certstore.persistence.location import describe_location, open_database, parse_location
    from certstore.store import CertStore
    from gateway.cli.common import emit, fail, run

    config = state.config()
    try:
        destination = parse_location(target, password_file=password_file)
    except ValueError as e:
        fail(f"--to: {e}")
    if destination == config.database_location:
        fail("--to names the store being copied")

    async def go() -> dict[str, int]:
        key = read_master_key(config.master_key_path)
        source = await CertStore.open(config.database_location, key)  # checks the key
        try:
            db = await open_database(destination, create=True)
            try:
                report = await copy_store(source.database, db, dt.datetime.now(dt.UTC))
            finally:
                await db.close()
        finally:
            await source.close()
        # The copy opens with the same master key, or the command fails.
        copied = await CertStore.open(destination, key)
        await copied.close()
        return report.rows

    rows = run(go)
    emit({"to": describe_location(destination), "rows": rows}, as_json,
         f"copied to {describe_location(destination)}: {rows.get('accounts', 0)} account(s), "
         f"{rows.get('chains', 0)} chain(s), {rows.get('changes', 0)} change(s)")
