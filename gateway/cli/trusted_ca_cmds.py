"""``certgate trusted-ca``: an account's trusted CA certificates."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.common import CliState, emit, json_option, pass_state, read_input, with_store


@click.group("trusted-ca")
def trusted_ca() -> None:
    """Trusted CA certificates of an account (for LDAPS and similar)."""


@trusted_ca.command("import")
@click.argument("account_id")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@json_option
@pass_state
def trusted_ca_import(state: CliState, account_id: str, file: Path, as_json: bool) -> None:
    """Import PEM (one or many certificates) or DER."""
    from gateway.views import trusted_ca_view

    data = read_input(file)
    cas = with_store(state, lambda s: s.import_trusted_cas(account_id, data))
    emit([trusted_ca_view(c, with_pem=False) for c in cas], as_json, "\n".join(
        f"{c.id}  {c.fingerprint_sha256[:16]}  {c.subject}" for c in cas))


@trusted_ca.command("list")
@click.argument("account_id")
@json_option
@pass_state
def trusted_ca_list(state: CliState, account_id: str, as_json: bool) -> None:
    """List an account's trusted CAs."""
    from gateway.views import trusted_ca_view

    cas = with_store(state, lambda s: s.list_trusted_cas(account_id))
    emit([trusted_ca_view(c, with_pem=False) for c in cas], as_json, "\n".join(
        f"{c.id}  {'CA ' if c.is_ca else '   '} {c.not_after:%Y-%m-%d}  {c.subject}"
        for c in cas))


@trusted_ca.command("bundle")
@click.argument("account_id")
@json_option
@pass_state
def trusted_ca_bundle(state: CliState, account_id: str, as_json: bool) -> None:
    """Print the account's trust bundle (PEM)."""
    bundle = with_store(state, lambda s: s.trust_bundle(account_id))
    emit({"account_id": account_id, "pem": bundle}, as_json, bundle)


@trusted_ca.command("delete")
@click.argument("account_id")
@click.argument("ca_id")
@json_option
@pass_state
def trusted_ca_delete(state: CliState, account_id: str, ca_id: str, as_json: bool) -> None:
    """Stop trusting one CA certificate."""
    with_store(state, lambda s: s.delete_trusted_ca(account_id, ca_id))
    emit({"deleted": ca_id}, as_json, f"deleted {ca_id}")
