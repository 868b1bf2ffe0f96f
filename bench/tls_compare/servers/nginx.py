"""nginx (Debian package) as a compared server: one ``server`` block per tenant.

One worker process (the server gets one core), access log off, upstream keep-alive pool,
request bodies streamed to the upstream (``proxy_request_buffering off``). A chain change
rewrites the tenant's certificate and key files and runs ``nginx -s reload``, which parses
the whole configuration (every certificate) in the CLI process before it signals the master,
which parses it again and starts new workers; old workers finish their requests and close
idle keep-alive connections.
"""

from __future__ import annotations

import shutil
import signal
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
    link_or_copy,
    replace_file,
    stop_process,
    tail,
)

MAIN_CONF = """\
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 19000;
user root;
pid {work}/nginx.pid;
error_log {work}/error.log warn;

events {{
    worker_connections 9000;
}}

http {{
    access_log off;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    server_names_hash_max_size 131072;
    server_names_hash_bucket_size 128;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_max_body_size 0;
    ssl_protocols TLSv1.2 TLSv1.3;

    upstream bench_upstream {{
        server {upstream};
        keepalive 128;
        keepalive_requests 10000000;
    }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_request_buffering off;

    include {work}/tenants.conf;
}}
"""

SERVER_BLOCK = """\
server {{
    listen 127.0.0.1:{port} ssl{default};
    server_name {name};
    ssl_certificate {chain};
    ssl_certificate_key {key};
    location / {{ proxy_pass http://bench_upstream; }}
}}
"""


class NginxServer(Server):
    """nginx with one server block (its own SSL_CTX) per tenant."""

    name = "nginx"
    binary = "nginx"

    def __init__(self, workdir: Path, cpus: str | None) -> None:
        """See :class:`Server`."""
        super().__init__(workdir, cpus)
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "nginx.conf"
        self.cert_dir = workdir / "certs"

    @classmethod
    def available(cls) -> str | None:
        """See :class:`Server`."""
        return None if shutil.which(cls.binary) else "nginx not found: apt-get install nginx-light"

    def version(self) -> str:
        """See :class:`Server`."""
        out = subprocess.run([self.binary, "-V"], capture_output=True, text=True, check=False)
        lines = [ln for ln in out.stderr.splitlines() if "version" in ln or "OpenSSL" in ln]
        return "; ".join(lines[:2])

    def _write_config(self, tenants: TenantSet, port: int, upstream: Upstream) -> None:
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        if self.cert_dir.exists():
            shutil.rmtree(self.cert_dir)
        self.cert_dir.mkdir()
        blocks = []
        for index, tenant in enumerate(tenants.tenants):
            chain, key = self._paths(tenant)
            link_or_copy(tenant.chain_path, chain)
            link_or_copy(tenant.key_path, key)
            blocks.append(
                SERVER_BLOCK.format(
                    port=port,
                    default=" default_server" if index == 0 else "",
                    name=tenant.name,
                    chain=chain,
                    key=key,
                )
            )
        (self.workdir / "tenants.conf").write_text("".join(blocks))
        self.conf.write_text(MAIN_CONF.format(work=self.workdir, upstream=upstream.addr))

    def _paths(self, tenant: Tenant) -> tuple[Path, Path]:
        return self.cert_dir / f"{tenant.name}.crt", self.cert_dir / f"{tenant.name}.key"

    def _cmd(self, *extra: str) -> list[str]:
        return [
            self.binary,
            "-p",
            str(self.workdir),
            "-e",
            str(self.workdir / "error.log"),
            "-c",
            str(self.conf),
            *extra,
        ]

    def prepare(self, tenants: TenantSet, port: int, upstream: Upstream) -> None:
        """See :class:`Server`: links the tenants' files, writes one server block each."""
        self.stop()
        self._write_config(tenants, port, upstream)

    def start(self, tenants: TenantSet, port: int, upstream: Upstream) -> None:
        """See :class:`Server`."""
        self.proc = launch(pinned(self._cmd(), self.cpus), self.workdir / "stdout.log")

    def stop(self) -> None:
        """See :class:`Server`: SIGTERM (fast shutdown) to the master."""
        stop_process(self.proc, signal.SIGTERM)
        self.proc = None

    def log_tail(self, lines: int = 5) -> str:
        """See :class:`Server`."""
        return tail(self.workdir / "error.log", lines)

    def pids(self) -> list[int]:
        """See :class:`Server`: the master (workers are its children)."""
        if self.proc is None or self.proc.poll() is not None:
            raise ServerError(f"nginx is not running; see {self.workdir / 'error.log'}")
        return [self.proc.pid]

    def apply_chain_change(self, tenant: Tenant, chain_pem: bytes, key_pem: bytes) -> ChainChange:
        """Rewrite the tenant's files, then ``nginx -s reload`` (pinned to the server's CPU)."""
        chain, key = self._paths(tenant)
        started = time.perf_counter()
        replace_file(key, key_pem)
        replace_file(chain, chain_pem, 0o644)
        proc = subprocess.run(
            pinned(self._cmd("-s", "reload"), self.cpus),
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if proc.returncode != 0:
            raise ServerError(f"nginx -s reload failed: {proc.stderr.strip()}")
        return ChainChange(
            method="rewrite files + `nginx -s reload`",
            durable=True,
            command_s=time.perf_counter() - started,
        )
