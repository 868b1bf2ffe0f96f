"""1 GB upload through certgate's https listener with curl: gateway RSS and throughput.

Run: .venv/bin/python bench/upload_rss.py [--gib 1]
The target (issue 3): RSS stays within 50 MB of the idle size while curl streams 1 GB
(chunked, from a pipe) through the proxy to an upstream that reads and discards it.
RSS is sampled every 20 ms from /proc/PID/status (VmRSS) of the gateway process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

UPSTREAM = r"""
import asyncio, sys
from aiohttp import web
async def sink(request):
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
    return web.Response(text=f"ok {total}")
app = web.Application(client_max_size=0)
app.router.add_route("*", "/{tail:.*}", sink)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cli(config: Path, *args: str) -> str:
    out = subprocess.run([PY, "-m", "gateway.cli", "-c", str(config), *args],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=1.0, help="upload size in GiB")
    args = parser.parse_args()
    size = int(args.gib * (1 << 30))
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed (apt-get install curl)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port, up_port, admin = free_port(), free_port(), free_port()
        config = tmp / "certgate.yaml"
        config.write_text(json.dumps({
            "data_dir": str(tmp / "var"), "ca": {"key_type": "ecdsa-p256"},
            "listeners": [{"name": "web", "kind": "https", "bind": f"127.0.0.1:{port}",
                           "upstream": f"http://127.0.0.1:{up_port}",
                           "upstream_response_timeout_s": 600}],
            "admin": {"bind": f"127.0.0.1:{admin}"}}))
        cli(config, "init")
        acc = json.loads(cli(config, "account", "create", "--name", "B", "--kind", "customer",
                             "--domain", "upload.bench", "--json"))
        cli(config, "chain", "generate", acc["id"], "--purpose", "tls", "--domain",
            "upload.bench")
        upstream = subprocess.Popen([PY, "-c", UPSTREAM, str(up_port)])
        gateway = subprocess.Popen([PY, "-m", "gateway.cli", "-c", str(config), "serve"],
                                   cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            wait_port(up_port)
            time.sleep(1.0)
            idle = rss_mb(gateway.pid)
            samples: list[float] = []
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    samples.append(rss_mb(gateway.pid))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            start = time.monotonic()
            feeder = subprocess.Popen(["head", "-c", str(size), "/dev/zero"],
                                      stdout=subprocess.PIPE)
            curl = subprocess.run(
                ["curl", "-sS", "-k", "-T", "-", "--resolve", f"upload.bench:{port}:127.0.0.1",
                 f"https://upload.bench:{port}/upload"],
                stdin=feeder.stdout, capture_output=True, text=True, check=True)
            elapsed = time.monotonic() - start
            done.set()
            sampler.join()
            assert feeder.stdout is not None
            feeder.stdout.close()
            feeder.wait()
            peak = max(samples)
            print(f"upload {size / (1 << 20):.0f} MiB chunked via curl: upstream said "
                  f"{curl.stdout.strip()!r}")
            print(f"throughput {size / (1 << 20) / elapsed:8.1f} MiB/s over {elapsed:.1f} s "
                  f"(curl, gateway and upstream share 2 cores)")
            print(f"gateway RSS idle {idle:6.1f} MB, peak {peak:6.1f} MB, "
                  f"growth {peak - idle:5.1f} MB (target < 50 MB), {len(samples)} samples")
            expected = f"ok {size}"
            if curl.stdout.strip() != expected:
                raise SystemExit(f"upstream received {curl.stdout!r}, expected {expected!r}")
        finally:
            gateway.terminate()
            upstream.terminate()
            gateway.wait(30)
            upstream.wait(30)


if __name__ == "__main__":
    os.environ.setdefault("CERTGATE_LOG_LEVEL", "WARNING")
    main()
