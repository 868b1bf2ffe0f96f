"""The admin aiohttp application (health and Prometheus metrics)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.observe import Metrics

METRICS_KEY = web.AppKey("metrics", Metrics)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process runs and answers."""
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of this process's metrics."""
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(m: Metrics) -> web.Application:
    """The admin application."""
    app = web.Application()
    app[METRICS_KEY] = m
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app
