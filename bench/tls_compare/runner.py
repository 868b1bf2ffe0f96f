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
from dataclasses import asdict, dataclass, field, replace
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
    interleave: bool = True
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
        self.binary = Path()
        self.upstream = Upstream("127.0.0.1", config.upstream_port)

    def run(self) -> Results:
        """Run everything; servers that cannot run here are reported, not fatal."""
        cfg = self.cfg
        ports = [cfg.port + i for i in range(len(cfg.servers))] if cfg.interleave else [cfg.port]
        for port in (*ports, cfg.upstream_port):
            if not _port_free(port):
                raise RuntimeError(f"port {port} is in use")
        self.workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="certgate-compare-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        log(f"work directory {self.workdir}")
        servers = self._servers()
        binary = self.binary = build(self.workdir)
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
            if self.cfg.interleave and len(servers) > 1:
                self._interleaved(servers, tenants, names, count == largest)
                continue
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
        rig = self.rig
        idle = self._bring_up(server, tenants, names, rig, largest)
        hs = self._repeated(lambda: measure.handshakes(server, rig, names))
        self._handshake_figures(server, tenants, hs)
        if largest:
            self._loaded_memory(server, tenants, idle)
            if tenants.key_type == self.cfg.key_types[0]:
                gets = self._repeated(lambda: measure.kept_alive_gets(server, rig, names))
                self._get_figures(server, tenants, gets)
                self._upload_figures(server, tenants, rig)
                self._chain_changes(server, tenants, _label_tenants(len(tenants.tenants)),
                                    self._tag(server, tenants), rig)

    def _interleaved(
        self, servers: list[Server], tenants: certs.TenantSet, names: Path, largest: bool
    ) -> None:
        """Every server up at once on its own port; the repeats of each throughput figure
        alternate between servers (A, B, C, A, B, C...), so a machine that gets slower or
        faster during the run (other VMs on the host) moves every server's figures alike
        instead of biasing the ratios. Idle servers wait on the same pinned CPU and cost
        nothing measurable."""
        cfg = self.cfg
        up: list[tuple[Server, measure.Rig, Any]] = []

        def failed(server: Server, where: str, exc: Exception) -> None:
            log(f"{server.name} {where}: FAILED: {exc}")
            self.results.error(server.name, where, f"{type(exc).__name__}: {exc}")
            server.stop()
            up[:] = [entry for entry in up if entry[0] is not server]

        where = f"{tenants.key_type}/{len(tenants.tenants)}"
        rigs = [self._rig_for(cfg.port + index) for index in range(len(servers))]
        broken: set[Server] = set()
        try:
            if largest:
                # Start-up is timed with no other server up, as in a sequential run; each
                # server is then started again, untimed, for the rest.
                for server, rig in zip(servers, rigs, strict=True):
                    try:
                        self._bring_up(server, tenants, names, rig, True, warm=False)
                    except Exception as exc:  # one failure must not end the run
                        failed(server, where, exc)
                        broken.add(server)
                    server.stop()
            for server, rig in zip(servers, rigs, strict=True):
                if server in broken:
                    continue
                try:
                    up.append((server, rig, self._bring_up(server, tenants, names, rig, False,
                                                           all_served=largest)))
                except Exception as exc:  # one failure must not end the run
                    failed(server, where, exc)
            for server, hs in self._alternating(up, lambda srv, rig: measure.handshakes(
                    srv, rig, names), where, failed).items():
                self._handshake_figures(server, tenants, hs)
            if not largest:
                return
            for server, _rig, idle in up:
                self._loaded_memory(server, tenants, idle)
            if tenants.key_type != cfg.key_types[0]:
                return
            for server, gets in self._alternating(up, lambda srv, rig: measure.kept_alive_gets(
                    srv, rig, names), where, failed).items():
                self._get_figures(server, tenants, gets)
            # One server after the other, each stopped when done: an nginx reload with
            # 10,000 server blocks keeps CPU 1 busy for a while, and must not land in the
            # next server's chain-change window.
            for server, rig, _idle in list(up):
                try:
                    self._upload_figures(server, tenants, rig)
                    self._chain_changes(server, tenants, _label_tenants(len(tenants.tenants)),
                                        self._tag(server, tenants), rig)
                except Exception as exc:
                    failed(server, where, exc)
                server.stop()
        finally:
            for server in servers:
                server.stop()

    def _alternating(
        self,
        up: list[tuple[Server, measure.Rig, Any]],
        run: Callable[[Server, measure.Rig], dict[str, Any]],
        where: str,
        failed: Callable[[Server, str, Exception], None],
    ) -> dict[Server, dict[str, Any]]:
        """``repeats`` rounds of ``run`` over the servers that are up; each server's run of
        median CPU rate."""
        runs: dict[Server, list[dict[str, Any]]] = {server: [] for server, _, _ in up}
        for _ in range(self.cfg.repeats):
            for server, rig, _idle in list(up):
                try:
                    runs[server].append(run(server, rig))
                except Exception as exc:
                    failed(server, where, exc)
                    runs.pop(server, None)
        return {server: self._median_run(r) for server, r in runs.items() if r}

    def _rig_for(self, port: int) -> measure.Rig:
        """The rig, aimed at another port."""
        assert self.rig is not None
        loadgen = Loadgen(self.binary, self.cfg.loadgen_cpus, f"127.0.0.1:{port}",
                          self.cfg.max_tls)
        return replace(self.rig, loadgen=loadgen, port=port)

    @staticmethod
    def _tag(server: Server, tenants: certs.TenantSet) -> str:
        return f"{server.name} {tenants.key_type} {len(tenants.tenants)}"

    def _bring_up(
        self, server: Server, tenants: certs.TenantSet, names: Path, rig: measure.Rig,
        largest: bool, *, warm: bool = True, all_served: bool = False,
    ) -> Any:
        """Start ``server``, record its start-up figures (``largest``), warm it up
        (``warm``), record the time until every tenant was served once (``all_served``);
        its idle memory."""
        res = self.results
        key_type, count = tenants.key_type, len(tenants.tenants)
        tag = self._tag(server, tenants)
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
        if rig.warmup and warm:
            done = measure.warm_up(rig, names, count)
            served_cpu = cpu_seconds(server.pids()) - startup_cpu
            log(
                f"{tag}: warm-up, one handshake per tenant: {done['ops']} in "
                f"{done['duration_s']:.1f} s ({served_cpu:.2f} CPU-s), errors {done['errors']}"
            )
            if all_served:
                # Start-up stops at the first served tenant; a server that builds per-tenant
                # state lazily pays for it in each tenant's first handshake. This is the time
                # (and the server's CPU) until every tenant has been served once.
                res.add(f"all_served/{key_type}",
                        f"start-up until every tenant was served once, {kl}, {tl}", "s",
                        server.name, startup + float(done["duration_s"]),
                        errors=done["errors"])
                res.add(f"all_served_cpu/{key_type}",
                        f"server CPU from start until every tenant was served once, {kl}, "
                        f"{tl}", "CPU-s", server.name, startup_cpu + served_cpu)
        return idle

    def _handshake_figures(
        self, server: Server, tenants: certs.TenantSet, hs: dict[str, Any]
    ) -> None:
        res = self.results
        key_type, count = tenants.key_type, len(tenants.tenants)
        kl, tl = _key_label(key_type), _label_tenants(count)
        log(
            f"{self._tag(server, tenants)}: {hs['per_wall_s']:,.0f} handshakes/s, "
            f"{hs['per_cpu_s'] or 0:,.0f}/CPU-s "
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

    def _loaded_memory(self, server: Server, tenants: certs.TenantSet, idle: Any) -> None:
        res = self.results
        key_type = tenants.key_type
        kl, tl = _key_label(key_type), _label_tenants(len(tenants.tenants))
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

    def _get_figures(self, server: Server, tenants: certs.TenantSet,
                     gets: dict[str, Any]) -> None:
        res = self.results
        kl, tl = _key_label(tenants.key_type), _label_tenants(len(tenants.tenants))
        log(
            f"{self._tag(server, tenants)}: {gets['per_wall_s']:,.0f} GETs/s, "
            f"{gets['per_cpu_s'] or 0:,.0f}/CPU-s "
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

    def _upload_figures(self, server: Server, tenants: certs.TenantSet,
                        rig: measure.Rig) -> None:
        res = self.results
        uploads = []
        for _ in range(self.cfg.upload_repeats):
            up = measure.upload(server, rig, tenants.tenants[0])
            log(f"{self._tag(server, tenants)}: upload {up['mb_per_s']:,.0f} MB/s "
                f"(server CPU {up['server_cpu_s']:.2f} s)")
            uploads.append(up)
        mb = rig.upload_mb
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
        return self._median_run([run() for _ in range(self.cfg.repeats)])

    @staticmethod
    def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
        """The run of median CPU rate, with every run's rates attached."""
        runs.sort(key=lambda r: float(r["per_cpu_s"] or 0))
        chosen = runs[len(runs) // 2]
        if len(runs) > 1:
            chosen["per_cpu_s_runs"] = [round(r["per_cpu_s"] or 0) for r in runs]
            chosen["per_wall_s_runs"] = [round(r["per_wall_s"]) for r in runs]
        return chosen

    def _chain_changes(self, server: Server, tenants: certs.TenantSet, tl: str, tag: str,
                       rig: measure.Rig) -> None:
        samples = []
        for tenant in measure.chain_change_tenants(tenants, self.cfg.chain_repeats):
            sample = measure.chain_change(server, rig, tenants, tenant)
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
