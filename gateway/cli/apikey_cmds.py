"""``certgate apikey``: admin API keys (bearer tokens) with a role."""

from __future__ import annotations

import click

from gateway.cli.common import CliState, emit, json_option, pass_state, with_store


@click.group()
def apikey() -> None:
    """Admin API keys (bearer tokens) with a role."""


@apikey.command("create")
@click.option("--role", type=click.Choice(["operator", "vendor", "customer"]), required=True)
@click.option("--account", "account_id", help="The vendor or customer account of the key.")
@json_option
@pass_state
def apikey_create(state: CliState, role: str, account_id: str | None, as_json: bool) -> None:
    """Create a key; its secret is printed once and stored only as a hash."""
    key, secret = with_store(state, lambda s: s.create_api_key(role=role,
                                                               account_id=account_id))
    emit({"id": key.id, "role": key.role, "account_id": key.account_id, "key": secret},
         as_json, f"{key.id}\n{secret}")


@apikey.command("list")
@json_option
@pass_state
def apikey_list(state: CliState, as_json: bool) -> None:
    """List keys (never their secrets)."""
    keys = with_store(state, lambda s: s.list_api_keys())
    emit([{"id": k.id, "role": k.role, "account_id": k.account_id,
           "created_at": k.created_at.isoformat(),
           "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None} for k in keys],
         as_json, "\n".join(f"{k.id}  {k.role:8}  {k.account_id or '-'}  "
                            f"{'revoked' if k.revoked_at else 'active'}" for k in keys))


@apikey.command("revoke")
@click.argument("key_id")
@json_option
@pass_state
def apikey_revoke(state: CliState, key_id: str, as_json: bool) -> None:
    """Revoke a key at once."""
    with_store(state, lambda s: s.revoke_api_key(key_id))
    emit({"revoked": key_id}, as_json, f"revoked {key_id}")
