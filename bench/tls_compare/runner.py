"""The whole comparison run: certificates, upstream, then every server on every configuration."""

from __future__ import annotations

import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import certs, measure
from .loadgen import Loadgen, build, read_event
from .proctree import BusyMeter, cpu_seconds, memory
from .report import Results
from .servers import REGISTRY, Server, Upstream


@dataclass
class RunConfig:
    """Settings of one run (see ``bench/compare.py --help``)."""

    servers: list[str] = field(default_factory=lambda: ["nginx", "haproxy"])
    key_types: list[str] = field(default_factory=lambda: ["ecdsa", "rsa"])
    tenant_counts: list[int] = field(default_factory=lambda: [1, 1000, 10000])
    duration: float = 5.0
    handshake_workers: int = 32
    get_connections: int = 32
    upload_mb: int = 200
    upload_repeats: int = 3
    repeats: int = 1
    chain_repeats: int = 3
    server_cpus: str | None = "1"
    loadgen_cpus: str | None = "0"
    upstream_cpus: str | None = "0"
    port: int = 18443
    upstream_port: int = 18080
    ecdsa_key_pool: int = 0
    rsa_key_pool: int = 16
    cert_dir: Path | None = None
    workdir: Path | None = None
    keep_workdir: bool = False
    startup_timeout: float = 600.0
    max_tls: str = "1.3"
    warmup: bool = True
    results_path: Path = Path("bench/results/compare.json")
    command: str = ""


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _label_tenants(count: int) -> str:
    return f"{count:,} tenant" + ("" if count == 1 else "s")


def _key_label(key_type: str) -> str:
    return "ECDSA P-256" if key_type == "ecdsa" else "RSA-2048"


