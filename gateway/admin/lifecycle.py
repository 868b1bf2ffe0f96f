"""Certificate lifecycle routes: renew a chain now, list what expires soon.

``GET /api/v1/expiring?within=30d`` covers the caller's visible accounts (an operator's:
all), with the names each chain serves now, so an admin sees which tenants are at risk.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from certstore.errors import InvalidInput
from certstore.lifecycle import parse_duration
from gateway.admin.chains import BASE
from gateway.admin.endpoint import Call, Endpoint
from gateway.admin.models import ChainDetail, ExpiringList
from gateway.admin.problems import Problem
from gateway.views import chain_views

MAX_WITHIN_TEXT = 12


class ExpiringQuery(BaseModel):
    """``GET /api/v1/expiring`` query."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    within: str = Field(default="30d", min_length=2, max_length=MAX_WITHIN_TEXT)
    account_id: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("within")
    @classmethod
    def _within(cls, v: str) -> str:
        try:
            parse_duration(v)
        except InvalidInput as e:
            raise ValueError(e.message) from None
        return v


async def renew_chain(call: Call) -> web.Response:
    """Renew a generated chain now: a new key and certificate take its place everywhere."""
    new = await call.store.renew_chain(call.param("cid"), call.account_id)
    (view,) = await chain_views(call.store, new.account_id, [new], with_pem=True)
    return web.json_response(view, status=201, headers={
        "Location": f"/api/v1/accounts/{new.account_id}/chains/{new.id}"})


async def list_expiring(call: Call) -> web.Response:
    """Chains of the visible accounts expiring within ``within`` (or expired), soonest first."""
    query = call.parsed_query(ExpiringQuery)
    visible = call.me.visible
    if query.account_id is not None:
        if not call.me.sees(query.account_id):
            raise Problem(404, "not-found", f"no account with id {query.account_id!r}",
                          extra={"kind": "account"})
        accounts: set[str] | None = {query.account_id}
    else:
        accounts = None if visible is None else set(visible)
    chains = await call.store.expiring(parse_duration(query.within), accounts)
    views = []
    for account_id in sorted({c.account_id for c in chains}):  # served names per account
        mine = [c for c in chains if c.account_id == account_id]
        views += await chain_views(call.store, account_id, mine, with_pem=False)
    views.sort(key=lambda v: (str(v["not_after"]), str(v["id"])))
    return web.json_response({"within": query.within, "chains": views})


ENDPOINTS = (
    Endpoint(method="POST", path=BASE + "/{cid}/renew", handler=renew_chain, status=201,
             response=ChainDetail, audit="chain.renewed", errors=(409, 422),
             summary="Renew a generated chain now (new key, same names; bindings follow)"),
    Endpoint(method="GET", path="/api/v1/expiring", handler=list_expiring, status=200,
             response=ExpiringList, query=ExpiringQuery, errors=(422,),
             summary="Chains of the visible accounts that expire within a window"),
)
