"""No admin request holds the gateway (issue 10): heavy crypto runs in worker processes,
concurrent mutations are bounded per key and per account (429), and an announced oversize
body is refused at once (413).

Real gateway, real HTTPS clients, real concurrent requests; the slow import is a real file
at the work budget (no sleep stands for work).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12

from certstore.pkcs12_walk import MAX_WORK_ITERATIONS
from gateway.admin.app import LIMITS
from gateway.admin.workers import ProcessOffload
from tests.certfactory import Issued, make_leaf, p12
from tests.certstore import p12tools
from tests.gateway.admin.conftest import AdminEnv, admin_context, admin_env
from tests.gateway.admin.test_workflow import p12_form

ACCOUNTS = "/api/v1/accounts"
PASSWORD = "slow-file-pw"
LIMIT = 64 * 1024


def heavy_file(leaf: Issued) -> bytes:
    """A genuine file close to the work budget: three certificate safes and the key bag
    at 900,000 PBKDF2 iterations each (seconds of CPU to open, all of it in OpenSSL)."""
    encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                  .kdf_rounds(900_000)
                  .key_cert_algorithm(crypto_pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                  .hmac_hash(hashes.SHA256()).build(PASSWORD.encode()))
    one = crypto_pkcs12.serialize_key_and_certificates(b"h", leaf.key, leaf.cert, leaf.parents,
                                                       encryption)
    parts = p12tools.safes(one)
    certs = [s for s in parts if p12tools.safe_kind(s) == "encrypted_data"]
    keys = [s for s in parts if p12tools.safe_kind(s) == "data"]
    data = p12tools.build_pfx(certs * 3 + keys, mac_password=PASSWORD)
    assert 3_600_000 < 4 * 900_000 + 2048 * 3 <= MAX_WORK_ITERATIONS
    return data


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[AdminEnv]:
    """A gateway with tight limits: one mutation per key and per account, two workers."""
    async with admin_env(tmp_path, max_upload_bytes=LIMIT, crypto_workers=2,
                         max_mutations_per_key=1, max_mutations_per_account=1) as env:
        yield env


async def _customer(env: AdminEnv, name: str, domain: str) -> tuple[str, str]:
    created = await env.api.ok("POST", ACCOUNTS, 201, json_body={
        "name": name, "kind": "customer", "domains": [domain]})
    account_id = str(created["id"])
    return account_id, await env.key_for("customer", account_id)


def _offload(env: AdminEnv) -> ProcessOffload:
    offload = env.gateway.store.offload
    assert isinstance(offload, ProcessOffload)
    return offload


async def _until(predicate: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_heavy_crypto_runs_in_another_process_and_the_loop_stays_responsive(
        gw: AdminEnv, intermediate_ca: Issued) -> None:
    account, key = await _customer(gw, "Heavy", "heavy.test")
    offload = _offload(gw)
    assert offload.jobs["generate_job"] == 1  # the account's signing chain
    worker_pid = await offload.run(os.getpid)
    assert worker_pid != os.getpid()

    lags: list[float] = []

    async def probe() -> None:  # the loop the TLS listeners run on
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - start - 0.01)

    data = heavy_file(make_leaf(intermediate_ca, dns=["heavy.test"]))
    prober = asyncio.create_task(probe())
    try:
        reply = await gw.api.as_key(key).call("POST", f"{ACCOUNTS}/{account}/chains/import",
                                             data=p12_form(data, PASSWORD))
    finally:
        prober.cancel()
    assert reply.status == 201, reply.text
    assert offload.jobs["prepare_import"] == 1
    # Opening the file holds a GIL for seconds (0.3 s per safe); in a thread these lags
    # would be that long. The bound is generous for a loaded machine.
    assert len(lags) > 10 and max(lags) < 0.25, f"loop lag {max(lags):.3f}s"


async def test_concurrent_mutations_are_limited_per_key_and_account(
        gw: AdminEnv, intermediate_ca: Issued) -> None:
    slow_account, slow_key = await _customer(gw, "Slow", "slow.test")
    other_key = await gw.key_for("customer", slow_account)
    fast_account, fast_key = await _customer(gw, "Fast", "fast.test")
    limits = gw.gateway._admin.app[LIMITS]  # type: ignore[union-attr]
    heavy = heavy_file(make_leaf(intermediate_ca, dns=["slow.test"]))
    slow_api = gw.api.as_key(slow_key)
    slow = asyncio.create_task(slow_api.call("POST", f"{ACCOUNTS}/{slow_account}/chains/import",
                                             data=p12_form(heavy, PASSWORD)))
    await _until(lambda: limits.in_flight(account_id=slow_account) == 1, "the slow import")

    # The same key, and another key of the same account: 429 at once, with Retry-After.
    for key in (slow_key, other_key):
        reply = await gw.api.as_key(key).call(
            "POST", f"{ACCOUNTS}/{slow_account}/chains/generate",
            json_body={"purpose": "tls", "domain": "slow.test"})
        body = reply.problem(429, "too-many-requests")
        assert reply.headers["Retry-After"] == "1"
        assert "concurrent" in body["detail"]

    # Another account is not held by it: its import completes while the slow one runs.
    fast = p12(make_leaf(intermediate_ca, dns=["fast.test"]), PASSWORD.encode())
    reply = await gw.api.as_key(fast_key).call(
        "POST", f"{ACCOUNTS}/{fast_account}/chains/import", data=p12_form(fast, PASSWORD))
    assert reply.status == 201, reply.text
    assert not slow.done(), "the other account's import waited for the slow one"
    assert (await slow).status == 201
    # Slots are released: the first key may change things again.
    await slow_api.ok("POST", f"{ACCOUNTS}/{slow_account}/chains/generate", 201,
                      json_body={"purpose": "tls", "domain": "slow.test"})
    assert limits.in_flight(account_id=slow_account) == 0


async def _raw(env: AdminEnv, head: bytes, body: bytes = b"") -> tuple[bytes, float]:
    """Send ``head`` (and ``body``) on a TLS connection, never finishing the body; return
    what the server answered and how long it took."""
    ctx = admin_context(env.root_pem)
    reader, writer = await asyncio.open_connection("127.0.0.1", env.gateway.admin_port,
                                                   ssl=ctx)
    try:
        start = time.monotonic()
        writer.write(head + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 10)
        while answer and b"\r\n\r\n" not in answer:
            answer += await asyncio.wait_for(reader.read(65536), 10)
        return answer, time.monotonic() - start
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


@pytest.mark.parametrize("auth", [True, False], ids=["with-key", "without-key"])
async def test_announced_oversize_body_is_refused_before_it_is_sent(gw: AdminEnv,
                                                                   auth: bool) -> None:
    account, key = await _customer(gw, "Big", "big.test")
    head = (f"POST {ACCOUNTS}/{account}/chains/import HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: multipart/form-data; boundary=xyz\r\n"
            f"Content-Length: {LIMIT + 1}\r\n"
            + (f"Authorization: Bearer {key}\r\n" if auth else "") + "\r\n").encode()
    answer, elapsed = await _raw(gw, head)  # not one byte of the body is sent
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"application/problem+json" in rest and b"connection: close" in rest.lower()
    assert elapsed < 5


async def test_chunked_body_is_cut_at_the_limit(gw: AdminEnv) -> None:
    account, key = await _customer(gw, "Chunked", "chunked.test")
    head = (f"POST {ACCOUNTS}/{account}/trusted-cas HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/pkix-cert\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"A" * 4096
    body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * (LIMIT // len(chunk) + 1)
    answer, _ = await _raw(gw, head, body)  # the body never ends: no final chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    listing = await gw.api.ok("GET", f"{ACCOUNTS}/{account}/trusted-cas")
    assert listing["trusted_cas"] == []


@pytest.fixture
def fuzzed_uploads(intermediate_ca: Issued) -> list[bytes]:
    """Random byte mutations of a real file, and the regression corpus (built off the loop)."""
    import json
    import random

    from tests.certstore.test_fuzz import CORPUS, apply, corpus_file

    base = p12(make_leaf(intermediate_ca, dns=["fuzzed.test"]), PASSWORD.encode())
    rng = random.Random(7)
    cases = [apply(base, [(rng.randrange(len(base)), rng.randrange(256))
                          for _ in range(rng.randint(1, 3))]) for _ in range(25)]
    cases += [base[:cut] for cut in (1, 40, len(base) // 2, len(base) - 1)]
    return cases + [apply(corpus_file(), c["ops"]) for c in json.loads(CORPUS.read_text())]


async def test_fuzzed_uploads_always_get_a_4xx_problem(gw: AdminEnv,
                                                      fuzzed_uploads: list[bytes]) -> None:
    account, key = await _customer(gw, "Fuzzed", "fuzzed.test")
    api = gw.api.as_key(key)
    statuses = set()
    for data in fuzzed_uploads:
        for path, body in ((f"{ACCOUNTS}/{account}/chains/import", p12_form(data, PASSWORD)),
                           (f"{ACCOUNTS}/{account}/trusted-cas", data)):
            reply = await api.call("POST", path, data=body)
            statuses.add(reply.status)
            if reply.status in (201, 409):  # a mutated signature byte may still open
                continue
            assert 400 <= reply.status < 500, (path, reply.status, reply.text)
            assert reply.content_type == "application/problem+json", reply.text
            assert reply.data["detail"] and "Traceback" not in reply.text
    assert 422 in statuses
