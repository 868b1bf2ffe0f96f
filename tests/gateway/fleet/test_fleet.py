"""A fleet on one PostgreSQL: three ``certgate serve`` processes, changes through one node's
admin API or the CLI served by every node, two admins racing on two nodes, conditional PKI
updates, a node killed and restarted, and a SQLite store copied over."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.certfactory import make_ca, make_leaf, p12
from tests.gateway.fleet.nodes import Admin, Node, gather_served
from tests.support.postgres import PgServer

pytestmark = pytest.mark.timeout(600)


def _fp(chain: dict[str, object]) -> str:
    return str(chain["fingerprint_sha256"]).replace(":", "").lower()


@pytest.fixture
async def database(pg_server: PgServer) -> AsyncIterator[str]:
    name = await pg_server.new_database()
    yield pg_server.url(name)
    await pg_server.drop_database(name)


@pytest.fixture(scope="module")
def fleet_database(pg_server: PgServer) -> Iterator[str]:
    name = asyncio.run(pg_server.new_database())
    yield pg_server.url(name)
    asyncio.run(pg_server.drop_database(name))



class Fleet:
    """Nodes on one database sharing one master key; the tenant a.test and an operator key."""

    def __init__(self, root: Path, pg: PgServer, url: str, count: int) -> None:
        env = pg.client_env()  # PGPASSWORD for most nodes ...
        self.nodes = [Node(root / f"n{i}", f"n{i}", url, env).write_config()
                      for i in range(1, count + 1)]
        # ... and a password file for the first, the other documented way
        first = self.nodes[0]
        first.password_file = pg.password_file
        first.env = {k: v for k, v in env.items() if k != "PGPASSWORD"}
        first.write_config()
        first.cli("init")
        self.account = first.cli_json("account", "create", "--name", "A", "--kind",
                                      "customer", "--domain", "a.test", "--domain",
                                      "b.test")["id"]
        self.chain = first.cli_json("chain", "generate", self.account, "--purpose", "tls",
                                    "--domain", "a.test")
        self.key = first.cli_json("apikey", "create", "--role", "operator")["key"]
        self.ca_pem = first.cli("ca", "show").stdout

    def admin(self, index: int) -> Admin:
        return Admin(self.nodes[index], self.ca_pem, self.key)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer,
          fleet_database: str) -> Iterator[Fleet]:
    """Three nodes for the module (starting them is the slow part); tests run in file
    order, the one pinning a binding last."""
    fleet = Fleet(tmp_path_factory.mktemp("fleet"), pg_server, fleet_database, 3)
    try:
        for node in fleet.nodes:
            node.start()
        yield fleet
    finally:
        fleet.stop()


async def test_a_change_through_one_node_is_served_by_every_node(fleet: Fleet) -> None:
    nodes = fleet.nodes
    before = await gather_served(nodes)
    assert len(set(before)) == 1
    async with fleet.admin(0) as admin:
        status, headers, new = await admin.call(
            "POST", f"/api/v1/accounts/{fleet.account}/chains/generate?wait=fleet",
            json_body={"purpose": "tls", "domain": "a.test"})
        assert status == 201, new
        change_id = int(headers["Certgate-Change-Id"])
        assert headers["Certgate-Fleet-Pending"] == "none"
        # wait=fleet answered: the other nodes' very next handshakes serve the new chain
        assert await gather_served(nodes[1:]) == [_fp(new)] * 2
        assert await nodes[0].served() == _fp(new)
        status, _, cluster = await admin.call("GET", "/api/v1/cluster")
    assert status == 200 and cluster["backend"] == "postgresql"
    assert cluster["last_change"] >= change_id
    by_name = {n["name"]: n for n in cluster["nodes"]}
    assert set(by_name) == {"n1", "n2", "n3"}
    assert all(n["live"] and n["applied_change"] >= change_id for n in by_name.values())


async def test_the_cli_returns_once_every_node_serves_its_change(fleet: Fleet) -> None:
    new = fleet.nodes[1].cli_json("chain", "generate", fleet.account, "--purpose", "tls",
                                  "--domain", "a.test")
    assert await gather_served(fleet.nodes) == [_fp(new)] * 3
    out = fleet.nodes[2].cli("chain", "generate", fleet.account, "--purpose", "tls",
                             "--domain", "a.test", "--no-wait", "--json")
    assert json.loads(out.stdout)["id"]  # committed; returned without waiting


async def test_two_admins_on_two_nodes_race_for_one_domain(fleet: Fleet) -> None:
    other = fleet.nodes[0].cli_json("account", "create", "--name", "B", "--kind",
                                    "customer")["id"]
    async with fleet.admin(0) as one, fleet.admin(1) as two:
        for round_ in range(4):
            domain = f"race{round_}.test"
            results = await asyncio.gather(
                one.call("POST", f"/api/v1/accounts/{fleet.account}/domains",
                         json_body={"domain": domain}),
                two.call("POST", f"/api/v1/accounts/{other}/domains",
                         json_body={"domain": domain}))
            statuses = sorted(r[0] for r in results)
            assert statuses == [201, 409], results
            loser = next(r for r in results if r[0] == 409)
            assert loser[1]["Content-Type"].startswith("application/problem+json")
            assert loser[2]["type"].endswith("domain-taken")
        status, _, accounts = await one.call("GET", "/api/v1/accounts")
    assert status == 200
    owned = [d for a in accounts["accounts"] for d in a["domains"] if d.startswith("race")]
    assert sorted(owned) == [f"race{i}.test" for i in range(4)]  # none lost, none twice


async def test_two_admins_on_two_nodes_import_one_certificate(fleet: Fleet) -> None:
    leaf = make_leaf(make_ca("Customer Root"), dns=["b.test"])
    data = p12(leaf, b"pw")

    def form() -> aiohttp.FormData:
        body = aiohttp.FormData()
        body.add_field("file", data, filename="c.p12", content_type="application/x-pkcs12")
        body.add_field("password", "pw")
        return body

    path = f"/api/v1/accounts/{fleet.account}/chains/import"
    async with fleet.admin(0) as one, fleet.admin(1) as two:
        results = await asyncio.gather(one.call("POST", path, data=form()),
                                       two.call("POST", path, data=form()))
        assert sorted(r[0] for r in results) == [201, 409], results
        loser = next(r for r in results if r[0] == 409)
        assert loser[2]["type"].endswith("conflict")
        _, _, chains = await one.call("GET", f"/api/v1/accounts/{fleet.account}/chains")
    same = [c for c in chains["chains"] if c["dns_names"] == ["b.test"]]
    assert len(same) == 1  # stored once


async def test_a_killed_node_leaves_the_others_alone_and_rejoins(fleet: Fleet) -> None:
    victim, survivors = fleet.nodes[2], fleet.nodes[:2]
    victim.kill()
    async with fleet.admin(0) as admin:
        status, headers, new = await admin.call(
            "POST", f"/api/v1/accounts/{fleet.account}/chains/generate?wait=fleet",
            json_body={"purpose": "tls", "domain": "a.test"})
        assert status == 201
        # the dead node may still count as live (its last heartbeat is recent): it is
        # named as not having applied the change, and nobody else is
        assert headers["Certgate-Fleet-Pending"] in ("n3", "none")
        assert await gather_served(survivors) == [_fp(new)] * 2
        victim.start()  # loads the current state at start
        assert await victim.served() == _fp(new)
        # The node writes its row right after start, beside its first handshakes: on a
        # busy machine the row can come after the handshake above. Wait for it (bounded).
        live: set[str] = set()
        for _ in range(300):
            status, _, cluster = await admin.call("GET", "/api/v1/cluster")
            live = {n["name"] for n in cluster["nodes"] if n["live"]}
            if live >= {"n1", "n2", "n3"}:
                break
            await asyncio.sleep(0.1)
    assert live >= {"n1", "n2", "n3"}


async def test_pki_put_with_a_stale_etag_answers_412(fleet: Fleet) -> None:
    pki = f"/api/v1/accounts/{fleet.account}/pki"
    async with fleet.admin(0) as one, fleet.admin(2) as three:
        status, headers, settings = await one.call("GET", pki)
        assert status == 200
        tag = headers["ETag"]
        assert tag.startswith('"') and tag.endswith('"')
        body = {"signing_chain_id": settings["signing_chain_id"],
                "tls_bindings": {"a.test": fleet.chain["id"]}}
        status, headers, _ = await three.call("PUT", pki, json_body=body,
                                              headers={"If-Match": tag})
        assert status == 200 and headers["ETag"] != tag
        # the first admin still holds the old tag: refused, nothing overwritten
        status, headers, problem = await one.call("PUT", pki, json_body={
            "signing_chain_id": None, "tls_bindings": {}}, headers={"If-Match": tag})
        assert status == 412 and problem["type"].endswith("precondition-failed")
        status, _, now = await one.call("GET", pki)
        assert now["tls_bindings"] == {"a.test": fleet.chain["id"]}
        assert now["signing_chain_id"] == settings["signing_chain_id"]


async def test_store_copy_then_serve_from_postgresql(tmp_path: Path, pg_server: PgServer,
                                                     database: str) -> None:
    node = Node(tmp_path / "single", "single", "./var/certgate.sqlite",
                pg_server.client_env()).write_config()
    node.cli("init")
    account = node.cli_json("account", "create", "--name", "A", "--kind", "customer",
                            "--domain", "a.test")["id"]
    chain = node.cli_json("chain", "generate", account, "--purpose", "tls", "--domain",
                          "a.test")
    bad = node.cli("store", "copy", "--to", "postgresql://x:pw@127.0.0.1/db", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: --to:")
    assert "Traceback" not in bad.stderr
    copied = json.loads(node.cli("store", "copy", "--to", database, "--json").stdout)
    assert copied["rows"]["accounts"] == 1 and copied["rows"]["chains"] == 2
    again = node.cli("store", "copy", "--to", database, check=False)
    assert again.returncode == 1 and "already holds a certgate store" in again.stderr
    node.database = database  # the same node, now on PostgreSQL
    node.write_config()
    node.start()
    try:
        assert await node.served() == _fp(chain)
        listed = node.cli_json("chain", "list", account)
        assert chain["id"] in {c["id"] for c in listed}
    finally:
        node.stop()
