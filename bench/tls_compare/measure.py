"""One measurement each: start-up, handshakes, kept-alive GETs, upload, chain change.

Every function drives the Go load generator (pinned to its own CPU) against a running
:class:`~tls_compare.servers.Server` and meters the server's process tree from /proc around
the load generator's run, so "per CPU-second" figures divide by the server's own CPU time only.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from .certs import Tenant, TenantSet
from .loadgen import Loadgen, LoadgenError, read_event
from .proctree import BusyMeter, CpuMeter
from .servers import Server, ServerError, Upstream


class MeasureError(RuntimeError):
    """A measurement could not be made (server down, wrong chain, load errors)."""


@dataclass(frozen=True)
class Rig:
    """What every measurement needs: the load generator, ports and settings."""

    loadgen: Loadgen
    port: int
    upstream_pid: int
    duration: float
    handshake_workers: int
    warmup: bool
    get_connections: int
    upload_mb: int
    startup_timeout: float


_PROBE_CONTEXT = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_PROBE_CONTEXT.check_hostname = False
_PROBE_CONTEXT.verify_mode = ssl.CERT_NONE


def probe_leaf(port: int, name: str, timeout: float = 5) -> bytes | None:
    """The DER leaf served for SNI ``name``, or None if no handshake completes."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            with _PROBE_CONTEXT.wrap_socket(sock, server_hostname=name) as tls:
                return tls.getpeercert(binary_form=True)
    except OSError:
        return None


def probe_fingerprint(port: int, name: str, timeout: float = 5) -> str | None:
    """SHA-256 of the leaf served for SNI ``name``, or None if no handshake completes."""
    der = probe_leaf(port, name, timeout)
    return hashlib.sha256(der).hexdigest() if der else None


