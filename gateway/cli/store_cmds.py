"""CLI commands over the certificate store: the same operations the admin API exposes."""

from __future__ import annotations

from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certstore.keys import KEY_TYPES
from certstore.persistence.keyfile import create_master_key, read_master_key
from certstore.store import CertStore
from certstore.x509info import describe
from gateway.cli.account_cmds import account
from gateway.cli.common import (
    CliState,
    emit,
    json_option,
    pass_state,
    read_input,
    read_password,
    run,
    say,
    shown,
    with_store,
)
from gateway.views import chain_view, pki_view, trusted_ca_view


@click.command()
@json_option
@pass_state
def init(state: CliState, as_json: bool) -> None:
    """Create the data directory, master key (0600) and built-in CA. Safe to run twice."""
    config = state.config()

    async def go() -> tuple[bool, bool, str]:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_created = create_master_key(config.master_key_path)
        store, created = await CertStore.initialize(
            config.database_path, read_master_key(config.master_key_path),
            ca_key_type=config.ca.key_type, token_issuer=config.token_issuer)
        try:
            return key_created, created, describe(store.ca_root).fingerprint_sha256
        finally:
            await store.close()

    key_created, created, fingerprint = run(go)
    data = {"data_dir": str(config.data_dir), "master_key_created": key_created,
            "store_created": created, "ca_fingerprint_sha256": fingerprint}
    emit(data, as_json,
        f"{'initialised' if created else 'already initialised'}: {shown(config.data_dir)} "
        f"(CA root SHA-256 {fingerprint})")


@click.group()
def ca() -> None:
    """The built-in certificate authority."""


@ca.command("show")
@json_option
@pass_state
def ca_show(state: CliState, as_json: bool) -> None:
    """Print the built-in root CA certificate (PEM) that clients trust."""

    async def op(store: CertStore) -> x509.Certificate:
        return store.ca_root

    root = with_store(state, op)
    pem = root.public_bytes(serialization.Encoding.PEM).decode()
    info = describe(root)
    emit({"pem": pem, "subject": info.subject, "fingerprint_sha256": info.fingerprint_sha256,
          "not_after": info.not_after.isoformat()}, as_json, pem)


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
    data = read_input(file)
    cas = with_store(state, lambda s: s.import_trusted_cas(account_id, data))
    emit([trusted_ca_view(c, with_pem=False) for c in cas], as_json, "\n".join(
        f"{c.id}  {c.fingerprint_sha256[:16]}  {shown(c.subject)}" for c in cas))


@trusted_ca.command("list")
@click.argument("account_id")
@json_option
@pass_state
def trusted_ca_list(state: CliState, account_id: str, as_json: bool) -> None:
    """List an account's trusted CAs."""
    cas = with_store(state, lambda s: s.list_trusted_cas(account_id))
    emit([trusted_ca_view(c, with_pem=False) for c in cas], as_json, "\n".join(
        f"{c.id}  {'CA ' if c.is_ca else '   '} {c.not_after:%Y-%m-%d}  {shown(c.subject)}"
        for c in cas))


@trusted_ca.command("bundle")
@click.argument("account_id")
@pass_state
def trusted_ca_bundle(state: CliState, account_id: str) -> None:
    """Print the account's trust bundle (PEM)."""
    say(with_store(state, lambda s: s.trust_bundle(account_id)), nl=False)


@trusted_ca.command("delete")
@click.argument("account_id")
@click.argument("ca_id")
@pass_state
def trusted_ca_delete(state: CliState, account_id: str, ca_id: str) -> None:
    """Stop trusting one CA certificate."""
    with_store(state, lambda s: s.delete_trusted_ca(account_id, ca_id))
    say(f"deleted {shown(ca_id)}")


@click.group()
def chain() -> None:
    """Private certificate chains (TLS and token signing)."""


@chain.command("import")
@click.argument("account_id")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False),
              help="File holding the PKCS#12 password.")
@click.option("--password-env", metavar="VAR", help="Environment variable holding it.")
@click.option("--bind", is_flag=True,
              help="Serve it now for its domains (binding), even if another chain for them "
                   "expires later.")
@json_option
@pass_state
def chain_import(state: CliState, account_id: str, file: Path, password_file: Path | None,
                 password_env: str | None, bind: bool, as_json: bool) -> None:
    """Import a PKCS#12/PFX chain (file and key protected with one password)."""
    data = read_input(file)
    password = read_password(password_file, password_env)
    new = with_store(state, lambda s: s.import_chain(account_id, data, password, bind=bind))
    emit(chain_view(new, with_pem=False), as_json, new.id)


@chain.command("generate")
@click.argument("account_id")
@click.option("--purpose", type=click.Choice(["tls", "signing"]), required=True)
@click.option("--domain", help="For tls: one of the account's domains.")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ecdsa-p256",
              show_default=True, help="rsa-2048 for old terminals.")
