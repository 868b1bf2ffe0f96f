"""``certgate serve`` as a real process: signals, config reload, workers, admin metrics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from gateway.workershare import PUBLISH_S
from tests.gateway.harness import fingerprint, handshake, upstream_server

CLI = [sys.executable, "-m", "gateway.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(tmp: Path, *args: str) -> str:
    out = subprocess.run([*CLI, "-c", str(tmp / "certgate.yaml"), *args], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _write_config(tmp: Path, listeners: list[dict[str, object]], admin_port: int) -> None:
    (tmp / "certgate.yaml").write_text(yaml.safe_dump({
        "data_dir": "./var", "ca": {"key_type": "ecdsa-p256"}, "graceful_timeout_s": 10,
        "listeners": listeners, "admin": {"bind": f"127.0.0.1:{admin_port}"}}))


def _wait_port(port: int, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[str]:
    _write_config(tmp_path, [], _free_port())
    _run(tmp_path, "init")
    acc = json.loads(_run(tmp_path, "account", "create", "--name", "A", "--kind", "customer",
                          "--domain", "a.test", "--json"))
    yield acc["id"]


@pytest.fixture
async def slow_upstream() -> AsyncIterator[int]:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", "0")))
        return web.Response(text="done")

    async with upstream_server(slow) as port:
        yield port


async def _start(tmp: Path, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI, "-c", str(tmp / "certgate.yaml"), "serve", *extra,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _get(port: int, path: str) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                   server_hostname="a.test")
    writer.write(f"GET {path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data


async def _scrape(tmp: Path, admin: int) -> str:
    """GET /metrics from the admin listener, verified against the built-in CA."""
    ctx = ssl.create_default_context(cadata=_run(tmp, "ca", "show"))
    ctx.check_hostname = False  # the admin chain names localhost and its bind IP
    reader, writer = await asyncio.open_connection("127.0.0.1", admin, ssl=ctx)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    metrics = (await reader.read()).decode()
    writer.close()
    assert metrics.startswith("HTTP/1.1 200"), metrics[:200]
    return metrics


def _handshakes_completed(metrics: str, listener: str) -> int:
    """certgate_handshakes_total of ``listener`` summed over the results of completed
    handshakes (a port probe that closes at once counts as "failed")."""
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines()
               if line.startswith("certgate_handshakes_total{")
               and f'listener="{listener}"' in line
               and any(f'result="{r}"' in line for r in ("ok", "unknown_sni", "no_sni")))


async def test_sigterm_finishes_in_flight_request_and_exits_0(
        tmp_path: Path, tenant: str, slow_upstream: int) -> None:
    port, admin = _free_port(), _free_port()
    _write_config(tmp_path, [{"name": "web", "kind": "https", "bind": f"127.0.0.1:{port}",
                              "upstream": f"http://127.0.0.1:{slow_upstream}"}], admin)
    _run(tmp_path, "chain", "generate", tenant, "--purpose", "tls", "--domain", "a.test")
    proc = await _start(tmp_path)
    await asyncio.to_thread(_wait_port, port)
    in_flight = asyncio.create_task(_get(port, "/?delay=1.5"))
    await asyncio.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    response = await in_flight
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"done")
    assert await asyncio.wait_for(proc.wait(), 15) == 0
    with socket.socket() as s:  # and it no longer accepts
        assert s.connect_ex(("127.0.0.1", port)) != 0


async def test_sighup_reloads_listeners_and_admin_serves_metrics(
        tmp_path: Path, tenant: str, slow_upstream: int) -> None:
    port, port2, admin = _free_port(), _free_port(), _free_port()
    web_listener = {"name": "web", "kind": "https", "bind": f"127.0.0.1:{port}",
                    "upstream": f"http://127.0.0.1:{slow_upstream}"}
    _write_config(tmp_path, [web_listener], admin)
    _run(tmp_path, "chain", "generate", tenant, "--purpose", "tls", "--domain", "a.test")
    proc = await _start(tmp_path)
    try:
        await asyncio.to_thread(_wait_port, port)
        _write_config(tmp_path, [web_listener, {**web_listener, "name": "web2",
                                                "bind": f"127.0.0.1:{port2}"}], admin)
        proc.send_signal(signal.SIGHUP)
        await asyncio.to_thread(_wait_port, port2)
        assert (await _get(port2, "/")).endswith(b"done")
        metrics = await _scrape(tmp_path, admin)
        assert 'certgate_requests_total{listener="web2",status="200"} 1.0' in metrics
        assert "certgate_handshakes_total" in metrics
        # a broken config on SIGHUP keeps the running one
        (tmp_path / "certgate.yaml").write_text("data_dir: [broken\n")
        proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert (await _get(port2, "/")).endswith(b"done")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    assert proc.stderr is not None
    assert b"configuration not reloaded" in await proc.stderr.read()


async def test_workers_share_the_port_and_all_follow_the_store(
        tmp_path: Path, tenant: str, slow_upstream: int) -> None:
    port, admin = _free_port(), _free_port()
    _write_config(tmp_path, [{"name": "web", "kind": "https", "bind": f"127.0.0.1:{port}",
                              "upstream": f"http://127.0.0.1:{slow_upstream}"}], admin)
    proc = await _start(tmp_path, "--workers", "2")
    try:
        await asyncio.to_thread(_wait_port, port)
        await asyncio.sleep(1.0)  # both workers up
        chain = json.loads(_run(tmp_path, "chain", "generate", tenant, "--purpose", "tls",
                                "--domain", "a.test", "--json"))
        want = chain["fingerprint_sha256"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        made = 1
        while fingerprint(await handshake(port, "a.test")) != want:
            assert loop.time() < deadline
            made += 1
        # every new connection (spread over both workers by the kernel) gets the new chain
        got = {fingerprint(await handshake(port, "a.test")) for _ in range(30)}
        assert got == {want}
        made += 30
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) == 2
        environ = Path(f"/proc/{children[0]}/environ").read_bytes().split(b"\0")
        [share_dir] = [Path(os.fsdecode(v.split(b"=", 1)[1])) for v in environ
                       if v.startswith(b"CERTGATE_WORKER_DIR=")]
        # Each worker counted its own share of the handshakes; any worker's scrape (the
        # kernel spreads the scrapes too) reports all of them once both have published.
        await asyncio.sleep(PUBLISH_S * 1.5)
        for _ in range(6):
            assert _handshakes_completed(await _scrape(tmp_path, admin), "web") == made
        assert sorted(p.name for p in share_dir.iterdir()) == sorted(f"{c}.json"
                                                                     for c in children)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert not share_dir.exists()  # the parent removed it


async def test_bad_config_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "certgate.yaml").write_text(
        "data_dir: ./var\nlisteners: [{name: w, kind: https, bind: '127.0.0.1:1'}]\n")
    out = subprocess.run([*CLI, "-c", str(tmp_path / "certgate.yaml"), "serve"],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "CERTGATE_LOG_LEVEL": "ERROR"})
    assert out.returncode != 0 and "listeners.0" in out.stderr
