"""Fleet bench: 3 nodes on one PostgreSQL, N tenants, handshake load.

Run: .venv/bin/python bench/fleet.py [--tenants 10000] [--changes 200] [--load-s 10]

Measures, with a PostgreSQL server of its own (Debian's binaries, as the tests start it):
- propagation: a chain generated through node 1's admin API (the response has arrived)
  until node 2's and node 3's next handshakes serve it (each polled back to back with real
  handshakes), p50/p99/max over ``--changes`` changes, while a background client keeps up
  handshake load on every node;
- the handshake rate of one node on PostgreSQL against one node on the same store in SQLite;
- start-up of a node at N tenants, both backends: its "certgate started ... in N ms" line
  (loading the store's state, listeners, admin API) and the time from launching the process
  until its ports accept (the interpreter and imports too).
Bounded: every loop has a count or a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import random
import re
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.serialization import Encoding

from certstore.chains import prepare_generated
from certstore.model import Account
from certstore.persistence.copy import copy_store
from certstore.persistence.keyfile import create_master_key, read_master_key
from certstore.persistence.location import open_database
from certstore.persistence.pgurl import PgLocation
from certstore.store import CertStore, new_id
from tests.gateway.fleet.nodes import Admin, Node
from tests.gateway.harness import _handshake_blocking, client_context, fingerprint
from tests.support.postgres import PgServer

STARTED = re.compile(rb"certgate started .* in (\d+) ms")


async def populate(path: Path, key_file: Path, tenants: int) -> tuple[str, list[str]]:
    """A SQLite store with ``tenants`` accounts, each with a domain and a TLS chain; an
    operator key. Rows go in through the store's writer in batches (the bench's set-up,
    not a figure)."""
    create_master_key(key_file)
    store, _ = await CertStore.initialize(path, read_master_key(key_file),
                                          ca_key_type="ecdsa-p256")
    names = [f"t{i}.bench.test" for i in range(tenants)]
    now = dt.datetime.now(dt.UTC)
    try:
        for start in range(0, tenants, 500):
            batch = names[start:start + 500]
            chains = [await asyncio.to_thread(
                prepare_generated, authority=store._authority, purpose="tls", domain=name,
                common_name=name, key_type="ecdsa-p256", now=now) for name in batch]
            async with store.database.write(now) as w:
                for name, new in zip(batch, chains, strict=True):
                    account = Account(id=new_id("acc"), name=name, kind="customer",
                                      parent_id=None, domains=(name,), created_at=now)
                    await w.insert_account(account)
                    await w.insert_domain(account.id, name)
                    await store._insert_chain(w, account.id, new)
                    await w.change("account.created", account.id, account.id)
        _key, secret = await store.create_api_key(role="operator")
        ids = [a.id for a in await store.list_accounts()][:50]
        ca_pem = store.ca_root.public_bytes(Encoding.PEM).decode()
    finally:
        await store.close()
    return secret + "\n" + ca_pem, ids


STARTUP_FIGURES = ("the node's own line, from loading the store to listening; in brackets "
                   "from the process's launch, interpreter and imports included, until its "
                   "ports accept, polled every 50 ms")


async def launch_ms(node: Node) -> float:
    """Milliseconds from launching ``node`` until its listener and admin ports accept."""
    begin = time.perf_counter()
    await asyncio.to_thread(node.start)
    return (time.perf_counter() - begin) * 1000


def started_ms(node: Node) -> int:
    """The node's own start-up figure (logged right after its listeners opened)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = STARTED.findall((node.root / "serve.log").read_bytes())
        if found:
            return int(found[-1])
        time.sleep(0.05)
    raise TimeoutError(f"{node.name} logged no start-up line")


def _load_worker(ports: list[int], names: list[str], stop: Any, count: Any,
                 failed: Any) -> None:
    """One load process: handshakes on random tenants of random nodes until ``stop``."""
    ctx = client_context(None)
    rnd = random.Random()
    while not stop.is_set():
        try:
            _handshake_port(rnd.choice(ports), rnd.choice(names), ctx)
            with count.get_lock():
                count.value += 1
        except Exception:
            with failed.get_lock():
                failed.value += 1


def _handshake_port(port: int, name: str, ctx: ssl.SSLContext) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=name):
        pass


class Load:
    """Background handshake load from separate processes (so the measuring process's own
    handshakes do not queue behind the load's for the GIL), counted."""

    def __init__(self, nodes: list[Node], names: list[str], processes: int) -> None:
        mp = multiprocessing.get_context("spawn")
        self._stop = mp.Event()
        self._count = mp.Value("q", 0)
        self._failed = mp.Value("q", 0)
        ports = [n.port for n in nodes]
        self._procs = [mp.Process(target=_load_worker, daemon=True,
                                  args=(ports, names, self._stop, self._count, self._failed))
                       for _ in range(processes)]

    @property
    def count(self) -> int:
        return int(self._count.value)

    @property
    def failed(self) -> int:
        return int(self._failed.value)

    def __enter__(self) -> Load:
        for p in self._procs:
            p.start()
        return self

    def wait_started(self) -> None:
        """Until the load's first handshake completed (spawned processes start slowly)."""
        deadline = time.monotonic() + 60
        while self._procs and self.count == 0 and time.monotonic() < deadline:
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for p in self._procs:
            p.join(30)
            if p.is_alive():
                p.kill()


