"""The ``certgate`` command line: store administration, and ``serve``.

One module per command group; each imports only ``click`` at the top and what its commands
need inside them, so ``certgate --help`` and the store commands start at once (only
``serve`` imports the gateway and aiohttp). A new group is a module and a line below.
"""

from __future__ import annotations

import click

from gateway.cli.account_cmds import account
from gateway.cli.apikey_cmds import apikey
from gateway.cli.ca_cmds import ca
from gateway.cli.chain_cmds import chain
from gateway.cli.common import CONFIG_HELP, CliState
from gateway.cli.fleet_cmds import add_no_wait, store_group
from gateway.cli.init_cmd import init
from gateway.cli.pki_cmds import pki
from gateway.cli.serve import serve_cmd
from gateway.cli.token_cmds import token
from gateway.cli.trusted_ca_cmds import trusted_ca


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config_path", metavar="FILE", help=CONFIG_HELP)
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """certgate: a TLS-terminating gateway with a multi-tenant certificate store.

    Every command takes --json (machine-readable output) and -c/--config FILE (also after
    the command: certgate account list -c FILE).
    """
    ctx.obj = CliState(config_path=config_path)


for _command in (init, ca, account, trusted_ca, chain, pki, token, apikey, serve_cmd):
    main.add_command(_command)
main.add_command(store_group)
add_no_wait(main)
