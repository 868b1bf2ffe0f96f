"""Trusted CA certificates of an account (what certgate trusts for LDAPS and similar)."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.endpoint import MAX_UPLOAD, Call, Endpoint
from gateway.admin.models import TrustedCAList
from gateway.admin.uploads import read_file
from gateway.views import trusted_ca_view

BASE = "/api/v1/accounts/{id}/trusted-cas"
PEM_CHAIN = "application/pem-certificate-chain"  # RFC 8555 9.1


async def import_trusted_cas(call: Call) -> web.Response:
    """Import PEM (one or many certificates) or DER, as the raw body or a ``file`` part."""
    await call.store.get_account(call.account_id)  # a missing account is 404, not 422
    data = await read_file(call.request, call.request.app[MAX_UPLOAD])
    cas = await call.store.import_trusted_cas(call.account_id, data)
    return web.json_response({"trusted_cas": [trusted_ca_view(c, with_pem=False) for c in cas]},
                             status=201)


async def list_trusted_cas(call: Call) -> web.Response:
    """The account's trusted CAs."""
    cas = await call.store.list_trusted_cas(call.account_id)
    return web.json_response({"trusted_cas": [trusted_ca_view(c, with_pem=False) for c in cas]})


async def trusted_ca_bundle(call: Call) -> web.Response:
    """The account's trusted CAs as one PEM bundle (empty when there are none)."""
    bundle = await call.store.trust_bundle(call.account_id)
    return web.Response(text=bundle, content_type=PEM_CHAIN)


async def delete_trusted_ca(call: Call) -> web.Response:
    """Stop trusting one CA certificate."""
    await call.store.delete_trusted_ca(call.account_id, call.param("cid"))
    return web.Response(status=204)


ENDPOINTS = (
    Endpoint(method="POST", path=BASE, handler=import_trusted_cas, status=201,
             response=TrustedCAList, upload="certificates", audit="trusted_ca.imported",
             errors=(400, 413, 415, 422),
             summary="Import trusted CA certificates (PEM or DER; raw body or multipart)"),
    Endpoint(method="GET", path=BASE, handler=list_trusted_cas, status=200,
             response=TrustedCAList, summary="List an account's trusted CAs"),
    Endpoint(method="GET", path=BASE + "/bundle.pem", handler=trusted_ca_bundle, status=200,
             response=PEM_CHAIN, summary="The account's trust bundle as PEM"),
    Endpoint(method="DELETE", path=BASE + "/{cid}", handler=delete_trusted_ca, status=204,
             response=None, audit="trusted_ca.deleted",
             summary="Stop trusting one CA certificate"),
)
