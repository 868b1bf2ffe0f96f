"""Graceful drain (SIGTERM): no new requests, the in-flight one completes."""

from __future__ import annotations

from tests.gateway.proxy.conftest import StartProxy, eventually, settings_for
from tests.gateway.proxy.fake_upstream import FakeUpstream
from tests.gateway.proxy.http_client import Client, build_request


async def test_drain_closes_idle_connection(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    assert (await client.request("GET", "/")).status == 200
    proxy.protocols[0].drain()
    assert await client.at_eof()
    await client.close()


async def test_drain_finishes_in_flight_request_then_closes(
    upstream: FakeUpstream, start_proxy: StartProxy
) -> None:
    proxy = await start_proxy(settings_for(upstream.port))
    client = await Client.open(proxy.port)
    body = b"b" * 200_000
    # A request in flight (the upstream holds it at the gate) and a pipelined one behind it.
    await client.send(build_request("POST", "/gated/1", body=body) + build_request("GET", "/2"))
    await eventually(lambda: upstream.heads == ["/gated/1"])
    proxy.protocols[0].drain()
    upstream.gate.set()
    response = await client.read_response("POST")
    assert response.status == 200
    assert response.header("connection") == "close"
    assert response.json()["body_len"] == len(body)
    assert await client.at_eof()
    await client.close()
    assert [r.target for r in upstream.requests] == ["/gated/1"]
    assert [r.status for r in proxy.records] == [200]
