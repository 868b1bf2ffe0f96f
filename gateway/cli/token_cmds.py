"""``certgate token``: JWTs signed with an account's signing chain."""

from __future__ import annotations

import json

import click

from gateway.cli.common import CliState, emit, json_option, pass_state, with_store


@click.group()
def token() -> None:
    """JWTs signed with an account's signing chain."""


@token.command("issue")
@click.argument("account_id")
@click.option("--subject", required=True)
@click.option("--audience")
@click.option("--ttl", "ttl_s", type=int, default=3600, show_default=True, help="Seconds.")
@json_option
@pass_state
def token_issue(state: CliState, account_id: str, subject: str, audience: str | None,
                ttl_s: int, as_json: bool) -> None:
    """Issue a token (refused when the account has no signing chain chosen)."""
    t = with_store(state, lambda s: s.issue_token(account_id, subject=subject,
                                                  audience=audience, ttl_s=ttl_s))
    emit({"token": t.token, "expires_at": t.expires_at.isoformat(), "kid": t.kid,
          "chain_id": t.chain_id}, as_json, t.token)


@token.command("jwks")
@click.argument("account_id")
@json_option
@pass_state
def token_jwks(state: CliState, account_id: str, as_json: bool) -> None:
    """Print the account's JWKS (the public keys that verify its tokens).

    A JWKS is JSON already: ``--json`` prints the same document (accepted so that every
    command takes it).
    """
    jwks = with_store(state, lambda s: s.jwks(account_id))
    emit(jwks, as_json, json.dumps(jwks, indent=2))
