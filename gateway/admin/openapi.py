"""The OpenAPI 3.1 document, built from the same endpoint declarations as the router.

Schemas come from the pydantic models (JSON Schema 2020-12, which OpenAPI 3.1 uses as is);
every error answer is documented as ``application/problem+json``. Because the document and
the router are generated from one list, a route cannot exist undocumented; a test still
compares the served document with the live router, in case a route is added by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from gateway.admin.endpoint import Endpoint
from gateway.admin.models import MAX_DOMAIN_TEXT, MAX_ID_TEXT, ProblemOut
from gateway.admin.problems import PROBLEM_JSON

_REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"{(\w+)}")
_ERROR_TEXT = {
    400: "Malformed request (not JSON, unreadable multipart)",
    401: "Missing or invalid API key",
    403: "The key's role does not allow this",
    404: "No such record, or one this key may not see (the same answer for both)",
    409: "Conflicts with the store's current state",
    413: "Request body larger than admin.max_upload_bytes",
    415: "Unsupported media type",
    412: "If-Match names an older version: read again and retry",
    422: "Invalid input; certificate refusals name the rule and the offending names",
    429: "Too many concurrent changes by this key or account (admin.max_mutations_per_key, "
         "admin.max_mutations_per_account), or the crypto workers' queue is full",
    503: "The store's database is unreachable (PostgreSQL outage), the DNS resolvers gave no "
         "answer (dns.resolvers in the config), or the worker running the request stopped "
         "or went over admin.crypto_job_timeout_s of CPU (nothing was stored); retry after "
         "Retry-After",
}
_PARAM_TEXT = {
    "id": "Account id",
    "cid": "Chain or trusted CA id",
    "domain": "A domain of the account",
}
_BINARY = {"type": "string", "format": "binary"}


def _schemas(endpoints: Iterable[Endpoint]) -> tuple[dict[type[BaseModel], dict[str, Any]],
                                                     dict[str, Any]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ProblemOut, "serialization"):
                                                                    None}
    for ep in endpoints:
        if isinstance(ep.response, type):
            wanted[(ep.response, "serialization")] = None
        if ep.body is not None:
            wanted[(ep.body, "validation")] = None
    refs, defs = models_json_schema(list(wanted), ref_template=_REF)
    by_model = {model: ref for (model, _), ref in refs.items() if issubclass(model, BaseModel)}
    return by_model, defs.get("$defs", {})


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is never null: keep the non-null branch of ``X | None``."""
    variants = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(variants) == 1:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return {**variants[0], **rest}
    return schema


def _parameters(ep: Endpoint) -> list[dict[str, Any]]:
    params = []
    for name in _PARAM.findall(ep.path):
        limit = MAX_DOMAIN_TEXT if name == "domain" else MAX_ID_TEXT
        params.append({"name": name, "in": "path", "required": True,
                       "description": _PARAM_TEXT.get(name, name),
                       "schema": {"type": "string", "minLength": 1, "maxLength": limit}})
    if ep.query is not None:
        schema = ep.query.model_json_schema()
        for name, prop in schema["properties"].items():
            prop = _non_null(prop)
            prop.pop("title", None)
            params.append({"name": name, "in": "query",
                           "required": name in schema.get("required", []), "schema": prop})
    return params


def _request_body(ep: Endpoint, refs: dict[type[BaseModel], dict[str, Any]]
                  ) -> dict[str, Any] | None:
    if ep.body is not None:
        return {"required": True, "content": {"application/json": {"schema": refs[ep.body]}}}
    if ep.upload == "pkcs12":
        form = {"type": "object", "required": ["file"], "additionalProperties": False,
                "properties": {"file": {**_BINARY, "description": "The .pfx/.p12 file"},
                               "password": {"type": "string",
                                            "description": "The file's (and key's) password"}}}
        return {"required": True, "content": {"multipart/form-data": {"schema": form}}}
    if ep.upload == "certificates":
        form = {"type": "object", "required": ["file"], "additionalProperties": False,
                "properties": {"file": _BINARY}}
        return {"required": True, "description": "PEM (one or many certificates) or DER",
                "content": {"application/x-pem-file": {"schema": {"type": "string"}},
                            "application/pkix-cert": {"schema": _BINARY},
                            "multipart/form-data": {"schema": form}}}
    return None


def _success(ep: Endpoint, refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": ep.summary}
    if isinstance(ep.response, type):
        out["content"] = {"application/json": {"schema": refs[ep.response]}}
    elif isinstance(ep.response, str):
        out["content"] = {ep.response: {"schema": {"type": "string"}}}
    return out


def _error_statuses(ep: Endpoint) -> list[int]:
    statuses = set(ep.errors)
    if not ep.public:
        statuses.add(401)
        statuses.add(503)  # every authenticated route reads the store
    if "{" in ep.path or ep.query is not None:
        statuses.add(404)
    if ep.audit is not None and not ep.public:  # mutations are counted (gateway.admin.limits)
        statuses.update((429, 503))
    return sorted(statuses)


def _operation(ep: Endpoint, refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    module = ep.handler.__module__.rpartition(".")[2]  # accounts, chains, pki...
    op: dict[str, Any] = {"operationId": ep.operation_id, "summary": ep.summary,
                          "tags": ["service" if module == "app" else module]}
    if ep.handler.__doc__:
        op["description"] = ep.handler.__doc__
    if ep.public:
        op["security"] = []
    params = _parameters(ep)
    if params:
        op["parameters"] = params
    body = _request_body(ep, refs)
    if body is not None:
        op["requestBody"] = body
    responses: dict[str, Any] = {str(ep.status): _success(ep, refs)}
    for status in _error_statuses(ep):
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    op["responses"] = responses
    return op


def build_document(endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``endpoints``."""
    endpoints = list(endpoints)
    refs, defs = _schemas(endpoints)
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep, refs)
    problem = {PROBLEM_JSON: {"schema": refs[ProblemOut]}}
    responses: dict[str, Any] = {f"E{s}": {"description": text, "content": problem}
                                 for s, text in _ERROR_TEXT.items()}
    responses["E401"]["headers"] = {"WWW-Authenticate": {
        "description": "The Bearer challenge (RFC 6750)", "schema": {"type": "string"}}}
    for status in (429, 503):
        responses[f"E{status}"]["headers"] = {"Retry-After": {
            "description": "Seconds to wait before retrying (RFC 9110 10.2.3)",
            "schema": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "certgate admin API", "version": "1",
                 "description": "Accounts, domains, trusted CAs, certificate chains, PKI "
                                "settings, tokens and the audit log of a certgate store."},
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": defs,
            "responses": responses,
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "An API key from 'certgate apikey create'"}},
        },
    }