def _listener(port: int) -> str:
    """Who listens on 127.0.0.1:``port`` (``ss -ltnp``), or "" if nobody does."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        if sock.connect_ex(("127.0.0.1", port)) != 0:
            return ""
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown process"


def _describe(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return f"{cert.subject.rfc4514_string()} issued by {cert.issuer.rfc4514_string()}"


def start_and_wait(server: Server, tenants: TenantSet, rig: Rig, upstream: Upstream) -> float:
    """Start ``server`` and return seconds until the last tenant's own leaf is served.

    A wrong leaf (not the last tenant's) is logged and probing goes on; if the right one
    never comes, the error names what was served.
    """
    last = tenants.tenants[-1]
    listener = _listener(rig.port)
    if listener:
        raise MeasureError(
            f"port {rig.port} is still in use before {server.name} starts: {listener}"
        )
    server.prepare(tenants, rig.port, upstream)
    started = time.perf_counter()
    server.start(tenants, rig.port, upstream)
    deadline = started + rig.startup_timeout
    wrong: str | None = None
    while time.perf_counter() < deadline:
        server.pids()  # raises ServerError if the server died
        # A short timeout: a SYN lost while the server binds would otherwise cost a 1 s RTO.
        der = probe_leaf(rig.port, last.name, timeout=0.5)
        if der is not None:
            if hashlib.sha256(der).hexdigest() == last.fingerprint:
                return time.perf_counter() - started
            if wrong is None:
                wrong = _describe(der)
                print(f"WARNING {server.name}: {last.name} got {wrong}", file=sys.stderr)
                deadline = min(deadline, time.perf_counter() + 30)
        time.sleep(0.02)
    served = f"; it served {wrong}" if wrong else ""
    raise MeasureError(
        f"{server.name}: {last.name} not served after "
        f"{time.perf_counter() - started:.0f} s{served}; log: {server.log_tail()}"
    )


def verify_chain(rig: Rig, tenants: TenantSet, tenant: Tenant) -> dict[str, Any]:
    """One handshake that verifies the chain to the root and the name (sanity check)."""
    result = rig.loadgen.run(
        "verify", "-name", tenant.name, "-ca", str(tenants.root_ca_path), "-d", "30", timeout=60
    )
    if not result.get("ok") or result.get("fp") != tenant.fingerprint:
        raise MeasureError(f"verification of {tenant.name} failed: {result}")
    return result


def _metered(server: Server, rig: Rig, mode: str, *args: str, timeout: float) -> dict[str, Any]:
    """Run a load generator mode while metering the server's and the upstream's CPU."""
    meter = CpuMeter(server.pids())
    upstream_meter = CpuMeter([rig.upstream_pid])
    busy = BusyMeter()
    busy.start()
    meter.start()
    upstream_meter.start()
    result = rig.loadgen.run(mode, *args, timeout=timeout)
    result["server_cpu_s"] = meter.stop()
    result["upstream_cpu_s"] = upstream_meter.stop()
    result["busy_s_per_cpu"] = busy.stop()
    # CPU time spent by everything else: other processes, and softirq work (loopback TCP)
    # that the kernel charges to no process. High values mean a contended machine.
    result["other_cpu_s"] = round(
        sum(result["busy_s_per_cpu"].values())
        - result["server_cpu_s"]
        - result["upstream_cpu_s"]
        - float(result.get("client_cpu_s") or 0),
        3,
    )
    wall = float(result.get("duration_s") or 0)
    if wall > 0:
        result["server_cpu_util"] = result["server_cpu_s"] / wall
    return result


def _per_cpu(ops: float, cpu_s: float) -> float | None:
    return ops / cpu_s if cpu_s > 0 else None


def _check_errors(result: dict[str, Any], what: str) -> None:
    ops, errors = int(result.get("ops", 0)), int(result.get("errors", 0))
    if ops == 0:
        raise MeasureError(f"{what}: no operation succeeded: {result.get('first_error')}")
    if errors > max(10, ops // 100):
        raise MeasureError(f"{what}: {errors} errors for {ops} ops: {result.get('first_error')}")


def warm_up(rig: Rig, names_file: Path, count: int) -> dict[str, Any]:
    """One untimed handshake per name, so per-tenant lazy state is built before measuring."""
    return rig.loadgen.run(
        "handshake",
        "-names",
        str(names_file),
        "-c",
        str(rig.handshake_workers),
        "-n",
        str(count),
        "-d",
        "900",
        timeout=960,
    )


def handshakes(server: Server, rig: Rig, names_file: Path) -> dict[str, Any]:
    """Full handshakes for ``rig.duration`` s with SNI spread over ``names_file``."""
    result = _metered(
        server,
        rig,
        "handshake",
        "-names",
        str(names_file),
        "-c",
        str(rig.handshake_workers),
        "-d",
        str(rig.duration),
        timeout=rig.duration + 60,
    )
    _check_errors(result, f"{server.name} handshakes")
    result["per_wall_s"] = result["ops"] / result["duration_s"]
    result["per_cpu_s"] = _per_cpu(result["ops"], result["server_cpu_s"])
    return result


def kept_alive_gets(server: Server, rig: Rig, names_file: Path) -> dict[str, Any]:
    """Kept-alive proxied GETs over ``rig.get_connections`` TLS connections."""
    result = _metered(
        server,
        rig,
        "get",
        "-names",
        str(names_file),
        "-c",
        str(rig.get_connections),
        "-d",
        str(rig.duration),
        timeout=rig.duration + 60,
    )
    _check_errors(result, f"{server.name} GETs")
    result["per_wall_s"] = result["ops"] / result["duration_s"]
    result["per_cpu_s"] = _per_cpu(result["ops"], result["server_cpu_s"])
    return result


def upload(server: Server, rig: Rig, tenant: Tenant) -> dict[str, Any]:
    """One streaming upload of ``rig.upload_mb`` MB through the proxy."""
    limit = max(120.0, rig.upload_mb / 5)
    result = _metered(
        server,
        rig,
        "upload",
        "-name",
        tenant.name,
        "-size-mb",
        str(rig.upload_mb),
        "-d",
        str(limit),
        timeout=limit + 60,
    )
    if not result.get("complete"):
        raise MeasureError(f"{server.name} upload incomplete: {result}")
    return result


def chain_change(
    server: Server, rig: Rig, tenants: TenantSet, tenant: Tenant, limit_s: float = 600
) -> dict[str, Any]:
    """Time from the start of a chain change to the first handshake serving the new leaf."""
    chain_pem, key_pem, new_fp = tenants.new_chain(tenant)
    poller = rig.loadgen.spawn(
        "newcert",
        "-name",
        tenant.name,
        "-expect-fp",
        new_fp,
        "-interval-ms",
        "1",
        "-d",
        str(limit_s),
    )
    try:
        first = read_event(poller)
        if first.get("event") != "polling":
            raise MeasureError(f"poller: {first}")
        if first.get("fp") == new_fp:
            raise MeasureError("the new leaf was served before the change")
        server.prepare_chain_change(tenant, chain_pem, key_pem)
        started_ns = time.time_ns()
        change = server.apply_chain_change(tenant, chain_pem, key_pem)
        seen = read_event(poller)
        poller.wait(timeout=30)
    except (LoadgenError, ServerError):
        poller.kill()
        poller.wait()
        raise
    if seen.get("event") != "match":
        raise MeasureError(f"{server.name}: new chain not served within {limit_s:.0f} s: {seen}")
    return {
        "tenant": tenant.name,
        "ms": (int(seen["unix_ns"]) - started_ns) / 1e6,
        "method": change.method,
        "durable": change.durable,
        "command_s": change.command_s,
        "polls": seen.get("polls"),
        "poll_errors": seen.get("errors"),
        "last_poll_error": seen.get("last_error"),
    }


def chain_change_tenants(tenants: TenantSet, repeats: int) -> list[Tenant]:
    """Distinct tenants, spread over the set and avoiding the default one when possible."""
    count = len(tenants.tenants)
    picks: list[Tenant] = []
    for r in range(repeats):
        index = min(count - 1, (count * (r + 1)) // (repeats + 1) + 1) if count > 1 else 0
        picks.append(tenants.tenants[index])
    return picks


def median(values: list[float]) -> float:
    """Median of a non-empty list."""
    return statistics.median(values)
