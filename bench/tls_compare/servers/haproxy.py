"""HAProxy (Debian package) as a compared server: one ``crt-list`` of combined PEM files.

One process, one thread (``nbthread 1``), no logging, HTTP mode with server-side keep-alive
(``http-reuse always``). Each tenant is a PEM file holding chain and key (what HAProxy wants),
listed in a ``crt-list``; SNI is matched against each certificate's names. A chain change goes
through the runtime API on the admin socket: ``set ssl cert <file> <<`` with the new PEM as
payload, then ``commit ssl cert <file>``. The runtime API alone does not persist anything, so
the adapter also rewrites the PEM file first (timed as part of the change) to survive a reload.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from ..certs import Tenant, TenantSet
from ..loadgen import pinned
from .base import (
    ChainChange,
    Server,
    ServerError,
    Upstream,
    launch,
    replace_file,
    stop_process,
    tail,
)

CONFIG = """\
global
    nbthread 1
    maxconn 9000
    stats socket {work}/admin.sock mode 600 level admin
    stats timeout 2m
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-request 30s
    timeout http-keep-alive 120s

frontend bench
    bind 127.0.0.1:{port} ssl crt-list {work}/crt-list.txt
    default_backend bench_upstream

backend bench_upstream
    http-reuse always
    server up {upstream} maxconn 9000
"""


class HaproxyServer(Server):
    """HAProxy with a crt-list of combined PEMs; runtime API for chain changes."""

    name = "haproxy"
    binary = "haproxy"

    def __init__(self, workdir: Path, cpus: str | None) -> None:
        """See :class:`Server`."""
        super().__init__(workdir, cpus)
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "haproxy.cfg"
        self.cert_dir = workdir / "certs"
        self.socket_path = workdir / "admin.sock"

    @classmethod
    def available(cls) -> str | None:
        """See :class:`Server`."""
        return None if shutil.which(cls.binary) else "haproxy not found: apt-get install haproxy"

    def version(self) -> str:
        """See :class:`Server`."""
        out = subprocess.run([self.binary, "-vv"], capture_output=True, text=True, check=False)
        lines = out.stdout.splitlines()
        ssl = [ln.strip() for ln in lines if ln.startswith("Running on OpenSSL")]
        return "; ".join(lines[:1] + ssl)

    def _pem_path(self, tenant: Tenant) -> Path:
        return self.cert_dir / f"{tenant.name}.pem"

    def prepare(self, tenants: TenantSet, port: int, upstream: Upstream) -> None:
        """See :class:`Server`: one combined PEM per tenant, the crt-list, the config."""
        self.stop()
        if self.cert_dir.exists():
            shutil.rmtree(self.cert_dir)
        self.cert_dir.mkdir()
        lines = []
        for tenant in tenants.tenants:
            pem = self._pem_path(tenant)
            replace_file(pem, tenant.chain_path.read_bytes() + tenant.key_path.read_bytes())
            lines.append(f"{pem}\n")
        (self.workdir / "crt-list.txt").write_text("".join(lines))
        self.conf.write_text(CONFIG.format(work=self.workdir, port=port, upstream=upstream.addr))
        self.socket_path.unlink(missing_ok=True)

    def start(self, tenants: TenantSet, port: int, upstream: Upstream) -> None:
        """See :class:`Server`."""
        cmd = [self.binary, "-db", "-f", str(self.conf)]
        self.proc = launch(pinned(cmd, self.cpus), self.workdir / "haproxy.log")

    def stop(self) -> None:
        """See :class:`Server`: SIGUSR1 would be soft-stop; SIGTERM stops at once."""
        stop_process(self.proc, signal.SIGTERM)
        self.proc = None

    def log_tail(self, lines: int = 5) -> str:
        """See :class:`Server`."""
        return tail(self.workdir / "haproxy.log", lines)

    def pids(self) -> list[int]:
        """See :class:`Server`: one process (threads are counted in its /proc/PID/stat)."""
        if self.proc is None or self.proc.poll() is not None:
            raise ServerError(f"haproxy is not running; see {self.workdir / 'haproxy.log'}")
        return [self.proc.pid]

    def command(self, line: str, timeout: float = 60) -> str:
        """Send one command to the runtime API and return its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode())
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")

    def apply_chain_change(self, tenant: Tenant, chain_pem: bytes, key_pem: bytes) -> ChainChange:
        """Rewrite the PEM file, then ``set ssl cert`` + ``commit ssl cert`` on the API."""
        pem_path = self._pem_path(tenant)
        payload = chain_pem + key_pem
        started = time.perf_counter()
        replace_file(pem_path, payload)
        answer = self.command(f"set ssl cert {pem_path} <<\n{payload.decode().strip()}\n\n")
        if "Transaction" not in answer:
            raise ServerError(f"set ssl cert: {answer.strip()}")
        answer = self.command(f"commit ssl cert {pem_path}\n")
        if "Success" not in answer:
            raise ServerError(f"commit ssl cert: {answer.strip()}")
        return ChainChange(
            method="runtime API `set ssl cert` + `commit ssl cert` (PEM file rewritten too)",
            durable=True,
            command_s=time.perf_counter() - started,
        )
