"""``certgate account``: vendor and customer accounts and their domains."""

from __future__ import annotations

import click

from gateway.cli.common import CliState, emit, json_option, pass_state, with_store


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
    emit(account_view(acc), as_json, acc.id)


@account.command("list")
@json_option
@pass_state
def account_list(state: CliState, as_json: bool) -> None:
    """List accounts."""
    from gateway.views import account_view

    accounts = with_store(state, lambda s: s.list_accounts())
    emit([account_view(a) for a in accounts], as_json, "\n".join(
        f"{a.id}  {a.kind:8}  {a.name}  {' '.join(a.domains)}" for a in accounts))


@account.command("show")
@click.argument("account_id")
@json_option
@pass_state
def account_show(state: CliState, account_id: str, as_json: bool) -> None:
    """Show one account."""
    from gateway.views import account_view

    acc = with_store(state, lambda s: s.get_account(account_id))
    emit(account_view(acc), as_json,
         f"id: {acc.id}\nname: {acc.name}\nkind: {acc.kind}\nparent: {acc.parent_id or '-'}\n"
         f"domains: {', '.join(acc.domains) or '-'}")


@account.command("add-domain")
@click.argument("account_id")
@click.argument("domain")
@json_option
@pass_state
def account_add_domain(state: CliState, account_id: str, domain: str, as_json: bool) -> None:
    """Give a domain to an account (a domain belongs to one account only)."""
    from gateway.views import account_view

    acc = with_store(state, lambda s: s.add_domain(account_id, domain))
    emit(account_view(acc), as_json, ", ".join(acc.domains))


@account.command("remove-domain")
@click.argument("account_id")
@click.argument("domain")
@json_option
@pass_state
def account_remove_domain(state: CliState, account_id: str, domain: str, as_json: bool) -> None:
    """Remove a domain from an account."""
    from gateway.views import account_view

    acc = with_store(state, lambda s: s.remove_domain(account_id, domain))
    emit(account_view(acc), as_json, ", ".join(acc.domains) or "-")


@account.command("delete")
@click.argument("account_id")
@json_option
@pass_state
def account_delete(state: CliState, account_id: str, as_json: bool) -> None:
    """Delete an account with its domains, trusted CAs and chains."""
    with_store(state, lambda s: s.delete_account(account_id))
    emit({"deleted": account_id}, as_json, f"deleted {account_id}")
