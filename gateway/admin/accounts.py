"""Accounts and their domains.

Who may create what (issue 4, "Who may do what"): an operator creates any account; a vendor
key creates customer accounts under its own vendor account only; a customer key creates
none. Deleting an account is for an operator or the vendor of a customer: a key never
deletes the account it belongs to (which would also delete the key itself).

Domains (issue 10, rules in :mod:`certstore.domains`): a domain a customer key adds is
pending until its vendor or an operator approves it (``.../approve``) or its DNS challenge
is found (``.../verify``, through the configured resolvers).
"""

from __future__ import annotations

from aiohttp import web

from certstore.domains import TxtLookup
from gateway.admin.endpoint import Call, Endpoint
from gateway.admin.models import AccountCreate, AccountList, AccountOut, AccountPatch, DomainAdd
from gateway.admin.problems import Problem
from gateway.views import account_view

BASE = "/api/v1/accounts"
TXT_LOOKUP: web.AppKey[TxtLookup] = web.AppKey("certgate_txt_lookup")


def _created(body: object, location: str) -> web.Response:
    return web.json_response(body, status=201, headers={"Location": location})


async def create_account(call: Call) -> web.Response:
    """Create an account (and its default signing chain)."""
    body = call.parsed(AccountCreate)
    key = call.me.key
    parent_id = body.parent_id
    if key.role == "customer":
        raise Problem(403, "forbidden", "a customer key cannot create accounts; ask your "
                      "vendor or an operator")
    if key.role == "vendor":
        if body.kind != "customer":
            raise Problem(403, "forbidden", "a vendor key creates customer accounts only; "
                          "vendor accounts are created by an operator")
        if parent_id not in (None, key.account_id):
            raise Problem(403, "forbidden", "a vendor key creates customers under its own "
                          f"account: omit parent_id or give {key.account_id}")
        parent_id = key.account_id
    account = await call.store.create_account(name=body.name, kind=body.kind,
                                              parent_id=parent_id, domains=body.domains)
    return _created(account_view(account), f"{BASE}/{account.id}")


async def list_accounts(call: Call) -> web.Response:
    """The accounts the key may see."""
    visible = call.me.visible
    accounts = await call.store.list_accounts(None if visible is None else sorted(visible))
    return web.json_response({"accounts": [account_view(a) for a in accounts]})


async def get_account(call: Call) -> web.Response:
    """One account."""
    return web.json_response(account_view(await call.store.get_account(call.account_id)))


async def update_account(call: Call) -> web.Response:
    """Rename an account."""
    body = call.parsed(AccountPatch)
    account = await call.store.rename_account(call.account_id, body.name)
    return web.json_response(account_view(account))


async def delete_account(call: Call) -> web.Response:
    """Delete an account with its domains, trusted CAs and chains."""
    key = call.me.key
    if key.role != "operator":
        account = await call.store.get_account(call.account_id)
        if account.id == key.account_id:
            raise Problem(403, "forbidden", "a key cannot delete its own account; ask an "
                          "operator")
    await call.store.delete_account(call.account_id)
    return web.Response(status=204)


async def add_domain(call: Call) -> web.Response:
    """Give a domain to the account (refused when any account owns it)."""
    body = call.parsed(DomainAdd)
    account = await call.store.add_domain(call.account_id, body.domain)
    return _created(account_view(account), f"{BASE}/{account.id}")


async def remove_domain(call: Call) -> web.Response:
    """Take a domain from the account; chains naming it stop being served for it."""
    account = await call.store.remove_domain(call.account_id, call.param("domain"))
    return web.json_response(account_view(account))


async def approve_domain(call: Call) -> web.Response:
    """Verify a pending domain by decision (its vendor or an operator; not a customer)."""
    if call.me.key.role == "customer":
        raise Problem(403, "forbidden", "a customer key cannot approve domains: ask your "
                      "vendor or an operator, or publish the DNS challenge and call verify")
    account = await call.store.approve_domain(call.account_id, call.param("domain"))
    return web.json_response(account_view(account))


async def verify_domain(call: Call) -> web.Response:
    """Look up a pending domain's DNS challenge now; verified when the token is there."""
    lookup = call.request.app[TXT_LOOKUP]
    account = await call.store.verify_domain_dns(call.account_id, call.param("domain"),
                                                 lookup)
    return web.json_response(account_view(account))


ENDPOINTS = (
    Endpoint(method="POST", path=BASE, handler=create_account, status=201,
             response=AccountOut, body=AccountCreate, audit="account.created",
             errors=(400, 403, 409, 413, 415, 422),
             summary="Create a vendor or customer account with its domains"),
    Endpoint(method="GET", path=BASE, handler=list_accounts, status=200,
             response=AccountList, summary="List the accounts this key may see"),
    Endpoint(method="GET", path=BASE + "/{id}", handler=get_account, status=200,
             response=AccountOut, summary="Show an account"),
    Endpoint(method="PATCH", path=BASE + "/{id}", handler=update_account, status=200,
             response=AccountOut, body=AccountPatch, audit="account.updated",
             errors=(400, 413, 415, 422), summary="Rename an account"),
    Endpoint(method="DELETE", path=BASE + "/{id}", handler=delete_account, status=204,
             response=None, audit="account.deleted", errors=(403, 409),
             summary="Delete an account with its domains, trusted CAs and chains"),
    Endpoint(method="POST", path=BASE + "/{id}/domains", handler=add_domain, status=201,
             response=AccountOut, body=DomainAdd, audit="domain.added",
             errors=(400, 409, 413, 415, 422), summary="Add a domain to an account"),
    Endpoint(method="DELETE", path=BASE + "/{id}/domains/{domain}", handler=remove_domain,
             status=200, response=AccountOut, audit="domain.removed", errors=(422,),
             summary="Remove a domain from an account"),
    Endpoint(method="POST", path=BASE + "/{id}/domains/{domain}/approve",
             handler=approve_domain, status=200, response=AccountOut,
             audit="domain.verified", errors=(403, 409, 422),
             summary="Approve a pending domain (its vendor or an operator)"),
    Endpoint(method="POST", path=BASE + "/{id}/domains/{domain}/verify",
             handler=verify_domain, status=200, response=AccountOut,
             audit="domain.verified", errors=(409, 422, 503),
             summary="Verify a pending domain through its DNS TXT challenge now"),
)
