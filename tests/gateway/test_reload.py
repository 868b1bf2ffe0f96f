"""Live reload: store changes are served on the next handshake, nothing in flight breaks."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from certstore.persistence.keyfile import read_master_key
from certstore.store import CertStore
from gateway import reload
from gateway.server import DEFAULT_NAME
from tests.certfactory import Issued, make_leaf, p12
from tests.gateway.harness import (
    fingerprint,
    handshake,
    init_store,
    running_gateway,
    upstream_server,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CertStore]:
    """A second, independent connection to the gateway's store (another 'admin')."""
    key = await init_store(tmp_path)
    opened = await CertStore.open(tmp_path / "certgate.sqlite", read_master_key(key))
    try:
        yield opened
    finally:
        await opened.close()


def _listener(port: int) -> dict[str, object]:
    return {"name": "web", "kind": "https", "bind": "127.0.0.1:0",
            "upstream": f"http://127.0.0.1:{port}"}


async def _until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Wait until ``condition`` holds (generous: a loaded machine is slow, not wrong)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"condition not met within {timeout_s} s"
        await asyncio.sleep(0.005)


async def _wait_for(port: int, name: str, want: str, timeout_s: float = 60.0) -> int:
    """Handshake until ``want`` is served; returns how many handshakes that took."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    attempts = 0
    while True:
        attempts += 1
        if fingerprint(await handshake(port, name)) == want:
            return attempts
        assert loop.time() < deadline, f"{want[:12]} not served within {timeout_s} s"


async def test_import_during_load_loop_swaps_with_zero_failures(
        tmp_path: Path, store: CertStore, intermediate_ca: Issued) -> None:
    acc = await store.create_account(name="Acme", kind="customer", domains=["acme.test"])
    first = await store.generate_chain(acc.id, purpose="tls", domain="acme.test")
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        port = gw.listeners["web"].port
        seen: list[str] = []
        failures: list[BaseException] = []
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                try:
                    seen.append(fingerprint(await handshake(port, "acme.test")))
                except (OSError, ssl.SSLError) as e:
                    failures.append(e)

        loops = [asyncio.create_task(load()) for _ in range(4)]
        await _until(lambda: len(seen) >= 8)  # the load runs on the first chain
        # expires after the generated chain (397 days), so the rules prefer it
        leaf = make_leaf(intermediate_ca, dns=["acme.test"],
                         not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=800))
        imported = await store.import_chain(acc.id, p12(leaf, b"pw"), b"pw")
        await _wait_for(port, "acme.test", imported.fingerprint_sha256)
        after = len(seen)
        await _until(lambda: len(seen) >= after + 16)  # and goes on after the swap
        stop.set()
        await asyncio.gather(*loops)
        assert failures == []
        assert seen[0] == first.fingerprint_sha256  # before the swap
        assert seen[-1] == imported.fingerprint_sha256  # after it (expires later)
        # once the new chain was served, the old one never came back
        swap = seen.index(imported.fingerprint_sha256)
        assert first.fingerprint_sha256 not in seen[swap + 8:]
        assert gw.metrics.reloads >= 1


async def test_streaming_request_survives_the_swap(tmp_path: Path, store: CertStore) -> None:
    acc = await store.create_account(name="Acme", kind="customer", domains=["acme.test"])
    await store.generate_chain(acc.id, purpose="tls", domain="acme.test")
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        port = gw.listeners["web"].port
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                       server_hostname="acme.test")
        chunk = b"x" * 65536
        writer.write(b"POST /upload HTTP/1.1\r\nHost: acme.test\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        sent = 0
        for i in range(40):
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            await writer.drain()
            if i == 10:  # mid-stream: replace the chain and delete the old one
                new = await store.generate_chain(acc.id, purpose="tls", domain="acme.test",
                                                 key_type="rsa-2048")
                old = [c for c in await store.list_chains(acc.id)
                       if c.purpose == "tls" and c.id != new.id]
                await store.delete_chain(old[0].id)
                await _wait_for(port, "acme.test", new.fingerprint_sha256)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        assert b'"body_len": %d' % sent in body
        writer.close()


async def test_deleted_chain_and_removed_domain_stop_being_served(
        tmp_path: Path, store: CertStore) -> None:
    acc = await store.create_account(name="Acme", kind="customer",
                                     domains=["acme.test", "print.acme.test"])
    chain = await store.generate_chain(acc.id, purpose="tls", domain="acme.test")
    printing = await store.generate_chain(acc.id, purpose="tls", domain="print.acme.test")
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        port = gw.listeners["web"].port
        assert fingerprint(await handshake(port, "acme.test")) == chain.fingerprint_sha256
        await store.delete_chain(chain.id)
        await store.remove_domain(acc.id, "print.acme.test")
        loop = asyncio.get_running_loop()
        for name in ("acme.test", "print.acme.test"):
            deadline = loop.time() + 60  # generous: a loaded machine is slow, not wrong
            while DEFAULT_NAME not in (await handshake(port, name)).subject.rfc4514_string():
                if loop.time() > deadline:
                    pytest.fail(f"{name} still served after its chain/domain went")
                await asyncio.sleep(0.05)
        assert printing.fingerprint_sha256 not in {
            fingerprint(await handshake(port, "print.acme.test")) for _ in range(3)}


async def test_change_made_by_another_process_is_served(tmp_path: Path,
                                                        store: CertStore) -> None:
    acc = await store.create_account(name="Acme", kind="customer", domains=["acme.test"])
    (tmp_path / "certgate.yaml").write_text(f"data_dir: {tmp_path}\n")
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        port = gw.listeners["web"].port
        env = {**os.environ, "CERTGATE_CONFIG": str(tmp_path / "certgate.yaml")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "chain", "generate", acc.id, "--purpose",
            "tls", "--domain", "acme.test", "--json", env=env, stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        await _wait_for(port, "acme.test", json.loads(out)["fingerprint_sha256"])


async def test_another_process_commit_is_followed_without_polling(
        tmp_path: Path, store: CertStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # A 10 s poll interval and the follower's safety-net read once an hour: only the
    # inotify wake-up can serve the change (no timing threshold, which a loaded machine
    # would break). The test's store is another connection, as another process's is.
    monkeypatch.setattr(reload, "FULL_POLL_S", 3600.0)
    acc = await store.create_account(name="Acme", kind="customer", domains=["acme.test"])
    async with upstream_server() as up, running_gateway(
            tmp_path, [_listener(up)], store_poll_interval_s=10) as gw:
        port = gw.listeners["web"].port
        chain = await store.generate_chain(acc.id, purpose="tls", domain="acme.test")
        seq = await store.last_seq()
        await _until(lambda: gw.ref.snapshot.seq >= seq)
        assert fingerprint(await handshake(port, "acme.test")) == chain.fingerprint_sha256


async def test_a_replaced_chain_in_use_is_built_before_the_next_handshake(
        tmp_path: Path, store: CertStore, intermediate_ca: Issued) -> None:
    acc = await store.create_account(name="Acme", kind="customer", domains=["acme.test"])
    first = await store.generate_chain(acc.id, purpose="tls", domain="acme.test")
    async with upstream_server() as up, running_gateway(tmp_path, [_listener(up)]) as gw:
        port = gw.listeners["web"].port
        assert fingerprint(await handshake(port, "acme.test")) == first.fingerprint_sha256
        assert gw.cache.holds(first.id)
        leaf = make_leaf(intermediate_ca, dns=["acme.test"],
                         not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
        imported = await store.import_chain(acc.id, p12(leaf, b"pw"), b"pw", bind=True)
        while gw.ref.snapshot.seq < await store.last_seq():
            await asyncio.sleep(0.005)
        # built with the swap, before any client asked for it; the old one is gone
        assert gw.cache.holds(imported.id) and not gw.cache.holds(first.id)
        assert fingerprint(await handshake(port, "acme.test")) == imported.fingerprint_sha256
