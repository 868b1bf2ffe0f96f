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


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[str]:
    _write_config(tmp_path, [], _free_port())
    _run(tmp_path, "init")
    acc = json.loads(_run(tmp_path, "account", "create", "--name", "A", "--kind", "customer",
                          "--domain", "a.test", "--json"))
    yield acc["id"]


@pytest.fixture
async def slow_upstream() -> AsyncIterator[int]:
    """An upstream that answers after ``?delay=`` seconds; ``/?wait=1`` answers once the
    test sets :data:`RELEASE`, and every request sets :data:`ARRIVED_EVENTS` first."""

    async def slow(request: web.Request) -> web.Response:
        for event in ARRIVED_EVENTS:
            event.set()
        if request.query.get("wait"):
            await asyncio.wait_for(RELEASE[0].wait(), 60)
        await asyncio.sleep(float(request.query.get("delay", "0")))
        return web.Response(text="done")

    ARRIVED_EVENTS.clear()
    RELEASE[:] = [asyncio.Event()]
    async with upstream_server(slow) as port:
        yield port


ARRIVED_EVENTS: list[asyncio.Event] = []
RELEASE: list[asyncio.Event] = []


class Served:
    """A ``certgate serve`` process whose log (stderr) is read as it comes: tests wait for
    a log line instead of sleeping a guessed time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._terminated = False
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            async with self._changed:
                self.lines.append(line.decode(errors="replace"))
                self._changed.notify_all()
        async with self._changed:
            self.lines.append("")  # EOF marker
            self._changed.notify_all()

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def wait_log(self, text: str, times: int = 1, timeout_s: float = 60) -> None:
        """Wait until ``text`` has been logged ``times`` times (fails at EOF or timeout)."""

        async def seen() -> None:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: self.count(text) >= times or (self.lines and self.lines[-1] == ""))
            assert self.count(text) >= times, f"{text!r} not logged; log:\n{self.log}"

        await asyncio.wait_for(seen(), timeout_s)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def terminate(self) -> None:
        """SIGTERM, once (a second one, after the handlers are gone, would kill it)."""
        if not self._terminated and self.proc.returncode is None:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    async def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM (once), then the exit status once the log is read to its end."""
        self.terminate()
        code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        await asyncio.wait_for(self._reader, timeout_s)
        return code


async def _start(tmp: Path, *extra: str) -> Served:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "-c", str(tmp / "certgate.yaml"), "serve", *extra,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    served = Served(proc)
    await served.wait_log("certgate started", times=1)
    return served


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
    served = await _start(tmp_path)
    # where each listener and the admin API listen, one line each
    await served.wait_log(f"listener web (https) on https://127.0.0.1:{port} -> "
                          f"http://127.0.0.1:{slow_upstream}")
    await served.wait_log(f"admin API on https://127.0.0.1:{admin}/api/v1/")
    arrived = asyncio.Event()
    ARRIVED_EVENTS.append(arrived)
    in_flight = asyncio.create_task(_get(port, "/?wait=1"))
    await asyncio.wait_for(arrived.wait(), 60)  # the request is at the upstream
    served.terminate()
    await served.wait_log("certgate stopping: 1 connection(s) open")
    RELEASE[0].set()  # the upstream answers only now, after SIGTERM
    response = await asyncio.wait_for(in_flight, 60)
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"done")
    assert await served.stop() == 0
    assert served.count("certgate stopped in") == 1
    with socket.socket() as s:  # and it no longer accepts
        assert s.connect_ex(("127.0.0.1", port)) != 0


async def test_sighup_reloads_listeners_and_admin_serves_metrics(
        tmp_path: Path, tenant: str, slow_upstream: int) -> None:
    port, port2, admin = _free_port(), _free_port(), _free_port()
    web_listener = {"name": "web", "kind": "https", "bind": f"127.0.0.1:{port}",
                    "upstream": f"http://127.0.0.1:{slow_upstream}"}
    _write_config(tmp_path, [web_listener], admin)
    _run(tmp_path, "chain", "generate", tenant, "--purpose", "tls", "--domain", "a.test")
    served = await _start(tmp_path)
    try:
        _write_config(tmp_path, [web_listener, {**web_listener, "name": "web2",
                                                "bind": f"127.0.0.1:{port2}"}], admin)
        served.proc.send_signal(signal.SIGHUP)
        await served.wait_log("configuration reloaded: web, web2")
        assert (await _get(port2, "/")).endswith(b"done")
        metrics = await _scrape(tmp_path, admin)
        assert 'certgate_requests_total{listener="web2",status="200"} 1.0' in metrics
        assert "certgate_handshakes_total" in metrics
        # a broken config on SIGHUP keeps the running one
        (tmp_path / "certgate.yaml").write_text("data_dir: [broken\n")
        served.proc.send_signal(signal.SIGHUP)
        await served.wait_log("configuration not reloaded")
        assert (await _get(port2, "/")).endswith(b"done")
    finally:
        assert await served.stop() == 0


async def test_workers_share_the_port_and_all_follow_the_store(
        tmp_path: Path, tenant: str, slow_upstream: int) -> None:
    port, admin = _free_port(), _free_port()
    _write_config(tmp_path, [{"name": "web", "kind": "https", "bind": f"127.0.0.1:{port}",
                              "upstream": f"http://127.0.0.1:{slow_upstream}"}], admin)
    served = await _start(tmp_path, "--workers", "2")
    proc = served.proc
    try:
        await served.wait_log("certgate started", times=2)  # both workers up
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
        # kernel spreads the scrapes too) reports all of them once both have published
        # (every PUBLISH_S): wait until six scrapes in a row agree, then none may differ.
        deadline = loop.time() + 60
        agreeing = 0
        while agreeing < 6:
            assert loop.time() < deadline, "the workers' counts never added up"
            if _handshakes_completed(await _scrape(tmp_path, admin), "web") == made:
                agreeing += 1
            else:
                agreeing = 0
                await asyncio.sleep(PUBLISH_S / 4)
        for _ in range(6):
            assert _handshakes_completed(await _scrape(tmp_path, admin), "web") == made
        assert sorted(p.name for p in share_dir.iterdir()) == sorted(f"{c}.json"
                                                                     for c in children)
    finally:
        assert await served.stop() == 0
    assert not share_dir.exists()  # the parent removed it


async def test_bad_config_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "certgate.yaml").write_text(
        "data_dir: ./var\nlisteners: [{name: w, kind: https, bind: '127.0.0.1:1'}]\n")
    out = subprocess.run([*CLI, "-c", str(tmp_path / "certgate.yaml"), "serve"],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "CERTGATE_LOG_LEVEL": "ERROR"})
    assert out.returncode != 0 and "listeners.0" in out.stderr
