"""The issue's reproduction against stock nginx as the upstream: an Upgrade request whose
body is a request with a spoofed account header. nginx's access log must show exactly the
requests the client sent, the body never as a request of its own."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.gateway.proxy.conftest import StartProxy, eventually, settings_for
from tests.gateway.proxy.http_client import Client, build_request

SMUGGLED = (
    b"GET /smuggled HTTP/1.1\r\nHost: other.example\r\nX-Certgate-Account: spoofed\r\n\r\n"
)

CONFIG = """
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format req '$request|$http_x_certgate_account|$request_length';
    access_log {dir}/access.log req;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    underscores_in_headers on;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "nginx $request_uri\\n"; }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = _free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(CONFIG.format(dir=tmp_path, port=port))
    process = subprocess.Popen([binary, "-c", str(conf), "-p", str(tmp_path)])
    try:
        yield port, tmp_path / "access.log"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _wait_for_port(port: int) -> None:
    async with asyncio.timeout(10):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            writer.close()
            return


@pytest.fixture
async def nginx_port(nginx: tuple[int, Path]) -> AsyncIterator[tuple[int, Path]]:
    await _wait_for_port(nginx[0])
    nginx[1].write_text("")  # forget the readiness probe
    yield nginx


async def test_upgrade_body_never_reaches_nginx_as_a_request(
    nginx_port: tuple[int, Path], start_proxy: StartProxy
) -> None:
    port, access_log = nginx_port
    proxy = await start_proxy(settings_for(port))
    attacker, victim = await Client.open(proxy.port), await Client.open(proxy.port)
    attack = build_request(
        "POST",
        "/attack",
        headers=[("Connection", "Upgrade"), ("Upgrade", "websocket"),
                 ("X_Certgate_Account", "spoofed-too")],
        body=SMUGGLED,
    )
    await attacker.send(attack)
    answer = await attacker.read_response("POST")
    victim_answer = await victim.request("GET", "/victim")
    await attacker.close()
    await victim.close()
    assert answer.status == 200 and answer.body == b"nginx /attack\n"
    assert victim_answer.body == b"nginx /victim\n"

    def lines() -> list[str]:
        return access_log.read_text().splitlines()

    await eventually(lambda: len(lines()) >= 2)
    requests = [line.split("|") for line in lines()]
    assert [r[0] for r in requests] == ["POST /attack HTTP/1.1", "GET /victim HTTP/1.1"]
    assert all(r[1] == "acct-1" for r in requests)  # never the spoofed value
    assert int(requests[0][2]) > len(SMUGGLED)  # head and body arrived as one request