@json_option
@pass_state
def chain_generate(state: CliState, account_id: str, purpose: str, domain: str | None,
                   key_type: str, as_json: bool) -> None:
    """Generate a chain with the built-in CA."""
    new = with_store(state, lambda s: s.generate_chain(account_id, purpose=purpose,
                                                       domain=domain, key_type=key_type))
    emit(chain_view(new, with_pem=False), as_json, new.id)


@chain.command("list")
@click.argument("account_id")
@json_option
@pass_state
def chain_list(state: CliState, account_id: str, as_json: bool) -> None:
    """List an account's chains (never their keys)."""
    chains = with_store(state, lambda s: s.list_chains(account_id))
    emit([chain_view(c, with_pem=False) for c in chains], as_json, "\n".join(
        f"{c.id}  {c.purpose:7}  {c.origin:9}  {c.key_type:10}  "
        f"{c.not_after:%Y-%m-%d}  {shown(' '.join(c.dns_names) or c.subject)}"
        for c in chains))


@chain.command("show")
@click.argument("chain_id")
@json_option
@pass_state
def chain_show(state: CliState, chain_id: str, as_json: bool) -> None:
    """Show a chain's metadata and certificates (PEM)."""
    c = with_store(state, lambda s: s.get_chain(chain_id))
    emit(chain_view(c), as_json,
        f"id: {c.id}\naccount: {c.account_id}\npurpose: {c.purpose}\norigin: {c.origin}\n"
        f"key type: {c.key_type}\nnames: {shown(', '.join(c.dns_names) or '-')}\n"
        f"subject: {shown(c.subject)}\nissuer: {shown(c.issuer)}\n"
        f"valid: {c.not_before} .. {c.not_after}\n"
        f"sha256: {c.fingerprint_sha256}\n{c.chain_pem}")


@chain.command("delete")
@click.argument("chain_id")
@pass_state
def chain_delete(state: CliState, chain_id: str) -> None:
    """Delete a chain (it is no longer served)."""
    with_store(state, lambda s: s.delete_chain(chain_id))
    say(f"deleted {shown(chain_id)}")


@click.group()
def pki() -> None:
    """An account's PKI settings: signing chain and explicit TLS bindings."""


@pki.command("show")
@click.argument("account_id")
@json_option
@pass_state
def pki_show(state: CliState, account_id: str, as_json: bool) -> None:
    """Show the PKI settings."""
    p = with_store(state, lambda s: s.pki(account_id))
    emit(pki_view(p), as_json,
        f"signing chain: {p.signing_chain_id or '-'}\n" + "".join(
            f"tls {shown(d)}: {shown(c)}\n" for d, c in p.tls_bindings))


@pki.command("set-signing")
@click.argument("account_id")
@click.argument("chain_id", required=False)
@click.option("--clear", is_flag=True, help="Choose no signing chain (tokens are refused).")
@json_option
@pass_state
def pki_set_signing(state: CliState, account_id: str, chain_id: str | None, clear: bool,
                    as_json: bool) -> None:
    """Choose the chain that signs the account's tokens, or --clear it."""
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
    p = with_store(state, lambda s: s.update_pki(account_id, tls_bindings={domain: chain_id}))
    emit(pki_view(p), as_json, f"{shown(domain)} -> {shown(chain_id)}")


@pki.command("unbind")
@click.argument("account_id")
@click.argument("domain")
@json_option
@pass_state
def pki_unbind(state: CliState, account_id: str, domain: str, as_json: bool) -> None:
    """Remove DOMAIN's explicit binding."""
    p = with_store(state, lambda s: s.update_pki(account_id, tls_bindings={domain: None}))
    emit(pki_view(p), as_json, f"{shown(domain)} unbound")


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
@pass_state
def token_jwks(state: CliState, account_id: str) -> None:
    """Print the account's JWKS (the public keys that verify its tokens)."""
    emit(with_store(state, lambda s: s.jwks(account_id)), True, "")


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
         as_json, "\n".join(f"{k.id}  {k.role:8}  {shown(k.account_id or '-')}  "
                            f"{'revoked' if k.revoked_at else 'active'}" for k in keys))


@apikey.command("revoke")
@click.argument("key_id")
@pass_state
def apikey_revoke(state: CliState, key_id: str) -> None:
    """Revoke a key at once."""
    with_store(state, lambda s: s.revoke_api_key(key_id))
    say(f"revoked {shown(key_id)}")


def register(group: click.Group) -> None:
    """Add the store commands to the top-level group."""
    for cmd in (init, ca, account, trusted_ca, chain, pki, token, apikey):
        group.add_command(cmd)
