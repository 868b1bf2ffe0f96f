"""Private certificate chains: PKCS#12 import, generation, listing, deletion.

Every chain answer says whether the chain is served now and for which of its names
(:func:`gateway.views.chain_views`, the one shape the CLI prints too), computed on a snapshot
of the account alone: the cost is one account's rows, not the whole store.
"""

from __future__ import annotations

from aiohttp import web

from certstore.errors import InvalidName
from certstore.model import Chain
from certstore.names import normalize_domain
from gateway.admin.endpoint import MAX_UPLOAD, Call, Endpoint
from gateway.admin.models import MAX_ACCOUNT_NAME, MAX_CN, ChainDetail, ChainGenerate, ChainList
from gateway.admin.problems import Problem
from gateway.admin.uploads import missing_field, read_form
from gateway.views import chain_views

BASE = "/api/v1/accounts/{id}/chains"


async def _views(call: Call, chains: list[Chain], *, with_pem: bool) -> list[dict[str, object]]:
    return await chain_views(call.store, call.account_id, chains, with_pem=with_pem)


async def _one(call: Call, chain: Chain, status: int) -> web.Response:
    (view,) = await _views(call, [chain], with_pem=True)
    headers = {"Location": f"/api/v1/accounts/{chain.account_id}/chains/{chain.id}"}
    return web.json_response(view, status=status, headers=headers if status == 201 else None)


async def import_chain(call: Call) -> web.Response:
    """Import a PKCS#12/PFX chain (``file`` and ``password`` form fields)."""
    form = await read_form(call.request, frozenset({"file", "password"}),
                           call.request.app[MAX_UPLOAD])
    if "file" not in form:
        raise missing_field("file")
    password = form.get("password") or None  # empty means none: the store says it is needed
    chain = await call.store.import_chain(call.account_id, form["file"], password)
    return await _one(call, chain, 201)


def _check_common_name(purpose: str, account_name: str, domain: str | None) -> None:
    """Refuse what the store cannot issue: the CA puts the domain (TLS) or "<name> token
    signing" in the leaf's CN, which X.509 bounds to 64 characters (ub-common-name)."""
    if purpose == "signing" and len(account_name) > MAX_ACCOUNT_NAME:  # named via the CLI
        raise Problem(422, "invalid-input", "the account name is longer than "
                      f"{MAX_ACCOUNT_NAME} characters and cannot name a signing certificate; "
                      "rename the account (PATCH) first")
    if purpose == "tls" and domain is not None:
        try:
            name = normalize_domain(domain)
        except InvalidName:
            return  # the store refuses it with its own message
        if len(name) > MAX_CN:
            raise Problem(422, "invalid-name", f"the built-in CA cannot issue for a name "
                          f"longer than {MAX_CN} characters (the certificate's common name); "
                          "import a chain for it instead", extra={"names": [name]})


async def generate_chain(call: Call) -> web.Response:
    """Generate a TLS or signing chain with the built-in CA."""
    body = call.parsed(ChainGenerate)
    account = await call.store.get_account(call.account_id)
    _check_common_name(body.purpose, account.name, body.domain)
    chain = await call.store.generate_chain(call.account_id, purpose=body.purpose,
                                            domain=body.domain, key_type=body.key_type)
    return await _one(call, chain, 201)


async def list_chains(call: Call) -> web.Response:
    """The account's chains (metadata; never a key)."""
    chains = await call.store.list_chains(call.account_id)
    return web.json_response({"chains": await _views(call, chains, with_pem=False)})


async def get_chain(call: Call) -> web.Response:
    """One chain with its certificates as PEM (never its key)."""
    chain = await call.store.get_chain(call.param("cid"), call.account_id)
    return await _one(call, chain, 200)


async def delete_chain(call: Call) -> web.Response:
    """Delete a chain: it stops being served, and bindings or signing choice on it go."""
    await call.store.delete_chain(call.param("cid"), call.account_id)
    return web.Response(status=204)


ENDPOINTS = (
    Endpoint(method="POST", path=BASE + "/import", handler=import_chain, status=201,
             response=ChainDetail, upload="pkcs12", audit="chain.imported",
             errors=(400, 409, 413, 415, 422),
             summary="Import a PKCS#12/PFX chain; a refusal names the rule and the names"),
    Endpoint(method="POST", path=BASE + "/generate", handler=generate_chain, status=201,
             response=ChainDetail, body=ChainGenerate, audit="chain.generated",
             errors=(400, 413, 415, 422),
             summary="Generate a TLS or token-signing chain with the built-in CA"),
    Endpoint(method="GET", path=BASE, handler=list_chains, status=200, response=ChainList,
             summary="List an account's chains, and what each serves now"),
    Endpoint(method="GET", path=BASE + "/{cid}", handler=get_chain, status=200,
             response=ChainDetail, summary="Show a chain with its certificates (PEM)"),
    Endpoint(method="DELETE", path=BASE + "/{cid}", handler=delete_chain, status=204,
             response=None, audit="chain.deleted", summary="Delete a chain"),
)