class Runner:
    """Runs every measurement of a :class:`RunConfig` and collects :class:`Results`."""

    def __init__(self, config: RunConfig) -> None:
        """Prepare a run; nothing is started yet."""
        self.cfg = config
        self.results = Results(meta={}, servers=[])
        self.workdir = Path(".")
        self.rig: measure.Rig | None = None
        self.upstream = Upstream("127.0.0.1", config.upstream_port)

    def run(self) -> Results:
        """Run everything; servers that cannot run here are reported, not fatal."""
        cfg = self.cfg
        for port in (cfg.port, cfg.upstream_port):
            if not _port_free(port):
                raise RuntimeError(f"port {port} is in use")
        self.workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="certgate-compare-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        log(f"work directory {self.workdir}")
        servers = self._servers()
        binary = build(self.workdir)
        upstream_proc = self._start_upstream(binary)
        try:
            self.rig = measure.Rig(
                loadgen=Loadgen(binary, cfg.loadgen_cpus, f"127.0.0.1:{cfg.port}", cfg.max_tls),
                port=cfg.port,
                upstream_pid=upstream_proc.pid,
                duration=cfg.duration,
                handshake_workers=cfg.handshake_workers,
                warmup=cfg.warmup,
                get_connections=cfg.get_connections,
                upload_mb=cfg.upload_mb,
                startup_timeout=cfg.startup_timeout,
            )
            self.results.meta = self._meta(servers)
            self.results.meta["background_busy_cpu_s_per_s"] = _background_load()
            for key_type in cfg.key_types:
                self._key_type(key_type, servers)
        finally:
            upstream_proc.kill()
            upstream_proc.wait()
            for server in servers:
                server.stop()
            if not cfg.keep_workdir and cfg.workdir is None:
                shutil.rmtree(self.workdir, ignore_errors=True)
        self.results.meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        return self.results

    def _servers(self) -> list[Server]:
        servers = []
        for name in self.cfg.servers:
            cls = REGISTRY.get(name)
            if cls is None:
                raise RuntimeError(f"unknown server {name!r}; known: {sorted(REGISTRY)}")
            reason = cls.available()
            if reason:
                log(f"skipping {name}: {reason}")
                self.results.error(name, "setup", reason)
                continue
            servers.append(cls(self.workdir / name, self.cfg.server_cpus))
        self.results.servers = [s.name for s in servers]
        return servers

    def _start_upstream(self, binary: Path) -> subprocess.Popen[str]:
        upstream = Loadgen(binary, self.cfg.upstream_cpus, "127.0.0.1:1")
        proc = upstream.spawn("upstream", "-listen", self.upstream.addr, "-d", "7200")
        event = read_event(proc)
        log(f"upstream {event}")
        return proc

    def _meta(self, servers: list[Server]) -> dict[str, Any]:
        config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.cfg).items()}
        return {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": self.cfg.command,
            "host": platform.node(),
            "kernel": platform.release(),
            "cpu": _cpu_model(),
            "versions": {s.name: s.version() for s in servers},
            "go": subprocess.run(
                ["go", "version"], capture_output=True, text=True, check=False
            ).stdout.strip(),
            "config": config,
            "key_notes": [],
            "upstream": "bench/loadgen -mode upstream (Go, keep-alive HTTP/1.1), pinned with "
            f"the load generator on CPU {self.cfg.upstream_cpus}",
        }

    def _tenant_set(self, key_type: str) -> certs.TenantSet:
        count = max(self.cfg.tenant_counts)
        pool = self.cfg.rsa_key_pool if key_type == "rsa" else self.cfg.ecdsa_key_pool
        base = self.cfg.cert_dir or self.workdir / "certs"
        started = time.perf_counter()
        tenants = certs.generate(base / key_type, key_type, count, pool)
        log(
            f"{count} {key_type} tenants ready in {time.perf_counter() - started:.1f} s "
            f"({tenants.key_note})"
        )
        self.results.meta["key_notes"].append(tenants.key_note)
        return tenants

    def _key_type(self, key_type: str, servers: list[Server]) -> None:
        full = self._tenant_set(key_type)
        largest = max(self.cfg.tenant_counts)
        for count in sorted(self.cfg.tenant_counts):
            tenants = full.subset(count)
            names = tenants.write_names(self.workdir / f"names-{key_type}-{count}.txt")
            for server in servers:
                where = f"{key_type}/{count}"
                try:
                    self._configuration(server, tenants, names, count == largest)
                except Exception as exc:  # one failure must not end the run
                    log(f"{server.name} {where}: FAILED: {exc}")
                    self.results.error(server.name, where, f"{type(exc).__name__}: {exc}")
                finally:
                    server.stop()

    def _configuration(
        self, server: Server, tenants: certs.TenantSet, names: Path, largest: bool
    ) -> None:
        """All measurements of one server on one tenant set."""
        assert self.rig is not None
        rig, res = self.rig, self.results
        key_type, count = tenants.key_type, len(tenants.tenants)
        first_key = key_type == self.cfg.key_types[0]
        tag = f"{server.name} {key_type} {count}"
        kl, tl = _key_label(key_type), _label_tenants(count)

        startup = measure.start_and_wait(server, tenants, rig, self.upstream)
        startup_cpu = cpu_seconds(server.pids())
        idle = memory(server.pids())
        log(
            f"{tag}: ready in {startup:.2f} s ({startup_cpu:.2f} CPU-s), "
            f"RSS {idle.rss_mb:.0f} MB, PSS {idle.pss_mb:.0f} MB"
        )
        measure.verify_chain(rig, tenants, tenants.tenants[-1])
        if largest:
            res.add(f"startup/{key_type}", f"start-up, {kl}, {tl}", "s", server.name, startup)
            res.add(
                f"startup_cpu/{key_type}",
                f"start-up CPU time of the server, {kl}, {tl}",
                "CPU-s",
                server.name,
                startup_cpu,
            )

        if rig.warmup:
            warm = measure.warm_up(rig, names, count)
            log(
                f"{tag}: warm-up, one handshake per tenant: {warm['ops']} in "
                f"{warm['duration_s']:.1f} s, errors {warm['errors']}"
            )
        hs = self._repeated(lambda: measure.handshakes(server, rig, names))
        log(
            f"{tag}: {hs['per_wall_s']:,.0f} handshakes/s, {hs['per_cpu_s'] or 0:,.0f}/CPU-s "
            f"(server CPU {hs.get('server_cpu_util', 0):.0%}, errors {hs['errors']}, "
            f"other CPU {hs.get('other_cpu_s', 0):.2f} s)"
        )
        details = _details(hs)
        res.add(
            f"hs_cpu/{key_type}/{count}",
            f"full handshakes per server CPU-s, {kl}, {tl}",
            "/CPU-s",
            server.name,
            hs["per_cpu_s"],
            **details,
        )
        res.add(
            f"hs_wall/{key_type}/{count}",
            f"full handshakes per wall s, {kl}, {tl}",
            "/s",
            server.name,
            hs["per_wall_s"],
            **details,
        )

        if not largest:
            return
        loaded = memory(server.pids())
        res.add(
            f"rss/{key_type}",
            f"RSS of process tree after load, {kl}, {tl}",
            "MB",
            server.name,
            loaded.rss_mb,
            idle_rss_mb=idle.rss_mb,
            processes=loaded.processes,
        )
        res.add(
            f"pss/{key_type}",
            f"PSS of process tree after load, {kl}, {tl}",
            "MB",
            server.name,
            loaded.pss_mb,
            idle_pss_mb=idle.pss_mb,
        )
        if first_key:
            self._proxy_figures(server, tenants, names, kl, tl, tag)
            self._chain_changes(server, tenants, tl, tag)

    def _proxy_figures(
        self, server: Server, tenants: certs.TenantSet, names: Path, kl: str, tl: str, tag: str
    ) -> None:
        assert self.rig is not None
        res = self.results
        rig = self.rig
        gets = self._repeated(lambda: measure.kept_alive_gets(server, rig, names))
        log(
            f"{tag}: {gets['per_wall_s']:,.0f} GETs/s, {gets['per_cpu_s'] or 0:,.0f}/CPU-s "
            f"(server CPU {gets.get('server_cpu_util', 0):.0%}, "
            f"upstream CPU {gets['upstream_cpu_s']:.2f} s)"
        )
        details = _details(gets)
        res.add(
            "get_cpu",
            f"kept-alive proxied GETs per proxy CPU-s, {kl}, {tl}",
            "/CPU-s",
            server.name,
            gets["per_cpu_s"],
            **details,
        )
        res.add(
            "get_wall",
            f"kept-alive proxied GETs per wall s, {kl}, {tl}",
            "/s",
            server.name,
            gets["per_wall_s"],
            **details,
        )
        uploads = []
        for _ in range(self.cfg.upload_repeats):
            up = measure.upload(server, self.rig, tenants.tenants[0])
            log(f"{tag}: upload {up['mb_per_s']:,.0f} MB/s (server CPU {up['server_cpu_s']:.2f} s)")
            uploads.append(up)
        mb = self.rig.upload_mb
        res.add(
            "upload",
            f"{mb} MB upload through the proxy, median of {len(uploads)}",
            "MB/s",
            server.name,
            measure.median([u["mb_per_s"] for u in uploads]),
            runs=[_details(u) for u in uploads],
        )
        res.add(
            "upload_cpu",
            f"{mb} MB upload: MB per proxy CPU-s, median of {len(uploads)}",
            "MB/CPU-s",
            server.name,
            measure.median([mb / max(u["server_cpu_s"], 0.01) for u in uploads]),
        )

    def _repeated(self, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run a throughput measurement ``repeats`` times; the run of median CPU rate wins."""
        runs = [run() for _ in range(self.cfg.repeats)]
        runs.sort(key=lambda r: float(r["per_cpu_s"] or 0))
        chosen = runs[len(runs) // 2]
        if len(runs) > 1:
            chosen["per_cpu_s_runs"] = [round(r["per_cpu_s"] or 0) for r in runs]
            chosen["per_wall_s_runs"] = [round(r["per_wall_s"]) for r in runs]
        return chosen

    def _chain_changes(self, server: Server, tenants: certs.TenantSet, tl: str, tag: str) -> None:
        assert self.rig is not None
        samples = []
        for tenant in measure.chain_change_tenants(tenants, self.cfg.chain_repeats):
            sample = measure.chain_change(server, self.rig, tenants, tenant)
            log(
                f"{tag}: chain change of {tenant.name} served after {sample['ms']:,.1f} ms "
                f"(command {sample['command_s']:.2f} s)"
            )
            samples.append(sample)
        values = [s["ms"] for s in samples]
        self.results.add(
            "chain_change_ms",
            f"chain change -> first handshake serving it, median, {tl}",
            "ms",
            server.name,
            measure.median(values),
            method=samples[0]["method"],
            samples_ms=values,
            samples=samples,
        )


def _details(result: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "ops",
        "errors",
        "first_error",
        "duration_s",
        "server_cpu_s",
        "server_cpu_util",
        "client_cpu_s",
        "upstream_cpu_s",
        "other_cpu_s",
        "busy_s_per_cpu",
        "connects",
        "lat_ms",
        "bytes",
        "send_done_s",
        "per_cpu_s_runs",
        "per_wall_s_runs",
    )
    return {k: result[k] for k in keep if k in result}


def _background_load(seconds: float = 1.0) -> float:
    """Busy CPU-seconds per second of the whole machine before the run (others' work)."""
    meter = BusyMeter()
    meter.start()
    time.sleep(seconds)
    busy = sum(meter.stop().values()) / seconds
    if busy > 0.1:
        log(
            f"WARNING: the machine is busy before the run ({busy:.2f} CPU-s/s by other "
            "processes): wall-clock figures will be low and noisy; per-CPU-s figures hold better"
        )
    return busy


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def run(config: RunConfig, on_done: Callable[[Results], None] | None = None) -> Results:
    """Run a comparison and return its results."""
    results = Runner(config).run()
    if on_done:
        on_done(results)
    return results
