"""``certgate account``: vendor and customer accounts and their domains.

Domains added here are verified at once (the CLI is the operator's tool). A domain a
customer key added through the API is pending: ``approve-domain`` verifies it by decision,
``verify-domain`` looks up its DNS challenge through the config's ``dns.resolvers``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from gateway.cli.common import CliState, emit, json_option, pass_state, shown, with_store

if TYPE_CHECKING:
    from certstore.model import Account


def _domains_line(acc: Account) -> str:
    pending = [f"{p.name} (pending)" for p in acc.pending]
    return shown(", ".join([*acc.domains, *pending]) or "-")


def _details(acc: Account) -> str:
    lines = [f"id: {shown(acc.id)}", f"name: {shown(acc.name)}", f"kind: {acc.kind}",
             f"parent: {shown(acc.parent_id or '-')}", f"domains: {_domains_line(acc)}"]
    for p in acc.pending:
        lines.append(f"  pending {shown(p.name)}: publish TXT {shown(p.record_name)} "
                     f"\"{shown(p.token)}\", or ask the vendor to approve it")
    return "\n".join(lines)


@click.group()
def account() -> None:
    """Vendor and customer accounts and their domains."""


@account.command("create")
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(["vendor", "customer"]))
@click.option("--parent", "parent_id", help="Vendor account a customer belongs to.")
@click.option("--domain", "domains", multiple=True, help="A domain (repeatable).")
@json_option
@pass_state
def account_create(state: CliState, name: str, kind: str, parent_id: str | None,
                   domains: tuple[str, ...], as_json: bool) -> None:
    """Create an account (it gets a generated token-signing chain)."""
    from gateway.views import account_view

    acc = with_store(state, lambda s: s.create_account(name=name, kind=kind,
                                                       parent_id=parent_id, domains=domains))
    emit(account_view(acc), as_json, shown(acc.id))


@account.command("list")
@json_option
@pass_state
def account_list(state: CliState, as_json: bool) -> None:
    """List accounts."""
    from gateway.views import account_view

    accounts = with_store(state, lambda s: s.list_accounts())
    emit([account_view(a) for a in accounts], as_json, "\n".join(
        f"{shown(a.id)}  {a.kind:8}  {shown(a.name)}  {_domains_line(a)}" for a in accounts))


@account.command("show")
@click.argument("account_id")
@json_option
@pass_state
def account_show(state: CliState, account_id: str, as_json: bool) -> None:
    """Show one account (with the DNS challenge of each pending domain)."""
    from gateway.views import account_view

    acc = with_store(state, lambda s: s.get_account(account_id))
    emit(account_view(acc), as_json, _details(acc))


@account.command("add-domain")
@click.argument("account_id")
@click.argument("domain")
@json_option
@pass_state
def account_add_domain(state: CliState, account_id: str, domain: str, as_json: bool) -> None:
    """Give a domain to an account (a domain belongs to one account only; a name under or
    above another account's domain is refused)."""
    from gateway.views import account_view

    acc = with_store(state, lambda s: s.add_domain(account_id, domain))
    emit(account_view(acc), as_json, _domains_line(acc))


@account.command("remove-domain")
@click.argument("account_id")
@click.argument("domain")
@json_option
@pass_state
def account_remove_domain(state: CliState, account_id: str, domain: str, as_json: bool) -> None:
    """Remove a domain from an account."""
    from gateway.views import account_view

    acc = with_store(state, lambda s: s.remove_domain(account_id, domain))
    emit(account_view(acc), as_json, _domains_line(acc))


@account.command("approve-domain")
@click.argument("account_id")
@click.argument("domain")
@json_option
@pass_state
def account_approve_domain(state: CliState, account_id: str, domain: str,
                           as_json: bool) -> None:
    """Verify a pending domain by decision (audited: method=approval)."""
    from gateway.views import account_view

    acc = with_store(state, lambda s: s.approve_domain(account_id, domain))
    emit(account_view(acc), as_json, _domains_line(acc))


@account.command("verify-domain")
@click.argument("account_id")
@click.argument("domain")
@json_option
@pass_state
def account_verify_domain(state: CliState, account_id: str, domain: str,
                          as_json: bool) -> None:
    """Look up a pending domain's DNS challenge now (through dns.resolvers); verified
    when the TXT record holds its token (audited: method=dns)."""
    from gateway.dnscheck import txt_lookup  # dnspython only for this command (start-up)
    from gateway.views import account_view

    dns = state.config().dns
    lookup = txt_lookup(dns.resolvers, dns.timeout_s)
    acc = with_store(state, lambda s: s.verify_domain_dns(account_id, domain, lookup))
    emit(account_view(acc), as_json, _domains_line(acc))


@account.command("delete")
@click.argument("account_id")
@json_option
@pass_state
def account_delete(state: CliState, account_id: str, as_json: bool) -> None:
    """Delete an account with its domains, trusted CAs and chains."""
    with_store(state, lambda s: s.delete_account(account_id))
    emit({"deleted": account_id}, as_json, f"deleted {shown(account_id)}")
