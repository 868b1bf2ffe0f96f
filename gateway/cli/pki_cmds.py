"""``certgate pki``: an account's signing chain and explicit TLS bindings."""

from __future__ import annotations

import click

from gateway.cli.common import CliState, emit, json_option, pass_state, with_store


@click.group()
def pki() -> None:
    """An account's PKI settings: signing chain and explicit TLS bindings."""


@pki.command("show")
@click.argument("account_id")
@json_option
@pass_state
def pki_show(state: CliState, account_id: str, as_json: bool) -> None:
    """Show the PKI settings."""
    from gateway.views import pki_view

    p = with_store(state, lambda s: s.pki(account_id))
    emit(pki_view(p), as_json,
         f"signing chain: {p.signing_chain_id or '-'}\n" + "".join(
             f"tls {d}: {c}\n" for d, c in p.tls_bindings))


@pki.command("set-signing")
@click.argument("account_id")
@click.argument("chain_id", required=False)
@click.option("--clear", is_flag=True, help="Choose no signing chain (tokens are refused).")
@json_option
@pass_state
def pki_set_signing(state: CliState, account_id: str, chain_id: str | None, clear: bool,
                    as_json: bool) -> None:
    """Choose the chain that signs the account's tokens, or --clear it."""
    from gateway.views import pki_view

    if clear == (chain_id is not None):
        raise click.UsageError("give a CHAIN_ID or --clear (not both)")
    p = with_store(state, lambda s: s.update_pki(account_id, signing_chain_id=chain_id))
    emit(pki_view(p), as_json, p.signing_chain_id or "cleared")


@pki.command("bind")
@click.argument("account_id")
@click.argument("domain")
@click.argument("chain_id")
@json_option
@pass_state
def pki_bind(state: CliState, account_id: str, domain: str, chain_id: str,
             as_json: bool) -> None:
    """Serve DOMAIN with CHAIN_ID explicitly (instead of the chain expiring last)."""
    from gateway.views import pki_view

    p = with_store(state, lambda s: s.update_pki(account_id, tls_bindings={domain: chain_id}))
    emit(pki_view(p), as_json, f"{domain} -> {chain_id}")


@pki.command("unbind")
@click.argument("account_id")
@click.argument("domain")
@json_option
@pass_state
def pki_unbind(state: CliState, account_id: str, domain: str, as_json: bool) -> None:
    """Remove DOMAIN's explicit binding."""
    from gateway.views import pki_view

    p = with_store(state, lambda s: s.update_pki(account_id, tls_bindings={domain: None}))
    emit(pki_view(p), as_json, f"{domain} unbound")