def served(node: Node, name: str) -> str:
    return fingerprint(_handshake_blocking(node.port, name, client_context(None)))


def wait_served(node: Node, name: str, expected: str, deadline: float) -> float:
    """Handshakes back to back until ``expected`` is served; the time it first was."""
    while time.perf_counter() < deadline:
        if served(node, name) == expected:
            return time.perf_counter()
    raise TimeoutError(f"{node.name} did not serve the change in time")


def rate(nodes: list[Node], names: list[str], seconds: float, processes: int) -> float:
    with Load(nodes, names, processes) as load:
        load.wait_started()
        begin = load.count
        time.sleep(seconds)  # the measuring window (load runs meanwhile)
        done = load.count - begin
    return done / seconds


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--load-s", type=float, default=10.0)
    parser.add_argument("--rate-rounds", type=int, default=4,
                        help="turns of each backend in the handshake-rate comparison")
    parser.add_argument("--load-processes", type=int, default=2,
                        help="handshake load during the propagation run (0: none)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="certgate-fleet-bench-"))
    pg = PgServer(Path(tempfile.mkdtemp(prefix="certgate-pg-bench-"))).start()
    nodes: list[Node] = []
    try:
        t0 = time.perf_counter()
        secret_ca, ids = await populate(root / "certgate.sqlite", root / "master.key",
                                        args.tenants)
        secret, ca_pem = secret_ca.split("\n", 1)
        dbname = await pg.new_database()
        url = pg.url(dbname)
        source = await open_database(root / "certgate.sqlite")
        target = await open_database(pg_location(pg, url), create=True)
        await copy_store(source, target, dt.datetime.now(dt.UTC))
        await source.close()
        await target.close()
        print(f"set-up: {args.tenants} tenants on SQLite, copied to PostgreSQL "
              f"({time.perf_counter() - t0:.0f} s)")
        names = [f"t{i}.bench.test" for i in range(args.tenants)]
        env = pg.client_env()
        nodes = [Node(root / f"n{i}", f"n{i}", url, env).write_config() for i in (1, 2, 3)]
        launched = {node.name: await launch_ms(node) for node in nodes}
        print(f"start-up on PostgreSQL at {args.tenants} tenants ({STARTUP_FIGURES}): "
              + ", ".join(f"{n.name} {started_ms(n)} ms ({launched[n.name]:.0f} ms)"
                          for n in nodes))
        samples: list[float] = []
        with Load(nodes, names, args.load_processes) as load:
            await asyncio.to_thread(load.wait_started)
            async with Admin(nodes[0], ca_pem, secret) as admin:
                for i in range(args.changes):
                    acc = ids[i % len(ids)]
                    account = (await admin.call("GET", f"/api/v1/accounts/{acc}"))[2]
                    name = account["domains"][0]
                    status, _, new = await admin.call(
                        "POST", f"/api/v1/accounts/{acc}/chains/generate",
                        json_body={"purpose": "tls", "domain": name})
                    assert status == 201, new
                    start = time.perf_counter()
                    expected = str(new["fingerprint_sha256"]).replace(":", "").lower()
                    ends = await asyncio.gather(*(asyncio.to_thread(
                        wait_served, node, name, expected, start + 10) for node in nodes[1:]))
                    samples.append(max(ends) - start)
            failed = load.failed
        ms = [s * 1000 for s in samples]
        print(f"propagation (node 1 API answered -> nodes 2 and 3 serve it), "
              f"{len(ms)} changes: p50 {statistics.median(ms):.1f} ms, "
              f"p99 {pct(ms, 0.99):.1f} ms, max {max(ms):.1f} ms; background handshakes "
              f"{load.count}, failed {failed}")
        processes = args.load_processes or 2  # the rate comparison always has load
        for node in nodes[1:]:
            node.stop()
        single = Node(root / "sqlite", "sqlite", str(root / "certgate.sqlite"),
                      env).write_config()
        nodes = [nodes[0], single]
        launched_single = await launch_ms(single)
        print(f"start-up on SQLite at {args.tenants} tenants ({STARTUP_FIGURES}): "
              f"{started_ms(single)} ms ({launched_single:.0f} ms)")
        # The two nodes are measured in turns (PostgreSQL, SQLite, PostgreSQL...), so a
        # neighbour's burst on the machine does not land on one backend only.
        rates: dict[str, list[float]] = {"PostgreSQL": [], "SQLite": []}
        for _ in range(args.rate_rounds):
            for backend, node in zip(rates, nodes, strict=True):
                rates[backend].append(await asyncio.to_thread(
                    rate, [node], names, args.load_s / args.rate_rounds, processes))
        print(f"handshakes/s, one node, {processes} client processes, {args.rate_rounds} "
              f"turns of {args.load_s / args.rate_rounds:.1f} s each: " + "; ".join(
                  f"{backend} median {statistics.median(r):.0f} "
                  f"({', '.join(f'{x:.0f}' for x in r)})" for backend, r in rates.items()))
    finally:
        for node in nodes:
            node.stop()
        pg.stop("immediate")
        shutil.rmtree(pg.root, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def pg_location(pg: PgServer, url: str) -> PgLocation:
    return PgLocation.parse(url, password_file=pg.password_file)


if __name__ == "__main__":
    asyncio.run(main())
