"""The audit log, filtered to the accounts the key may see.

An operator sees every record, including those about no account (API keys, the CA). A
vendor or customer key sees the records of its visible accounts only; naming another
account answers 404, as every other route does.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from certstore.audit import AuditRecord
from gateway.admin.endpoint import Call, Endpoint, audit_access_refused
from gateway.admin.models import AuditPage, AuditQuery
from gateway.admin.problems import not_found


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def record_view(record: AuditRecord) -> dict[str, object]:
    """One audit record as JSON."""
    return {"seq": record.seq, "at": _time(record.at), "key_id": record.key_id,
            "role": record.role, "account_id": record.account_id, "action": record.action,
            "target": record.target, "result": record.result, "detail": record.detail,
            "count": record.count}


async def list_audit(call: Call) -> web.Response:
    """Audit records, newest first, by account and time (``since`` <= at < ``until``)."""
    query = call.parsed_query(AuditQuery)
    visible = call.me.visible
    accounts: set[str] | None = None if visible is None else set(visible)
    if query.account_id is not None:
        if not call.me.sees(query.account_id):
            # Another tenant's log asked for: recorded under the caller, like any route.
            refused = not_found("account", query.account_id)
            await audit_access_refused(call.store, call.me, call.request, refused)
            raise refused
        accounts = {query.account_id}
    records = await call.store.audit_log(account_ids=accounts, since=query.since,
                                         until=query.until, limit=query.limit,
                                         before_seq=query.before)
    # A full page may have more behind it; a short one is the end.
    next_before = records[-1].seq if len(records) == query.limit else None
    return web.json_response({"records": [record_view(r) for r in records],
                              "next_before": next_before})


ENDPOINTS = (
    Endpoint(method="GET", path="/api/v1/audit", handler=list_audit, status=200,
             response=AuditPage, query=AuditQuery, errors=(422,),
             summary="Audit records (newest first) filtered by account and time"),
)
