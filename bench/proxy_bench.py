"""Benchmark of the proxy data path alone: kept-alive GETs and an upload, per proxy CPU-second.

    .venv/bin/python bench/proxy_bench.py [--seconds 5] [--connections 50] [--upload-mb 200]

Three processes: a minimal upstream, the proxy (gateway.proxy on uvloop or the stdlib loop,
plain TCP or TLS with a throw-away self-signed ECDSA certificate) and a load generator.
Rates are reported per wall second and per CPU-second of the proxy process (utime+stime
from /proc), the figure the gateway's targets are set in. The load generator is Python and
shares the machine: on 2 cores it, not the proxy, limits the wall-clock rate. The side-by-
side comparison with nginx and haproxy belongs to the gateway-level benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import multiprocessing as mp
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nhello, world!"
REQUEST = b"GET /bench HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
UPSTREAM_PORT, PROXY_PORT = 19101, 19102


class _Upstream(asyncio.Protocol):
    """Answers GETs with a fixed response; swallows upload bodies and answers at the end."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""
        self.remaining = 0

    def data_received(self, data: bytes) -> None:
        if self.remaining:
            taken = min(self.remaining, len(data))
            self.remaining -= taken
            data = data[taken:]
            if not self.remaining:
                self.transport.write(RESPONSE)
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            length = _content_length(head)
            if length:
                self.remaining = length - len(self.buffer)
                self.buffer = b""
                if self.remaining <= 0:
                    self.remaining = 0
                    self.transport.write(RESPONSE)
                return
            self.transport.write(RESPONSE)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _run_upstream() -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(_Upstream, "127.0.0.1", UPSTREAM_PORT)
        await asyncio.Event().wait()

    uvloop.run(main())


def _run_proxy(cert_dir: str | None, use_uvloop: bool) -> None:
    from gateway.proxy import (
        ConnectionContext,
        ProxyProtocol,
        ProxySettings,
        RequestRecord,
        Route,
        Upstream,
        UpstreamPool,
    )

    async def main() -> None:
        upstream = Upstream(host="127.0.0.1", port=UPSTREAM_PORT)
        settings = ProxySettings(routes=(Route(prefix="/", upstream=upstream),))
        pool = UpstreamPool()
        context = ConnectionContext(
            client_host="127.0.0.1", client_port=0, account_id="bench", host_allowed=bool
        )
        records = []

        def on_request(record: RequestRecord) -> None:
            records.append(record.status)
            if len(records) > 10_000:
                records.clear()

        tls = None
        if cert_dir is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(f"{cert_dir}/cert.pem", f"{cert_dir}/key.pem")
        loop = asyncio.get_running_loop()
        await loop.create_server(
            lambda: ProxyProtocol(settings, pool, lambda _: context, on_request),
            "127.0.0.1",
            PROXY_PORT,
            ssl=tls,
        )
        await asyncio.Event().wait()

    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


class _Client(asyncio.Protocol):
    """Sends one GET at a time on a kept-alive connection until the deadline."""

    def __init__(self, counter: list[int], deadline: float) -> None:
        self.counter = counter
        self.deadline = deadline
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= len(RESPONSE):
            self.buffer = self.buffer[len(RESPONSE) :]
            self.counter[0] += 1
            if time.monotonic() < self.deadline:
                self.transport.write(REQUEST)
            else:
                self.transport.close()


def _client_context(tls: bool) -> ssl.SSLContext | None:
    if not tls:
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _run_gets(tls: bool, connections: int, seconds: float, queue: mp.Queue[int]) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        counter = [0]
        deadline = time.monotonic() + seconds
        for _ in range(connections):
            await loop.create_connection(
                lambda: _Client(counter, deadline),
                "127.0.0.1",
                PROXY_PORT,
                ssl=_client_context(tls),
            )
        await asyncio.sleep(seconds + 0.5)
        queue.put(counter[0])

    uvloop.run(main())


def _run_upload(tls: bool, megabytes: int, queue: mp.Queue[int]) -> None:
    import uvloop

    async def main() -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", PROXY_PORT, ssl=_client_context(tls)
        )
        size = megabytes << 20
        writer.write(
            b"PUT /upload HTTP/1.1\r\nHost: bench.example\r\nContent-Length: %d\r\n\r\n" % size
        )
        block = os.urandom(1 << 20)
        for _ in range(megabytes):
            writer.write(block)
            await writer.drain()
        await reader.readexactly(len(RESPONSE))
        writer.close()
        queue.put(size)

    uvloop.run(main())


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(proxy_pid: int, target: object, args: tuple[object, ...]) -> tuple[int, float, float]:
    queue: mp.Queue[int] = mp.Queue()
    cpu0, wall0 = _cpu_seconds(proxy_pid), time.monotonic()
    client = mp.Process(target=target, args=(*args, queue))  # type: ignore[arg-type]
    client.start()
    amount = queue.get()
    client.join()
    return amount, time.monotonic() - wall0, _cpu_seconds(proxy_pid) - cpu0


def _write_certificate(directory: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    Path(directory, "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(directory, "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _scenario(args: argparse.Namespace, cert_dir: str, tls: bool, use_uvloop: bool) -> str:
    proxy = mp.Process(target=_run_proxy, args=(cert_dir if tls else None, use_uvloop))
    proxy.start()
    time.sleep(1.0)
    try:
        assert proxy.pid is not None
        gets, _wall, cpu = _measure(proxy.pid, _run_gets, (tls, args.connections, args.seconds))
        size, up_wall, up_cpu = _measure(proxy.pid, _run_upload, (tls, args.upload_mb))
    finally:
        proxy.terminate()
        proxy.join()
    mb = size / (1 << 20)
    return (
        f"{'tls' if tls else 'tcp':>4} {'uvloop' if use_uvloop else 'asyncio':>8} "
        f"{gets / args.seconds:>10.0f} {gets / cpu:>12.0f} "
        f"{mb / up_wall:>10.0f} {mb / up_cpu:>12.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--upload-mb", type=int, default=200)
    args = parser.parse_args()
    upstream = mp.Process(target=_run_upstream, daemon=True)
    upstream.start()
    print(f"{'':>4} {'loop':>8} {'GET/s':>10} {'GET/cpu-s':>12} {'MB/s up':>10} {'MB/cpu-s':>12}")
    with tempfile.TemporaryDirectory() as cert_dir:
        _write_certificate(cert_dir)
        for tls in (False, True):
            for use_uvloop in (True, False):
                print(_scenario(args, cert_dir, tls, use_uvloop), flush=True)
    upstream.terminate()


if __name__ == "__main__":
    main()
