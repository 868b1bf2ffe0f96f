"""PostgreSQL stopped for 30 s under handshake load: every handshake still succeeds, admin
calls answer 503 problem+json with Retry-After, /healthz says degraded and the metric shows
it; when the database returns the nodes reconnect and catch up, with no restart."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.fleet.nodes import Admin, Node, gather_served
from tests.gateway.harness import handshake
from tests.support.postgres import PgServer

pytestmark = pytest.mark.timeout(600)
OUTAGE_S = 30.0


@pytest.fixture
def own_server() -> Iterator[PgServer]:
    """A server of this test's own: stopping it must not disturb the shared one."""
    server = PgServer(Path(tempfile.mkdtemp(prefix="certgate-pg-outage-"))).start()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(server.root, ignore_errors=True)


async def _until(check: object, timeout_s: float = 60) -> None:
    """Poll an async condition (a health answer) until it holds; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


async def _load(nodes: list[Node], stop: asyncio.Event, counts: dict[str, int],
                errors: list[str]) -> None:
    """Handshakes in a loop against every node until ``stop`` (bounded by the test)."""
    while not stop.is_set():
        for node in nodes:
            try:
                await handshake(node.port, "a.test")
                counts["ok"] += 1
            except Exception as e:  # any failed handshake fails the test
                counts["failed"] += 1
                errors.append(f"{node.name}: {e!r}")


@pytest.mark.slow(seconds=40)
async def test_database_outage_under_handshake_load(tmp_path: Path,
                                                    own_server: PgServer) -> None:
    name = await own_server.new_database()
    url = own_server.url(name)
    nodes = [Node(tmp_path / f"n{i}", f"n{i}", url, own_server.client_env()).write_config()
             for i in (1, 2)]
    first = nodes[0]
    first.cli("init")
    account = first.cli_json("account", "create", "--name", "A", "--kind", "customer",
                             "--domain", "a.test")["id"]
    first.cli_json("chain", "generate", account, "--purpose", "tls", "--domain", "a.test")
    key = first.cli_json("apikey", "create", "--role", "operator")["key"]
    ca_pem = first.cli("ca", "show").stdout
    for node in nodes:
        node.start()
    stop, counts, errors = asyncio.Event(), {"ok": 0, "failed": 0}, []
    load = asyncio.create_task(_load(nodes, stop, counts, errors))
    try:
        async with Admin(first, ca_pem, key) as admin:
            assert (await admin.call("GET", "/healthz"))[2] == {"status": "ok"}
            await asyncio.to_thread(own_server.stop, "fast")
            outage_started = asyncio.get_running_loop().time()

            async def degraded() -> bool:
                return (await admin.call("GET", "/healthz"))[2]["status"] == "degraded"

            await _until(degraded)
            status, _, health = await admin.call("GET", "/healthz")
            assert status == 200 and "PostgreSQL unreachable" in health["reason"]
            status, headers, problem = await admin.call(
                "POST", f"/api/v1/accounts/{account}/chains/generate",
                json_body={"purpose": "tls", "domain": "a.test"})
            assert status == 503, problem
            assert headers["Content-Type"].startswith("application/problem+json")
            assert int(headers["Retry-After"]) > 0
            assert problem["type"].endswith("store-unavailable")
            status, headers, _ = await admin.call("GET", "/api/v1/accounts")
            assert status == 503 and "Retry-After" in headers
            _, _, metrics = await admin.call("GET", "/metrics")
            assert "certgate_store_connected 0.0" in metrics
            # the outage lasts OUTAGE_S while the load runs (its length is the scenario)
            remaining = OUTAGE_S - (asyncio.get_running_loop().time() - outage_started)
            await asyncio.sleep(max(0.0, remaining))
            assert counts["ok"] > 0
            await asyncio.to_thread(own_server.start)

            async def healthy() -> bool:
                return (await admin.call("GET", "/healthz"))[2]["status"] == "ok"

            await _until(healthy)
            status, headers, new = await admin.call(
                "POST", f"/api/v1/accounts/{account}/chains/generate?wait=fleet",
                json_body={"purpose": "tls", "domain": "a.test"})
            assert status == 201, new
            assert headers["Certgate-Fleet-Pending"] == "none"  # both nodes caught up
            fp = str(new["fingerprint_sha256"]).replace(":", "").lower()
            assert await gather_served(nodes) == [fp, fp]
            _, _, metrics = await admin.call("GET", "/metrics")
            assert "certgate_store_connected 1.0" in metrics
    finally:
        stop.set()
        await load
        for node in nodes:
            node.stop()
    assert counts["failed"] == 0, errors[:5]
    assert counts["ok"] > 10
