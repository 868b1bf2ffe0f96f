"""Running certgate nodes for the fleet tests: config files, the CLI, ``certgate serve``
processes, and an admin API client that trusts the store's built-in CA."""

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.gateway.harness import fingerprint, handshake

CLI = [sys.executable, "-m", "gateway.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None,
              timeout_s: float = 60) -> None:
    """Wait until something accepts on ``port`` (the node's listener is up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the node exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@dataclass
class Node:
    """One gateway node: its directory, config, ports and process."""

    root: Path
    name: str
    database: str
    env: dict[str, str]
    password_file: Path | None = None
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.root / "certgate.yaml"

    def write_config(self) -> Node:
        self.root.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "data_dir": "./var", "master_key_file": "../master.key",
            "database": self.database, "node_name": self.name,
            "ca": {"key_type": "ecdsa-p256"}, "graceful_timeout_s": 5, "access_log": False,
            "listeners": [{"name": "web", "kind": "https", "bind": f"127.0.0.1:{self.port}",
                           "upstream": "http://127.0.0.1:9"}],
            "admin": {"bind": f"127.0.0.1:{self.admin_port}"}}
        if self.password_file is not None:
            data["password_file"] = str(self.password_file)
        self.config.write_text(yaml.safe_dump(data))
        return self

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([*CLI, "-c", str(self.config), *args], capture_output=True,
                             text=True, timeout=120, env=self.env)
        if check:
            assert out.returncode == 0, out.stderr
        return out

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def start(self) -> Node:
        with open(self.root / "serve.log", "ab") as log:  # the child keeps its own fd
            self.proc = subprocess.Popen([*CLI, "-c", str(self.config), "serve"],
                                         stdout=subprocess.DEVNULL, stderr=log, env=self.env)
        wait_port(self.port, self.proc)
        wait_port(self.admin_port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """``kill -9``: no clean shutdown, its row stays until its heartbeat ages."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        path = self.root / "serve.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    async def served(self, name: str = "a.test") -> str:
        """The fingerprint of the leaf this node serves for ``name`` (a real handshake)."""
        return fingerprint(await handshake(self.port, name))


class Admin:
    """An admin API client for one node (HTTPS, verified against the built-in CA)."""

    def __init__(self, node: Node, ca_pem: str, key: str) -> None:
        self.base = f"https://127.0.0.1:{node.admin_port}"
        ctx = ssl.create_default_context(cadata=ca_pem)
        ctx.check_hostname = False  # the admin chain names localhost and its bind IP
        self._ctx = ctx
        self._headers = {"Authorization": f"Bearer {key}"}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Admin:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ctx),
            timeout=aiohttp.ClientTimeout(total=60))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        await self._session.close()

    async def call(self, method: str, path: str, *, json_body: Any = None,
                   data: Any = None, headers: dict[str, str] | None = None
                   ) -> tuple[int, Mapping[str, str], Any]:
        assert self._session is not None
        sent = {**self._headers, **(headers or {})}
        async with self._session.request(method, self.base + path, json=json_body,
                                         data=data, headers=sent) as r:
            text = await r.text()
            body = json.loads(text) if text and "json" in r.content_type else text
            return r.status, r.headers.copy(), body  # case-insensitive names


async def gather_served(nodes: list[Node], name: str = "a.test") -> list[str]:
    return list(await asyncio.gather(*(n.served(name) for n in nodes)))
