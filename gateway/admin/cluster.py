"""The fleet: ``GET /api/v1/cluster`` lists the nodes serving from this store (operator)."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.endpoint import Call, Endpoint
from gateway.admin.models import ClusterOut
from gateway.admin.problems import Problem
from gateway.fleet import view


async def get_cluster(call: Call) -> web.Response:
    """Every node with its heartbeat, the last change it applied, its lag and whether it
    is live (operator keys only: node names and hosts are the operator's business)."""
    if call.me.key.role != "operator":
        raise Problem(403, "forbidden", "the cluster view is for operator keys")
    db = call.store.database
    last = await call.store.last_seq()
    nodes = [{"name": v.record.name, "host": v.record.host, "pid": v.record.pid,
              "started_at": v.record.started_at.isoformat(),
              "heartbeat_at": v.record.heartbeat_at.isoformat(),
              "applied_change": v.record.applied_seq, "lag": v.lag, "live": v.live}
             for v in view(await db.nodes(), last)]
    return web.json_response({"backend": db.backend, "last_change": last, "nodes": nodes})


ENDPOINTS = (
    Endpoint(method="GET", path="/api/v1/cluster", handler=get_cluster, status=200,
             response=ClusterOut, errors=(403,),
             summary="The gateway nodes serving from this store, with their lag"),
)
