"""``certgate chain``: private certificate chains (TLS and token signing)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.cli.common import (
    CliState,
    emit,
    fail,
    json_option,
    pass_state,
    read_input,
    read_password,
    with_store,
)

if TYPE_CHECKING:
    from certstore.model import Chain
    from certstore.store import CertStore

# certstore.keys.KEY_TYPES, spelt out so that the CLI starts without importing cryptography
# (tests/gateway/cli/test_commands.py checks that the two agree).
KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096")


@click.group()
def chain() -> None:
    """Private certificate chains (TLS and token signing)."""


async def _with_served(store: CertStore, chains: list[Chain],
                       with_pem: bool = False) -> list[dict[str, Any]]:
    """The API's shape of chains (``served``, ``served_for`` included): one serializer."""
    from gateway.views import chain_views

    if not chains:
        return []
    return await chain_views(store, chains[0].account_id, chains, with_pem=with_pem)


@chain.command("import")
@click.argument("account_id")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False),
              help="File holding the PKCS#12 password.")
@click.option("--password-env", metavar="VAR", help="Environment variable holding it.")
@click.option("--bind", is_flag=True,
              help="Serve it now for its domains (binding), even if another chain for them "
                   "expires later. A certificate already stored is bound, not refused.")
@json_option
@pass_state
def chain_import(state: CliState, account_id: str, file: Path, password_file: Path | None,
                 password_env: str | None, bind: bool, as_json: bool) -> None:
    """Import a PKCS#12/PFX chain (file and key protected with one password)."""
    data = read_input(file)
    password = read_password(password_file, password_env)

    async def op(store: CertStore) -> dict[str, Any]:
        new = await store.import_chain(account_id, data, password, bind=bind)
        return (await _with_served(store, [new]))[0]

    view = with_store(state, op)
    emit(view, as_json, view["id"])


@chain.command("generate")
@click.argument("account_id")
@click.option("--purpose", type=click.Choice(["tls", "signing"]), required=True)
@click.option("--domain", "domains", multiple=True,
              help="For tls: one of the account's domains (one per chain).")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ecdsa-p256",
              show_default=True, help="rsa-2048 for old terminals.")
@json_option
@pass_state
def chain_generate(state: CliState, account_id: str, purpose: str, domains: tuple[str, ...],
                   key_type: str, as_json: bool) -> None:
    """Generate a chain with the built-in CA."""
    if len(domains) > 1:
        # The built-in CA names one domain per chain; keeping only the last --domain would
        # issue a chain the user did not ask for.
        fail(f"chain generate takes one --domain, got {len(domains)} "
             f"({', '.join(domains)}): the built-in CA issues one chain per domain; run it "
             "once for each domain, or import a chain that names them all")
    domain = domains[0] if domains else None

    async def op(store: CertStore) -> dict[str, Any]:
        new = await store.generate_chain(account_id, purpose=purpose, domain=domain,
                                         key_type=key_type)
        return (await _with_served(store, [new]))[0]

    view = with_store(state, op)
    emit(view, as_json, view["id"])


@chain.command("list")
@click.argument("account_id", required=False)
@click.option("--expiring", metavar="DURATION",
              help="Only chains that expire within DURATION (30d, 12h...) or have expired, "
                   "soonest first; without ACCOUNT_ID, of every account.")
@json_option
@pass_state
def chain_list(state: CliState, account_id: str | None, expiring: str | None,
               as_json: bool) -> None:
    """List an account's chains (never their keys): the names each is served for, and its
    expiry status."""
    if account_id is None and expiring is None:
        fail("give an ACCOUNT_ID, or --expiring DURATION for every account")
    within = None
    if expiring is not None:
        from certstore.errors import InvalidInput
        from certstore.lifecycle import parse_duration

        try:
            within = parse_duration(expiring)
        except InvalidInput as e:
            fail(f"--expiring: {e.message}")

    async def op(store: CertStore) -> list[dict[str, Any]]:
        if within is None:
            assert account_id is not None
            return await _with_served(store, await store.list_chains(account_id))
        if account_id is not None:
            await store.get_account(account_id)
        found = await store.expiring(within, None if account_id is None else [account_id])
        views: list[dict[str, Any]] = []
        for owner in sorted({c.account_id for c in found}):  # served names per account
            views += await _with_served(store, [c for c in found if c.account_id == owner])
        return sorted(views, key=lambda v: (v["not_after"], v["id"]))

    views = with_store(state, op)
    emit(views, as_json, "\n".join(
        f"{c['id']}  {c['purpose']:7}  {c['origin']:9}  {c['key_type']:10}  "
        f"{c['not_after'][:10]}  {c['status']:13}  {' '.join(c['dns_names']) or c['subject']}"
        f"{'  served: ' + ' '.join(c['served_for']) if c['served_for'] else ''}"
        for c in views))


@chain.command("renew")
@click.argument("chain_id")
@json_option
@pass_state
def chain_renew(state: CliState, chain_id: str, as_json: bool) -> None:
    """Renew a generated chain now: a new key and certificate for the same names take its
    place in every binding and the signing choice (a signing chain's old key stays in the
    JWKS until it expires)."""

    async def op(store: CertStore) -> dict[str, Any]:
        new = await store.renew_chain(chain_id)
        return (await _with_served(store, [new]))[0]

    view = with_store(state, op)
    emit(view, as_json, f"{chain_id} renewed as {view['id']}")


@chain.command("show")
@click.argument("chain_id")
@json_option
@pass_state
def chain_show(state: CliState, chain_id: str, as_json: bool) -> None:
    """Show a chain's metadata and certificates (PEM)."""

    async def op(store: CertStore) -> dict[str, Any]:
        return (await _with_served(store, [await store.get_chain(chain_id)], True))[0]

    c = with_store(state, op)
    emit(c, as_json,
         f"id: {c['id']}\naccount: {c['account_id']}\npurpose: {c['purpose']}\n"
         f"origin: {c['origin']}\nkey type: {c['key_type']}\n"
         f"names: {', '.join(c['dns_names']) or '-'}\n"
         f"served for: {', '.join(c['served_for']) or '-'}\nsubject: {c['subject']}\n"
         f"issuer: {c['issuer']}\nvalid: {c['not_before']} .. {c['not_after']}\n"
         f"sha256: {c['fingerprint_sha256']}\n{c['chain_pem']}")


@chain.command("delete")
@click.argument("chain_id")
@json_option
@pass_state
def chain_delete(state: CliState, chain_id: str, as_json: bool) -> None:
    """Delete a chain (it is no longer served)."""
    with_store(state, lambda s: s.delete_chain(chain_id))
    emit({"deleted": chain_id}, as_json, f"deleted {chain_id}")
