"""The ``certgate`` command line: store administration, and ``serve``."""

from __future__ import annotations

import click

from gateway.cli.common import CliState
from gateway.cli.fleet_cmds import add_no_wait, store_group
from gateway.cli.serve_cmd import serve_cmd
from gateway.cli.store_cmds import register


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config_path", metavar="FILE",
              help="Config file (default: $CERTGATE_CONFIG, else ./certgate.yaml).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """certgate: a TLS-terminating gateway with a multi-tenant certificate store."""
    ctx.obj = CliState(config_path=config_path)


register(main)
main.add_command(serve_cmd)
main.add_command(store_group)
add_no_wait(main)
